// transformer_forward.cpp — embeddings, the blocks of the three families, the LM head, and
// the two entry points that run a whole sequence: forward (logits) and loss (float64 per-row
// cross entropy, computed from the LM head in row chunks so the full [B, T, V] logits are never
// held at once).
//
// Every weight matrix goes through gemm_f32 with its PerturbDesc; embeddings, norm weights and
// biases are read through Resolved::row / vec, which add the same perturbation.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/int4_gemm.h"
#include "cpu/ops_util.h"
#include "model/transformer_internal.h"

namespace zeroth::model {
namespace {

// y[M, N] = x[M, K] · Wᵀ (+ bias), W stored [N, K] (Linear) or [K, N] (Conv1D, in_out).
void linear(const Model::Resolved& r, int w, int bias, const float* x, int64_t M, int64_t K, int64_t N, float* y) {
  const Weight& W = r.weights[static_cast<size_t>(w)];
  const PerturbDesc& d = r.desc[static_cast<size_t>(w)];
  if (W.tensor->quant) {
    // Fused de-quantizing product; perturbed scales (QZO) are read as fl(s + fl(scale·z)) like
    // any other perturbed weight, so this equals perturbing the scales in place.
    std::vector<float> storage;
    QuantMatrix q = quant_matrix(*W.tensor, storage);
    std::vector<float> scales;
    if (W.scales >= 0 && r.desc[static_cast<size_t>(W.scales)].active) {
      scales = r.vec(W.scales);
      q.scales = scales.data();
    }
    quant_matmul(q, M, x, K, y, N);
  } else if (W.in_out)
    gemm_f32(false, false, M, N, K, 1.0f, x, K, W.tensor->as<float>(), N, 0.0f, y, N, d);
  else
    gemm_f32(false, true, M, N, K, 1.0f, x, K, W.tensor->as<float>(), K, 0.0f, y, N, d);
  if (W.lora_a >= 0) {
    // y += scale·(x·Aᵀ)·Bᵀ, both adapter matrices read through their own perturbation.
    const Weight& A = r.weights[static_cast<size_t>(W.lora_a)];
    const int64_t rank = A.tensor->shape[0];
    std::vector<float> t(static_cast<size_t>(M * rank));
    gemm_f32(false, true, M, rank, K, 1.0f, x, K, A.tensor->as<float>(), K, 0.0f, t.data(), rank,
             r.desc[static_cast<size_t>(W.lora_a)]);
    gemm_f32(false, true, M, N, rank, W.lora_scale, t.data(), rank, r.data(W.lora_b), rank, 1.0f, y, N,
             r.desc[static_cast<size_t>(W.lora_b)]);
  }
  if (bias >= 0) {
    const std::vector<float> b = r.vec(bias);
    add_bias_rows(y, M, N, b.data());
  }
}

}  // namespace

void Model::check_inputs(const Tensor& ids, const Tensor* mask) const {
  require_cpu(ids, "inputIds");
  require_dtype(ids, {ZEROTH_I32}, "inputIds");
  ZCHECK(ids.ndim() == 2 && ids.shape[0] > 0 && ids.shape[1] > 0, ZEROTH_E_SHAPE,
         "inputIds must be a non-empty [batch, tokens] tensor (got " + shape_string(ids.shape) + ")");
  const int32_t* p = ids.as<int32_t>();
  for (int64_t i = 0; i < ids.numel; ++i)
    ZCHECK(p[i] >= 0 && p[i] < config_.vocab_size, ZEROTH_E_INVALID_ARG,
           "inputIds holds token " + std::to_string(p[i]) + " outside the vocabulary [0, " +
               std::to_string(config_.vocab_size) + ")");
  if (!mask) return;
  require_cpu(*mask, "attentionMask");
  require_dtype(*mask, {ZEROTH_I32}, "attentionMask");
  ZCHECK(mask->shape == ids.shape, ZEROTH_E_SHAPE,
         "attentionMask has shape " + shape_string(mask->shape) + " but inputIds has " + shape_string(ids.shape));
  const int32_t* m = mask->as<int32_t>();
  for (int64_t i = 0; i < mask->numel; ++i)
    ZCHECK(m[i] == 0 || m[i] == 1, ZEROTH_E_INVALID_ARG, "attentionMask entries must be 0 or 1");
}

const float* Model::run(const int32_t* ids, const int32_t* mask, int64_t B, int64_t S, KVCache& cache,
                        const Resolved& r, Workspace& ws) const {
  const TransformerConfig& c = config_;
  const int64_t M = B * S, d = c.d_model, F = c.d_ff;
  const int64_t qdim = c.n_head * c.head_dim, kvdim = c.n_kv_head * c.head_dim;
  const float eps = static_cast<float>(c.norm_eps);

  const std::vector<int64_t> pos =
      assign_positions(c, mask, B, S, cache.length, cache.capacity, cache.valid, cache.real_count);

  // Embeddings.
  std::vector<float>& x = ws.get(kWsX, M * d);
  {
    const int64_t E = head_width();
    std::vector<float>& tok = ws.get(kWsTok, M * E);
    parallel_for(M, 16, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) r.row(tok_embed_, ids[i], E, tok.data() + i * E);
    });
    if (project_in_ >= 0) linear(r, project_in_, -1, tok.data(), M, E, d, x.data());
    else x.swap(tok);
    if (pos_embed_ >= 0) {
      const int64_t offset = c.family == Family::Opt ? 2 : 0;  // OPT's table starts at position -2
      parallel_for(M, 16, [&](int64_t i0, int64_t i1) {
        std::vector<float> prow(static_cast<size_t>(d));
        for (int64_t i = i0; i < i1; ++i) {
          r.row(pos_embed_, pos[static_cast<size_t>(i)] + offset, d, prow.data());
          float* xi = x.data() + i * d;
          for (int64_t j = 0; j < d; ++j) xi[j] += prow[static_cast<size_t>(j)];
        }
      });
    }
  }

  auto norm = [&](int w, int b, const float* in, float* out) {
    const std::vector<float> wv = r.vec(w), bv = r.vec(b);
    if (c.family == Family::Llama) rms_norm_rows(in, M, d, wv.empty() ? nullptr : wv.data(), eps, out);
    else layer_norm_rows(in, M, d, wv.empty() ? nullptr : wv.data(), bv.empty() ? nullptr : bv.data(), eps, out);
  };

  std::vector<float>& h = ws.get(kWsH, M * d);
  std::vector<float>& out = ws.get(kWsOut, M * d);
  std::vector<float>& q = ws.get(kWsQ, M * qdim);
  std::vector<float>& k = ws.get(kWsK, M * kvdim);
  std::vector<float>& v = ws.get(kWsV, M * kvdim);
  std::vector<float>& att = ws.get(kWsAtt, M * qdim);
  std::vector<float>& ff = ws.get(kWsFf, M * F);
  std::vector<float>& up = ws.get(kWsUp, c.family == Family::Llama ? M * F : 0);

  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = layers_[static_cast<size_t>(l)];

    // Attention: out = o(attention(q(h), k(h), v(h))), h = norm1(x) in pre-LN blocks.
    const float* a_in = x.data();
    if (c.pre_norm) {
      norm(L.norm1_w, L.norm1_b, x.data(), h.data());
      a_in = h.data();
    }
    if (L.qkv >= 0) {  // GPT-2's fused c_attn: one GEMM, then split the columns
      std::vector<float>& qkv = ws.get(kWsQkv, M * 3 * d);
      linear(r, L.qkv, L.qkv_b, a_in, M, d, 3 * d, qkv.data());
      parallel_for(M, 64, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const float* src = qkv.data() + i * 3 * d;
          std::copy(src, src + d, q.data() + i * d);
          std::copy(src + d, src + 2 * d, k.data() + i * d);
          std::copy(src + 2 * d, src + 3 * d, v.data() + i * d);
        }
      });
    } else {
      linear(r, L.q, L.q_b, a_in, M, d, qdim, q.data());
      linear(r, L.k, L.k_b, a_in, M, d, kvdim, k.data());
      linear(r, L.v, L.v_b, a_in, M, d, kvdim, v.data());
    }
    if (c.family == Family::Llama) {
      rope_rows(q.data(), M, c.n_head, c.head_dim, pos.data(), c.rope_theta);
      rope_rows(k.data(), M, c.n_kv_head, c.head_dim, pos.data(), c.rope_theta);
    }
    cache_append(cache, l, k.data(), v.data(), S, c.n_kv_head, c.head_dim);
    attention(cache, l, q.data(), S, c.n_head, c.n_kv_head, c.head_dim, att.data());
    linear(r, L.o, L.o_b, att.data(), M, qdim, d, out.data());
    add_inplace(x.data(), out.data(), M * d);
    if (!c.pre_norm) {  // OPT post-LN: x = norm1(x + attn)
      norm(L.norm1_w, L.norm1_b, x.data(), h.data());
      x.swap(h);
    }

    // MLP: out = fc2(act(fc1(h))), or down(silu(gate(h)) · up(h)) in the Llama family.
    const float* m_in = x.data();
    if (c.pre_norm) {
      norm(L.norm2_w, L.norm2_b, x.data(), h.data());
      m_in = h.data();
    }
    linear(r, L.gate >= 0 ? L.gate : L.fc1, L.gate >= 0 ? L.gate_b : L.fc1_b, m_in, M, d, F, ff.data());
    if (L.gate >= 0) {
      linear(r, L.fc1, L.fc1_b, m_in, M, d, F, up.data());
      swiglu_inplace(ff.data(), up.data(), M * F);
    } else {
      activation_inplace(c.activation, ff.data(), M * F);
    }
    linear(r, L.fc2, L.fc2_b, ff.data(), M, F, d, out.data());
    add_inplace(x.data(), out.data(), M * d);
    if (!c.pre_norm) {
      norm(L.norm2_w, L.norm2_b, x.data(), h.data());
      x.swap(h);
    }
  }
  cache.length += S;

  if (final_norm_w_ >= 0 || (c.pre_norm && c.family == Family::Opt && !c.norm_affine)) {
    norm(final_norm_w_, final_norm_b_, x.data(), h.data());
    x.swap(h);
  }
  if (project_out_ >= 0) {
    std::vector<float>& hidden = ws.get(kWsHidden, M * head_width());
    linear(r, project_out_, -1, x.data(), M, d, head_width(), hidden.data());
    return hidden.data();
  }
  return x.data();
}

void Model::lm_head(const float* hidden, int64_t M, const Resolved& r, float* logits) const {
  linear(r, head_, -1, hidden, M, head_width(), config_.vocab_size, logits);
}

TensorPtr Model::forward(const Tensor& ids, const Tensor* mask, const ForwardPerturbation* p) const {
  if (device_.type != ZEROTH_DEVICE_CPU) return forward_cuda(ids, mask, p);  // weights on a GPU
  check_inputs(ids, mask);
  const int64_t B = ids.shape[0], T = ids.shape[1], V = config_.vocab_size;
  const Resolved r(weights_, p);
  WorkspaceLease lease(*this);
  Workspace& ws = *lease;
  KVCache cache(config_, B, T, std::move(ws.kv), /*one_layer=*/true);
  const float* hidden = run(ids.as<int32_t>(), mask ? mask->as<int32_t>() : nullptr, B, T, cache, r, ws);
  TensorPtr logits = tensor_empty(ZEROTH_F32, {B, T, V}, zeroth_device{ZEROTH_DEVICE_CPU, 0});
  lm_head(hidden, B * T, r, logits->as<float>());
  ws.kv = std::move(cache.storage);
  return logits;
}

TensorPtr Model::loss(const Tensor& ids, const Tensor* mask, const ForwardPerturbation* p) const {
  if (device_.type != ZEROTH_DEVICE_CPU) return loss_cuda(ids, mask, p);  // weights on a GPU
  check_inputs(ids, mask);
  const int64_t B = ids.shape[0], T = ids.shape[1], V = config_.vocab_size, hw = head_width();
  const int32_t* id = ids.as<int32_t>();
  const int32_t* m = mask ? mask->as<int32_t>() : nullptr;
  const Resolved r(weights_, p);
  WorkspaceLease lease(*this);
  Workspace& ws = *lease;
  KVCache cache(config_, B, T, std::move(ws.kv), /*one_layer=*/true);
  const float* hidden = run(id, m, B, T, cache, r, ws);
  ws.kv = std::move(cache.storage);

  const std::vector<int64_t> pairs = scored_pairs(m, B, T);

  // The LM head over blocks of scored rows × chunks of the vocabulary. Each chunk's logits are
  // folded into a running max and Σ exp per row (online logsumexp: the SIMD exp, the sum and the
  // log in double), so the logits buffer is rows × chunk instead of rows × V, and every head
  // element is read (perturbed: has its z drawn) once per block of rows, not once per small row
  // chunk of full-width logits. A quantized head or one with LoRA adapters is read whole (one
  // chunk of V).
  const Weight& H = weights_[static_cast<size_t>(head_)];
  const int64_t vchunk = H.tensor->quant || H.lora_a >= 0 ? V : std::min(V, loss_vocab_chunk_ > 0 ? loss_vocab_chunk_ : kLossVocabChunk);
  const int64_t block = loss_chunk(vchunk);
  const int64_t P = static_cast<int64_t>(pairs.size());
  std::vector<double> nll(pairs.size());
  const int64_t block_rows = std::min(block, P);
  std::vector<float>& rows = ws.get(kWsRows, block_rows * hw);
  std::vector<float>& logits = ws.get(kWsLogits, block_rows * vchunk);
  std::vector<float> mx(static_cast<size_t>(block_rows)), target_logit(static_cast<size_t>(block_rows));
  std::vector<double> sum(static_cast<size_t>(block_rows));
  for (int64_t c0 = 0; c0 < P; c0 += block) {
    const int64_t n = std::min(block, P - c0);
    for (int64_t i = 0; i < n; ++i) {
      const float* src = hidden + pairs[static_cast<size_t>(c0 + i)] * hw;
      std::copy(src, src + hw, rows.data() + i * hw);
    }
    std::fill(mx.begin(), mx.end(), -std::numeric_limits<float>::infinity());
    std::fill(sum.begin(), sum.end(), 0.0);
    for (int64_t v0 = 0; v0 < V; v0 += vchunk) {
      const int64_t nv = std::min(vchunk, V - v0);
      lm_head_slice(rows.data(), n, r, v0, nv, logits.data());
      parallel_for(n, 1, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const float* z = logits.data() + i * nv;
          const size_t k = static_cast<size_t>(i);
          const float chunk_max = ops::vec_max(z, nv);
          if (chunk_max > mx[k]) {  // rescale what was summed under the smaller max
            if (sum[k] != 0.0) sum[k] *= std::exp(static_cast<double>(mx[k]) - static_cast<double>(chunk_max));
            mx[k] = chunk_max;
          }
          sum[k] += ops::vec_exp_shift_sum(z, nv, mx[k], nullptr);
          const int64_t target = id[pairs[static_cast<size_t>(c0 + i)] + 1];
          if (target >= v0 && target < v0 + nv) target_logit[k] = z[target - v0];
        }
      });
    }
    for (int64_t i = 0; i < n; ++i) {
      const size_t k = static_cast<size_t>(i);
      nll[static_cast<size_t>(c0 + i)] =
          static_cast<double>(mx[k]) + std::log(sum[k]) - static_cast<double>(target_logit[k]);
    }
  }

  return row_means(pairs, nll, B, T);
}

std::vector<int64_t> scored_pairs(const int32_t* mask, int64_t B, int64_t T) {
  std::vector<int64_t> pairs;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < T; ++t)
      if (!mask || (mask[b * T + t] && mask[b * T + t + 1])) pairs.push_back(b * T + t);
  return pairs;
}

TensorPtr row_means(const std::vector<int64_t>& pairs, const std::vector<double>& nll, int64_t B, int64_t T) {
  TensorPtr out = tensor_empty(ZEROTH_F64, {B}, zeroth_device{ZEROTH_DEVICE_CPU, 0});
  double* o = out->as<double>();
  std::vector<double> sum(static_cast<size_t>(B), 0.0);
  std::vector<int64_t> count(static_cast<size_t>(B), 0);
  for (size_t i = 0; i < pairs.size(); ++i) {  // in order: the same sum whatever the threads
    sum[static_cast<size_t>(pairs[i] / T)] += nll[i];
    count[static_cast<size_t>(pairs[i] / T)] += 1;
  }
  for (int64_t b = 0; b < B; ++b)
    o[b] = count[static_cast<size_t>(b)] ? sum[static_cast<size_t>(b)] / static_cast<double>(count[static_cast<size_t>(b)])
                                         : std::numeric_limits<double>::quiet_NaN();
  return out;
}

int64_t Model::loss_chunk(int64_t width) const {
  // Every block of rows re-packs (and, perturbed, re-draws z for) the head, so blocks are as
  // large as a 128 MiB logits buffer allows: 660 rows of GPT-2's 50257 logits, 4096 rows of a
  // vocabulary chunk.
  return loss_chunk_rows_ > 0 ? loss_chunk_rows_ : std::max<int64_t>(64, (int64_t{128} << 20) / (4 * width));
}

void Model::lm_head_slice(const float* hidden, int64_t M, const Resolved& r, int64_t v0, int64_t nv,
                          float* logits) const {
  const Weight& W = r.weights[static_cast<size_t>(head_)];
  if (v0 == 0 && nv == config_.vocab_size) return lm_head(hidden, M, r, logits);
  // Rows [v0, v0 + nv) of the head ([V, hw], or columns of a [hw, V] one): z indexed from the
  // whole tensor's start (PerturbDesc::base), so a slice reads what the whole head reads.
  const int64_t hw = head_width();
  PerturbDesc d = r.desc[static_cast<size_t>(head_)];
  const float* w = W.tensor->as<float>();
  if (W.in_out) {
    d.base = static_cast<uint64_t>(v0);
    gemm_f32(false, false, M, nv, hw, 1.0f, hidden, hw, w + v0, config_.vocab_size, 0.0f, logits, nv, d);
  } else {
    d.base = static_cast<uint64_t>(v0 * hw);
    gemm_f32(false, true, M, nv, hw, 1.0f, hidden, hw, w + v0 * hw, hw, 0.0f, logits, nv, d);
  }
}

}  // namespace zeroth::model
