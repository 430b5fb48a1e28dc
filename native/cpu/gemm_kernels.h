// gemm_kernels.h — the register-tile micro-kernels behind gemm_f32 (internal to native/cpu).
//
// Packed layouts (written by gemm.cpp, read here):
//   A micro-panel: kc × MR, element (row i, depth k) at a[k·MR + i]  (rows past the edge are 0)
//   B micro-panel: kc × NR, element (depth k, col j) at b[k·NR + j]  (cols past the edge are 0)
// Both start 64-byte aligned, and NR is a multiple of the vector width, so B loads are aligned.
//
// A micro-kernel computes acc = Σ_k a(:,k)·b(k,:) for the full MR × NR tile in registers,
// k ascending with one fused multiply-add per term (a plain multiply then add in the scalar
// kernel), then writes the valid m × n corner of it:
//   C = fma(alpha, acc, beta·C)    or, when beta == 0,    C = alpha·acc   (C is not read).
#pragma once
#include <cstdint>

namespace zeroth::gemm_detail {

using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n,
                             float alpha, float beta);

// Packs `rows` (<= panel) source rows, each a contiguous run of kc values with stride ld, as the
// columns of a kc × panel micro-panel: dst[k·panel + r] = src[r·ld + k], and 0 for r >= rows.
// It is the transposing half of packing: A stored [M, K] into MR-tall panels, and B stored
// [N, K] (nn.Linear weights, trans_b) into NR-wide panels. Never reads past src[r·ld + kc).
using PackTransposed = void (*)(const float* src, int64_t ld, int rows, int64_t kc, int panel, float* dst);

struct KernelInfo {
  const char* name;
  int mr, nr;          // register tile
  int64_t kc, mc, nc;  // default cache blocking for this kernel (mc a multiple of mr, nc of nr)
  MicroKernel kernel;
  PackTransposed pack_transposed;
};

void pack_transposed_scalar(const float* src, int64_t ld, int rows, int64_t kc, int panel, float* dst);
void pack_transposed_avx2(const float* src, int64_t ld, int rows, int64_t kc, int panel, float* dst);
void pack_transposed_avx512(const float* src, int64_t ld, int rows, int64_t kc, int panel, float* dst);

KernelInfo scalar_kernel();
KernelInfo avx2_kernel();
KernelInfo avx512_kernel();

}  // namespace zeroth::gemm_detail
