// philox.h — the one random number generator of zeroth, shared by the CPU and CUDA backends.
//
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a
// counter-based generator, so the random value of element i of a tensor is a pure function
// of (seed, stream, i). Perturbations are regenerated from the seed, never stored, and are
// the same in any thread order, on any device, for any subset of tensors.
//
// Layout of one Philox call:
//   key     = (seed low 32, seed high 32)
//   counter = (block low 32, block high 32, stream low 32, stream high 32)
// Normal:     block b yields the standard normals of elements 4b .. 4b+3 (two Box–Muller pairs).
// Rademacher: block b yields the signs of elements 128b .. 128b+127, bit (i mod 32) of word
//             (i mod 128) / 32, a set bit meaning +1.
// Stream ids: stream_id(name) = FNV-1a 64 of the parameter's UTF-8 name (offset basis
//             0xcbf29ce484222325, prime 0x100000001b3), so z of a tensor depends only on its name.
//
// Bit-identical math: the normal transform uses only IEEE-exact operations (integer ops,
// correctly rounded mul/add/div/sqrt and explicit fma) with our own polynomial log and sin/cos,
// so CPU (scalar and SIMD) and CUDA produce the same bits. Host code is compiled with
// -ffp-contract=off; device code uses the _rn intrinsics, which nvcc never contracts.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "half.h"
#include "hostdevice.h"

namespace zeroth {
namespace rng {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1

struct U32x4 {
  uint32_t v[4];
};

ZEROTH_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  *lo = static_cast<uint32_t>(p);
}

ZEROTH_HD U32x4 philox4x32_10(U32x4 ctr, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(kPhiloxM0, ctr.v[0], &hi0, &lo0);
    mulhilo32(kPhiloxM1, ctr.v[2], &hi1, &lo1);
    ctr = U32x4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return ctr;
}

ZEROTH_HD U32x4 philox_block(uint64_t seed, uint64_t stream, uint64_t block) {
  return philox4x32_10(U32x4{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                              static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)}},
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// FNV-1a 64 of a byte string: the documented stream id of a parameter name.
ZEROTH_HD uint64_t stream_id(const char* name, size_t length) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < length; ++i) {
    h ^= static_cast<uint8_t>(name[i]);
    h *= 0x100000001b3ull;
  }
  return h;
}

// ---- IEEE-exact element math (the same on host and device) -----------------------------------

ZEROTH_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
ZEROTH_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
ZEROTH_HD float ffma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fmaf(a, b, c);
#endif
}
ZEROTH_HD float fdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
ZEROTH_HD float fsqrt(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
// Bit casts, shared with the f16/bf16 conversions.
ZEROTH_HD uint32_t fbits(float f) { return f32_bits(f); }
ZEROTH_HD float ffrombits(uint32_t u) { return f32_from_bits(u); }

// Uniform in (0, 1]: 24 random bits, offset by one so log() is finite.
ZEROTH_HD float uniform_open0(uint32_t x) { return fmul(static_cast<float>((x >> 8) + 1u), 5.9604644775390625e-8f); }

// -2·ln(u) for u in (0, 1] (no zero, infinity or NaN: uniform_open0's values).
// Range reduction on the bits: u = m·2^e with m in [sqrt(1/2), sqrt(2)) (subtracting the bits
// of sqrt(1/2) = 0x3f3504f3 makes the exponent field e and leaves m's bits; integer ops only).
// ln m = 2·atanh(s), s = (m - 1)/(m + 1), |s| <= 0.1716: 2s·(1 + c1·s² + c2·s⁴ + c3·s⁶), a
// minimax fit (relative error 8e-10) with the factor -4 = -2·2 folded into the coefficients
// (exact: a power of two). m - 1 is exact (Sterbenz), so -2·ln(u) keeps its relative accuracy
// as u -> 1. One division per pair: on the CPU it costs about a multiply here (the divider runs
// beside the FMA pipes), and it halves the polynomial a division-free log1p would need (degree
// 10 for the same accuracy). Measured over all 2^24 inputs: within 2.6 ulp of the result.
ZEROTH_HD float minus_two_log(float u) {
  const uint32_t t = fbits(u) - 0x3f3504f3u;
  const int32_t e = static_cast<int32_t>(t) >> 23;  // arithmetic shift (GCC, Clang, nvcc): floor
  const float m = ffrombits(fbits(u) - (t & 0xff800000u));
  const float s = fdiv(fadd(m, -1.0f), fadd(m, 1.0f));
  const float w = fmul(s, s);
  float p = ffma(w, -0.5974159240722656f, -0.7995516657829285f);
  p = ffma(p, w, -1.333335518836975f);
  p = ffma(p, w, -4.0f);
  return ffma(static_cast<float>(e), -1.38629436f, fmul(s, p));  // e·(-2 ln 2) - 2 ln m
}

// sin and cos of (pi/4)·x for x in [0, 1]: minimax polynomials, sin x·P(x²) of degree 7
// (relative error 3e-8), cos 1 + Q(x²) of degree 8 (absolute error 4e-10), coefficients
// fitted with the earlier ones already rounded to float. On [0, pi/4] neither function is
// computed by cancellation, so both are within 1.6 ulp of the true values (all 2^23 + 1
// inputs box_muller produces, measured against libm in double). A quarter turn would need
// degree 9 / 10 and computes cos near pi/2 by cancellation (the previous quarter-turn Taylor
// series was within 1.9e-7 absolute).
ZEROTH_HD void sincos_octant(float x, float* s, float* c) {
  const float x2 = fmul(x, x);
  float ps = ffma(x2, -3.660915172076784e-05f, 0.0024910164065659046f);
  ps = ffma(ps, x2, -0.08074583113193512f);
  ps = ffma(ps, x2, 0.7853981852531433f);
  *s = fmul(x, ps);
  float pc = ffma(x2, 3.490463996058679e-06f, -0.00032586330780759454f);
  pc = ffma(pc, x2, 0.015854282304644585f);
  pc = ffma(pc, x2, -0.3084251284599304f);
  *c = ffma(pc, x2, 1.0f);
}

// sin and cos of (pi/2)·x for x in [0, 1], from sincos_octant (reflected about pi/4 above
// x = 1/2; 2x and 1 - x are exact for x = k·2^-24). box_muller works on octants directly; this
// is the quarter-turn form for other callers and tests.
ZEROTH_HD void sincos_quarter(float x, float* s, float* c) {
  if (x <= 0.5f) {
    sincos_octant(fmul(x, 2.0f), s, c);
  } else {
    sincos_octant(fmul(fadd(1.0f, -x), 2.0f), c, s);
  }
}

// Box–Muller on two 32-bit words: r = sqrt(-2 ln u1) with u1 = uniform_open0(a), angle =
// (pi/2)·(b >> 30) + (pi/2)·((b >> 6) mod 2^24)/2^24. The angle's octant o = b >> 29 picks
// the signs and whether sin and cos trade places; its position inside the octant (23 bits,
// measured from the octant's far end when o is odd) is the argument of sincos_octant. The
// signs are flipped on the products' bits (r >= 0, so fl(r·(-c)) = -fl(r·c)).
// Accuracy against the same Box–Muller in float64 on the same words (10^7 normals, checked by
// test/native/test_perturb.cpp): |z - z64| <= 2.2e-7·max(1, |z64|), within 3 ulp of
// max(1, |z|); the previous transform (atanh series to s^9, Taylor sin/cos on a quarter turn)
// was within 6.6e-7 (5.6 ulp).
ZEROTH_HD void box_muller(uint32_t a, uint32_t b, float* z0, float* z1) {
  const float r = fsqrt(minus_two_log(uniform_open0(a)));
  uint32_t pos = (b >> 6) & 0x7fffffu;
  if (b & 0x20000000u) pos = 0x800000u - pos;  // odd octant
  float s, c;
  sincos_octant(fmul(static_cast<float>(pos), 1.1920928955078125e-7f), &s, &c);  // pos·2^-23, exact
  const uint32_t bx = b ^ (b << 1);  // bit 31: b31 ^ b30 (cos < 0), bit 30: b30 ^ b29 (swap)
  const bool swap = (bx & 0x40000000u) != 0;
  *z0 = ffrombits(fbits(fmul(r, swap ? s : c)) ^ (bx & 0x80000000u));
  *z1 = ffrombits(fbits(fmul(r, swap ? c : s)) ^ (b & 0x80000000u));
}

// The four standard normals of block `block` (elements 4·block .. 4·block+3).
ZEROTH_HD void normal4(uint64_t seed, uint64_t stream, uint64_t block, float out[4]) {
  const U32x4 r = philox_block(seed, stream, block);
  box_muller(r.v[0], r.v[1], &out[0], &out[1]);
  box_muller(r.v[2], r.v[3], &out[2], &out[3]);
}

ZEROTH_HD float normal_at(uint64_t seed, uint64_t stream, uint64_t index) {
  float z[4];
  normal4(seed, stream, index >> 2, z);
  return z[index & 3];
}

ZEROTH_HD float rademacher_at(uint64_t seed, uint64_t stream, uint64_t index) {
  const U32x4 r = philox_block(seed, stream, index >> 7);
  const uint32_t word = r.v[(index >> 5) & 3];
  return ((word >> (index & 31)) & 1u) ? 1.0f : -1.0f;
}

enum class Distribution : int { Normal = 0, Rademacher = 1 };

}  // namespace rng
}  // namespace zeroth
