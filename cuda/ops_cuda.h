// ops_cuda.h — device kernels of the model forward (the CUDA twins of the row kernels in
// native/model/transformer_internal.h and of ops::cross_entropy), callable from plain C++.
// Only declared when the build has the CUDA backend (as perturb_cuda.h).
//
// Every function takes the device index and device pointers (all on that device), queues its
// kernel on the device's stream (common.cuh) and returns; sizes are checked on the host
// (E_SHAPE / E_INVALID_ARG with the numbers). Where a CPU kernel reads a weight through a
// perturbation (Model::Resolved::vec / row), the device kernel takes the same PerturbDesc and
// reads fl(w + fl(scale·z(i))), i the element's index in the weight tensor.
//
// Agreement with the CPU (checked by test/native/test_cuda_gemm.cpp on a GPU): row statistics,
// GELU, SiLU and cross entropy are formed in double as on the CPU, so results differ only by the
// order of double sums (a float rounding apart at most, almost always identical); RoPE uses the
// CPU's f32 angle and double sin/cos; attention uses an online softmax in f32 (FlashAttention's
// rescaling) instead of the CPU's two-pass softmax, so it agrees to about 1e-6 relative.
#pragma once
#ifdef ZEROTH_WITH_CUDA
#include <cstdint>

#include "cpu/gemm.h"  // PerturbDesc

namespace zeroth {
namespace cuda {

// out = (x - mean) / sqrt(var + eps) · w + b per row of width d (w, b may be null: no affine).
void layer_norm(int device, const float* x, int64_t rows, int64_t d, const float* w, const PerturbDesc& w_perturb,
                const float* b, const PerturbDesc& b_perturb, float eps, float* out);
// out = w · (x / sqrt(mean(x²) + eps)) per row (w may be null).
void rms_norm(int device, const float* x, int64_t rows, int64_t d, const float* w, const PerturbDesc& w_perturb,
              float eps, float* out);

// y = gelu(x), tanh approximation (GPT-2's gelu_new) or exact erf form; y may equal x.
void gelu_tanh(int device, const float* x, float* y, int64_t n);
void gelu_erf(int device, const float* x, float* y, int64_t n);
// gate = silu(gate) · up, in place (SwiGLU).
void swiglu(int device, float* gate, const float* up, int64_t n);
// y = max(x, 0) (NaN gives 0, as the CPU's x > 0 ? x : 0) and y = silu(x) = x·sigmoid(x) (in
// double, as swiglu's); y may equal x. The non-gated MLP activations of activation_inplace.
void relu(int device, const float* x, float* y, int64_t n);
void silu(int device, const float* x, float* y, int64_t n);

// Rotates pairs (i, i + head_dim/2) of every head of x [rows, n_heads·head_dim] in place by
// angle positions[r]·theta^(-2i/head_dim) (HF Llama's rotate-half). positions: rows int64 on
// the device.
void rope(int device, float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const int64_t* positions,
          double theta);

// out[i, :] (+)= table[ids[i], :] for i < n, rows of `width`, the row read through the
// perturbation (offset ids[i]·width + j). accumulate: add into out (positional embeddings).
// ids are validated by the caller (Model::check_inputs); an id outside [0, vocab) writes a row
// of NaN, so a bad id cannot read out of bounds and cannot go unnoticed in the loss.
void embedding(int device, const float* table, int64_t vocab, int64_t width, const PerturbDesc& perturb,
               const int32_t* ids, int64_t n, bool accumulate, float* out);

// Causal, padding-masked multi-head / grouped-query attention of S new queries over a KV cache
// (transformer_internal.h's layout): q and out [B·S, n_head·head_dim]; k_cache and v_cache
// [B][n_kv][capacity][head_dim] holding slots [0, length + S); valid [B, capacity] u8 (1: a real
// token). Query s sees the valid slots j <= length + s; a query with none gets zeros.
// head_dim <= 256 and n_head a multiple of n_kv.
void attention(int device, const float* q, const float* k_cache, const float* v_cache, const uint8_t* valid,
               int64_t B, int64_t S, int64_t length, int64_t capacity, int64_t n_head, int64_t n_kv,
               int64_t head_dim, float* out);

// nll[r] = logsumexp(logits[r, :]) - logits[r, targets[r]] in double, for rows x classes f32
// logits; a row whose target is the ignore index gets 0 (an out-of-range target gets NaN).
void cross_entropy_rows(int device, const float* logits, int64_t rows, int64_t classes, const int32_t* targets,
                        bool has_ignore, int64_t ignore_index, double* nll);
// *out = the mean of nll over the rows not ignored (NaN when all are), summed in double in a
// fixed order: the same bits every run, so two losses can be subtracted safely.
void mean_rows(int device, const double* nll, const int32_t* targets, int64_t rows, bool has_ignore,
               int64_t ignore_index, double* out);

}  // namespace cuda
}  // namespace zeroth
#endif  // ZEROTH_WITH_CUDA
