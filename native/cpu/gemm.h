// gemm.h — packed f32 GEMM for the CPU: C = alpha·op(A)·op(B) + beta·C.
//
// Blocked like BLIS/GotoBLAS (gemm.cpp): B panels are packed once per (kc × nc) block, A panels
// per (mc × kc) block, and a SIMD micro-kernel chosen at run time computes register tiles
// (AVX-512 14×32, AVX2+FMA 6×16, scalar 4×8; gemm_kernel_*.cpp). Multithreaded over the pool in
// core/parallel.h; the result is the same for any thread count (only kc and the kernel decide
// the summation order).
//
// The weight operand may carry a perturbation descriptor (DESIGN principle 2): when
// `b_perturb.active`, every element of B is read as fl(b + fl(scale·z(offset))) (add_scaled_z in
// perturb.h) while its panel is packed, so a perturbed forward writes no weights. `offset` is the
// element's position in B's own storage plus b_perturb.base: (k, n) of op(B) is at k·ldb + n when
// B is stored [K, N] (GPT-2 Conv1D) and at n·ldb + k when stored [N, K] (nn.Linear, trans_b); for
// a dense tensor (ldb = its row length, base 0) that is the element's index in the tensor. The product is bit-identical
// to gemm_f32 on a copy of B perturbed in place with the same values (test/native/test_gemm.cpp).
#pragma once
#include <cstdint>

#include "core/philox.h"

namespace zeroth {

struct PerturbDesc {
  bool active = false;
  uint64_t seed = 0;
  uint64_t stream = 0;
  float scale = 0.0f;
  rng::Distribution dist = rng::Distribution::Normal;
  // The index, in the perturbed tensor, of B's first element when B is a slice of it (the LM
  // head read a vocabulary chunk at a time): element offsets are counted from the tensor's
  // start, so a slice reads the same z as the whole. Read by gemm_f32 (CPU and CUDA) only.
  uint64_t base = 0;
};

// Row-major matrices. op(A) is [M, K]: A stored [M, K] (lda >= K) or, if trans_a, [K, M].
// op(B) is [K, N]: B stored [K, N] (ldb >= N) or, if trans_b, [N, K] (ldb >= K).
// C is [M, N] with ldc >= N. beta == 0 ignores C's previous contents (NaN included).
void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const PerturbDesc& b_perturb = {});

// The plain triple loop (accumulating in double), for tests and the benchmark's naive figure.
void gemm_f32_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// ---- introspection and tuning (tests and benchmarks) ---------------------------------------

// The micro-kernel the current SIMD level runs, e.g. "avx512 14x32".
const char* gemm_f32_kernel_name();

// Cache-blocking override: kc (depth of a packed panel), mc (rows of op(A) per packed block),
// nc (columns of op(B) per packed block). 0 restores the tuned default of each. Tests use tiny
// blocks to exercise every blocking edge on small matrices; results do not depend on mc or nc,
// only on kc (it decides where partial sums are added into C).
void gemm_f32_set_blocking(int64_t kc, int64_t mc, int64_t nc);

// The peak f32 rate of this machine at the current SIMD level, in GFLOP/s (an FMA counts 2):
// `threads` threads run independent register-only FMA chains for `seconds` (gemm_peak.cpp).
double measure_peak_gflops(double seconds, int threads);

}  // namespace zeroth
