// transformer_cuda.cpp — the CUDA twin of the transformer forward: Model::to_device (the
// weights uploaded once), run_cuda / lm_head_cuda / forward_cuda / loss_cuda (twins of
// Model::run / lm_head / forward / loss in transformer_forward.cpp, which stay the readable
// reference: every step here names the CPU step it mirrors, in the same order), and
// quantized_cuda (Model::quantized on a device model). Compiled into every build; without the
// CUDA backend only to_device's E_DEVICE and unreachable stubs remain.
//
// Same semantics as the CPU path: positions and key validity are computed on the host by the
// very loop of Model::run (OPT's offset 2 and padding position, the slot index for GPT-2 /
// Llama pads), every weight is read through its PerturbDesc (Model::Resolved: the perturbed
// GEMM for matrices, the perturbed element read of cuda::embedding / layer_norm / rms_norm /
// add_bias_rows for tables, norms and biases, the QZO scale perturbation of quant_matmul_on),
// post-LN, LoRA adapters, project_in / project_out and the tied head as on the CPU. The loss
// runs the LM head in chunks of rows with full-vocabulary logits (the CPU reads the vocabulary
// in chunks with an online logsumexp to keep its host buffer small; the two agree to float
// rounding), takes each row's cross entropy in double on the device (cuda::cross_entropy_rows)
// and sums the per-row means on the host in the CPU's fixed order (row_means).
//
// Where results differ from the CPU: the f32 GEMMs and attention sum in another order
// (gemm_cuda.h, ops_cuda.h), and GELU / SiLU are evaluated in double where the CPU uses SIMD
// polynomials; everything else (embeddings, norms' statistics in double, bias and residual
// adds, RoPE angles) rounds as the CPU does. Logits agree to ~1e-6 relative, losses to ~1e-7.
//
// bf16 matrices (to_device(…, ZEROTH_BF16)): each product rounds its f32 input to bf16
// (cuda::to_bf16, nearest even) and runs on tensor cores with f32 accumulation (gemm_bf16,
// the perturbation applied in the weight-tile load as fl_bf16(w + fl(s·z))); the bf16 token
// embedding reads the same perturbed bf16 value (cuda::embedding_bf16), so GPT-2's tied wte is
// one weight as embedding and head, and a perturbed forward equals a forward on weights that
// perturb.h perturbed in place. Everything between products stays f32. Against the f32 model,
// bf16 rounding of weights and activations moves logits by ~1e-2 and losses by ~1e-3 relative.
//
// Inputs are CPU int32 tensors (validated by check_inputs, as on the CPU) and are uploaded once
// per call; results come back as CPU tensors: loss an f64 [B] (what the optimizer's probes and
// the curvature estimators read), forward the f32 [B, T, V] logits (what evaluation reads; one
// device-to-host copy of the logits per call). Device scratch (activations, KV cache, loss
// chunks) lives in a DeviceWorkspace kept between calls (transformer_cuda.h). Generation stays
// CPU-only (Model::generate answers E_UNSUPPORTED on a device model).
#include <algorithm>
#include <cstring>
#include <limits>

#include "core/backend.h"
#include "core/dtype.h"
#include "core/errors.h"
#include "model/transformer_cuda.h"
#include "model/transformer_internal.h"
#include "model/transformer_quant.h"

#ifdef ZEROTH_WITH_CUDA
#include "../../cuda/convert_cuda.h"
#include "../../cuda/gemm_cuda.h"
#include "../../cuda/int4_gemm_cuda.h"
#include "../../cuda/model_ops_cuda.h"
#include "../../cuda/ops_cuda.h"
#endif

namespace zeroth::model {

// The weights to_device holds in `matrices`' dtype: the matrices the products read (block
// linear layers, the token embedding / LM head, OPT's project_in / project_out). Norms, biases
// and position tables stay f32 (the element kernels read f32; they are a small part of the bytes).
bool Model::is_device_matrix(int w) const {
  return is_block_linear(w) || w == tok_embed_ || w == head_ || w == project_in_ || w == project_out_;
}

#ifdef ZEROTH_WITH_CUDA

// The device twin of KVCache (transformer_internal.h) in its one-layer form: every device run
// is a whole sequence (generation is CPU-only) and never reads a layer's keys and values after
// that layer, so one layer's worth of storage, a workspace slot on the device, serves them all
// (layer l + 1's cache_append is queued on the stream after layer l's attention). That is
// 1/n_layer of the memory: GPT-2 small at 4 × 128 needs 3 MB instead of 38. Validity and
// real-token counts are kept on the host, where Model::run's position loop updates them, and
// key validity is uploaded with each run.
struct Model::DeviceCache {
  int64_t batch = 0, capacity = 0, length = 0, per_layer = 0;
  float* storage = nullptr;            // device [k | v][B][n_kv][capacity][head_dim]
  std::vector<uint8_t> valid;          // host [B, capacity]: the slot holds a real token
  std::vector<int64_t> real_count;     // per row: real tokens so far = next real position
  const uint8_t* valid_dev = nullptr;  // device copy of `valid`, set by run_cuda
  float* k(int64_t /*layer*/) const { return storage; }
  float* v(int64_t layer) const { return k(layer) + per_layer; }
};

namespace {

constexpr zeroth_device kCpu{ZEROTH_DEVICE_CPU, 0};

// Host arrays packed into one buffer (each 16-byte aligned) and sent in one copy: every
// host-to-device copy waits for the device, so a call makes one, not five.
class Upload {
 public:
  template <typename T>
  size_t add(const T* p, int64_t n) {
    const size_t off = (bytes_.size() + 15) / 16 * 16;
    bytes_.resize(off + static_cast<size_t>(n) * sizeof(T));
    if (n > 0) std::memcpy(bytes_.data() + off, p, static_cast<size_t>(n) * sizeof(T));
    return off;
  }
  uint8_t* send(DeviceWorkspace& ws, int slot) {
    uint8_t* dst = ws.get<uint8_t>(slot, static_cast<int64_t>(bytes_.size()));
    backend_for(ws.device).copy_from_host(ws.device.index, dst, bytes_.data(), bytes_.size());
    return dst;
  }

 private:
  std::vector<uint8_t> bytes_;
};

// quant.h's QuantMatrix view of a device-resident quantized weight (as to_device holds it:
// codes in the tensor's storage, f32 scales / zeros and the optional permutation in its
// QuantInfo, all on the device). Pointers into the tensors, so an optimizer's in-place update
// of the scales is what the next product reads.
cuda::QuantMatrixDevice device_matrix(const Tensor& q) {
  const QuantInfo& qi = *q.quant;
  cuda::QuantMatrixDevice m;
  m.bits = q.dtype == ZEROTH_INT4 ? 4 : 8;
  m.rows = q.shape[0];
  m.cols = q.shape[1];
  m.group_size = qi.group_size;
  m.groups = m.cols == 0 ? 0 : (m.cols + m.group_size - 1) / m.group_size;
  if (m.bits == 4) m.codes4 = q.as<uint8_t>();
  else m.codes8 = q.as<int8_t>();
  m.scales = qi.scales->as<float>();
  m.zeros = qi.zeros ? qi.zeros->as<float>() : nullptr;
  m.fixed_zero = m.bits == 4 ? 8.0f : 0.0f;  // quant_matrix's rule
  m.perm = qi.perm ? qi.perm->as<int32_t>() : nullptr;
  return m;
}

// A CPU quantized weight on the device, held as the CPU model holds it: one tensor (the codes)
// whose QuantInfo names the device scales, zeros and permutation.
TensorPtr upload_quantized(const Tensor& q, int device) {
  ZCHECK(q.numel > 0, ZEROTH_E_SHAPE, "an empty quantized weight cannot be uploaded");
  cuda::DeviceQuantWeight dw = cuda::upload_quant_matrix(q, device);
  auto info = std::make_shared<QuantInfo>();
  info->group_size = q.quant->group_size;
  info->symmetric = q.quant->symmetric;
  info->scales = dw.scales;
  info->zeros = dw.zeros;
  info->perm = dw.perm;
  auto t = std::make_shared<Tensor>(*dw.codes);
  t->quant = std::move(info);
  return t;
}

// CPU: linear() in transformer_forward.cpp. y[M, N] = x[M, K] · Wᵀ (+ bias), W stored [N, K]
// (Linear) or [K, N] (Conv1D, in_out), read through its perturbation; quantized weights through
// the fused de-quantizing product with the QZO scale perturbation; LoRA as y += s·(x·Aᵀ)·Bᵀ.
void linear_cuda(const Model::Resolved& r, DeviceWorkspace& ws, int w, int bias, const float* x, int64_t M,
                 int64_t K, int64_t N, float* y) {
  const int dev = ws.device.index;
  const Weight& W = r.weights[static_cast<size_t>(w)];
  const PerturbDesc& d = r.desc[static_cast<size_t>(w)];
  if (W.tensor->quant) {
    const PerturbDesc scales = W.scales >= 0 ? r.desc[static_cast<size_t>(W.scales)] : PerturbDesc{};
    cuda::quant_matmul_on(dev, device_matrix(*W.tensor), M, x, K, y, N, scales);
  } else if (W.tensor->dtype == ZEROTH_BF16) {
    // A bf16 matrix (to_device with ZEROTH_BF16): tensor cores take both operands in bf16, so x
    // is rounded once (nearest even) into the workspace; the perturbation is applied in the
    // weight-tile load (gemm_cuda.h), the accumulation is f32.
    uint16_t* xb = ws.get<uint16_t>(kDevBf16, M * K);
    cuda::to_bf16(dev, x, M * K, xb);
    const uint16_t* wb = W.tensor->as<uint16_t>();
    if (W.in_out) cuda::gemm_bf16(false, false, M, N, K, 1.0f, xb, K, wb, N, 0.0f, y, N, d);
    else cuda::gemm_bf16(false, true, M, N, K, 1.0f, xb, K, wb, K, 0.0f, y, N, d);
  } else if (W.in_out) {
    cuda::gemm_f32(false, false, M, N, K, 1.0f, x, K, W.tensor->as<float>(), N, 0.0f, y, N, d);
  } else {
    cuda::gemm_f32(false, true, M, N, K, 1.0f, x, K, W.tensor->as<float>(), K, 0.0f, y, N, d);
  }
  if (W.lora_a >= 0) {
    const Weight& A = r.weights[static_cast<size_t>(W.lora_a)];
    const int64_t rank = A.tensor->shape[0];
    float* t = ws.get<float>(kDevLora, M * rank);
    cuda::gemm_f32(false, true, M, rank, K, 1.0f, x, K, A.tensor->as<float>(), K, 0.0f, t, rank,
                   r.desc[static_cast<size_t>(W.lora_a)]);
    cuda::gemm_f32(false, true, M, N, rank, W.lora_scale, t, rank, r.data(W.lora_b), rank, 1.0f, y, N,
                   r.desc[static_cast<size_t>(W.lora_b)]);
  }
  if (bias >= 0) cuda::add_bias_rows(dev, y, M, N, r.data(bias), r.desc[static_cast<size_t>(bias)]);
}

}  // namespace

// ---- the weights on the device -------------------------------------------------------------

std::shared_ptr<Model> Model::to_device(zeroth_device device, zeroth_dtype matrices) const {
  backend_for(device);  // E_DEVICE: no CUDA backend, no usable device, or no such index
  ZCHECK(device.type == ZEROTH_DEVICE_CUDA, ZEROTH_E_DEVICE,
         "a model moves to a CUDA device ('cuda' or 'cuda:N'), not to " + device_string(device));
  ZCHECK(matrices == ZEROTH_F32 || matrices == ZEROTH_BF16, ZEROTH_E_UNSUPPORTED,
         std::string("a device model holds its matrices in f32 or bf16, not ") + dtype_traits(matrices).name);
  ZCHECK(device_.type == ZEROTH_DEVICE_CPU, ZEROTH_E_INVALID_ARG,
         "the model is on " + device_string(device_) + " already; load it again to use another device");
  ZCHECK(config_.head_dim <= 256, ZEROTH_E_UNSUPPORTED,
         "the CUDA attention kernel takes head_dim up to 256 (this model has " + std::to_string(config_.head_dim) +
             "); use device 'cpu'");
  if (matrices == ZEROTH_BF16) {
    for (const Weight& W : weights_)
      ZCHECK(!W.tensor->quant, ZEROTH_E_UNSUPPORTED,
             "dtype 'bf16' applies to float matrices; '" + W.name +
                 "' is quantized (a quantized or GPTQ model keeps dtype 'f32': its codes stay integer and its "
                 "scales f32)");
  }
  auto m = std::shared_ptr<Model>(new Model(*this));
  m->device_ = device;
  std::vector<bool> done(weights_.size(), false);
  // Quantized weights first: their "<stem>.scales" entry must be the very device tensor the
  // kernels read as scales, so the optimizer's updates reach the product.
  for (size_t i = 0; i < weights_.size(); ++i) {
    const Weight& W = weights_[i];
    if (!W.tensor->quant) continue;
    ZCHECK(static_cast<int>(i) != tok_embed_ || !W.tensor->quant->perm, ZEROTH_E_UNSUPPORTED,
           "a column-permuted quantized token embedding cannot be looked up on the GPU; use device 'cpu'");
    TensorPtr t = upload_quantized(*W.tensor, device.index);
    m->weights_[i].tensor = t;
    done[i] = true;
    if (W.scales >= 0) {
      m->weights_[static_cast<size_t>(W.scales)].tensor = t->quant->scales;
      done[static_cast<size_t>(W.scales)] = true;
    }
  }
  // Rounded on the host to nearest even (tensor_copy's conversion, the one perturb.h writes).
  for (size_t i = 0; i < weights_.size(); ++i)
    if (!done[i])
      m->weights_[i].tensor = tensor_copy(*weights_[i].tensor,
                                          is_device_matrix(static_cast<int>(i)) ? matrices : ZEROTH_F32, device);
  return m;
}

std::shared_ptr<Model> Model::quantized_cuda(const std::vector<std::pair<std::string, QuantizeOptions>>& plan) const {
  // The quantizer runs on the host (cpu/quant.h): the named weights come down, Model::quantized
  // quantizes them exactly as on a CPU model, and they go back up. Every other weight stays the
  // same device tensor (shared, as quantized() shares them on the CPU).
  auto host = std::shared_ptr<Model>(new Model(*this));
  host->device_ = kCpu;  // quantized() reads only the weights of the plan, which are on the host now
  for (const auto& entry : plan) {
    auto it = index_.find(entry.first);
    if (it == index_.end()) continue;  // quantized() names the unknown weight
    // As f32: a bf16 device model's matrices are widened exactly, then quantized as on the CPU; a
    // weight quantized already comes down as it is, for quantized()'s "quantized already" error.
    const Tensor& w = *weights_[static_cast<size_t>(it->second)].tensor;
    host->weights_[static_cast<size_t>(it->second)].tensor = w.quant ? host_copy(w) : tensor_copy(w, ZEROTH_F32, kCpu);
  }
  std::shared_ptr<Model> q = host->quantized(plan);
  auto m = std::shared_ptr<Model>(new Model(*this));
  for (size_t i = weights_.size(); i < q->weights_.size(); ++i) {  // new "<stem>.scales" entries
    m->weights_.push_back(q->weights_[i]);
    m->index_[q->weights_[i].name] = static_cast<int>(i);
  }
  for (size_t i = 0; i < weights_.size(); ++i) {
    const Weight& Q = q->weights_[i];
    if (!Q.tensor->quant || weights_[i].tensor->quant) continue;  // not quantized by this plan
    Weight& W = m->weights_[i];
    W.tensor = upload_quantized(*Q.tensor, device_.index);
    W.in_out = Q.in_out;
    W.scales = Q.scales;
    if (W.scales >= 0) m->weights_[static_cast<size_t>(W.scales)].tensor = W.tensor->quant->scales;
  }
  return m;
}

// ---- the forward ---------------------------------------------------------------------------

const float* Model::run_cuda(const int32_t* ids, const int32_t* mask, int64_t B, int64_t S, DeviceCache& cache,
                             const Resolved& r, DeviceWorkspace& ws) const {
  const TransformerConfig& c = config_;
  const int dev = device_.index;
  const int64_t M = B * S, d = c.d_model, F = c.d_ff;
  const int64_t qdim = c.n_head * c.head_dim, kvdim = c.n_kv_head * c.head_dim;
  const float eps = static_cast<float>(c.norm_eps);
  // The one-layer cache (DeviceCache) holds only the layer being computed: a run that continued
  // an earlier one would read keys that later layers have overwritten.
  ZCHECK(cache.length == 0, ZEROTH_E_INTERNAL, "a device run must start from an empty cache (whole sequences only)");

  // Positions and key validity of the new slots, as Model::run assigns them.
  const std::vector<int64_t> pos =
      assign_positions(c, mask, B, S, cache.length, cache.capacity, cache.valid, cache.real_count);
  // The rows of the position table (OPT's table starts at position -2) as embedding ids.
  const int64_t offset = c.family == Family::Opt ? 2 : 0;
  std::vector<int32_t> pos_rows(static_cast<size_t>(M));
  for (int64_t i = 0; i < M; ++i) pos_rows[static_cast<size_t>(i)] = static_cast<int32_t>(pos[static_cast<size_t>(i)] + offset);
  Upload up;
  const size_t o_ids = up.add(ids, M), o_rows = up.add(pos_rows.data(), M), o_pos = up.add(pos.data(), M);
  const size_t o_valid = up.add(cache.valid.data(), static_cast<int64_t>(cache.valid.size()));
  const uint8_t* in = up.send(ws, kDevInputs);
  const int32_t* ids_dev = reinterpret_cast<const int32_t*>(in + o_ids);
  const int32_t* rows_dev = reinterpret_cast<const int32_t*>(in + o_rows);
  const int64_t* pos_dev = reinterpret_cast<const int64_t*>(in + o_pos);
  cache.valid_dev = in + o_valid;

  // Embeddings (CPU: Resolved::row per token, project_in, then the position rows added).
  float* x = ws.get<float>(kWsX, M * d);
  {
    const int64_t E = head_width();
    float* tok = ws.get<float>(kWsTok, M * E);
    const Weight& T = weights_[static_cast<size_t>(tok_embed_)];
    if (T.tensor->quant) cuda::quant_embedding(dev, device_matrix(*T.tensor), ids_dev, M, tok);
    else if (T.tensor->dtype == ZEROTH_BF16)
      cuda::embedding_bf16(dev, T.tensor->as<uint16_t>(), c.vocab_size, E, r.desc[static_cast<size_t>(tok_embed_)],
                           ids_dev, M, tok);
    else cuda::embedding(dev, T.tensor->as<float>(), c.vocab_size, E, r.desc[static_cast<size_t>(tok_embed_)], ids_dev, M,
                         false, tok);
    if (project_in_ >= 0) linear_cuda(r, ws, project_in_, -1, tok, M, E, d, x);
    else std::swap(x, tok);  // pointers only: both slots stay the workspace's
    if (pos_embed_ >= 0) {
      const Weight& P = weights_[static_cast<size_t>(pos_embed_)];
      cuda::embedding(dev, P.tensor->as<float>(), P.tensor->shape[0], d, r.desc[static_cast<size_t>(pos_embed_)], rows_dev,
                      M, true, x);
    }
  }

  auto norm = [&](int w, int b, const float* in_, float* out_) {
    const float* wp = w >= 0 ? r.data(w) : nullptr;
    const float* bp = b >= 0 ? r.data(b) : nullptr;
    const PerturbDesc wd = w >= 0 ? r.desc[static_cast<size_t>(w)] : PerturbDesc{};
    const PerturbDesc bd = b >= 0 ? r.desc[static_cast<size_t>(b)] : PerturbDesc{};
    if (c.family == Family::Llama) cuda::rms_norm(dev, in_, M, d, wp, wd, eps, out_);
    else cuda::layer_norm(dev, in_, M, d, wp, wd, bp, bd, eps, out_);
  };

  float* h = ws.get<float>(kWsH, M * d);
  float* out = ws.get<float>(kWsOut, M * d);
  float* q = ws.get<float>(kWsQ, M * qdim);
  float* k = ws.get<float>(kWsK, M * kvdim);
  float* v = ws.get<float>(kWsV, M * kvdim);
  float* att = ws.get<float>(kWsAtt, M * qdim);
  float* ff = ws.get<float>(kWsFf, M * F);
  float* up_buf = c.family == Family::Llama ? ws.get<float>(kWsUp, M * F) : nullptr;
  float* qkv = layers_.empty() || layers_[0].qkv < 0 ? nullptr : ws.get<float>(kWsQkv, M * 3 * d);

  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = layers_[static_cast<size_t>(l)];

    // Attention: out = o(attention(q(h), k(h), v(h))), h = norm1(x) in pre-LN blocks.
    const float* a_in = x;
    if (c.pre_norm) {
      norm(L.norm1_w, L.norm1_b, x, h);
      a_in = h;
    }
    if (L.qkv >= 0) {  // GPT-2's fused c_attn: one GEMM, then split the columns
      linear_cuda(r, ws, L.qkv, L.qkv_b, a_in, M, d, 3 * d, qkv);
      cuda::copy_columns(dev, qkv, 3 * d, 0, M, d, q, d);
      cuda::copy_columns(dev, qkv, 3 * d, d, M, d, k, d);
      cuda::copy_columns(dev, qkv, 3 * d, 2 * d, M, d, v, d);
    } else {
      linear_cuda(r, ws, L.q, L.q_b, a_in, M, d, qdim, q);
      linear_cuda(r, ws, L.k, L.k_b, a_in, M, d, kvdim, k);
      linear_cuda(r, ws, L.v, L.v_b, a_in, M, d, kvdim, v);
    }
    if (c.family == Family::Llama) {
      cuda::rope(dev, q, M, c.n_head, c.head_dim, pos_dev, c.rope_theta);
      cuda::rope(dev, k, M, c.n_kv_head, c.head_dim, pos_dev, c.rope_theta);
    }
    cuda::cache_append(dev, k, v, B, S, c.n_kv_head, c.head_dim, cache.capacity, cache.length, cache.k(l), cache.v(l));
    cuda::attention(dev, q, cache.k(l), cache.v(l), cache.valid_dev, B, S, cache.length, cache.capacity, c.n_head,
                    c.n_kv_head, c.head_dim, att);
    linear_cuda(r, ws, L.o, L.o_b, att, M, qdim, d, out);
    cuda::add_inplace(dev, x, out, M * d);
    if (!c.pre_norm) {  // OPT post-LN: x = norm1(x + attn)
      norm(L.norm1_w, L.norm1_b, x, h);
      std::swap(x, h);
    }

    // MLP: out = fc2(act(fc1(h))), or down(silu(gate(h)) · up(h)) in the Llama family.
    const float* m_in = x;
    if (c.pre_norm) {
      norm(L.norm2_w, L.norm2_b, x, h);
      m_in = h;
    }
    linear_cuda(r, ws, L.gate >= 0 ? L.gate : L.fc1, L.gate >= 0 ? L.gate_b : L.fc1_b, m_in, M, d, F, ff);
    if (L.gate >= 0) {
      linear_cuda(r, ws, L.fc1, L.fc1_b, m_in, M, d, F, up_buf);
      cuda::swiglu(dev, ff, up_buf, M * F);
    } else {
      switch (c.activation) {
        case Activation::GeluTanh: cuda::gelu_tanh(dev, ff, ff, M * F); break;
        case Activation::GeluErf: cuda::gelu_erf(dev, ff, ff, M * F); break;
        case Activation::Relu: cuda::relu(dev, ff, ff, M * F); break;
        case Activation::Silu: cuda::silu(dev, ff, ff, M * F); break;
      }
    }
    linear_cuda(r, ws, L.fc2, L.fc2_b, ff, M, F, d, out);
    cuda::add_inplace(dev, x, out, M * d);
    if (!c.pre_norm) {
      norm(L.norm2_w, L.norm2_b, x, h);
      std::swap(x, h);
    }
  }
  cache.length += S;

  if (final_norm_w_ >= 0 || (c.pre_norm && c.family == Family::Opt && !c.norm_affine)) {
    norm(final_norm_w_, final_norm_b_, x, h);
    std::swap(x, h);
  }
  if (project_out_ >= 0) {
    float* hidden = ws.get<float>(kWsHidden, M * head_width());
    linear_cuda(r, ws, project_out_, -1, x, M, d, head_width(), hidden);
    return hidden;
  }
  return x;
}

void Model::lm_head_cuda(const float* hidden, int64_t M, const Resolved& r, DeviceWorkspace& ws, float* logits) const {
  linear_cuda(r, ws, head_, -1, hidden, M, head_width(), config_.vocab_size, logits);
}

namespace {

// A cache of `capacity` slots per row whose storage is the workspace's KV slot.
Model::DeviceCache make_cache(const TransformerConfig& c, int64_t B, int64_t capacity, DeviceWorkspace& ws) {
  Model::DeviceCache cache;
  cache.batch = B;
  cache.capacity = capacity;
  cache.per_layer = shape_numel({B, c.n_kv_head, capacity, c.head_dim});
  cache.storage = ws.get<float>(kDevKv, 2 * cache.per_layer);
  cache.valid.assign(static_cast<size_t>(B * capacity), 0);
  cache.real_count.assign(static_cast<size_t>(B), 0);
  return cache;
}

}  // namespace

TensorPtr Model::forward_cuda(const Tensor& ids, const Tensor* mask, const ForwardPerturbation* p) const {
  check_inputs(ids, mask);
  const int64_t B = ids.shape[0], T = ids.shape[1], V = config_.vocab_size;
  const Resolved r(weights_, p);
  DeviceWorkspaceLease lease(*this);
  DeviceWorkspace& ws = *lease;
  DeviceCache cache = make_cache(config_, B, T, ws);
  const float* hidden = run_cuda(ids.as<int32_t>(), mask ? mask->as<int32_t>() : nullptr, B, T, cache, r, ws);
  // The logits come back to the host (see the file comment); the device buffer goes back to the
  // allocator's cache when this call ends.
  TensorPtr logits = tensor_empty(ZEROTH_F32, {B, T, V}, device_);
  lm_head_cuda(hidden, B * T, r, ws, logits->as<float>());
  return tensor_copy(*logits, ZEROTH_F32, kCpu);
}

TensorPtr Model::loss_cuda(const Tensor& ids, const Tensor* mask, const ForwardPerturbation* p) const {
  check_inputs(ids, mask);
  const int64_t B = ids.shape[0], T = ids.shape[1], V = config_.vocab_size, hw = head_width();
  const int32_t* id = ids.as<int32_t>();
  const int32_t* m = mask ? mask->as<int32_t>() : nullptr;
  const Resolved r(weights_, p);
  DeviceWorkspaceLease lease(*this);
  DeviceWorkspace& ws = *lease;
  DeviceCache cache = make_cache(config_, B, T, ws);

  const std::vector<int64_t> pairs = scored_pairs(m, B, T);  // as Model::loss
  const int64_t P = static_cast<int64_t>(pairs.size());
  // The scored rows and their target tokens go up before the forward is queued: a host-to-device
  // copy waits for the stream, so made first it waits for nothing, and the head's kernels follow
  // the forward's without the device idling while the host prepares them.
  const int64_t* rows_dev = nullptr;
  const int32_t* targets_dev = nullptr;
  if (P > 0) {
    std::vector<int32_t> targets(static_cast<size_t>(P));
    for (int64_t i = 0; i < P; ++i) targets[static_cast<size_t>(i)] = id[pairs[static_cast<size_t>(i)] + 1];
    Upload up;
    const size_t o_rows = up.add(pairs.data(), P), o_targets = up.add(targets.data(), P);
    const uint8_t* in = up.send(ws, kDevPairs);
    rows_dev = reinterpret_cast<const int64_t*>(in + o_rows);
    targets_dev = reinterpret_cast<const int32_t*>(in + o_targets);
  }
  const float* hidden = run_cuda(id, m, B, T, cache, r, ws);

  // The LM head in chunks of rows (loss_chunk(V)); each chunk's rows gathered, its logits, then the
  // cross entropy of each row in double on the device. Only the P per-pair values come back.
  std::vector<double> nll(static_cast<size_t>(P));
  if (P > 0) {
    const int64_t chunk = loss_chunk(V);
    const int64_t chunk_rows = std::min(chunk, P);
    float* rows = ws.get<float>(kWsRows, chunk_rows * hw);
    float* logits = ws.get<float>(kWsLogits, chunk_rows * V);
    double* nll_dev = ws.get<double>(kDevNll, P);
    for (int64_t c0 = 0; c0 < P; c0 += chunk) {
      const int64_t n = std::min(chunk, P - c0);
      cuda::gather_rows(device_.index, hidden, hw, rows_dev + c0, n, rows);
      lm_head_cuda(rows, n, r, ws, logits);
      cuda::cross_entropy_rows(device_.index, logits, n, V, targets_dev + c0, false, 0, nll_dev + c0);
    }
    backend_for(device_).copy_to_host(device_.index, nll.data(), nll_dev, static_cast<size_t>(P) * sizeof(double));
  } else {
    backend_for(device_).synchronize(device_.index);  // this call's kernel errors surface here, not later
  }

  return row_means(pairs, nll, B, T);  // in the CPU's fixed order
}

#else  // no CUDA backend in this build

std::shared_ptr<Model> Model::to_device(zeroth_device device, zeroth_dtype) const {
  backend_for(device);  // E_DEVICE naming what is missing (this build has no CUDA backend)
  fail(ZEROTH_E_DEVICE, "device " + device_string(device) +
                            " is not available: this build of zeroth has no CUDA backend — use 'cpu'");
}

// Unreachable: no model is ever on a device without the backend (to_device refuses).
TensorPtr Model::forward_cuda(const Tensor&, const Tensor*, const ForwardPerturbation*) const {
  fail(ZEROTH_E_INTERNAL, "a device model in a build without CUDA");
}
TensorPtr Model::loss_cuda(const Tensor&, const Tensor*, const ForwardPerturbation*) const {
  fail(ZEROTH_E_INTERNAL, "a device model in a build without CUDA");
}
std::shared_ptr<Model> Model::quantized_cuda(const std::vector<std::pair<std::string, QuantizeOptions>>&) const {
  fail(ZEROTH_E_INTERNAL, "a device model in a build without CUDA");
}

#endif  // ZEROTH_WITH_CUDA

}  // namespace zeroth::model
