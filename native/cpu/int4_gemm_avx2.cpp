// int4_gemm_avx2.cpp — AVX2+FMA GEMV row kernels (int4_gemm_kernels.h); the AVX-512 file's twin
// with 16-column blocks: one 8-byte load holds 16 codes, `& 15` / `>> 4` split even and odd columns.
#include <immintrin.h>

#include <cmath>

#include "cpu/int4_gemm_kernels.h"

#define ZEROTH_AVX2 __attribute__((target("avx2,fma")))

namespace zeroth::detail {
namespace {
ZEROTH_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
ZEROTH_AVX2 inline __m256i load8_u8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
ZEROTH_AVX2 inline __m256i load8_i8(const int8_t* p) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
}  // namespace

ZEROTH_AVX2 void int4_gemv_rows_avx2(const QuantMatrix& w, const float* x, const float* xd, int64_t r0, int64_t r1,
                                     float* y) {
  const __m256i low4 = _mm256_set1_epi32(15);
  const int64_t half_cols = w.cols / 2;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes4 + r * half_cols;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    float tail = 0.0f;
    for (int64_t g = 0; g < w.groups; ++g) {
      const int64_t c0 = g * w.group_size, c1 = c0 + w.group_size < w.cols ? c0 + w.group_size : w.cols;
      const float s = w.scale(r, g), z = w.zero(r, g);
      const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(z);
      int64_t c = c0;
      for (; c + 32 <= c1; c += 32) {
        const __m256i v0 = load8_u8(row + c / 2), v1 = load8_u8(row + c / 2 + 8);
        const __m256 w0 = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v0, low4)), vz), vs);
        const __m256 w1 = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), vz), vs);
        const __m256 w2 = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v1, low4)), vz), vs);
        const __m256 w3 = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4)), vz), vs);
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xd + c), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xd + c + 8), a1);
        a2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xd + c + 16), a2);
        a3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xd + c + 24), a3);
      }
      for (; c + 16 <= c1; c += 16) {
        const __m256i v0 = load8_u8(row + c / 2);
        const __m256 w0 = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v0, low4)), vz), vs);
        const __m256 w1 = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), vz), vs);
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xd + c), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xd + c + 8), a1);
      }
      for (; c < c1; ++c) tail = fmaf((static_cast<float>(w.code(r, c)) - z) * s, x[c], tail);
    }
    y[r] = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))) + tail;
  }
}

ZEROTH_AVX2 void int8_gemv_rows_avx2(const QuantMatrix& w, const float* x, int64_t r0, int64_t r1, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const int8_t* row = w.codes8 + r * w.cols;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    float tail = 0.0f;
    for (int64_t g = 0; g < w.groups; ++g) {
      const int64_t c0 = g * w.group_size, c1 = c0 + w.group_size < w.cols ? c0 + w.group_size : w.cols;
      const float s = w.scale(r, g);
      const __m256 vs = _mm256_set1_ps(s);
      int64_t c = c0;
      for (; c + 16 <= c1; c += 16) {
        a0 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(load8_i8(row + c)), vs), _mm256_loadu_ps(x + c), a0);
        a1 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(load8_i8(row + c + 8)), vs), _mm256_loadu_ps(x + c + 8), a1);
      }
      for (; c + 8 <= c1; c += 8)
        a0 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(load8_i8(row + c)), vs), _mm256_loadu_ps(x + c), a0);
      for (; c < c1; ++c) tail = fmaf(static_cast<float>(row[c]) * s, x[c], tail);
    }
    y[r] = hsum(_mm256_add_ps(a0, a1)) + tail;
  }
}

}  // namespace zeroth::detail
