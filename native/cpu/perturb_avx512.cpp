// perturb_avx512.cpp — the AVX-512 kernel table: Philox on 32 blocks at a time (four groups
// of 8, one block per 64-bit lane, _mm512_mul_epu32), Box–Muller on 16 pairs at once with the
// exact operation sequence of rng::box_muller, and masked loads/stores for tails and sparse
// masks. Bit-identical to perturb_scalar.cpp.
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

ZEROTH_AVX512 inline __m512i set1u(uint32_t x) { return _mm512_set1_epi32(static_cast<int>(x)); }
ZEROTH_AVX512 inline __m512 set1f(float x) { return _mm512_set1_ps(x); }

// Philox4x32-10 of blocks block .. block+8G-1, G groups of 8 blocks with their rounds
// interleaved (independent multiply chains). Each 32-bit word lives in the low half of a
// 64-bit lane, lane j of group g holding block + 8g + j: _mm512_mul_epu32 reads exactly those
// low halves and returns the whole 64-bit product, so the product itself is the next "lo"
// word (its high half is ignored from then on) and one shift gives "hi" — 2 multiplies, 2
// shifts and 2 three-way XORs per round for 8 blocks, against 3 multiplies, 2 shifts, a
// blend and 4 XORs for 16 blocks with 32-bit lanes (~30% faster here). The high halves of
// the results are garbage; w[g][k] holds word k of the group's blocks.
template <int G>
ZEROTH_AVX512 inline void philox8xG(uint64_t seed, uint64_t stream, uint64_t block, __m512i w[G][4]) {
  const __m512i m0 = _mm512_set1_epi64(rng::kPhiloxM0), m1 = _mm512_set1_epi64(rng::kPhiloxM1);
  const __m512i lanes = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  __m512i c0[G], c1[G], c2[G], c3[G];
  for (int g = 0; g < G; ++g) {
    const __m512i id = _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(block + 8u * g)), lanes);
    c0[g] = id;                          // block low word (the high half is ignored)
    c1[g] = _mm512_srli_epi64(id, 32);   // block high word
    c2[g] = _mm512_set1_epi64(static_cast<long long>(static_cast<uint32_t>(stream)));
    c3[g] = _mm512_set1_epi64(static_cast<long long>(stream >> 32));
  }
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const __m512i key0 = set1u(k0), key1 = set1u(k1);
    for (int g = 0; g < G; ++g) {
      const __m512i p0 = _mm512_mul_epu32(c0[g], m0), p1 = _mm512_mul_epu32(c2[g], m1);
      c0[g] = _mm512_ternarylogic_epi32(_mm512_srli_epi64(p1, 32), c1[g], key0, 0x96);  // hi1 ^ c1 ^ k0
      c2[g] = _mm512_ternarylogic_epi32(_mm512_srli_epi64(p0, 32), c3[g], key1, 0x96);  // hi0 ^ c3 ^ k1
      c1[g] = p1;  // lo1
      c3[g] = p0;  // lo0
    }
    k0 += rng::kPhiloxW0;
    k1 += rng::kPhiloxW1;
  }
  for (int g = 0; g < G; ++g) {
    w[g][0] = c0[g];
    w[g][1] = c1[g];
    w[g][2] = c2[g];
    w[g][3] = c3[g];
  }
}

// The low halves of a's and b's 64-bit lanes, interleaved: a0 b0 a1 b1 ... a7 b7.
ZEROTH_AVX512 inline __m512i interleave_low(__m512i a, __m512i b) {
  const __m512i idx = _mm512_setr_epi32(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
  return _mm512_permutex2var_epi32(a, idx, b);
}

// 128-bit pieces lo0 hi0 lo1 hi1 (first = true) or lo2 hi2 lo3 hi3 (first = false).
ZEROTH_AVX512 inline __m512 merge128(__m512 lo, __m512 hi, bool first) {
  const __m512i idx = first ? _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23)
                            : _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  return _mm512_permutex2var_ps(lo, idx, hi);
}

// The 32 words of one group (8 blocks) in block order, out[4j + k] = word k of block j.
ZEROTH_AVX512 inline void store_words8(const __m512i w[4], uint32_t* out) {
  const __m512i w01 = interleave_low(w[0], w[1]), w23 = interleave_low(w[2], w[3]);
  const __m512 lo = _mm512_castsi512_ps(_mm512_unpacklo_epi64(w01, w23));  // blocks 0 2 4 6
  const __m512 hi = _mm512_castsi512_ps(_mm512_unpackhi_epi64(w01, w23));  // blocks 1 3 5 7
  _mm512_storeu_ps(reinterpret_cast<float*>(out), merge128(lo, hi, true));
  _mm512_storeu_ps(reinterpret_cast<float*>(out) + 16, merge128(lo, hi, false));
}

// rng::box_muller on 16 pairs (a[j], b[j]), the same operations in the same order.
ZEROTH_AVX512 inline void box_muller16(__m512i a, __m512i b, __m512* z0, __m512* z1) {
  // r = sqrt(minus_two_log(uniform_open0(a)))
  const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_srli_epi32(a, 8), set1u(1))),
                                 set1f(5.9604644775390625e-8f));
  const __m512i t = _mm512_sub_epi32(_mm512_castps_si512(u), set1u(0x3f3504f3u));
  const __m512 fe = _mm512_cvtepi32_ps(_mm512_srai_epi32(t, 23));
  const __m512 m =
      _mm512_castsi512_ps(_mm512_sub_epi32(_mm512_castps_si512(u), _mm512_and_si512(t, set1u(0xff800000u))));
  const __m512 s = _mm512_div_ps(_mm512_add_ps(m, set1f(-1.0f)), _mm512_add_ps(m, set1f(1.0f)));
  const __m512 w = _mm512_mul_ps(s, s);
  __m512 p = _mm512_fmadd_ps(w, set1f(-0.5974159240722656f), set1f(-0.7995516657829285f));
  p = _mm512_fmadd_ps(p, w, set1f(-1.333335518836975f));
  p = _mm512_fmadd_ps(p, w, set1f(-4.0f));
  const __m512 r = _mm512_sqrt_ps(_mm512_fmadd_ps(fe, set1f(-1.38629436f), _mm512_mul_ps(s, p)));
  // sincos_octant at the position inside the octant
  __m512i pos = _mm512_and_si512(_mm512_srli_epi32(b, 6), set1u(0x7fffffu));
  pos = _mm512_mask_sub_epi32(pos, _mm512_test_epi32_mask(b, set1u(0x20000000u)), set1u(0x800000u), pos);
  const __m512 x = _mm512_mul_ps(_mm512_cvtepi32_ps(pos), set1f(1.1920928955078125e-7f));
  const __m512 x2 = _mm512_mul_ps(x, x);
  __m512 ps = _mm512_fmadd_ps(x2, set1f(-3.660915172076784e-05f), set1f(0.0024910164065659046f));
  ps = _mm512_fmadd_ps(ps, x2, set1f(-0.08074583113193512f));
  ps = _mm512_fmadd_ps(ps, x2, set1f(0.7853981852531433f));
  const __m512 sn = _mm512_mul_ps(x, ps);
  __m512 pc = _mm512_fmadd_ps(x2, set1f(3.490463996058679e-06f), set1f(-0.00032586330780759454f));
  pc = _mm512_fmadd_ps(pc, x2, set1f(0.015854282304644585f));
  pc = _mm512_fmadd_ps(pc, x2, set1f(-0.3084251284599304f));
  const __m512 cs = _mm512_fmadd_ps(pc, x2, set1f(1.0f));
  // The octant's swap and signs; a sign is flipped on the product's bits.
  const __m512i bx = _mm512_xor_si512(b, _mm512_slli_epi32(b, 1));
  const __mmask16 swap = _mm512_test_epi32_mask(bx, set1u(0x40000000u));
  const __m512i r0 = _mm512_castps_si512(_mm512_mul_ps(r, _mm512_mask_blend_ps(swap, cs, sn)));
  const __m512i r1 = _mm512_castps_si512(_mm512_mul_ps(r, _mm512_mask_blend_ps(swap, sn, cs)));
  const __m512i sign = set1u(0x80000000u);
  *z0 = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(r0, bx, sign, 0x78));  // r0 ^ (bx & sign)
  *z1 = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(r1, b, sign, 0x78));
}

// The 32 normals of one group (8 blocks) in element order: *first = elements 0..15, *second =
// 16..31. The pairs are arranged so that the outputs need no full transpose: lane 2j holds
// block j's pair (w0, w1), lane 2j+1 its pair (w2, w3), so za = z0 z2 z0 z2 ... and zb = z1 z3
// z1 z3 ..., and unpacklo/hi(za, zb) are whole blocks (0 2 4 6 and 1 3 5 7, one per 128 bits).
ZEROTH_AVX512 inline void normals8_regs(const __m512i w[4], __m512* first, __m512* second) {
  __m512 za, zb;
  box_muller16(interleave_low(w[0], w[2]), interleave_low(w[1], w[3]), &za, &zb);
  const __m512 lo = _mm512_unpacklo_ps(za, zb), hi = _mm512_unpackhi_ps(za, zb);
  *first = merge128(lo, hi, true);
  *second = merge128(lo, hi, false);
}

// The 32 normals of one group (8 blocks) at out[0 .. 32).
ZEROTH_AVX512 inline void normals8(const __m512i w[4], float* out) {
  __m512 a, b;
  normals8_regs(w, &a, &b);
  _mm512_storeu_ps(out, a);
  _mm512_storeu_ps(out + 16, b);
}

ZEROTH_AVX512 void philox_words(uint64_t seed, uint64_t stream, uint64_t block0, int64_t nblocks, uint32_t* out) {
  int64_t b = 0;
  for (; b + 32 <= nblocks; b += 32) {
    __m512i w[4][4];
    philox8xG<4>(seed, stream, block0 + static_cast<uint64_t>(b), w);
    for (int g = 0; g < 4; ++g) store_words8(w[g], out + 4 * b + 32 * g);
  }
  for (; b < nblocks; b += 8) {
    __m512i w[1][4];
    philox8xG<1>(seed, stream, block0 + static_cast<uint64_t>(b), w);
    alignas(64) uint32_t tmp[32];
    uint32_t* dst = nblocks - b >= 8 ? out + 4 * b : tmp;
    store_words8(w[0], dst);
    if (dst == tmp) std::memcpy(out + 4 * b, tmp, static_cast<size_t>(nblocks - b) * 16);
  }
}

// Requests the 8 cache lines of `prefetch` that go with blocks b .. b+31 (16 bytes a block).
ZEROTH_AVX512 inline void prefetch32(const char* prefetch, int64_t b) {
  if (!prefetch) return;
  for (int line = 0; line < 8; ++line) __builtin_prefetch(prefetch + 16 * b + 64 * line, 1, 3);
}

// Software-pipelined: the Philox rounds of the next 32 blocks sit in the same loop body as the
// transforms of the current 32, so the integer multiplies and the float math share the cycles
// (about 4% faster than one phase after the other). Each 32 blocks also request their 512 bytes
// of `prefetch` (6-14% faster fused passes on two threads here).
ZEROTH_AVX512 void normal_blocks(uint64_t seed, uint64_t stream, uint64_t block0, int64_t nblocks, float* out,
                                 const void* prefetch) {
  const char* pf = static_cast<const char*>(prefetch);
  int64_t b = 0;
  if (nblocks >= 32) {
    __m512i w[4][4];
    philox8xG<4>(seed, stream, block0, w);
    for (; b + 64 <= nblocks; b += 32) {
      prefetch32(pf, b);
      __m512i next[4][4];
      philox8xG<4>(seed, stream, block0 + static_cast<uint64_t>(b + 32), next);
      for (int g = 0; g < 4; ++g) normals8(w[g], out + 4 * b + 32 * g);
      for (int g = 0; g < 4; ++g)
        for (int k = 0; k < 4; ++k) w[g][k] = next[g][k];
    }
    prefetch32(pf, b);
    for (int g = 0; g < 4; ++g) normals8(w[g], out + 4 * b + 32 * g);
    b += 32;
  }
  for (; b < nblocks; b += 8) {
    __m512i w[1][4];
    philox8xG<1>(seed, stream, block0 + static_cast<uint64_t>(b), w);
    alignas(64) float tmp[32];
    float* dst = nblocks - b >= 8 ? out + 4 * b : tmp;
    normals8(w[0], dst);
    if (dst == tmp) std::memcpy(out + 4 * b, tmp, static_cast<size_t>(nblocks - b) * 16);
  }
}

// One piece of add_normal_pieces: dst[j] = fl(src[j] + fl(s·z[j])), j < 32, as perturb() rounds.
ZEROTH_AVX512 inline void add_piece(const __m512i w[4], __m512 sv, const float* src, float* dst) {
  __m512 z0, z1;
  normals8_regs(w, &z0, &z1);
  _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(src), _mm512_mul_ps(sv, z0)));
  _mm512_storeu_ps(dst + 16, _mm512_add_ps(_mm512_loadu_ps(src + 16), _mm512_mul_ps(sv, z1)));
}

// Four pieces per Philox call (its four groups of 8 blocks), then one at a time.
ZEROTH_AVX512 void add_normal_pieces(uint64_t seed, uint64_t stream, uint64_t block0, int64_t npieces, float s,
                                     const float* src, float* dst, int64_t dst_stride) {
  const __m512 sv = set1f(s);
  int64_t p = 0;
  for (; p + 4 <= npieces; p += 4) {
    __m512i w[4][4];
    philox8xG<4>(seed, stream, block0 + static_cast<uint64_t>(8 * p), w);
    for (int g = 0; g < 4; ++g) add_piece(w[g], sv, src + 32 * (p + g), dst + (p + g) * dst_stride);
  }
  for (; p < npieces; ++p) {
    __m512i w[1][4];
    philox8xG<1>(seed, stream, block0 + static_cast<uint64_t>(8 * p), w);
    add_piece(w[0], sv, src + 32 * p, dst + p * dst_stride);
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
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(w + i, _mm512_sub_ps(_mm512_loadu_ps(p + i), _mm512_mul_ps(sv, _mm512_loadu_ps(z + i))));
  if (i < n) {
    __mmask16 live;
    lanes_of(nullptr, i, n, &live);
    const __m512 pv = _mm512_maskz_loadu_ps(live, p + i), zv = _mm512_maskz_loadu_ps(live, z + i);
    _mm512_mask_storeu_ps(w + i, live, _mm512_sub_ps(pv, _mm512_mul_ps(sv, zv)));
  }
}

// The write masks of elements i .. i+63 (i a multiple of 64, all of them < n): the target's
// bitmask, or all ones.
ZEROTH_AVX512 inline uint64_t mask64(const uint8_t* mask, int64_t i) {
  if (!mask) return ~uint64_t{0};
  uint64_t bits;
  std::memcpy(&bits, mask + (i >> 3), 8);
  return bits;
}

// Whole groups of 64 elements run with full-width loads and one flags word kept in a register
// (a read-modify-write of flags[] per 16 elements made every iteration wait on the previous
// store); stores are unmasked unless the target has a mask. The tail runs 16 lanes at a time
// with masked loads. All loads of a group come before its stores, so w may alias p.
ZEROTH_AVX512 void perturb(float* p, const float* w, const float* z, float s, const uint8_t* mask, uint64_t* flags,
                           float* saved, int64_t n) {
  const __m512 sv = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const uint64_t write = mask64(mask, i);
    __m512 wv[4], d[4], v[4];
    for (int q = 0; q < 4; ++q) {
      wv[q] = _mm512_loadu_ps(w + i + 16 * q);
      d[q] = _mm512_mul_ps(sv, _mm512_loadu_ps(z + i + 16 * q));
      v[q] = _mm512_add_ps(wv[q], d[q]);
    }
    for (int q = 0; q < 4; ++q) {
      if (mask) _mm512_mask_storeu_ps(p + i + 16 * q, static_cast<__mmask16>(write >> (16 * q)), v[q]);
      else _mm512_storeu_ps(p + i + 16 * q, v[q]);
    }
    if (!flags) continue;
    uint64_t bad = 0;
    for (int q = 0; q < 4; ++q) {
      const __m512i back = _mm512_castps_si512(_mm512_sub_ps(v[q], d[q]));
      bad |= static_cast<uint64_t>(_mm512_cmpneq_epi32_mask(back, _mm512_castps_si512(wv[q]))) << (16 * q);
    }
    bad &= write;
    flags[i >> 6] = bad;
    if (bad)
      for (int q = 0; q < 4; ++q)
        _mm512_mask_storeu_ps(saved + i + 16 * q, static_cast<__mmask16>(bad >> (16 * q)), wv[q]);
  }
  if (i == n) return;
  if (flags) flags[i >> 6] = 0;
  for (; i < n; i += 16) {
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
  int64_t i = 0;
  if (!mask) {  // full-width loads and stores for the whole vectors
    for (; i + 16 <= n; i += 16) {
      __m512 v = _mm512_loadu_ps(w + i);
      if (use_keep) v = _mm512_mul_ps(v, kv);
      if (use_step) v = _mm512_sub_ps(v, _mm512_mul_ps(sv, _mm512_loadu_ps(z + i)));
      _mm512_storeu_ps(p + i, v);
    }
  }
  for (; i < n; i += 16) {
    __mmask16 live;
    const __mmask16 write = lanes_of(mask, i, n, &live);
    __m512 v = _mm512_maskz_loadu_ps(live, w + i);
    if (use_keep) v = _mm512_mul_ps(v, kv);
    if (use_step) v = _mm512_sub_ps(v, _mm512_mul_ps(sv, _mm512_maskz_loadu_ps(live, z + i)));
    _mm512_mask_storeu_ps(p + i, write, v);
  }
}

}  // namespace

const Kernels kAvx512Kernels = {philox_words, normal_blocks, expand_signs, unperturb, perturb, update,
                                 add_normal_pieces};

}  // namespace zeroth::perturb_detail
