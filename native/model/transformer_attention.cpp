// transformer_attention.cpp — RoPE, the KV cache and causal multi-head / grouped-query
// attention. Per (row, head), scores = q·Kᵀ and out = softmax(scores)·V are two gemm_f32
// calls on contiguous cache panels; the (row, head) pairs run in parallel over the pool
// (gemm_f32 called from inside a chunk runs on that thread).
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/ops_util.h"
#include "model/transformer_internal.h"

namespace zeroth::model {
namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}  // namespace

KVCache::KVCache(const TransformerConfig& c, int64_t batch_, int64_t capacity_, std::vector<float> storage_,
                 bool one_layer_)
    : one_layer(one_layer_), batch(batch_), capacity(capacity_), storage(std::move(storage_)) {
  per_layer = shape_numel({batch, c.n_kv_head, capacity, c.head_dim});
  const int64_t total = shape_numel({one_layer ? 1 : c.n_layer, 2, per_layer});
  if (storage.size() < static_cast<size_t>(total)) storage.resize(static_cast<size_t>(total));
  valid.assign(static_cast<size_t>(batch * capacity), 0);
  real_count.assign(static_cast<size_t>(batch), 0);
}

std::vector<int64_t> assign_positions(const TransformerConfig& c, const int32_t* mask, int64_t B, int64_t S,
                                      int64_t length, int64_t capacity, std::vector<uint8_t>& valid,
                                      std::vector<int64_t>& real_count) {
  std::vector<int64_t> pos(static_cast<size_t>(B * S));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t slot = length + s, i = b * S + s;
      const bool real = !mask || mask[i] != 0;
      valid[static_cast<size_t>(b * capacity + slot)] = real ? 1 : 0;
      int64_t p;
      if (real) p = real_count[static_cast<size_t>(b)]++;
      else if (c.family == Family::Opt) p = -1;  // HF: cumsum(mask)·mask - 1
      else p = std::min(slot, c.max_positions - 1);
      if (real && c.family != Family::Llama)
        ZCHECK(p < c.max_positions, ZEROTH_E_INVALID_ARG,
               "a row has more than " + std::to_string(c.max_positions) +
                   " tokens, the model's max_position_embeddings; shorten the input");
      pos[static_cast<size_t>(i)] = p;
    }
  return pos;
}

void rope_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const int64_t* positions, double theta) {
  const int64_t half = head_dim / 2;
  // inv_freq as HF computes it in f32: 1 / theta^(2i / head_dim).
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float expo = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[static_cast<size_t>(i)] = static_cast<float>(1.0 / std::pow(theta, static_cast<double>(expo)));
  }
  parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
    std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
    for (int64_t r = r0; r < r1; ++r) {
      // The angle is rounded to f32 like HF's (inv_freq @ position) before cos/sin.
      for (int64_t i = 0; i < half; ++i) {
        const float angle = static_cast<float>(positions[r]) * inv_freq[static_cast<size_t>(i)];
        c[static_cast<size_t>(i)] = static_cast<float>(std::cos(static_cast<double>(angle)));
        s[static_cast<size_t>(i)] = static_cast<float>(std::sin(static_cast<double>(angle)));
      }
      for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + (r * n_heads + h) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          const float ci = c[static_cast<size_t>(i)], si = s[static_cast<size_t>(i)];
          v[i] = a * ci - b * si;
          v[i + half] = b * ci + a * si;
        }
      }
    }
  });
}

void cache_append(KVCache& cache, int64_t layer, const float* k, const float* v, int64_t S, int64_t n_kv,
                  int64_t head_dim) {
  ZCHECK(cache.length + S <= cache.capacity, ZEROTH_E_INTERNAL, "KV cache overflow");
  float* K = cache.k(layer);
  float* V = cache.v(layer);
  const int64_t width = n_kv * head_dim;
  for (int64_t b = 0; b < cache.batch; ++b)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t h = 0; h < n_kv; ++h) {
        const int64_t src = (b * S + s) * width + h * head_dim;
        const int64_t dst = ((b * n_kv + h) * cache.capacity + cache.length + s) * head_dim;
        for (int64_t i = 0; i < head_dim; ++i) {
          K[dst + i] = k[src + i];
          V[dst + i] = v[src + i];
        }
      }
}

void attention(const KVCache& cache, int64_t layer, const float* q, int64_t S, int64_t n_head, int64_t n_kv,
               int64_t head_dim, float* out) {
  const int64_t B = cache.batch;
  const int64_t slots = cache.length + S;  // keys visible to the last new query
  const int64_t group = n_head / n_kv;      // query heads sharing one kv head
  const int64_t width = n_head * head_dim;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  const float* K = cache.k(layer);
  const float* V = cache.v(layer);
  parallel_for(B * n_head, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> scores(static_cast<size_t>(S * slots));
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p / n_head, h = p % n_head, kvh = h / group;
      const float* Kp = K + (b * n_kv + kvh) * cache.capacity * head_dim;
      const float* Vp = V + (b * n_kv + kvh) * cache.capacity * head_dim;
      const float* Q = q + b * S * width + h * head_dim;
      float* O = out + b * S * width + h * head_dim;
      // scores[S, slots] = scale · Q[S, hd] · K[slots, hd]ᵀ
      gemm_f32(false, true, S, slots, head_dim, scale, Q, width, Kp, head_dim, 0.0f, scores.data(), slots);
      const uint8_t* valid = cache.valid.data() + b * cache.capacity;
      for (int64_t s = 0; s < S; ++s) {
        float* row = scores.data() + s * slots;
        const int64_t visible = cache.length + s + 1;  // causal: slots [0, visible)
        for (int64_t j = 0; j < visible; ++j)
          if (!valid[j]) row[j] = kNegInf;
        for (int64_t j = visible; j < slots; ++j) row[j] = 0.0f;  // P = 0 beyond the causal edge
        const float mx = ops::vec_max(row, visible);
        if (mx == kNegInf) {  // no visible key: output zeros
          for (int64_t j = 0; j < visible; ++j) row[j] = 0.0f;
          continue;
        }
        const double sum = ops::vec_exp_shift_sum(row, visible, mx, row);  // exp(-inf) = 0
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < visible; ++j) row[j] *= inv;
      }
      // O[S, hd] = P[S, slots] · V[slots, hd]
      gemm_f32(false, false, S, head_dim, slots, 1.0f, scores.data(), slots, Vp, head_dim, 0.0f, O, width);
    }
  });
}

}  // namespace zeroth::model
