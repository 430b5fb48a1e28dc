// ops_vec.cpp — f32 transcendental kernels (exp, sigmoid, silu, tanh, gelu) with a scalar
// reference built on <cmath> and AVX2+FMA / AVX-512 polynomial versions (ops_vec_body.h),
// picked per call from zeroth::simd_level(). Callers split work across threads; these run
// on one contiguous range.
#include <immintrin.h>

#include <cmath>
#include <limits>

#include "core/cpu_features.h"
#include "ops_util.h"

namespace zeroth::ops {
namespace scalar {

// Sigmoid and the gelus are formed in double: the reference should not carry the f32
// cancellation of 1 + tanh(u) at large negative u.
inline float sigmoid1(float x) { return static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(x)))); }
inline float gelu_tanh1(float xf) {
  const double x = xf;
  return static_cast<float>(0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))));
}
inline float gelu_erf1(float xf) {
  const double x = xf;
  return static_cast<float>(0.5 * x * std::erfc(-x * 0.70710678118654752));
}

}  // namespace scalar

// ---- AVX2 + FMA ---------------------------------------------------------------------------
#define V_TARGET __attribute__((target("avx2,fma")))
#define VF __m256
#define VI __m256i
#define VD __m256d
#define V_WIDTH 8
#define V_SET1 _mm256_set1_ps
#define V_LOAD _mm256_loadu_ps
#define V_STORE _mm256_storeu_ps
#define V_ADD _mm256_add_ps
#define V_SUB _mm256_sub_ps
#define V_MUL _mm256_mul_ps
#define V_DIV _mm256_div_ps
#define V_MIN _mm256_min_ps
#define V_MAX _mm256_max_ps
#define V_FMADD _mm256_fmadd_ps
#define V_FNMADD _mm256_fnmadd_ps
#define V_ROUND(x) _mm256_round_ps((x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_CVT_I _mm256_cvtps_epi32
#define V_SRAI _mm256_srai_epi32
#define V_SLLI _mm256_slli_epi32
#define V_ADD_I _mm256_add_epi32
#define V_SUB_I _mm256_sub_epi32
#define V_SET1_I _mm256_set1_epi32
#define V_CAST_F _mm256_castsi256_ps
#define V_GT(a, b) _mm256_cmp_ps((a), (b), _CMP_GT_OQ)
#define V_LT(a, b) _mm256_cmp_ps((a), (b), _CMP_LT_OQ)
#define V_UNORD(a, b) _mm256_cmp_ps((a), (b), _CMP_UNORD_Q)
#define V_BLEND(a, b, m) _mm256_blendv_ps((a), (b), (m))  // m ? b : a
#define V_ABS(x) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), (x))
#define V_AND _mm256_and_ps
#define V_OR _mm256_or_ps
#define V_ZERO_D _mm256_setzero_pd
#define V_ADD_D _mm256_add_pd
#define V_LOW_D(v) _mm256_cvtps_pd(_mm256_castps256_ps128(v))
#define V_HIGH_D(v) _mm256_cvtps_pd(_mm256_extractf128_ps((v), 1))
#define V_SUM_D avx2_sum_d
V_TARGET static inline double avx2_sum_d(__m256d v) {
  alignas(32) double d[4];
  _mm256_store_pd(d, v);
  return (d[0] + d[1]) + (d[2] + d[3]);
}
#define OPS_VEC_NS avx2
#include "ops_vec_body.h"
#undef OPS_VEC_NS
#undef V_TARGET
#undef VF
#undef VI
#undef VD
#undef V_WIDTH
#undef V_SET1
#undef V_LOAD
#undef V_STORE
#undef V_ADD
#undef V_SUB
#undef V_MUL
#undef V_DIV
#undef V_MIN
#undef V_MAX
#undef V_FMADD
#undef V_FNMADD
#undef V_ROUND
#undef V_CVT_I
#undef V_SRAI
#undef V_SLLI
#undef V_ADD_I
#undef V_SUB_I
#undef V_SET1_I
#undef V_CAST_F
#undef V_GT
#undef V_LT
#undef V_UNORD
#undef V_BLEND
#undef V_ABS
#undef V_AND
#undef V_OR
#undef V_ZERO_D
#undef V_ADD_D
#undef V_LOW_D
#undef V_HIGH_D
#undef V_SUM_D

// ---- AVX-512 ------------------------------------------------------------------------------
#define V_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define VF __m512
#define VI __m512i
#define VD __m512d
#define V_WIDTH 16
#define V_SET1 _mm512_set1_ps
#define V_LOAD _mm512_loadu_ps
#define V_STORE _mm512_storeu_ps
#define V_ADD _mm512_add_ps
#define V_SUB _mm512_sub_ps
#define V_MUL _mm512_mul_ps
#define V_DIV _mm512_div_ps
#define V_MIN _mm512_min_ps
#define V_MAX _mm512_max_ps
#define V_FMADD _mm512_fmadd_ps
#define V_FNMADD _mm512_fnmadd_ps
#define V_ROUND(x) _mm512_roundscale_ps((x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_CVT_I _mm512_cvtps_epi32
#define V_SRAI _mm512_srai_epi32
#define V_SLLI _mm512_slli_epi32
#define V_ADD_I _mm512_add_epi32
#define V_SUB_I _mm512_sub_epi32
#define V_SET1_I _mm512_set1_epi32
#define V_CAST_F _mm512_castsi512_ps
#define V_GT(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_GT_OQ)
#define V_LT(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_LT_OQ)
#define V_UNORD(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_UNORD_Q)
#define V_BLEND(a, b, m) _mm512_mask_blend_ps((m), (a), (b))  // m ? b : a
#define V_ABS(x) _mm512_abs_ps(x)
#define V_AND _mm512_and_ps
#define V_OR _mm512_or_ps
#define V_ZERO_D _mm512_setzero_pd
#define V_ADD_D _mm512_add_pd
#define V_LOW_D(v) _mm512_cvtps_pd(_mm512_castps512_ps256(v))
#define V_HIGH_D(v) _mm512_cvtps_pd(_mm512_extractf32x8_ps((v), 1))
#define V_SUM_D _mm512_reduce_add_pd
#define OPS_VEC_NS avx512
// GCC 12 reports its own _mm512_undefined_* placeholders in the intrinsic headers as
// "maybe uninitialized" once they are inlined here; the values are never read.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "ops_vec_body.h"
#pragma GCC diagnostic pop
#undef OPS_VEC_NS

// ---- dispatch -----------------------------------------------------------------------------

#define OPS_DISPATCH_MAP(NAME, KERNEL, SCALAR_EXPR)          \
  void NAME(const float* x, float* y, int64_t n) {           \
    switch (simd_level()) {                                  \
      case SimdLevel::Avx512: return avx512::KERNEL(x, y, n); \
      case SimdLevel::Avx2: return avx2::KERNEL(x, y, n);     \
      case SimdLevel::Scalar: break;                         \
    }                                                        \
    for (int64_t i = 0; i < n; ++i) {                        \
      const float v = x[i];                                  \
      y[i] = (SCALAR_EXPR);                                  \
    }                                                        \
  }

OPS_DISPATCH_MAP(vec_exp, map_exp, std::exp(v))
OPS_DISPATCH_MAP(vec_sigmoid, map_sigmoid, scalar::sigmoid1(v))
OPS_DISPATCH_MAP(vec_silu, map_silu, static_cast<float>(static_cast<double>(v) * scalar::sigmoid1(v)))
OPS_DISPATCH_MAP(vec_tanh, map_tanh, std::tanh(v))
OPS_DISPATCH_MAP(vec_gelu_tanh, map_gelu_tanh, scalar::gelu_tanh1(v))
OPS_DISPATCH_MAP(vec_gelu_erf, map_gelu_erf, scalar::gelu_erf1(v))
#undef OPS_DISPATCH_MAP

float vec_max(const float* x, int64_t n) {
  switch (simd_level()) {
    case SimdLevel::Avx512: return avx512::max_n(x, n);
    case SimdLevel::Avx2: return avx2::max_n(x, n);
    case SimdLevel::Scalar: break;
  }
  float best = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) best = x[i] > best ? x[i] : best;
  return best;
}

double vec_exp_shift_sum(const float* x, int64_t n, float shift, float* out) {
  switch (simd_level()) {
    case SimdLevel::Avx512: return avx512::exp_shift_sum_n(x, n, shift, out);
    case SimdLevel::Avx2: return avx2::exp_shift_sum_n(x, n, shift, out);
    case SimdLevel::Scalar: break;
  }
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = std::exp(x[i] - shift);
    if (out) out[i] = e;
    total += static_cast<double>(e);
  }
  return total;
}

}  // namespace zeroth::ops
