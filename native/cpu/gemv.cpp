// gemv.cpp — gemv.h. One template per layout, instantiated for each SIMD width through a tiny
// vector wrapper, so the scalar, AVX2 and AVX-512 versions are the same code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // see gemm_pack.cpp: intrinsic pass-throughs
#include "cpu/gemv.h"

#include <immintrin.h>

#include <algorithm>

#include "core/cpu_features.h"
#include "core/parallel.h"

#define ZEROTH_AVX512_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define ZEROTH_AVX2_FN __attribute__((target("avx2,fma")))

namespace zeroth {
namespace {

// Writes alpha·acc + beta·C (beta == 0 ignores C, NaN included).
inline void store(float* c, float acc, float alpha, float beta) { *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c; }

// ---- B [N, K]: dot products ----------------------------------------------------------------
#define ZEROTH_GEMV_DOT(NAME, ATTR, VEC, WIDTH, ZERO, LOAD, FMA, SUM)                                            \
  ATTR void NAME(int64_t M, int64_t j0, int64_t j1, int64_t K, float alpha, const float* A, int64_t lda,          \
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {                                \
    for (int64_t j = j0; j < j1; ++j) {                                                                         \
      const float* b = B + j * ldb;                                                                             \
      VEC acc[kGemvMaxRows][2];                                                                                 \
      for (int64_t i = 0; i < M; ++i) acc[i][0] = acc[i][1] = ZERO;                                             \
      int64_t k = 0;                                                                                            \
      for (; k + 2 * WIDTH <= K; k += 2 * WIDTH) {                                                              \
        const VEC b0 = LOAD(b + k), b1 = LOAD(b + k + WIDTH);                                                    \
        for (int64_t i = 0; i < M; ++i) {                                                                       \
          acc[i][0] = FMA(LOAD(A + i * lda + k), b0, acc[i][0]);                                                 \
          acc[i][1] = FMA(LOAD(A + i * lda + k + WIDTH), b1, acc[i][1]);                                         \
        }                                                                                                       \
      }                                                                                                         \
      for (int64_t i = 0; i < M; ++i) {                                                                         \
        float s = SUM(acc[i][0], acc[i][1]);                                                                    \
        for (int64_t kk = k; kk < K; ++kk) s += A[i * lda + kk] * b[kk];                                        \
        store(C + i * ldc + j, s, alpha, beta);                                                                 \
      }                                                                                                         \
    }                                                                                                           \
  }

// ---- B [K, N]: strips of kStrip columns accumulated over k ----------------------------------
constexpr int64_t kStrip = 64;
#define ZEROTH_GEMV_AXPY(NAME, ATTR, VEC, WIDTH, ZERO, LOAD, STOREV, FMA, SET1)                                   \
  ATTR void NAME(int64_t M, int64_t n0, int64_t n1, int64_t K, float alpha, const float* A, int64_t lda,          \
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {                                \
    constexpr int64_t V = kStrip / WIDTH;                                                                       \
    int64_t n = n0;                                                                                             \
    for (; n + kStrip <= n1; n += kStrip) {                                                                     \
      VEC acc[kGemvMaxRows][V];                                                                                 \
      for (int64_t i = 0; i < M; ++i)                                                                           \
        for (int64_t v = 0; v < V; ++v) acc[i][v] = ZERO;                                                       \
      for (int64_t k = 0; k < K; ++k) {                                                                         \
        const float* b = B + k * ldb + n;                                                                       \
        VEC bv[V];                                                                                              \
        for (int64_t v = 0; v < V; ++v) bv[v] = LOAD(b + v * WIDTH);                                             \
        for (int64_t i = 0; i < M; ++i) {                                                                       \
          const VEC a = SET1(A[i * lda + k]);                                                                   \
          for (int64_t v = 0; v < V; ++v) acc[i][v] = FMA(a, bv[v], acc[i][v]);                                  \
        }                                                                                                       \
      }                                                                                                         \
      for (int64_t i = 0; i < M; ++i) {                                                                         \
        float tmp[kStrip];                                                                                      \
        for (int64_t v = 0; v < V; ++v) STOREV(tmp + v * WIDTH, acc[i][v]);                                      \
        for (int64_t c = 0; c < kStrip; ++c) store(C + i * ldc + n + c, tmp[c], alpha, beta);                   \
      }                                                                                                         \
    }                                                                                                           \
    for (; n < n1; ++n)                                                                                         \
      for (int64_t i = 0; i < M; ++i) {                                                                         \
        float s = 0.0f;                                                                                         \
        for (int64_t k = 0; k < K; ++k) s += A[i * lda + k] * B[k * ldb + n];                                   \
        store(C + i * ldc + n, s, alpha, beta);                                                                 \
      }                                                                                                         \
  }

// Scalar "vectors" of width 1.
inline float s_load(const float* p) { return *p; }
inline float s_fma(float a, float b, float c) { return a * b + c; }
inline float s_sum(float a, float b) { return a + b; }
inline void s_store(float* p, float v) { *p = v; }
inline float s_set1(float a) { return a; }
ZEROTH_GEMV_DOT(dot_scalar, , float, 1, 0.0f, s_load, s_fma, s_sum)
ZEROTH_GEMV_AXPY(axpy_scalar, , float, 1, 0.0f, s_load, s_store, s_fma, s_set1)

ZEROTH_AVX2_FN inline float sum256(__m256 a, __m256 b) {
  const __m256 s = _mm256_add_ps(a, b);
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}
ZEROTH_GEMV_DOT(dot_avx2, ZEROTH_AVX2_FN, __m256, 8, _mm256_setzero_ps(), _mm256_loadu_ps, _mm256_fmadd_ps, sum256)
ZEROTH_GEMV_AXPY(axpy_avx2, ZEROTH_AVX2_FN, __m256, 8, _mm256_setzero_ps(), _mm256_loadu_ps, _mm256_storeu_ps,
                 _mm256_fmadd_ps, _mm256_set1_ps)

ZEROTH_AVX512_FN inline float sum512(__m512 a, __m512 b) { return _mm512_reduce_add_ps(_mm512_add_ps(a, b)); }
ZEROTH_GEMV_DOT(dot_avx512, ZEROTH_AVX512_FN, __m512, 16, _mm512_setzero_ps(), _mm512_loadu_ps, _mm512_fmadd_ps,
                sum512)
ZEROTH_GEMV_AXPY(axpy_avx512, ZEROTH_AVX512_FN, __m512, 16, _mm512_setzero_ps(), _mm512_loadu_ps, _mm512_storeu_ps,
                 _mm512_fmadd_ps, _mm512_set1_ps)

using Kernel = void (*)(int64_t, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                        float*, int64_t);

}  // namespace

void gemv_f32(bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
              int64_t ldb, float beta, float* C, int64_t ldc) {
  const SimdLevel level = simd_level();
  Kernel k;
  if (trans_b) k = level == SimdLevel::Avx512 ? dot_avx512 : level == SimdLevel::Avx2 ? dot_avx2 : dot_scalar;
  else k = level == SimdLevel::Avx512 ? axpy_avx512 : level == SimdLevel::Avx2 ? axpy_avx2 : axpy_scalar;
  // Chunks of whole strips (Conv1D) or of 16 rows of B, at least ~64 KiB of B per task.
  const int64_t unit = trans_b ? 16 : kStrip;
  const int64_t units = (N + unit - 1) / unit;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / (4 * unit * std::max<int64_t>(K, 1)));
  parallel_for(units, grain, [&](int64_t u0, int64_t u1) {
    k(M, u0 * unit, std::min(N, u1 * unit), K, alpha, A, lda, B, ldb, beta, C, ldc);
  });
}

}  // namespace zeroth
