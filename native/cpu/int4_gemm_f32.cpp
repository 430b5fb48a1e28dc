// int4_gemm_f32.cpp — a plain multithreaded f32 GEMV y = W·x (W [out, in] row-major), the
// reference the int4 benchmark compares against (bench/int4.mjs): the same dot-product structure
// as the int4 GEMV, reading 4-byte weights instead of half-byte codes. gemm_f32 with M = 1 packs
// the whole weight every call, so it is no fair f32 GEMV on its own.
// GCC 12 warns -Wmaybe-uninitialized inside its own _mm512_reduce_add_ps (an undefined
// pass-through operand of the extract it inlines), a known false positive; silenced here only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "core/cpu_features.h"
#include "core/parallel.h"
#include "cpu/int4_gemm.h"

namespace zeroth {
namespace {

__attribute__((target("avx512f,avx512dq"))) void rows_avx512(const float* W, int64_t in, const float* x, int64_t r0,
                                                             int64_t r1, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* w = W + r * in;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 64 <= in; c += 64) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c), _mm512_loadu_ps(x + c), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 16), _mm512_loadu_ps(x + c + 16), a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 32), _mm512_loadu_ps(x + c + 32), a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + c + 48), _mm512_loadu_ps(x + c + 48), a3);
    }
    float tail = 0.0f;
    for (; c < in; ++c) tail = std::fma(w[c], x[c], tail);
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))) + tail;
  }
}

__attribute__((target("avx2,fma"))) void rows_avx2(const float* W, int64_t in, const float* x, int64_t r0, int64_t r1,
                                                   float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* w = W + r * in;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 32 <= in; c += 32) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c), _mm256_loadu_ps(x + c), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c + 8), _mm256_loadu_ps(x + c + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c + 16), _mm256_loadu_ps(x + c + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c + 24), _mm256_loadu_ps(x + c + 24), a3);
    }
    const __m256 s8 = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float tail = 0.0f;
    for (; c < in; ++c) tail = std::fma(w[c], x[c], tail);
    y[r] = _mm_cvtss_f32(s) + tail;
  }
}

void rows_scalar(const float* W, int64_t in, const float* x, int64_t r0, int64_t r1, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    float acc = 0.0f;
    for (int64_t c = 0; c < in; ++c) acc = std::fma(W[r * in + c], x[c], acc);
    y[r] = acc;
  }
}

}  // namespace

void f32_gemv(const float* W, int64_t out, int64_t in, const float* x, float* y) {
  const SimdLevel l = simd_level();
  const int64_t grain = std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(in, 1));
  parallel_for(out, grain, [&](int64_t r0, int64_t r1) {
    if (l == SimdLevel::Avx512) rows_avx512(W, in, x, r0, r1, y);
    else if (l == SimdLevel::Avx2) rows_avx2(W, in, x, r0, r1, y);
    else rows_scalar(W, in, x, r0, r1, y);
  });
}

}  // namespace zeroth
