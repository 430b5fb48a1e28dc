// int4_gemm.h — y = x·Wᵀ with a quantized weight W [out, in] (int4 or int8, quant.h) and
// x [M, in] f32, without materialising the f32 weights.
//
// GEMV (M = 1, generation): every output row is one dot product that unpacks codes and applies
// (code − zero)·scale in registers (int4_gemm_avx512.cpp / _avx2.cpp, chosen at run time with
// simd_level(); int4_gemm.cpp holds the scalar reference). x is first de-interleaved per SIMD block
// (even columns, then odd ones) so that the low and high nibbles of a run of bytes meet their x
// values without shuffles. The SIMD int4 path needs no group boundary inside a block (32 columns
// for AVX-512, 16 for AVX2): a group size that is a multiple of it, or one group per row; odd
// `in` is fine. Other shapes take the scalar path. AVX-512 turns codes into weights with a
// 16-entry table per (row, group), T[k] = (k − zero)·scale (the dequantize() expression), and
// one vpermps per 16 codes.
// int8 needs no de-interleaving and has no shape condition.
// GEMM (M > 1): each thread de-quantizes a panel of a few W rows × all of `in` into a cache-
// resident f32 buffer (at most 512 KiB) and multiplies all M rows of x with it through gemm_f32,
// so the weights are decoded once per call and only one panel per thread exists at a time.
//
// A column-permuted weight (QuantInfo::perm, act-order GPTQ) first gathers x into stored-column
// order (quant.h), then runs the same kernels.
// Every path computes each weight with the same f32 expression as dequantize(), so results equal
// de-quantize-then-f32 up to summation order. Multithreaded over output rows (parallel_for).
#pragma once
#include <cstdint>

#include "cpu/quant.h"

namespace zeroth {

// y[M, out] = x[M, in]·Wᵀ (row-major; ldx >= in, ldy >= out).
void quant_matmul(const QuantMatrix& w, int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy);

// The tensor form: x f32 [M, in] (or [in]), q quantized [out, in] -> f32 [M, out] (or [out]).
TensorPtr quant_matmul(const Tensor& x, const Tensor& q);

// Which GEMV kernel the current SIMD level runs for this weight, e.g. "int4 avx512".
const char* quant_gemv_kernel_name(const QuantMatrix& w);

}  // namespace zeroth

namespace zeroth {
// A plain multithreaded SIMD f32 GEMV y[out] = W[out, in]·x (int4_gemm_f32.cpp): the benchmark's
// f32 reference with the same loop structure as the int4 GEMV.
void f32_gemv(const float* W, int64_t out, int64_t in, const float* x, float* y);
}  // namespace zeroth
