// gemm_cuda.h — the CUDA twin of native/cpu/gemm.h, callable from plain C++ (no CUDA types).
// Only declared when the build has the CUDA backend (as perturb_cuda.h):
//
//   #ifdef ZEROTH_WITH_CUDA
//   #include "../../cuda/gemm_cuda.h"   // from native/*/ or test/native/
//   cuda::gemm_f32(false, true, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N, desc);  // device pointers
//   #endif
//
// Contract: gemm.h's, with device pointers. C = alpha·op(A)·op(B) + beta·C, row-major, the same
// transposes and leading dimensions, beta == 0 ignores C (NaN included), K == 0 or alpha == 0
// only scales C. The perturbation descriptor reads every element of B as
// fl(b + fl(scale·z(offset))), offset its position in B's storage (r·ldb + c), exactly the value
// perturb.h's perturb / perturb_to writes, so a perturbed product equals the plain product on
// weights perturbed in place. Work is queued on the device's stream (common.cuh); the call
// returns once the kernel is queued.
//
// Precision. gemm_f32 multiplies and accumulates in f32 with one fused multiply-add per term
// (no TF32): the losses of the two perturbed forwards are subtracted, and TF32's 10-bit
// mantissa would bury a perturbation of 1e-3. The summation order differs from the CPU's (which
// depends on its kc), so results agree to rounding: |Δ| <= K·2^-23·Σ|a·b| per element, not bits.
// gemm_bf16 / gemm_f16 multiply 16-bit inputs on tensor cores and accumulate in f32; a
// perturbed B is formed in f32 and rounded once to the input type (round to nearest even),
// as perturb.h writes a perturbed bf16/f16 weight.
#pragma once
#ifdef ZEROTH_WITH_CUDA
#include <cstdint>

#include "../native/include/zeroth.h"
#include "cpu/gemm.h"

namespace zeroth {
namespace cuda {

// The device is the one `C` lives on (A and B must be on it too; E_DEVICE for host memory or
// another device).
void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const PerturbDesc& b_perturb = {});

// A and B hold bf16 (gemm_bf16) or f16 (gemm_f16) bit patterns; C is f32.
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc,
               const PerturbDesc& b_perturb = {});
void gemm_f16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
              int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc,
              const PerturbDesc& b_perturb = {});

// The CUDA device index of a device pointer, or E_DEVICE naming `what` when it is host memory
// or not CUDA memory at all.
int device_of_pointer(const void* p, const char* what);

}  // namespace cuda
}  // namespace zeroth
#endif  // ZEROTH_WITH_CUDA
