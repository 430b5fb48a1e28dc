// int4_gemm_kernels.h — the per-ISA GEMV row kernels behind int4_gemm.h (internal).
//
// Each computes y[r] = Σ_c value(r, c)·x[c] for r in [r0, r1). The int4 kernels read `xd`, x
// de-interleaved per block of B columns (B = 32 for AVX-512, 16 for AVX2: xd[b·B + j] = x[b·B + 2j],
// xd[b·B + B/2 + j] = x[b·B + 2j + 1] for j < B/2) over the first floor(in / B)·B columns, and x itself
// for the rest. They need no group boundary inside a B-column block (int4_gemv_fits): a group size
// that is a multiple of B, or a single group per row. Odd `cols` are fine (rows that start in a
// high nibble take a second load). The AVX-512 kernel also builds, per call, its own layout of x
// for 128-column steps (int4_gemm_avx512.cpp).
#pragma once
#include <cstdint>

#include "cpu/quant.h"

namespace zeroth::detail {

inline bool int4_gemv_fits(const QuantMatrix& w, int64_t block) {
  return w.group_size % block == 0 || w.groups == 1;
}
// Builds xd for block width B (size floor(cols / B)·B).
void deinterleave_x(const float* x, int64_t cols, int64_t block, float* xd);

void gemv_rows_scalar(const QuantMatrix& w, const float* x, int64_t r0, int64_t r1, float* y);
void int4_gemv_rows_avx2(const QuantMatrix& w, const float* x, const float* xd, int64_t r0, int64_t r1, float* y);
void int4_gemv_rows_avx512(const QuantMatrix& w, const float* x, const float* xd, int64_t r0, int64_t r1, float* y);
void int8_gemv_rows_avx2(const QuantMatrix& w, const float* x, int64_t r0, int64_t r1, float* y);
void int8_gemv_rows_avx512(const QuantMatrix& w, const float* x, int64_t r0, int64_t r1, float* y);

}  // namespace zeroth::detail
