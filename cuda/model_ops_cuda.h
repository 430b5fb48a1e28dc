// model_ops_cuda.h — the small device kernels the transformer forward's CUDA twin
// (native/model/transformer_cuda.cpp) needs beside cuda/ops_cuda.h's: the glue of a block
// (bias and residual adds, GPT-2's fused-qkv column split), the KV-cache append, the row gather
// of the loss chunks and the de-quantized lookup of a quantized token embedding. Callable from
// plain C++; only declared when the build has the CUDA backend (as ops_cuda.h).
//
// Each function names its CPU reference and rounds as it does (one f32 rounding per f32
// operation, through philox.h's fadd / fmul, never contracted into an fma), so these steps are
// bit-identical to the CPU's: the twin's differences from the CPU come only from the GEMMs'
// and attention's summation order (gemm_cuda.h, ops_cuda.h). All pointers are device pointers
// on cuda:`device`; work is queued on the device's stream; sizes are checked on the host.
#pragma once
#ifdef ZEROTH_WITH_CUDA
#include <cstdint>

#include "cpu/gemm.h"  // PerturbDesc
#include "int4_gemm_cuda.h"

namespace zeroth {
namespace cuda {

// x[r, i] = fl(x[r, i] + b'[i]) for rows x n, b' = b read through the perturbation:
// fl(b + fl(scale·z(i))) (CPU: Model::Resolved::vec, then add_bias_rows).
void add_bias_rows(int device, float* x, int64_t rows, int64_t n, const float* b, const PerturbDesc& b_perturb);

// x[i] = fl(x[i] + y[i]) (CPU: add_inplace, the residual add).
void add_inplace(int device, float* x, const float* y, int64_t n);

// dst[r, 0:n] = src[r, col0 : col0 + n] for r < rows (row strides ld_src, ld_dst): GPT-2's
// fused c_attn output split into q, k, v (CPU: the std::copy loop of Model::run).
void copy_columns(int device, const float* src, int64_t ld_src, int64_t col0, int64_t rows, int64_t n, float* dst,
                  int64_t ld_dst);

// Writes S new tokens' k, v [B·S, n_kv·head_dim] into slots [length, length + S) of one
// layer's caches k_cache / v_cache [B][n_kv][capacity][head_dim] (CPU: cache_append).
void cache_append(int device, const float* k, const float* v, int64_t B, int64_t S, int64_t n_kv, int64_t head_dim,
                  int64_t capacity, int64_t length, float* k_cache, float* v_cache);

// dst[i, :] = src[rows[i], :] for i < n, rows of `width` (rows: int64 on the device, each
// checked by the caller to lie in src): the scored positions of one loss chunk (CPU: the copy
// loop of Model::loss).
void gather_rows(int device, const float* src, int64_t width, const int64_t* rows, int64_t n, float* dst);

// out[i, c] = fl(fl(code(ids[i], c) − zero)·scale) for stored columns c < w.cols: the token
// embedding of a quantized table, de-quantized on lookup (CPU: Model::Resolved::row with
// dequantize_rows, which also writes stored-column order). An id outside [0, w.rows) writes NaN
// (as cuda::embedding). Quantized embeddings are never perturbed (they have no scales entry).
void quant_embedding(int device, const QuantMatrixDevice& w, const int32_t* ids, int64_t n, float* out);

// out[i, :] = row ids[i] of a bf16 table [vocab, width] (bf16 bit patterns), widened to f32 and
// read through the perturbation as the bf16 GEMM's B-tile load reads the same table as the LM
// head: element e = id·width + j is bf16_to_f32(f32_to_bf16(fl(w_e + fl(scale·z(e))))) —
// perturbed in f32, rounded once to bf16 (nearest even), widened exactly — so a tied embedding
// and head see the same perturbed weight. Unperturbed, w_e widened. An id outside [0, vocab)
// writes NaN (as cuda::embedding). The token embedding of a bf16 device model (CPU reference:
// Model::Resolved::row on weights perturbed in place with perturb.h's bf16 rounding).
void embedding_bf16(int device, const uint16_t* table, int64_t vocab, int64_t width, const PerturbDesc& perturb,
                    const int32_t* ids, int64_t n, float* out);

}  // namespace cuda
}  // namespace zeroth
#endif  // ZEROTH_WITH_CUDA
