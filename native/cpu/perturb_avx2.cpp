// perturb_avx2.cpp — the AVX2+FMA kernel table: 8 Philox blocks per call (_mm256_mul_epu32 on
// even and odd lanes), Box–Muller on 8 pairs with the exact operation sequence of
// rng::box_muller, vector masks for sparse targets and a scalar tail. Bit-identical to
// perturb_scalar.cpp.
#include <immintrin.h>

#include <cstring>

#include "core/philox.h"
#include "cpu/perturb_kernels.h"

#define ZEROTH_AVX2 __attribute__((target("avx2,fma")))

namespace zeroth::perturb_detail {
namespace {

ZEROTH_AVX2 inline __m256i set1u(uint32_t x) { return _mm256_set1_epi32(static_cast<int>(x)); }

ZEROTH_AVX2 inline void mulhilo8(__m256i a, __m256i m, __m256i* hi, __m256i* lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

ZEROTH_AVX2 inline void philox8(uint64_t seed, uint64_t stream, uint64_t block, __m256i c[4]) {
  const __m256i base_lo = set1u(static_cast<uint32_t>(block));
  __m256i c0 = _mm256_add_epi32(base_lo, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  // Unsigned c0 < base_lo (the low word wrapped): compare with the sign bits flipped.
  const __m256i flip = set1u(0x80000000u);
  const __m256i carry = _mm256_cmpgt_epi32(_mm256_xor_si256(base_lo, flip), _mm256_xor_si256(c0, flip));
  __m256i c1 = _mm256_sub_epi32(set1u(static_cast<uint32_t>(block >> 32)), carry);  // carry is -1 or 0
  __m256i c2 = set1u(static_cast<uint32_t>(stream));
  __m256i c3 = set1u(static_cast<uint32_t>(stream >> 32));
  const __m256i m0 = set1u(rng::kPhiloxM0), m1 = set1u(rng::kPhiloxM1);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    __m256i hi0, lo0, hi1, lo1;
    mulhilo8(c0, m0, &hi0, &lo0);
    mulhilo8(c2, m1, &hi1, &lo1);
    const __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), set1u(k0));
    const __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), set1u(k1));
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

ZEROTH_AVX2 inline __m256 set1f(float x) { return _mm256_set1_ps(x); }

// rng::box_muller on 8 pairs, same operations in the same order.
ZEROTH_AVX2 inline void box_muller8(__m256i a, __m256i b, __m256* z0, __m256* z1) {
  const __m256 two_m24 = set1f(5.9604644775390625e-8f);
  const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_srli_epi32(a, 8), set1u(1))), two_m24);
  const __m256i bits = _mm256_castps_si256(u);
  __m256i e = _mm256_sub_epi32(_mm256_and_si256(_mm256_srli_epi32(bits, 23), set1u(0xff)), set1u(127));
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, set1u(0x007fffff)), set1u(0x3f800000)));
  const __m256 big = _mm256_cmp_ps(m, set1f(1.41421356f), _CMP_GT_OQ);
  m = _mm256_blendv_ps(m, _mm256_mul_ps(m, set1f(0.5f)), big);
  e = _mm256_sub_epi32(e, _mm256_castps_si256(big));  // big is all ones (-1) where taken
  const __m256 s = _mm256_div_ps(_mm256_add_ps(m, set1f(-1.0f)), _mm256_add_ps(m, set1f(1.0f)));
  const __m256 s2 = _mm256_mul_ps(s, s);
  __m256 p = _mm256_fmadd_ps(s2, set1f(0.11111111f), set1f(0.14285715f));
  p = _mm256_fmadd_ps(p, s2, set1f(0.2f));
  p = _mm256_fmadd_ps(p, s2, set1f(0.33333334f));
  p = _mm256_fmadd_ps(p, s2, set1f(1.0f));
  const __m256 log_m = _mm256_mul_ps(_mm256_mul_ps(set1f(2.0f), s), p);
  const __m256 fe = _mm256_cvtepi32_ps(e);
  const __m256 ln_u =
      _mm256_add_ps(_mm256_fmadd_ps(fe, set1f(0.693145752f), log_m), _mm256_mul_ps(fe, set1f(1.42860677e-6f)));
  const __m256 r = _mm256_sqrt_ps(_mm256_mul_ps(set1f(-2.0f), ln_u));
  const __m256i quadrant = _mm256_srli_epi32(b, 30);
  const __m256 x = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(b, 6), set1u(0xffffff))),
                                 two_m24);
  const __m256 t = _mm256_mul_ps(x, set1f(1.57079637f));
  const __m256 t2 = _mm256_mul_ps(t, t);
  __m256 ps = _mm256_fmadd_ps(t2, set1f(-2.50521084e-8f), set1f(2.75573192e-6f));
  ps = _mm256_fmadd_ps(ps, t2, set1f(-1.98412698e-4f));
  ps = _mm256_fmadd_ps(ps, t2, set1f(8.33333333e-3f));
  ps = _mm256_fmadd_ps(ps, t2, set1f(-1.66666667e-1f));
  ps = _mm256_fmadd_ps(ps, t2, set1f(1.0f));
  const __m256 sn0 = _mm256_mul_ps(t, ps);
  __m256 pc = _mm256_fmadd_ps(t2, set1f(2.08767570e-9f), set1f(-2.75573192e-7f));
  pc = _mm256_fmadd_ps(pc, t2, set1f(2.48015873e-5f));
  pc = _mm256_fmadd_ps(pc, t2, set1f(-1.38888889e-3f));
  pc = _mm256_fmadd_ps(pc, t2, set1f(4.16666667e-2f));
  pc = _mm256_fmadd_ps(pc, t2, set1f(-0.5f));
  const __m256 cs0 = _mm256_fmadd_ps(pc, t2, set1f(1.0f));
  const __m256 sign = set1f(-0.0f);
  const __m256 q1 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(quadrant, set1u(1)));
  const __m256 q2 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(quadrant, set1u(2)));
  const __m256 q3 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(quadrant, set1u(3)));
  const __m256 neg_s = _mm256_xor_ps(sn0, sign), neg_c = _mm256_xor_ps(cs0, sign);
  __m256 cs = cs0, sn = sn0;
  cs = _mm256_blendv_ps(cs, neg_s, q1);
  sn = _mm256_blendv_ps(sn, cs0, q1);
  cs = _mm256_blendv_ps(cs, neg_c, q2);
  sn = _mm256_blendv_ps(sn, neg_s, q2);
  cs = _mm256_blendv_ps(cs, sn0, q3);
  sn = _mm256_blendv_ps(sn, neg_c, q3);
  *z0 = _mm256_mul_ps(r, cs);
  *z1 = _mm256_mul_ps(r, sn);
}

// Stores a[j], b[j], c[j], d[j] at out[4j .. 4j+3] (an 8x4 -> 4x8 transpose).
ZEROTH_AVX2 inline void store_interleaved4(__m256 a, __m256 b, __m256 c, __m256 d, float* out) {
  const __m256 t0 = _mm256_unpacklo_ps(a, b), t1 = _mm256_unpackhi_ps(a, b);
  const __m256 t2 = _mm256_unpacklo_ps(c, d), t3 = _mm256_unpackhi_ps(c, d);
  const __m256 u0 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));  // 0 4
  const __m256 u1 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));  // 1 5
  const __m256 u2 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));  // 2 6
  const __m256 u3 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));  // 3 7
  _mm256_storeu_ps(out, _mm256_permute2f128_ps(u0, u1, 0x20));
  _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
  _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
  _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
}

ZEROTH_AVX2 void philox_words(uint64_t seed, uint64_t stream, uint64_t block0, int64_t nblocks, uint32_t* out) {
  for (int64_t b = 0; b < nblocks; b += 8) {
    __m256i c[4];
    philox8(seed, stream, block0 + static_cast<uint64_t>(b), c);
    alignas(32) float tmp[32];
    float* dst = nblocks - b >= 8 ? reinterpret_cast<float*>(out + 4 * b) : tmp;
    store_interleaved4(_mm256_castsi256_ps(c[0]), _mm256_castsi256_ps(c[1]), _mm256_castsi256_ps(c[2]),
                       _mm256_castsi256_ps(c[3]), dst);
    if (dst == tmp) std::memcpy(out + 4 * b, tmp, static_cast<size_t>(nblocks - b) * 16);
  }
}

ZEROTH_AVX2 void normal_blocks(uint64_t seed, uint64_t stream, uint64_t block0, int64_t nblocks, float* out) {
  for (int64_t b = 0; b < nblocks; b += 8) {
    __m256i c[4];
    philox8(seed, stream, block0 + static_cast<uint64_t>(b), c);
    __m256 z0, z1, z2, z3;
    box_muller8(c[0], c[1], &z0, &z1);
    box_muller8(c[2], c[3], &z2, &z3);
    alignas(32) float tmp[32];
    float* dst = nblocks - b >= 8 ? out + 4 * b : tmp;
    store_interleaved4(z0, z1, z2, z3, dst);
    if (dst == tmp) std::memcpy(out + 4 * b, tmp, static_cast<size_t>(nblocks - b) * 16);
  }
}

// All-ones lanes where bit j of `byte` is set.
ZEROTH_AVX2 inline __m256i byte_lanes(uint32_t byte) {
  const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(set1u(byte), sel), sel);
}

ZEROTH_AVX2 void expand_signs(const uint32_t* words, int64_t n, float* out) {
  const __m256 plus = set1f(1.0f), minus = set1f(-1.0f);
  for (int64_t i = 0; i < n; i += 8) {
    const uint32_t byte = (words[i >> 5] >> (i & 31)) & 0xffu;
    _mm256_storeu_ps(out + i, _mm256_blendv_ps(minus, plus, _mm256_castsi256_ps(byte_lanes(byte))));
  }
}

inline bool allowed(const uint8_t* mask, int64_t i) { return !mask || ((mask[i >> 3] >> (i & 7)) & 1u); }

ZEROTH_AVX2 void unperturb(const float* p, const float* z, float s, float* w, int64_t n) {
  const __m256 sv = set1f(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(w + i, _mm256_sub_ps(_mm256_loadu_ps(p + i), _mm256_mul_ps(sv, _mm256_loadu_ps(z + i))));
  for (; i < n; ++i) w[i] = p[i] - s * z[i];
}

ZEROTH_AVX2 void perturb(float* p, const float* w, const float* z, float s, const uint8_t* mask, uint64_t* flags,
                         float* saved, int64_t n) {
  if (flags) std::memset(flags, 0, static_cast<size_t>((n + 63) / 64) * 8);
  const __m256 sv = set1f(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 wv = _mm256_loadu_ps(w + i);
    const __m256 d = _mm256_mul_ps(sv, _mm256_loadu_ps(z + i));
    const __m256 v = _mm256_add_ps(wv, d);
    if (mask) {
      const __m256i write = byte_lanes(mask[i >> 3]);
      _mm256_maskstore_ps(p + i, write, v);
      if (flags) {
        const __m256i same = _mm256_cmpeq_epi32(_mm256_castps_si256(_mm256_sub_ps(v, d)), _mm256_castps_si256(wv));
        const uint32_t bad = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_andnot_si256(same, write))));
        flags[i >> 6] |= static_cast<uint64_t>(bad) << (i & 63);
        if (bad) _mm256_storeu_ps(saved + i, wv);
      }
    } else {
      _mm256_storeu_ps(p + i, v);
      if (flags) {
        const __m256i same = _mm256_cmpeq_epi32(_mm256_castps_si256(_mm256_sub_ps(v, d)), _mm256_castps_si256(wv));
        const uint32_t bad = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(same))) ^ 0xffu;
        flags[i >> 6] |= static_cast<uint64_t>(bad) << (i & 63);
        if (bad) _mm256_storeu_ps(saved + i, wv);
      }
    }
  }
  for (; i < n; ++i) {
    if (!allowed(mask, i)) continue;
    const float clean = w[i];
    const float d = s * z[i];
    const float v = clean + d;
    p[i] = v;
    if (flags && rng::fbits(v - d) != rng::fbits(clean)) {
      flags[i >> 6] |= uint64_t{1} << (i & 63);
      saved[i] = clean;
    }
  }
}

ZEROTH_AVX2 void update(float* p, const float* w, const float* z, bool use_keep, float keep, float step,
                        const uint8_t* mask, int64_t n) {
  const __m256 kv = set1f(keep), sv = set1f(step);
  const bool use_step = step != 0.0f;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(w + i);
    if (use_keep) v = _mm256_mul_ps(v, kv);
    if (use_step) v = _mm256_sub_ps(v, _mm256_mul_ps(sv, _mm256_loadu_ps(z + i)));
    if (mask) _mm256_maskstore_ps(p + i, byte_lanes(mask[i >> 3]), v);
    else _mm256_storeu_ps(p + i, v);
  }
  for (; i < n; ++i) {
    if (!allowed(mask, i)) continue;
    float v = w[i];
    if (use_keep) v = v * keep;
    if (use_step) v = v - step * z[i];
    p[i] = v;
  }
}

}  // namespace

const Kernels kAvx2Kernels = {philox_words, normal_blocks, expand_signs, unperturb, perturb, update};

}  // namespace zeroth::perturb_detail
