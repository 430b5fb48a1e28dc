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
  // r = sqrt(minus_two_log(uniform_open0(a)))
  const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_srli_epi32(a, 8), set1u(1))),
                                 set1f(5.9604644775390625e-8f));
  const __m256i t = _mm256_sub_epi32(_mm256_castps_si256(u), set1u(0x3f3504f3u));
  const __m256 fe = _mm256_cvtepi32_ps(_mm256_srai_epi32(t, 23));
  const __m256 m =
      _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_castps_si256(u), _mm256_and_si256(t, set1u(0xff800000u))));
  const __m256 s = _mm256_div_ps(_mm256_add_ps(m, set1f(-1.0f)), _mm256_add_ps(m, set1f(1.0f)));
  const __m256 w = _mm256_mul_ps(s, s);
  __m256 p = _mm256_fmadd_ps(w, set1f(-0.5974159240722656f), set1f(-0.7995516657829285f));
  p = _mm256_fmadd_ps(p, w, set1f(-1.333335518836975f));
  p = _mm256_fmadd_ps(p, w, set1f(-4.0f));
  const __m256 r = _mm256_sqrt_ps(_mm256_fmadd_ps(fe, set1f(-1.38629436f), _mm256_mul_ps(s, p)));
  // sincos_octant at the position inside the octant (measured from its far end when odd)
  const __m256i pos = _mm256_and_si256(_mm256_srli_epi32(b, 6), set1u(0x7fffffu));
  const __m256 odd = _mm256_castsi256_ps(_mm256_slli_epi32(b, 2));  // blendv reads bit 31: b29
  const __m256i rpos = _mm256_castps_si256(_mm256_blendv_ps(
      _mm256_castsi256_ps(pos), _mm256_castsi256_ps(_mm256_sub_epi32(set1u(0x800000u), pos)), odd));
  const __m256 x = _mm256_mul_ps(_mm256_cvtepi32_ps(rpos), set1f(1.1920928955078125e-7f));
  const __m256 x2 = _mm256_mul_ps(x, x);
  __m256 ps = _mm256_fmadd_ps(x2, set1f(-3.660915172076784e-05f), set1f(0.0024910164065659046f));
  ps = _mm256_fmadd_ps(ps, x2, set1f(-0.08074583113193512f));
  ps = _mm256_fmadd_ps(ps, x2, set1f(0.7853981852531433f));
  const __m256 sn = _mm256_mul_ps(x, ps);
  __m256 pc = _mm256_fmadd_ps(x2, set1f(3.490463996058679e-06f), set1f(-0.00032586330780759454f));
  pc = _mm256_fmadd_ps(pc, x2, set1f(0.015854282304644585f));
  pc = _mm256_fmadd_ps(pc, x2, set1f(-0.3084251284599304f));
  const __m256 cs = _mm256_fmadd_ps(pc, x2, set1f(1.0f));
  // The octant's swap and signs; a sign is flipped on the product's bits.
  const __m256i bx = _mm256_xor_si256(b, _mm256_slli_epi32(b, 1));
  const __m256 swap = _mm256_castsi256_ps(_mm256_slli_epi32(bx, 1));  // blendv reads bit 31: b30 ^ b29
  const __m256 r0 = _mm256_mul_ps(r, _mm256_blendv_ps(cs, sn, swap));
  const __m256 r1 = _mm256_mul_ps(r, _mm256_blendv_ps(sn, cs, swap));
  const __m256i sign = set1u(0x80000000u);
  *z0 = _mm256_xor_ps(r0, _mm256_castsi256_ps(_mm256_and_si256(bx, sign)));
  *z1 = _mm256_xor_ps(r1, _mm256_castsi256_ps(_mm256_and_si256(b, sign)));
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

ZEROTH_AVX2 void normal_blocks(uint64_t seed, uint64_t stream, uint64_t block0, int64_t nblocks, float* out,
                               const void* prefetch) {
  const char* pf = static_cast<const char*>(prefetch);
  for (int64_t b = 0; b < nblocks; b += 8) {
    if (pf && nblocks - b >= 8) {  // the two cache lines of `prefetch` that go with these 8 blocks
      __builtin_prefetch(pf + 16 * b, 1, 3);
      __builtin_prefetch(pf + 16 * b + 64, 1, 3);
    }
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

const Kernels kAvx2Kernels = {philox_words, normal_blocks, expand_signs, unperturb, perturb, update, nullptr};

}  // namespace zeroth::perturb_detail
