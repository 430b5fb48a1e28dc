// ops_vec_body.h — the f32 vector kernels of ops_vec.cpp, written once and compiled per ISA.
//
// ops_vec.cpp includes this file twice, after defining the V_* macros for AVX2+FMA (8 lanes)
// and for AVX-512 (16 lanes) and OPS_VEC_NS to the namespace the copy lands in. Tails go
// through a padded stack buffer so every element, tail included, sees the same polynomial.
//
// exp: Cody–Waite range reduction x = n·ln2 + r, |r| <= ln2/2, a degree-6 polynomial for
// e^r (Cephes expf coefficients, ~1 ulp), and 2^n applied as two factors 2^(n/2)·2^(n−n/2)
// so n in [−150, 128] never leaves the exponent range: results underflow gradually to 0 like
// expf. NaN in gives NaN out; x > 88.72 gives +inf.
// tanh: Cephes tanhf polynomial for |x| < 0.625 (where 1 − e^(−2|x|) would cancel), the exp
// form elsewhere. sigmoid from e^−|x| (no overflow); gelu(tanh) = x·sigmoid(2u) (the same function as
// 0.5·x·(1 + tanh u), without the cancellation at large negative x).
// gelu(erf): Abramowitz–Stegun 7.1.26 (|error| <= 1.5e-7 in erfc), with 1 + erf(z) formed as
// erfc(|z|) for negative x so the left tail keeps its relative accuracy near zero.
#ifndef OPS_VEC_NS
#error "include ops_vec_body.h from ops_vec.cpp only"
#endif

namespace OPS_VEC_NS {

V_TARGET static inline VF v_exp(VF x) {
  const VF hi = V_SET1(88.72283935546875f), lo = V_SET1(-103.972084045410f);
  const VF xc = V_MIN(V_MAX(x, lo), hi);
  const VF n = V_ROUND(V_MUL(xc, V_SET1(1.44269504088896341f)));
  // r = x − n·ln2 with ln2 split in a short high part (exact product) and the rest.
  VF r = V_FNMADD(n, V_SET1(0.693359375f), xc);
  r = V_FNMADD(n, V_SET1(-2.12194440e-4f), r);
  VF p = V_SET1(1.9875691500e-4f);
  p = V_FMADD(p, r, V_SET1(1.3981999507e-3f));
  p = V_FMADD(p, r, V_SET1(8.3334519073e-3f));
  p = V_FMADD(p, r, V_SET1(4.1665795894e-2f));
  p = V_FMADD(p, r, V_SET1(1.6666665459e-1f));
  p = V_FMADD(p, r, V_SET1(5.0000001201e-1f));
  p = V_FMADD(p, V_MUL(r, r), V_ADD(r, V_SET1(1.0f)));
  const VI ni = V_CVT_I(n);
  const VI half = V_SRAI(ni, 1);
  const VF s1 = V_CAST_F(V_SLLI(V_ADD_I(half, V_SET1_I(127)), 23));
  const VF s2 = V_CAST_F(V_SLLI(V_ADD_I(V_SUB_I(ni, half), V_SET1_I(127)), 23));
  VF y = V_MUL(V_MUL(p, s1), s2);
  y = V_BLEND(y, V_SET1(__builtin_inff()), V_GT(x, hi));
  y = V_BLEND(y, V_SET1(0.0f), V_LT(x, lo));  // below e^−103.97 the result rounds to 0
  return V_BLEND(y, x, V_UNORD(x, x));  // NaN stays NaN
}

V_TARGET static inline VF v_sigmoid(VF x) {
  // e = exp(−|x|) never overflows: sigmoid = 1/(1 + e) for x >= 0 and e/(1 + e) for x < 0,
  // so the left tail keeps its tiny values instead of 1/inf = 0.
  const VF one = V_SET1(1.0f);
  const VF e = v_exp(V_SUB(V_SET1(0.0f), V_ABS(x)));
  return V_DIV(V_BLEND(one, e, V_LT(x, V_SET1(0.0f))), V_ADD(one, e));
}

V_TARGET static inline VF v_tanh(VF x) {
  const VF ax = V_ABS(x);
  // Large |x|: (1 − e)/(1 + e) with e = exp(−2|x|), sign restored below.
  const VF e = v_exp(V_MUL(ax, V_SET1(-2.0f)));
  const VF big = V_DIV(V_SUB(V_SET1(1.0f), e), V_ADD(V_SET1(1.0f), e));
  // Small |x|: odd polynomial, no cancellation.
  const VF z = V_MUL(x, x);
  VF p = V_SET1(-5.70498872745e-3f);
  p = V_FMADD(p, z, V_SET1(2.06390887954e-2f));
  p = V_FMADD(p, z, V_SET1(-5.37397155531e-2f));
  p = V_FMADD(p, z, V_SET1(1.33314422036e-1f));
  p = V_FMADD(p, z, V_SET1(-3.33332819422e-1f));
  const VF small = V_FMADD(V_MUL(p, z), x, x);
  const VF signed_big = V_OR(big, V_AND(x, V_SET1(-0.0f)));
  const VF y = V_BLEND(signed_big, small, V_LT(ax, V_SET1(0.625f)));
  return V_BLEND(y, x, V_UNORD(x, x));
}

V_TARGET static inline VF v_gelu_tanh(VF x) {
  // u = sqrt(2/pi)·(x + 0.044715·x³); gelu = x·sigmoid(2u).
  const VF x3 = V_MUL(V_MUL(x, x), x);
  const VF u = V_MUL(V_SET1(0.7978845608028654f), V_FMADD(V_SET1(0.044715f), x3, x));
  return V_MUL(x, v_sigmoid(V_ADD(u, u)));
}

V_TARGET static inline VF v_gelu_erf(VF x) {
  const VF z = V_MUL(V_ABS(x), V_SET1(0.70710678118654752f));
  const VF t = V_DIV(V_SET1(1.0f), V_FMADD(V_SET1(0.3275911f), z, V_SET1(1.0f)));
  VF p = V_SET1(1.061405429f);
  p = V_FMADD(p, t, V_SET1(-1.453152027f));
  p = V_FMADD(p, t, V_SET1(1.421413741f));
  p = V_FMADD(p, t, V_SET1(-0.284496736f));
  p = V_FMADD(p, t, V_SET1(0.254829592f));
  const VF erfc = V_MUL(V_MUL(p, t), v_exp(V_MUL(V_SUB(V_SET1(0.0f), z), z)));  // erfc(|z|)
  // 1 + erf(x/√2): 2 − erfc for x >= 0, erfc for x < 0.
  const VF one_plus = V_BLEND(V_SUB(V_SET1(2.0f), erfc), erfc, V_LT(x, V_SET1(0.0f)));
  return V_MUL(V_MUL(V_SET1(0.5f), x), one_plus);
}

// Applies F lane-wise over n elements; the tail goes through a padded buffer.
#define OPS_VEC_MAP(NAME, F)                                              \
  V_TARGET void NAME(const float* x, float* y, int64_t n) {               \
    int64_t i = 0;                                                        \
    for (; i + V_WIDTH <= n; i += V_WIDTH) V_STORE(y + i, F(V_LOAD(x + i))); \
    if (i < n) {                                                          \
      float buf[V_WIDTH] = {0};                                           \
      for (int64_t k = i; k < n; ++k) buf[k - i] = x[k];                  \
      V_STORE(buf, F(V_LOAD(buf)));                                       \
      for (int64_t k = i; k < n; ++k) y[k] = buf[k - i];                  \
    }                                                                     \
  }

V_TARGET static inline VF v_silu(VF x) { return V_MUL(x, v_sigmoid(x)); }

OPS_VEC_MAP(map_exp, v_exp)
OPS_VEC_MAP(map_sigmoid, v_sigmoid)
OPS_VEC_MAP(map_silu, v_silu)
OPS_VEC_MAP(map_tanh, v_tanh)
OPS_VEC_MAP(map_gelu_tanh, v_gelu_tanh)
OPS_VEC_MAP(map_gelu_erf, v_gelu_erf)
#undef OPS_VEC_MAP

V_TARGET float max_n(const float* x, int64_t n) {
  VF m = V_SET1(-__builtin_inff());
  int64_t i = 0;
  // max(v, m) returns m when v is NaN: NaNs are skipped, as documented in ops_util.h.
  for (; i + V_WIDTH <= n; i += V_WIDTH) m = V_MAX(V_LOAD(x + i), m);
  float lanes[V_WIDTH];
  V_STORE(lanes, m);
  float best = -__builtin_inff();
  for (int k = 0; k < V_WIDTH; ++k) best = lanes[k] > best ? lanes[k] : best;
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  return best;
}

V_TARGET double exp_shift_sum_n(const float* x, int64_t n, float shift, float* out) {
  const VF s = V_SET1(shift);
  VD acc0 = V_ZERO_D(), acc1 = V_ZERO_D();
  int64_t i = 0;
  for (; i + V_WIDTH <= n; i += V_WIDTH) {
    const VF e = v_exp(V_SUB(V_LOAD(x + i), s));
    if (out) V_STORE(out + i, e);
    acc0 = V_ADD_D(acc0, V_LOW_D(e));
    acc1 = V_ADD_D(acc1, V_HIGH_D(e));
  }
  double total = V_SUM_D(V_ADD_D(acc0, acc1));
  if (i < n) {
    float buf[V_WIDTH];
    for (int k = 0; k < V_WIDTH; ++k) buf[k] = -__builtin_inff();  // exp(−inf) = 0 pads the sum
    for (int64_t k = i; k < n; ++k) buf[k - i] = x[k];
    const VF e = v_exp(V_SUB(V_LOAD(buf), s));
    V_STORE(buf, e);
    for (int64_t k = i; k < n; ++k) {
      total += static_cast<double>(buf[k - i]);
      if (out) out[k] = buf[k - i];
    }
  }
  return total;
}

}  // namespace OPS_VEC_NS
