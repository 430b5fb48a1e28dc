// gemm_kernel_avx2.cpp — AVX2+FMA micro-kernel: a 6 × 16 tile of C in 12 ymm accumulators
// (the classic Haswell-era shape: 12 accumulators + 2 B vectors + 1 broadcast of 16 registers).
// Edge tiles go through a small buffer so that only the valid m × n corner of C is touched.
#include <immintrin.h>

#include "gemm_kernels.h"

namespace zeroth::gemm_detail {
namespace {

#define ZEROTH_AVX2 __attribute__((target("avx2,fma")))

constexpr int kMR = 6;
constexpr int kNV = 2;  // vectors of 8 per row
constexpr int kNR = 8 * kNV;

ZEROTH_AVX2 void kernel_avx2(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                             int64_t ldc, int m, int n, float alpha, float beta) {
  // Fetch C's tile early: it is touched once per depth chunk and rarely still cached.
  for (int i = 0; i < m; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + kNR - 1), _MM_HINT_T0);
  }
  __m256 acc[kMR][kNV];
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kNV; ++j) acc[i][j] = _mm256_setzero_ps();

  for (int64_t k = 0; k < kc; ++k) {
    __m256 bv[kNV];
#pragma GCC unroll 4
    for (int j = 0; j < kNV; ++j) bv[j] = _mm256_load_ps(b + 8 * j);
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + i);
#pragma GCC unroll 4
      for (int j = 0; j < kNV; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
    a += kMR;
    b += kNR;
  }

  const __m256 va = _mm256_set1_ps(alpha);
  const __m256 vb = _mm256_set1_ps(beta);
  if (m == kMR && n == kNR) {
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) {
      float* row = c + i * ldc;
#pragma GCC unroll 4
      for (int j = 0; j < kNV; ++j) {
        const __m256 out = beta == 0.0f ? _mm256_mul_ps(va, acc[i][j])
                                        : _mm256_fmadd_ps(va, acc[i][j], _mm256_mul_ps(vb, _mm256_loadu_ps(row + 8 * j)));
        _mm256_storeu_ps(row + 8 * j, out);
      }
    }
    return;
  }
  // Edge tile: the same arithmetic, element by element (fmaf is exact like the vector fma).
  alignas(32) float tile[kMR][kNR];
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kNV; ++j) _mm256_store_ps(&tile[i][8 * j], acc[i][j]);
  for (int i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    for (int j = 0; j < n; ++j)
      row[j] = beta == 0.0f ? alpha * tile[i][j] : __builtin_fmaf(alpha, tile[i][j], beta * row[j]);
  }
}

}  // namespace

KernelInfo avx2_kernel() {
  // kc = 256: B micro-panel 16 KB + A micro-panel 6 KB in a 32–48 KB L1; mc = 504 (84 × 6) keeps
  // the packed A block near 0.5 MB (L2); nc = 2048 keeps the packed B block in L3.
  return KernelInfo{"avx2 6x16", kMR, kNR, 256, 504, 2048, &kernel_avx2, &pack_transposed_avx2};
}

}  // namespace zeroth::gemm_detail
