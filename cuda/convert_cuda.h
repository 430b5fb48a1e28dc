// convert_cuda.h — f32 -> bf16 on the device: the activation side of a bf16 product. A device
// model whose matrices are bf16 (Model::to_device with ZEROTH_BF16) multiplies them on tensor
// cores (gemm_bf16), which take both operands in bf16, so each linear layer's f32 input is
// rounded once into a workspace buffer first. Callable from plain C++; only declared when the
// build has the CUDA backend (as gemm_cuda.h).
//
// Rounding: round to nearest even through core/half.h's f32_to_bf16, the conversion
// tensor_copy(…, ZEROTH_BF16, …) and perturb.h's bf16 writes use, so the device and the host
// agree bit for bit (NaN stays NaN, overflow goes to infinity).
#pragma once
#ifdef ZEROTH_WITH_CUDA
#include <cstdint>

namespace zeroth {
namespace cuda {

// out[i] = bf16(x[i]) for i < n (named to_bf16, not f32_to_bf16, so that half.h's scalar
// f32_to_bf16 stays visible inside namespace cuda); device pointers on cuda:`device`, queued on its stream.
// E_SHAPE for n < 0.
void to_bf16(int device, const float* x, int64_t n, uint16_t* out);

}  // namespace cuda
}  // namespace zeroth
#endif  // ZEROTH_WITH_CUDA
