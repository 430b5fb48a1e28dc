// int4_gemm_avx512.cpp — AVX-512 GEMV row kernels (int4_gemm_kernels.h).
//
// int4: one 16-byte load holds 32 codes; zero-extended to 16 × i32, `& 15` gives the even columns
// and `>> 4` the odd ones, which meet the de-interleaved x (xd) block by block. Each weight is
// (code − zero)·scale in f32 exactly as dequantize() computes it, then one fma into an accumulator.
// Two 32-column blocks per iteration keep four independent accumulator chains in flight.
// GCC 12 reports the deliberately undefined pass-through operands inside the AVX-512
// intrinsics as "maybe uninitialized" once they are inlined here; they are not (see gemm_pack.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cmath>

#include "cpu/int4_gemm_kernels.h"

#define ZEROTH_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

namespace zeroth::detail {

ZEROTH_AVX512 void int4_gemv_rows_avx512(const QuantMatrix& w, const float* x, const float* xd, int64_t r0,
                                         int64_t r1, float* y) {
  const __m512i low4 = _mm512_set1_epi32(15);
  const int64_t half_cols = w.cols / 2;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.codes4 + r * half_cols;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    float tail = 0.0f;
    for (int64_t g = 0; g < w.groups; ++g) {
      const int64_t c0 = g * w.group_size, c1 = c0 + w.group_size < w.cols ? c0 + w.group_size : w.cols;
      const float s = w.scale(r, g), z = w.zero(r, g);
      const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps(z);
      int64_t c = c0;
      for (; c + 64 <= c1; c += 64) {
        const __m512i v0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c / 2)));
        const __m512i v1 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c / 2 + 16)));
        const __m512 w0 = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v0, low4)), vz), vs);
        const __m512 w1 = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v0, 4)), vz), vs);
        const __m512 w2 = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v1, low4)), vz), vs);
        const __m512 w3 = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v1, 4)), vz), vs);
        a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xd + c), a0);
        a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xd + c + 16), a1);
        a2 = _mm512_fmadd_ps(w2, _mm512_loadu_ps(xd + c + 32), a2);
        a3 = _mm512_fmadd_ps(w3, _mm512_loadu_ps(xd + c + 48), a3);
      }
      for (; c + 32 <= c1; c += 32) {
        const __m512i v0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c / 2)));
        const __m512 w0 = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v0, low4)), vz), vs);
        const __m512 w1 = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v0, 4)), vz), vs);
        a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xd + c), a0);
        a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xd + c + 16), a1);
      }
      for (; c < c1; ++c) tail = fmaf((static_cast<float>(w.code(r, c)) - z) * s, x[c], tail);  // last group's rest
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))) + tail;
  }
}

ZEROTH_AVX512 void int8_gemv_rows_avx512(const QuantMatrix& w, const float* x, int64_t r0, int64_t r1, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const int8_t* row = w.codes8 + r * w.cols;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    float tail = 0.0f;
    for (int64_t g = 0; g < w.groups; ++g) {
      const int64_t c0 = g * w.group_size, c1 = c0 + w.group_size < w.cols ? c0 + w.group_size : w.cols;
      const float s = w.scale(r, g);
      const __m512 vs = _mm512_set1_ps(s);
      int64_t c = c0;
      for (; c + 32 <= c1; c += 32) {
        const __m512i v0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c)));
        const __m512i v1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c + 16)));
        a0 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v0), vs), _mm512_loadu_ps(x + c), a0);
        a1 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v1), vs), _mm512_loadu_ps(x + c + 16), a1);
      }
      for (; c + 16 <= c1; c += 16) {
        const __m512i v0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c)));
        a0 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v0), vs), _mm512_loadu_ps(x + c), a0);
      }
      for (; c < c1; ++c) tail = fmaf(static_cast<float>(row[c]) * s, x[c], tail);
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) + tail;
  }
}

}  // namespace zeroth::detail
