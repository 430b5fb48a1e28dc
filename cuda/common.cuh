// common.cuh — what every .cu file of the CUDA backend shares: cudaError -> zeroth::Error,
// the per-device stream, launch checks, and the element-type traits of the kernels.
//
// Only .cu files include this (it needs the CUDA runtime headers); C++ callers use
// cuda/perturb_cuda.h, which has no CUDA types in it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/errors.h"
#include "core/half.h"
#include "core/philox.h"
#include "core/tensor.h"

namespace zeroth {
namespace cuda {

// Throws the zeroth::Error for a failed CUDA call: E_OOM for cudaErrorMemoryAllocation,
// E_DEVICE for everything else, with cudaGetErrorName/String and what we were doing.
[[noreturn]] void throw_cuda_error(cudaError_t err, int device, const char* what);

inline void check(cudaError_t err, int device, const char* what) {
  if (err != cudaSuccess) throw_cuda_error(err, device, what);
}

// Makes `device` current on this thread and returns its stream (created on first use).
// Every kernel and copy of the backend runs on this one stream, so work on a device is
// ordered, and memory freed to the cache can be reused by later work without a sync.
cudaStream_t stream_for(int device);

// After a kernel launch: turns a launch error (bad configuration, no kernel image for the
// GPU) into an E_DEVICE naming the kernel.
void check_launch(int device, const char* kernel);

// The CUDA device index of a tensor, or E_DEVICE naming `what` if it is not on a GPU.
int cuda_index_of(const Tensor& t, const char* what);

// Grid size for `work_items` items of `per_block` each, capped so a grid-stride loop covers
// the rest (the cap keeps the grid small enough for any device and any tensor size).
inline unsigned grid_for(uint64_t work_items, unsigned per_block) {
  const uint64_t blocks = (work_items + per_block - 1) / per_block;
  const uint64_t cap = 65535ull * 8ull;
  return static_cast<unsigned>(blocks == 0 ? 1 : (blocks < cap ? blocks : cap));
}

// ---- element types of trainable tensors ---------------------------------------------------
// Each trait converts its storage to f32 and back with the shared half.h conversions, so the
// device rounds exactly as the CPU does; `bits` is the storage's bit pattern, compared when
// checking that a perturbation rounds back exactly (bit equality, so -0 and NaN count).
// Stochastic rounding of f16/bf16 (QuZO), the device copy of perturb.cpp's bf16_stochastic /
// f16_stochastic (same operations, same bits): round |v| up to the next representable
// magnitude with probability (distance from the lower one) / gap, from the random word r.
// Finite values never become infinite; NaN and infinities convert as round-to-nearest does.
__device__ __forceinline__ uint16_t bf16_stochastic(float v, uint32_t r) {
  const uint32_t u = __float_as_uint(v);
  if ((u & 0x7fffffffu) >= 0x7f800000u) return f32_to_bf16(v);
  uint32_t t = (u + (r & 0xffffu)) >> 16;
  if ((t & 0x7f80u) == 0x7f80u) t = u >> 16;  // would round to infinity: keep the largest finite
  return static_cast<uint16_t>(t);
}
__device__ __forceinline__ uint16_t f16_stochastic(float v, uint32_t r) {
  const uint32_t u = __float_as_uint(v);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x477ff000u) return f32_to_f16(v);
  if (abs >= 0x38800000u) {  // a normal f16: 13 bits below the kept mantissa
    uint32_t t = (abs - 0x38000000u + (r & 0x1fffu)) >> 13;
    if (t >= 0x7c00u) t = 0x7bffu;
    return static_cast<uint16_t>(sign | t);
  }
  // Subnormal f16 (units of 2^-24): value = mant >> shift plus a fraction rem / 2^shift.
  const uint32_t exp = abs >> 23;
  if (exp == 0) return static_cast<uint16_t>(sign);
  const uint32_t shift = 126u - exp;  // 14 and up
  if (shift > 56u) return static_cast<uint16_t>(sign);
  const uint64_t mant = (abs & 0x7fffffu) | 0x800000u;
  uint64_t t = shift >= 64u ? 0 : (mant >> shift);
  const uint64_t rem = mant & ((uint64_t{1} << shift) - 1u);
  const uint64_t frac32 = shift <= 32u ? rem << (32u - shift) : rem >> (shift - 32u);
  if (static_cast<uint64_t>(r) < frac32) ++t;
  return static_cast<uint16_t>(sign | t);
}

struct F32 {
  using Storage = float;
  using Vec4 = float4;
  static __device__ __forceinline__ float to_f32(float v) { return v; }
  static __device__ __forceinline__ float from_f32(float v) { return v; }
  static __device__ __forceinline__ uint32_t bits(float v) { return __float_as_uint(v); }
  static __device__ __forceinline__ float from_bits(uint32_t b) { return __uint_as_float(b); }
  static __device__ __forceinline__ float stochastic(float v, uint32_t) { return v; }  // f32: exact already
};
struct F16 {
  using Storage = uint16_t;
  using Vec4 = ushort4;
  static __device__ __forceinline__ float to_f32(uint16_t v) { return f16_to_f32(v); }
  static __device__ __forceinline__ uint16_t from_f32(float v) { return f32_to_f16(v); }
  static __device__ __forceinline__ uint32_t bits(uint16_t v) { return v; }
  static __device__ __forceinline__ uint16_t from_bits(uint32_t b) { return static_cast<uint16_t>(b); }
  static __device__ __forceinline__ uint16_t stochastic(float v, uint32_t r) { return f16_stochastic(v, r); }
};
struct BF16 {
  using Storage = uint16_t;
  using Vec4 = ushort4;
  static __device__ __forceinline__ float to_f32(uint16_t v) { return bf16_to_f32(v); }
  static __device__ __forceinline__ uint16_t from_f32(float v) { return f32_to_bf16(v); }
  static __device__ __forceinline__ uint32_t bits(uint16_t v) { return v; }
  static __device__ __forceinline__ uint16_t from_bits(uint32_t b) { return static_cast<uint16_t>(b); }
  static __device__ __forceinline__ uint16_t stochastic(float v, uint32_t r) { return bf16_stochastic(v, r); }
};

// Four consecutive elements starting at a multiple of 4 (16-byte aligned for f32, 8-byte
// for the 16-bit types, since allocations are 256-byte aligned): one vector load/store.
template <typename E>
__device__ __forceinline__ void load4(const typename E::Storage* p, typename E::Storage out[4]) {
  const typename E::Vec4 v = *reinterpret_cast<const typename E::Vec4*>(p);
  out[0] = v.x;
  out[1] = v.y;
  out[2] = v.z;
  out[3] = v.w;
}
template <typename E>
__device__ __forceinline__ void store4(typename E::Storage* p, const typename E::Storage in[4]) {
  typename E::Vec4 v;
  v.x = in[0];
  v.y = in[1];
  v.z = in[2];
  v.w = in[3];
  *reinterpret_cast<typename E::Vec4*>(p) = v;
}

// z for the four elements first .. first+3 (first a multiple of 4) of a stream: the same
// values as rng::normal_at / rng::rademacher_at on the CPU. One Philox call per four normals;
// for Rademacher the 32 lanes of a warp that read 128 consecutive elements compute the same
// Philox block, which the SIMT warp executes once.
__device__ __forceinline__ void z4(uint64_t seed, uint64_t stream, rng::Distribution dist, uint64_t first,
                                   float z[4]) {
  if (dist == rng::Distribution::Normal) {
    rng::normal4(seed, stream, first >> 2, z);
  } else {
    const rng::U32x4 r = rng::philox_block(seed, stream, first >> 7);
    const uint32_t word = r.v[(first >> 5) & 3];
    const uint32_t shift = static_cast<uint32_t>(first & 31);
#pragma unroll
    for (int j = 0; j < 4; ++j) z[j] = ((word >> (shift + j)) & 1u) ? 1.0f : -1.0f;
  }
}

}  // namespace cuda
}  // namespace zeroth
