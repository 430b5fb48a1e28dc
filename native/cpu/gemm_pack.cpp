// gemm_pack.cpp — the transposing pack of gemm (see PackTransposed in gemm_kernels.h): scalar,
// AVX2 (8 × 8 register transposes) and AVX-512 (16 × 16). Packing writes every element of an
// operand once per block, so a strided scalar scatter (about one element per cycle) would cost a
// sizable share of a 512-row GEMM; in-register transposes move 8 or 16 elements per store.
// GCC 12 reports the deliberately undefined pass-through operands inside the AVX-512 shuffle
// intrinsics as "maybe uninitialized" once they are inlined here; they are not.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>

#include "gemm_kernels.h"

namespace zeroth::gemm_detail {

void pack_transposed_scalar(const float* src, int64_t ld, int rows, int64_t kc, int panel, float* dst) {
  for (int r = 0; r < rows; ++r)
    for (int64_t k = 0; k < kc; ++k) dst[k * panel + r] = src[r * ld + k];
  for (int r = rows; r < panel; ++r)
    for (int64_t k = 0; k < kc; ++k) dst[k * panel + r] = 0.0f;
}

// ---- AVX2 -------------------------------------------------------------------------------------

namespace {

__attribute__((target("avx2,fma"))) __m256i lane_mask8(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(n, 8))), idx);
}

// r[i] = row i (8 depth values) -> r[t] = depth t across the 8 rows.
__attribute__((target("avx2,fma"))) void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {  // u[4i + c], lane L = column 4L + c of rows 4i .. 4i+3
    u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

}  // namespace

__attribute__((target("avx2,fma"))) void pack_transposed_avx2(const float* src, int64_t ld, int rows, int64_t kc,
                                                                int panel, float* dst) {
  for (int r0 = 0; r0 < panel; r0 += 8) {
    const __m256i store_mask = lane_mask8(panel - r0);
    for (int64_t k0 = 0; k0 < kc; k0 += 8) {
      const int64_t kk = std::min<int64_t>(8, kc - k0);
      const __m256i load_mask = lane_mask8(kk);
      __m256 r[8];
      for (int i = 0; i < 8; ++i)
        r[i] = r0 + i < rows ? _mm256_maskload_ps(src + (r0 + i) * ld + k0, load_mask) : _mm256_setzero_ps();
      transpose8(r);
      for (int t = 0; t < kk; ++t) _mm256_maskstore_ps(dst + (k0 + t) * panel + r0, store_mask, r[t]);
    }
  }
}

// ---- AVX-512 ----------------------------------------------------------------------------------

namespace {

#define ZEROTH_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

ZEROTH_AVX512 __mmask16 lane_mask16(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
}

// r[i] = row i (16 depth values) -> r[t] = depth t across the 16 rows.
ZEROTH_AVX512 void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // u[4i + c], 128-bit lane L = column 4L + c of rows 4i .. 4i+3
    u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  // Column 4L + c gathers lane L of u[c], u[4+c], u[8+c], u[12+c]: a 4 × 4 transpose of lanes.
  for (int c = 0; c < 4; ++c) {
    const __m512 y0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
    const __m512 y1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
    const __m512 y2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
    const __m512 y3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
    r[c] = _mm512_shuffle_f32x4(y0, y2, 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(y0, y2, 0xDD);
    r[4 + c] = _mm512_shuffle_f32x4(y1, y3, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(y1, y3, 0xDD);
  }
}

}  // namespace

ZEROTH_AVX512 void pack_transposed_avx512(const float* src, int64_t ld, int rows, int64_t kc, int panel, float* dst) {
  for (int r0 = 0; r0 < panel; r0 += 16) {
    const __mmask16 store_mask = lane_mask16(panel - r0);
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
      const int64_t kk = std::min<int64_t>(16, kc - k0);
      const __mmask16 load_mask = lane_mask16(kk);
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        const float* row = src + (r0 + i) * ld + k0;
        // Sixteen rows are sixteen streams, more than the hardware prefetchers follow: ask for
        // each row's line four blocks ahead (prefetches never fault, even past the matrix).
        if (r0 + i < rows) _mm_prefetch(reinterpret_cast<const char*>(row + 64), _MM_HINT_T0);
        r[i] = r0 + i < rows ? _mm512_maskz_loadu_ps(load_mask, row) : _mm512_setzero_ps();
      }
      transpose16(r);
      if (kk == 16) {
#pragma GCC unroll 16
        for (int t = 0; t < 16; ++t) _mm512_mask_storeu_ps(dst + (k0 + t) * panel + r0, store_mask, r[t]);
      } else {
        for (int t = 0; t < kk; ++t) _mm512_mask_storeu_ps(dst + (k0 + t) * panel + r0, store_mask, r[t]);
      }
    }
  }
}

}  // namespace zeroth::gemm_detail
