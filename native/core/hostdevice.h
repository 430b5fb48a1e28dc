// hostdevice.h — marks element math that must compile for both the CPU and CUDA,
// so the two backends compute the same bits from one source.
#pragma once
#if defined(__CUDACC__)
#  define ZEROTH_HD __host__ __device__ __forceinline__
#else
#  define ZEROTH_HD inline
#endif
