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

// -2·ln(u) for u in (0, 1], from u's exponent e and mantissa m (m in [sqrt(1/2), sqrt(2))):
// ln(m) = 2·atanh(s), s = (m - 1)/(m + 1), |s| <= 0.1716, series to s^9 (error < 1e-9).
ZEROTH_HD float minus_two_log(float u) {
  const uint32_t bits = fbits(u);
  int32_t e = static_cast<int32_t>((bits >> 23) & 0xffu) - 127;
  float m = ffrombits((bits & 0x007fffffu) | 0x3f800000u);  // [1, 2)
  if (m > 1.41421356f) {
    m = fmul(m, 0.5f);
    e += 1;
  }
  const float s = fdiv(fadd(m, -1.0f), fadd(m, 1.0f));
  const float s2 = fmul(s, s);
  float p = ffma(s2, 0.11111111f, 0.14285715f);  // 1/9, 1/7
  p = ffma(p, s2, 0.2f);
  p = ffma(p, s2, 0.33333334f);
  p = ffma(p, s2, 1.0f);
  const float log_m = fmul(fmul(2.0f, s), p);
  // ln u = e·ln2 + ln m, with ln2 split in two parts so e·ln2 stays exact enough.
  const float fe = static_cast<float>(e);
  const float ln_u = fadd(ffma(fe, 0.693145752f, log_m), fmul(fe, 1.42860677e-6f));
  return fmul(-2.0f, ln_u);
}

// sin and cos of (pi/2)·x for x in [0, 1]: Taylor series in t = (pi/2)·x up to t^11 / t^12
// (|t| <= pi/2: truncation error < 6e-8).
ZEROTH_HD void sincos_quarter(float x, float* s, float* c) {
  const float t = fmul(x, 1.57079637f);
  const float t2 = fmul(t, t);
  float ps = ffma(t2, -2.50521084e-8f, 2.75573192e-6f);  // -1/11!, 1/9!
  ps = ffma(ps, t2, -1.98412698e-4f);                    // -1/7!
  ps = ffma(ps, t2, 8.33333333e-3f);                     // 1/5!
  ps = ffma(ps, t2, -1.66666667e-1f);                    // -1/3!
  ps = ffma(ps, t2, 1.0f);
  *s = fmul(t, ps);
  float pc = ffma(t2, 2.08767570e-9f, -2.75573192e-7f);  // 1/12!, -1/10!
  pc = ffma(pc, t2, 2.48015873e-5f);                     // 1/8!
  pc = ffma(pc, t2, -1.38888889e-3f);                    // -1/6!
  pc = ffma(pc, t2, 4.16666667e-2f);                     // 1/4!
  pc = ffma(pc, t2, -0.5f);
  *c = ffma(pc, t2, 1.0f);
}

// Box–Muller on two 32-bit words: r = sqrt(-2 ln u1), angle = 2·pi·u2 where u2's top two
// bits pick the quadrant and the next 24 bits the position inside it.
ZEROTH_HD void box_muller(uint32_t a, uint32_t b, float* z0, float* z1) {
  const float r = fsqrt(minus_two_log(uniform_open0(a)));
  const uint32_t quadrant = b >> 30;
  const float x = fmul(static_cast<float>((b >> 6) & 0xffffffu), 5.9604644775390625e-8f);  // [0, 1)
  float s, c;
  sincos_quarter(x, &s, &c);
  // Rotate (cos, sin) by quadrant·90°.
  float cs = c, sn = s;
  if (quadrant == 1u) { cs = -s; sn = c; }
  else if (quadrant == 2u) { cs = -c; sn = -s; }
  else if (quadrant == 3u) { cs = s; sn = -c; }
  *z0 = fmul(r, cs);
  *z1 = fmul(r, sn);
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
