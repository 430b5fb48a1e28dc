// transformer_generate.cpp — autoregressive generation with a KV cache: the prompt runs once,
// then one token per row per step. Choosing the next token follows the HF logits warpers in
// their order (temperature, top-k, top-p) and draws its uniform from Philox keyed by
// (seed, step, row), so a run is reproducible from its seed on any thread count.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/errors.h"
#include "model/transformer_internal.h"

namespace zeroth::model {
namespace {

int32_t argmax(const float* z, int64_t V) {
  int64_t best = 0;
  for (int64_t j = 1; j < V; ++j)
    if (z[j] > z[best]) best = j;  // strict: the lowest index wins ties, like torch.argmax
  return static_cast<int32_t>(best);
}

int32_t sample(const float* z, int64_t V, const SamplingOptions& o, uint64_t step, uint64_t row) {
  if (o.temperature <= 0.0f) return argmax(z, V);
  std::vector<double> s(static_cast<size_t>(V));
  for (int64_t j = 0; j < V; ++j) s[static_cast<size_t>(j)] = static_cast<double>(z[j]) / o.temperature;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  if (o.top_k > 0 && o.top_k < V) {  // keep scores >= the k-th largest (ties at the edge stay)
    std::vector<double> sorted(s);
    std::nth_element(sorted.begin(), sorted.begin() + (o.top_k - 1), sorted.end(), std::greater<double>());
    const double kth = sorted[static_cast<size_t>(o.top_k - 1)];
    for (double& x : s)
      if (x < kth) x = neg_inf;
  }
  const double mx = *std::max_element(s.begin(), s.end());
  std::vector<double> p(static_cast<size_t>(V));
  double total = 0.0;
  for (int64_t j = 0; j < V; ++j) total += p[static_cast<size_t>(j)] = std::exp(s[static_cast<size_t>(j)] - mx);
  if (o.top_p < 1.0f) {
    // HF TopP: sort ascending, drop tokens while the cumulative probability stays <= 1 - top_p;
    // the most likely token always stays.
    std::vector<int64_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[a] < p[b]; });
    double cum = 0.0;
    for (int64_t i = 0; i + 1 < V; ++i) {
      cum += p[static_cast<size_t>(order[static_cast<size_t>(i)])] / total;
      if (cum > 1.0 - o.top_p) break;
      p[static_cast<size_t>(order[static_cast<size_t>(i)])] = 0.0;
    }
    total = std::accumulate(p.begin(), p.end(), 0.0);
  }
  const rng::U32x4 bits = rng::philox_block(o.seed, step, row);
  const double u = static_cast<double>(bits.v[0] >> 8) * (1.0 / 16777216.0) * total;  // [0, total)
  double cum = 0.0;
  int64_t last = 0;
  for (int64_t j = 0; j < V; ++j) {
    if (p[static_cast<size_t>(j)] == 0.0) continue;
    last = j;
    cum += p[static_cast<size_t>(j)];
    if (u < cum) return static_cast<int32_t>(j);
  }
  return static_cast<int32_t>(last);  // rounding left u at the very top
}

}  // namespace

TensorPtr Model::generate(const Tensor& ids, const Tensor* mask, const SamplingOptions& o) const {
  ZCHECK(device_.type == ZEROTH_DEVICE_CPU, ZEROTH_E_UNSUPPORTED,
         "generate runs on CPU models only; this model's weights are on " + device_string(device_) +
             " (load it with device 'cpu' to generate)");
  check_inputs(ids, mask);
  const TransformerConfig& c = config_;
  ZCHECK(o.max_new_tokens >= 1 && o.max_new_tokens <= (int64_t{1} << 20), ZEROTH_E_INVALID_ARG,
         "maxNewTokens must be between 1 and 2^20");
  ZCHECK(std::isfinite(o.temperature) && o.temperature >= 0.0f, ZEROTH_E_INVALID_ARG,
         "temperature must be >= 0 (0 is greedy)");
  ZCHECK(o.top_k >= 0, ZEROTH_E_INVALID_ARG, "topK must be >= 0 (0 turns it off)");
  ZCHECK(o.top_p > 0.0f && o.top_p <= 1.0f, ZEROTH_E_INVALID_ARG, "topP must be in (0, 1]");
  ZCHECK(o.eos_token_id < c.vocab_size, ZEROTH_E_INVALID_ARG, "eosTokenId is outside the vocabulary");
  const int64_t B = ids.shape[0], T = ids.shape[1], V = c.vocab_size, N = o.max_new_tokens;
  const int32_t* m = mask ? mask->as<int32_t>() : nullptr;

  // Each row continues after its last real token.
  std::vector<int64_t> last(static_cast<size_t>(B), -1), real(static_cast<size_t>(B), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      if (!m || m[b * T + t]) {
        last[static_cast<size_t>(b)] = t;
        real[static_cast<size_t>(b)] += 1;
      }
  for (int64_t b = 0; b < B; ++b) {
    ZCHECK(last[static_cast<size_t>(b)] >= 0, ZEROTH_E_INVALID_ARG,
           "row " + std::to_string(b) + " of the prompt has no real token (its attention mask is all 0)");
    if (c.family != Family::Llama)
      ZCHECK(real[static_cast<size_t>(b)] + N - 1 <= c.max_positions, ZEROTH_E_INVALID_ARG,
             "prompt plus maxNewTokens exceeds max_position_embeddings (" + std::to_string(c.max_positions) + ")");
  }

  const Resolved r(weights_, nullptr);
  WorkspaceLease lease(*this);
  Workspace& ws = *lease;
  KVCache cache(c, B, T + N - 1);  // its own storage: it outlives no call, but grows per step
  const float* hidden = run(ids.as<int32_t>(), m, B, T, cache, r, ws);
  const int64_t hw = head_width();
  std::vector<float> rows(static_cast<size_t>(B * hw)), logits(static_cast<size_t>(B * V));
  for (int64_t b = 0; b < B; ++b) {
    const float* src = hidden + (b * T + last[static_cast<size_t>(b)]) * hw;
    std::copy(src, src + hw, rows.data() + b * hw);
  }
  lm_head(rows.data(), B, r, logits.data());

  const int32_t fill = static_cast<int32_t>(c.pad_token_id >= 0 ? c.pad_token_id : std::max<int64_t>(o.eos_token_id, 0));
  TensorPtr out = tensor_empty(ZEROTH_I32, {B, N}, zeroth_device{ZEROTH_DEVICE_CPU, 0});
  int32_t* tok = out->as<int32_t>();
  std::vector<uint8_t> done(static_cast<size_t>(B), 0);
  std::vector<int32_t> next(static_cast<size_t>(B)), live(static_cast<size_t>(B));
  for (int64_t step = 0; step < N; ++step) {
    for (int64_t b = 0; b < B; ++b) {
      if (done[static_cast<size_t>(b)]) {
        next[static_cast<size_t>(b)] = fill;
        live[static_cast<size_t>(b)] = 0;
        continue;
      }
      next[static_cast<size_t>(b)] = sample(logits.data() + b * V, V, o, static_cast<uint64_t>(step), static_cast<uint64_t>(b));
      live[static_cast<size_t>(b)] = 1;
      if (next[static_cast<size_t>(b)] == o.eos_token_id) done[static_cast<size_t>(b)] = 1;
    }
    for (int64_t b = 0; b < B; ++b) tok[b * N + step] = next[static_cast<size_t>(b)];
    if (step + 1 == N || std::all_of(done.begin(), done.end(), [](uint8_t d) { return d != 0; })) {
      for (int64_t s = step + 1; s < N; ++s)
        for (int64_t b = 0; b < B; ++b) tok[b * N + s] = fill;
      break;
    }
    // Feed the new tokens (finished rows feed a masked pad) and take the next logits.
    hidden = run(next.data(), live.data(), B, 1, cache, r, ws);
    lm_head(hidden, B, r, logits.data());
  }
  return out;
}

}  // namespace zeroth::model
