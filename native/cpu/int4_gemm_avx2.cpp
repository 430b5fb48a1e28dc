// int4_gemm_avx2.cpp — AVX2+FMA GEMV row kernels (int4_gemm_kernels.h); the AVX-512 file's twin
// with 16-column blocks: one 8-byte load holds 16 codes, `& 15` / `>> 4` split even and odd columns.
// Each weight is (code − zero)·scale in f32 exactly as dequantize() computes it. AVX2 has no
// 16-entry f32 permute (vpermps ymm looks up 8), so the AVX-512 file's table look-up would cost two
// permutes and a blend per 8 weights, no fewer operations than convert-subtract-multiply here; what
// carries over is the rest: two rows share each x load, the next two rows are prefetched, odd
// `cols` take a second load per row (see the AVX-512 file).
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

constexpr int kBlock = 16;  // columns per SIMD step (8 bytes of codes)

// y[r .. r+R) for R rows; kOdd: cols is odd, so rows may start in a high nibble. `prefetch`: the
// next R rows belong to this call's range and are fetched ahead.
template <int R, bool kOdd>
ZEROTH_AVX2 void int4_rows(const QuantMatrix& w, const float* x, const float* xd, int64_t r, bool prefetch, float* y) {
  const __m256i low4 = _mm256_set1_epi32(15);
  const uint8_t* row[R];
  __m128i lo_shift[R], hi_shift[R];  // kOdd: 4·phase and 4·(1 − phase), phase = (r·cols) & 1
  int64_t hi_offset[R];              // kOdd: byte offset of the odd columns' codes (the phase)
  for (int i = 0; i < R; ++i) {
    const int64_t e = (r + i) * w.cols, phase = e & 1;
    row[i] = w.codes4 + (e >> 1);
    lo_shift[i] = _mm_cvtsi64_si128(4 * phase);
    hi_shift[i] = _mm_cvtsi64_si128(4 * (1 - phase));
    hi_offset[i] = phase;
  }
  const char* next = reinterpret_cast<const char*>(w.codes4 + (((r + R) * w.cols) >> 1));
  __m256 acc[R][2];
  float tail[R];
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps(), tail[i] = 0.0f;
  const int64_t simd_end = w.cols / kBlock * kBlock;  // xd covers these columns
  for (int64_t g = 0; g < w.groups; ++g) {
    const int64_t c0 = g * w.group_size, c1 = c0 + w.group_size < w.cols ? c0 + w.group_size : w.cols;
    const int64_t cs = c1 < simd_end ? c1 : simd_end;
    float zero[R], scale[R];
    for (int i = 0; i < R; ++i) zero[i] = w.zero(r + i, g), scale[i] = w.scale(r + i, g);
    for (int64_t c = c0; c < cs; c += kBlock) {
      // R·8 bytes of the next rows per step: one line every 128 / R columns.
      if (prefetch && c % (128 / R) == 0) _mm_prefetch(next + R * (c / 2), _MM_HINT_T0);
      const __m256 x_even = _mm256_loadu_ps(xd + c), x_odd = _mm256_loadu_ps(xd + c + 8);
      for (int i = 0; i < R; ++i) {
        __m256i even, odd;
        if (kOdd) {
          even = _mm256_and_si256(_mm256_srl_epi32(load8_u8(row[i] + c / 2), lo_shift[i]), low4);
          odd = _mm256_and_si256(_mm256_srl_epi32(load8_u8(row[i] + c / 2 + hi_offset[i]), hi_shift[i]), low4);
        } else {
          const __m256i v = load8_u8(row[i] + c / 2);
          even = _mm256_and_si256(v, low4);
          odd = _mm256_srli_epi32(v, 4);
        }
        const __m256 vz = _mm256_set1_ps(zero[i]), vs = _mm256_set1_ps(scale[i]);
        acc[i][0] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(even), vz), vs), x_even, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(odd), vz), vs), x_odd, acc[i][1]);
      }
    }
    if (cs < c1)  // the last group's columns past the last full block
      for (int i = 0; i < R; ++i)
        for (int64_t c = cs; c < c1; ++c)
          tail[i] = std::fma((static_cast<float>(w.code(r + i, c)) - zero[i]) * scale[i], x[c], tail[i]);
  }
  for (int i = 0; i < R; ++i) y[r + i] = hsum(_mm256_add_ps(acc[i][0], acc[i][1])) + tail[i];
}

// Two rows at a time with two accumulators each fit 16 ymm registers with the zeros and scales;
// four rows spilled and ran ~4% slower (Zen 5, AVX2 path forced).
template <bool kOdd>
ZEROTH_AVX2 void int4_range(const QuantMatrix& w, const float* x, const float* xd, int64_t r0, int64_t r1, float* y) {
  constexpr int R = 2;
  int64_t r = r0;
  for (; r + R <= r1; r += R) int4_rows<R, kOdd>(w, x, xd, r, r + 2 * R <= r1, y);
  for (; r < r1; ++r) int4_rows<1, kOdd>(w, x, xd, r, false, y);
}

}  // namespace

ZEROTH_AVX2 void int4_gemv_rows_avx2(const QuantMatrix& w, const float* x, const float* xd, int64_t r0, int64_t r1,
                                     float* y) {
  if (w.cols % 2) int4_range<true>(w, x, xd, r0, r1, y);
  else int4_range<false>(w, x, xd, r0, r1, y);
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
