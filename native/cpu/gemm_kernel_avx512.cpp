// gemm_kernel_avx512.cpp — AVX-512 micro-kernel: an MR × (16·NV) tile of C in MR·NV zmm
// accumulators. Per depth step it loads NV vectors of the packed B row and, for each of the MR
// rows, broadcasts one packed A value straight into the FMA (vfmadd231ps zmm, zmm, m32{1to16}).
//
// 14 × 32 (28 accumulators + 2 B vectors + 1 spare of 32 zmm registers) measured best on this
// project's AVX-512 machine (AMD Zen 5, two 512-bit FMA pipes): 28 independent FMA chains hide the
// 4-cycle latency and each B vector feeds 14 FMAs, so loads never limit.
#include <immintrin.h>

#include "gemm_kernels.h"

namespace zeroth::gemm_detail {
namespace {

#define ZEROTH_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

template <int MR, int NV>
ZEROTH_AVX512 void kernel_avx512(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                                 int64_t ldc, int m, int n, float alpha, float beta) {
  // C's tile is touched once per depth chunk and is rarely still cached: start fetching its lines
  // now so that the loads and stores after the loop do not stall (~10% of a call otherwise).
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    if (i < m) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16 * NV - 1), _MM_HINT_T0);
    }
  }
  __m512 acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();

  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = _mm512_load_ps(b + 16 * j);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[i]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
    a += MR;
    b += 16 * NV;
  }

  const __m512 va = _mm512_set1_ps(alpha);
  const __m512 vb = _mm512_set1_ps(beta);
  // Column masks of the valid part of each vector (all ones inside the tile).
  __mmask16 mask[NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    const int cols = n - 16 * j;
    mask[j] = cols >= 16 ? static_cast<__mmask16>(0xffff)
                         : (cols <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << cols) - 1u));
  }
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    float* row = c + i * ldc;
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      __m512 out;
      if (beta == 0.0f) {
        out = _mm512_mul_ps(va, acc[i][j]);
      } else {
        const __m512 old = _mm512_maskz_loadu_ps(mask[j], row + 16 * j);
        out = _mm512_fmadd_ps(va, acc[i][j], _mm512_mul_ps(vb, old));
      }
      _mm512_mask_storeu_ps(row + 16 * j, mask[j], out);
    }
  }
}

}  // namespace

KernelInfo avx512_kernel() {
  // Measured on Zen 5 (48 KB L1, 1 MB L2 per core) with a CPU-time profile of the pack and kernel
  // shares on 512×768×3072, 512×768×16384 and 1024³: kc = 512 beat 128–384 (each call's C tile
  // traffic is spread over more depth); mc = 252 (18 × 14, a 504 KB A block: half the L2) beat
  // 126 and 504; nc = 256 keeps the B block at 512 KB so the next one can be prefetched into L2
  // (gemm.cpp widens nc when the packed A is not kept whole).
  return KernelInfo{"avx512 14x32", 14, 32, 512, 252, 256, &kernel_avx512<14, 2>, &pack_transposed_avx512};
}

}  // namespace zeroth::gemm_detail
