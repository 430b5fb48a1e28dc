// convert.cu — f32 -> bf16 element conversion on the device; contract in cuda/convert_cuda.h.
// A memory-bound grid-stride loop, vectorised by four when the pointers allow it: next to the
// product it feeds (M·K reads against M·N·K multiply-adds) it costs little either way.
#include <cuda_runtime.h>

#include <string>

#include "common.cuh"
#include "convert_cuda.h"

namespace zeroth {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// Four elements per step when x and out are 16- and 8-byte aligned; the caller launches the
// scalar kernel for the tail and for unaligned pointers.
__global__ void f32_to_bf16_quad_kernel(const float4* __restrict__ x, int64_t quads, ushort4* __restrict__ out) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < quads;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float4 v = x[t];
    out[t] = make_ushort4(f32_to_bf16(v.x), f32_to_bf16(v.y), f32_to_bf16(v.z), f32_to_bf16(v.w));
  }
}

__global__ void f32_to_bf16_kernel(const float* __restrict__ x, int64_t n, uint16_t* __restrict__ out) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[t] = f32_to_bf16(x[t]);
}

}  // namespace

void to_bf16(int device, const float* x, int64_t n, uint16_t* out) {
  ZCHECK(n >= 0, ZEROTH_E_SHAPE, "to_bf16 (cuda): size " + std::to_string(n) + " is negative");
  if (n == 0) return;
  cudaStream_t st = stream_for(device);
  const bool aligned = reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 8 == 0;
  const int64_t quads = aligned ? n / 4 : 0;
  if (quads > 0) {
    f32_to_bf16_quad_kernel<<<grid_for(static_cast<uint64_t>(quads), kThreads), kThreads, 0, st>>>(
        reinterpret_cast<const float4*>(x), quads, reinterpret_cast<ushort4*>(out));
    check_launch(device, "f32_to_bf16_quad_kernel");
  }
  const int64_t done = quads * 4;
  if (done < n) {
    f32_to_bf16_kernel<<<grid_for(static_cast<uint64_t>(n - done), kThreads), kThreads, 0, st>>>(x + done, n - done,
                                                                                                 out + done);
    check_launch(device, "f32_to_bf16_kernel");
  }
}

}  // namespace cuda
}  // namespace zeroth
