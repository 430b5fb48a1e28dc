// perturb_avx512.cpp — the AVX-512 kernel table: 16 Philox blocks per call (one per lane,
// 32x32->64 products with _mm512_mul_epu32 on even and odd lanes), Box–Muller on 16 pairs at
// once with the exact operation sequence of rng::box_muller, and masked loads/stores for
// tails and sparse masks. Bit-identical to perturb_scalar.cpp.
// GCC 12 warns -Wmaybe-uninitialized inside its own AVX-512 headers (_mm512_undefined_* in
// set1/cvt helpers), a known false positive; silenced for this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "core/philox.h"
#include "cpu/perturb_kernels.h"

#define ZEROTH_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

namespace zeroth::perturb_detail {
namespace {

ZEROTH_AVX512 inline void mulhilo16(__m512i a, __m512i m, __m512i* hi, __m512i* lo) {
  const __m512i even = _mm512_mul_epu32(a, m);                       // products of lanes 0, 2, 4, ...
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);  // products of lanes 1, 3, 5, ...
  *lo = _mm512_mullo_epi32(a, m);  // the low words directly: one multiply instead of shift + blend
  *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

// Philox4x32-10 of blocks block .. block+15, lane j holding block + j; c[k] is word k.
ZEROTH_AVX512 inline void philox16(uint64_t seed, uint64_t stream, uint64_t block, __m512i c[4]) {
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i base_lo = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(block)));
  const __m512i base_hi = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(block >> 32)));
  __m512i c0 = _mm512_add_epi32(base_lo, lanes);
  const __mmask16 carry = _mm512_cmplt_epu32_mask(c0, base_lo);  // the low word wrapped
  __m512i c1 = _mm512_mask_add_epi32(base_hi, carry, base_hi, _mm512_set1_epi32(1));
  __m512i c2 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream)));
  __m512i c3 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream >> 32)));
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(rng::kPhiloxM0));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(rng::kPhiloxM1));
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    __m512i hi0, lo0, hi1, lo1;
    mulhilo16(c0, m0, &hi0, &lo0);
    mulhilo16(c2, m1, &hi1, &lo1);
    const __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(static_cast<int>(k0)));
    const __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(static_cast<int>(k1)));
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += rng::kPhiloxW0;
    k1 += rng::kPhiloxW1;
  }
  c[0] = c0;
  c[1] = c1;
  c[2] = c2;
  c[3] = c3;
}

// Two philox16 calls (blocks block .. block+15 and block+16 .. block+31) with their rounds
// interleaved: each round is a chain of multiplies with ~5-cycle latency, so two independent
// chains keep the multiplier busy (same results as two philox16 calls).
ZEROTH_AVX512 inline void philox16x2(uint64_t seed, uint64_t stream, uint64_t block, __m512i c[4], __m512i d[4]) {
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i one = _mm512_set1_epi32(1);
  const uint64_t block_d = block + 16;
  const __m512i base_lo = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(block)));
  const __m512i base_hi = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(block >> 32)));
  const __m512i dbase_lo = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(block_d)));
  const __m512i dbase_hi = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(block_d >> 32)));
  __m512i c0 = _mm512_add_epi32(base_lo, lanes);
  __m512i c1 = _mm512_mask_add_epi32(base_hi, _mm512_cmplt_epu32_mask(c0, base_lo), base_hi, one);
  __m512i d0 = _mm512_add_epi32(dbase_lo, lanes);
  __m512i d1 = _mm512_mask_add_epi32(dbase_hi, _mm512_cmplt_epu32_mask(d0, dbase_lo), dbase_hi, one);
  __m512i c2 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream)));
  __m512i c3 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream >> 32)));
  __m512i d2 = c2, d3 = c3;
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(rng::kPhiloxM0));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(rng::kPhiloxM1));
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    __m512i hi0, lo0, hi1, lo1, ehi0, elo0, ehi1, elo1;
    mulhilo16(c0, m0, &hi0, &lo0);
    mulhilo16(d0, m0, &ehi0, &elo0);
    mulhilo16(c2, m1, &hi1, &lo1);
    mulhilo16(d2, m1, &ehi1, &elo1);
    const __m512i key0 = _mm512_set1_epi32(static_cast<int>(k0)), key1 = _mm512_set1_epi32(static_cast<int>(k1));
    c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), key0);
    d0 = _mm512_xor_si512(_mm512_xor_si512(ehi1, d1), key0);
    c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), key1);
    d2 = _mm512_xor_si512(_mm512_xor_si512(ehi0, d3), key1);
    c1 = lo1;
    d1 = elo1;
    c3 = lo0;
    d3 = elo0;
    k0 += rng::kPhiloxW0;
    k1 += rng::kPhiloxW1;
  }
  c[0] = c0; c[1] = c1; c[2] = c2; c[3] = c3;
  d[0] = d0; d[1] = d1; d[2] = d2; d[3] = d3;
}

// rng::box_muller on 16 pairs, same operations in the same order.
ZEROTH_AVX512 inline void box_muller16(__m512i a, __m512i b, __m512* z0, __m512* z1) {
  const __m512 two_m24 = _mm512_set1_ps(5.9604644775390625e-8f);
  const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_srli_epi32(a, 8), _mm512_set1_epi32(1))),
                                 two_m24);
  // minus_two_log(u)
  const __m512i bits = _mm512_castps_si512(u);
  __m512i e = _mm512_sub_epi32(_mm512_and_si512(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(0xff)),
                               _mm512_set1_epi32(127));
  __m512 m = _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(0x3f800000)));
  const __mmask16 big = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.41421356f), _CMP_GT_OQ);
  m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5f));
  e = _mm512_mask_add_epi32(e, big, e, _mm512_set1_epi32(1));
  const __m512 s = _mm512_div_ps(_mm512_add_ps(m, _mm512_set1_ps(-1.0f)), _mm512_add_ps(m, _mm512_set1_ps(1.0f)));
  const __m512 s2 = _mm512_mul_ps(s, s);
  __m512 p = _mm512_fmadd_ps(s2, _mm512_set1_ps(0.11111111f), _mm512_set1_ps(0.14285715f));
  p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(0.2f));
  p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(0.33333334f));
  p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.0f));
  const __m512 log_m = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(2.0f), s), p);
  const __m512 fe = _mm512_cvtepi32_ps(e);
  const __m512 ln_u = _mm512_add_ps(_mm512_fmadd_ps(fe, _mm512_set1_ps(0.693145752f), log_m),
                                    _mm512_mul_ps(fe, _mm512_set1_ps(1.42860677e-6f)));
  const __m512 r = _mm512_sqrt_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0f), ln_u));
  // sincos_quarter(x)
  const __m512i quadrant = _mm512_srli_epi32(b, 30);
  const __m512 x = _mm512_mul_ps(
      _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(b, 6), _mm512_set1_epi32(0xffffff))), two_m24);
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.57079637f));
  const __m512 t2 = _mm512_mul_ps(t, t);
  __m512 ps = _mm512_fmadd_ps(t2, _mm512_set1_ps(-2.50521084e-8f), _mm512_set1_ps(2.75573192e-6f));
  ps = _mm512_fmadd_ps(ps, t2, _mm512_set1_ps(-1.98412698e-4f));
  ps = _mm512_fmadd_ps(ps, t2, _mm512_set1_ps(8.33333333e-3f));
  ps = _mm512_fmadd_ps(ps, t2, _mm512_set1_ps(-1.66666667e-1f));
  ps = _mm512_fmadd_ps(ps, t2, _mm512_set1_ps(1.0f));
  const __m512 sn0 = _mm512_mul_ps(t, ps);
  __m512 pc = _mm512_fmadd_ps(t2, _mm512_set1_ps(2.08767570e-9f), _mm512_set1_ps(-2.75573192e-7f));
  pc = _mm512_fmadd_ps(pc, t2, _mm512_set1_ps(2.48015873e-5f));
  pc = _mm512_fmadd_ps(pc, t2, _mm512_set1_ps(-1.38888889e-3f));
  pc = _mm512_fmadd_ps(pc, t2, _mm512_set1_ps(4.16666667e-2f));
  pc = _mm512_fmadd_ps(pc, t2, _mm512_set1_ps(-0.5f));
  const __m512 cs0 = _mm512_fmadd_ps(pc, t2, _mm512_set1_ps(1.0f));
  // Rotate (cos, sin) by quadrant·90°; negation flips the sign bit, like unary minus.
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __mmask16 q1 = _mm512_cmpeq_epi32_mask(quadrant, _mm512_set1_epi32(1));
  const __mmask16 q2 = _mm512_cmpeq_epi32_mask(quadrant, _mm512_set1_epi32(2));
  const __mmask16 q3 = _mm512_cmpeq_epi32_mask(quadrant, _mm512_set1_epi32(3));
  const __m512 neg_s = _mm512_xor_ps(sn0, sign), neg_c = _mm512_xor_ps(cs0, sign);
  __m512 cs = cs0, sn = sn0;
  cs = _mm512_mask_mov_ps(cs, q1, neg_s);
  sn = _mm512_mask_mov_ps(sn, q1, cs0);
  cs = _mm512_mask_mov_ps(cs, q2, neg_c);
  sn = _mm512_mask_mov_ps(sn, q2, neg_s);
  cs = _mm512_mask_mov_ps(cs, q3, sn0);
  sn = _mm512_mask_mov_ps(sn, q3, neg_c);
  *z0 = _mm512_mul_ps(r, cs);
  *z1 = _mm512_mul_ps(r, sn);
}

// Stores a[j], b[j], c[j], d[j] at out[4j .. 4j+3] (a 16x4 -> 4x16 transpose).
ZEROTH_AVX512 inline void store_interleaved4(__m512 a, __m512 b, __m512 c, __m512 d, float* out) {
  const __m512 t0 = _mm512_unpacklo_ps(a, b), t1 = _mm512_unpackhi_ps(a, b);
  const __m512 t2 = _mm512_unpacklo_ps(c, d), t3 = _mm512_unpackhi_ps(c, d);
  const __m512 u0 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));  // 0 4 8 12
  const __m512 u1 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));  // 1 5 9 13
  const __m512 u2 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));  // 2 6 10 14
  const __m512 u3 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));  // 3 7 11 15
  const __m512 v0 = _mm512_shuffle_f32x4(u0, u1, 0x88);  // 0 8 1 9
  const __m512 v1 = _mm512_shuffle_f32x4(u0, u1, 0xDD);  // 4 12 5 13
  const __m512 v2 = _mm512_shuffle_f32x4(u2, u3, 0x88);  // 2 10 3 11
  const __m512 v3 = _mm512_shuffle_f32x4(u2, u3, 0xDD);  // 6 14 7 15
  _mm512_storeu_ps(out, _mm512_shuffle_f32x4(v0, v2, 0x88));
  _mm512_storeu_ps(out + 16, _mm512_shuffle_f32x4(v1, v3, 0x88));
  _mm512_storeu_ps(out + 32, _mm512_shuffle_f32x4(v0, v2, 0xDD));
  _mm512_storeu_ps(out + 48, _mm512_shuffle_f32x4(v1, v3, 0xDD));
}

ZEROTH_AVX512 void philox_words(uint64_t seed, uint64_t stream, uint64_t block0, int64_t nblocks, uint32_t* out) {
  for (int64_t b = 0; b < nblocks; b += 16) {
    __m512i c[4];
    philox16(seed, stream, block0 + static_cast<uint64_t>(b), c);
    alignas(64) float tmp[64];
    float* dst = nblocks - b >= 16 ? reinterpret_cast<float*>(out + 4 * b) : tmp;
    store_interleaved4(_mm512_castsi512_ps(c[0]), _mm512_castsi512_ps(c[1]), _mm512_castsi512_ps(c[2]),
                       _mm512_castsi512_ps(c[3]), dst);
    if (dst == tmp) std::memcpy(out + 4 * b, tmp, static_cast<size_t>(nblocks - b) * 16);
  }
}

ZEROTH_AVX512 void normal_blocks(uint64_t seed, uint64_t stream, uint64_t block0, int64_t nblocks, float* out) {
  int64_t b = 0;
  for (; b + 32 <= nblocks; b += 32) {  // two independent Philox chains and four transforms at a time
    __m512i c[4], d[4];
    philox16x2(seed, stream, block0 + static_cast<uint64_t>(b), c, d);
    __m512 z0, z1, z2, z3, y0, y1, y2, y3;
    box_muller16(c[0], c[1], &z0, &z1);
    box_muller16(d[0], d[1], &y0, &y1);
    box_muller16(c[2], c[3], &z2, &z3);
    box_muller16(d[2], d[3], &y2, &y3);
    store_interleaved4(z0, z1, z2, z3, out + 4 * b);
    store_interleaved4(y0, y1, y2, y3, out + 4 * b + 64);
  }
  for (; b < nblocks; b += 16) {
    __m512i c[4];
    philox16(seed, stream, block0 + static_cast<uint64_t>(b), c);
    __m512 z0, z1, z2, z3;
    box_muller16(c[0], c[1], &z0, &z1);
    box_muller16(c[2], c[3], &z2, &z3);
    alignas(64) float tmp[64];
    float* dst = nblocks - b >= 16 ? out + 4 * b : tmp;
    store_interleaved4(z0, z1, z2, z3, dst);
    if (dst == tmp) std::memcpy(out + 4 * b, tmp, static_cast<size_t>(nblocks - b) * 16);
  }
}

ZEROTH_AVX512 void expand_signs(const uint32_t* words, int64_t n, float* out) {
  const __m512 plus = _mm512_set1_ps(1.0f), minus = _mm512_set1_ps(-1.0f);
  for (int64_t i = 0; i < n; i += 32) {
    const uint32_t w = words[i >> 5];
    _mm512_storeu_ps(out + i, _mm512_mask_blend_ps(static_cast<__mmask16>(w), minus, plus));
    _mm512_storeu_ps(out + i + 16, _mm512_mask_blend_ps(static_cast<__mmask16>(w >> 16), minus, plus));
  }
}

// Lanes i .. i+15 that exist (< n) and that the bitmask lets through.
ZEROTH_AVX512 inline __mmask16 lanes_of(const uint8_t* mask, int64_t i, int64_t n, __mmask16* live) {
  const int64_t left = n - i;
  *live = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
  if (!mask) return *live;
  uint32_t bits = mask[i >> 3];
  if (left > 8) bits |= static_cast<uint32_t>(mask[(i >> 3) + 1]) << 8;
  return static_cast<__mmask16>(bits & *live);
}

ZEROTH_AVX512 void unperturb(const float* p, const float* z, float s, float* w, int64_t n) {
  const __m512 sv = _mm512_set1_ps(s);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 live;
    lanes_of(nullptr, i, n, &live);
    const __m512 pv = _mm512_maskz_loadu_ps(live, p + i), zv = _mm512_maskz_loadu_ps(live, z + i);
    _mm512_mask_storeu_ps(w + i, live, _mm512_sub_ps(pv, _mm512_mul_ps(sv, zv)));
  }
}

ZEROTH_AVX512 void perturb(float* p, const float* w, const float* z, float s, const uint8_t* mask, uint64_t* flags,
                           float* saved, int64_t n) {
  if (flags) std::memset(flags, 0, static_cast<size_t>((n + 63) / 64) * 8);
  const __m512 sv = _mm512_set1_ps(s);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 live;
    const __mmask16 write = lanes_of(mask, i, n, &live);
    const __m512 wv = _mm512_maskz_loadu_ps(live, w + i), zv = _mm512_maskz_loadu_ps(live, z + i);
    const __m512 d = _mm512_mul_ps(sv, zv);
    const __m512 v = _mm512_add_ps(wv, d);
    _mm512_mask_storeu_ps(p + i, write, v);
    if (flags) {
      const __m512i back = _mm512_castps_si512(_mm512_sub_ps(v, d));
      const __mmask16 bad = _mm512_mask_cmpneq_epi32_mask(write, back, _mm512_castps_si512(wv));
      flags[i >> 6] |= static_cast<uint64_t>(bad) << (i & 63);
      if (bad) _mm512_mask_storeu_ps(saved + i, bad, wv);
    }
  }
}

ZEROTH_AVX512 void update(float* p, const float* w, const float* z, bool use_keep, float keep, float step,
                          const uint8_t* mask, int64_t n) {
  const __m512 kv = _mm512_set1_ps(keep), sv = _mm512_set1_ps(step);
  const bool use_step = step != 0.0f;
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 live;
    const __mmask16 write = lanes_of(mask, i, n, &live);
    __m512 v = _mm512_maskz_loadu_ps(live, w + i);
    if (use_keep) v = _mm512_mul_ps(v, kv);
    if (use_step) v = _mm512_sub_ps(v, _mm512_mul_ps(sv, _mm512_maskz_loadu_ps(live, z + i)));
    _mm512_mask_storeu_ps(p + i, write, v);
  }
}

}  // namespace

const Kernels kAvx512Kernels = {philox_words, normal_blocks, expand_signs, unperturb, perturb, update};

}  // namespace zeroth::perturb_detail
