// gemm_kernel_scalar.cpp — the portable micro-kernel (any CPU, the readable reference of what
// the SIMD kernels compute). A 4 × 8 tile; each term is a rounded multiply then a rounded add,
// because baseline x86-64 has no fma instruction (libm's software fmaf would be far slower).
#include "gemm_kernels.h"

namespace zeroth::gemm_detail {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 8;

void kernel_scalar(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc, int m,
                   int n, float alpha, float beta) {
  float acc[kMR][kNR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) acc[i][j] += a[i] * b[j];
    a += kMR;
    b += kNR;
  }
  for (int i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    for (int j = 0; j < n; ++j) row[j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * row[j];
  }
}

}  // namespace

KernelInfo scalar_kernel() { return KernelInfo{"scalar 4x8", kMR, kNR, 256, 128, 1024, &kernel_scalar, &pack_transposed_scalar}; }

}  // namespace zeroth::gemm_detail
