// gemv.h — the few-rows case of gemm_f32 (gemm.h): C = alpha·A·op(B) + beta·C for M <= 4 rows of
// A, as in token-by-token generation. Packing B into panels (what the blocked GEMM does) would
// read and write every weight once more per call just to multiply it by one row; these kernels
// stream B once, straight from its storage, so a generated token costs one pass over the
// weights at memory speed.
//   B stored [N, K] (nn.Linear, trans_b): each output is a dot product of A's rows with B's row.
//   B stored [K, N] (GPT-2 Conv1D): strips of 64 columns are accumulated over k in registers.
// Multithreaded over N; SIMD by simd_level() (AVX-512, AVX2+FMA, scalar), chosen at run time.
// Summation order differs from the packed GEMM, so results agree to float rounding, not bits.
// Perturbed weight reads are not handled here: gemm_f32 keeps those on the packing path.
#pragma once
#include <cstdint>

namespace zeroth {

constexpr int64_t kGemvMaxRows = 4;

// Requires 1 <= M <= kGemvMaxRows, A stored [M, K] (row stride lda).
void gemv_f32(bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
              int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace zeroth
