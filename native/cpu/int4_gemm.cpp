// int4_gemm.cpp — dispatch of the quantized GEMV / GEMM (int4_gemm.h), the scalar reference row
// kernel, and the panel-decoding GEMM.
#include "cpu/int4_gemm.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/gemm.h"
#include "cpu/int4_gemm_kernels.h"

namespace zeroth {
namespace detail {

void deinterleave_x(const float* x, int64_t cols, int64_t block, float* xd) {
  const int64_t half = block / 2;
  for (int64_t b = 0; b + block <= cols; b += block)
    for (int64_t j = 0; j < half; ++j) {
      xd[b + j] = x[b + 2 * j];
      xd[b + half + j] = x[b + 2 * j + 1];
    }
}

// The readable reference: every weight through QuantMatrix::value's expression, one fma each.
void gemv_rows_scalar(const QuantMatrix& w, const float* x, int64_t r0, int64_t r1, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    float acc = 0.0f;
    for (int64_t g = 0; g < w.groups; ++g) {
      const int64_t c0 = g * w.group_size, c1 = std::min(c0 + w.group_size, w.cols);
      const float s = w.scale(r, g), z = w.zero(r, g);
      for (int64_t c = c0; c < c1; ++c) acc = std::fma((static_cast<float>(w.code(r, c)) - z) * s, x[c], acc);
    }
    y[r] = acc;
  }
}

}  // namespace detail

namespace {

enum class GemvPath { Scalar, Int4Avx2, Int4Avx512, Int8Avx2, Int8Avx512 };

GemvPath gemv_path(const QuantMatrix& w) {
  const SimdLevel l = simd_level();
  if (w.bits == 8) {
    if (l == SimdLevel::Avx512) return GemvPath::Int8Avx512;
    if (l == SimdLevel::Avx2) return GemvPath::Int8Avx2;
    return GemvPath::Scalar;
  }
  if (l == SimdLevel::Avx512 && detail::int4_gemv_fits(w, 32)) return GemvPath::Int4Avx512;
  if (l >= SimdLevel::Avx2 && detail::int4_gemv_fits(w, 16)) return GemvPath::Int4Avx2;
  return GemvPath::Scalar;
}

// y[out] = W·x for one x row.
void gemv(const QuantMatrix& w, const float* x, float* y, std::vector<float>& xd) {
  const GemvPath p = gemv_path(w);
  if (p == GemvPath::Int4Avx2 || p == GemvPath::Int4Avx512) {
    const int64_t block = p == GemvPath::Int4Avx512 ? 32 : 16;
    xd.resize(static_cast<size_t>(std::max<int64_t>(w.cols, 1)));
    detail::deinterleave_x(x, w.cols, block, xd.data());
  }
  const float* xdp = xd.data();
  // ~64 KiB of int4 codes per chunk at 4096 columns: large enough to amortise the hand-off.
  // Chunks of whole 4-row steps (the AVX-512 kernel's unit), at least 64 rows so the kernel's
  // per-chunk rebuild of x stays a small share of the work.
  const int64_t grain = (std::max<int64_t>(64, (1 << 17) / std::max<int64_t>(w.cols, 1)) + 3) / 4 * 4;
  parallel_for(w.rows, grain, [&](int64_t r0, int64_t r1) {
    switch (p) {
      case GemvPath::Int4Avx512: detail::int4_gemv_rows_avx512(w, x, xdp, r0, r1, y); break;
      case GemvPath::Int4Avx2: detail::int4_gemv_rows_avx2(w, x, xdp, r0, r1, y); break;
      case GemvPath::Int8Avx512: detail::int8_gemv_rows_avx512(w, x, r0, r1, y); break;
      case GemvPath::Int8Avx2: detail::int8_gemv_rows_avx2(w, x, r0, r1, y); break;
      case GemvPath::Scalar: detail::gemv_rows_scalar(w, x, r0, r1, y); break;
    }
  });
}

// M > 1: decode a panel of `nb` W rows (all columns) per task and multiply every x row with it.
void gemm(const QuantMatrix& w, int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy) {
  constexpr int64_t kPanelFloats = 1 << 17;  // 512 KiB: stays in L2 while all M rows pass over it
  const int64_t nb = std::clamp<int64_t>(kPanelFloats / std::max<int64_t>(w.cols, 1) / 8 * 8, 8, 256);
  const int64_t panels = (w.rows + nb - 1) / nb;
  parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> panel(static_cast<size_t>(nb * w.cols));
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t r0 = p * nb, r1 = std::min(r0 + nb, w.rows);
      dequantize_rows(w, r0, r1, panel.data(), w.cols);
      // Nested inside a parallel_for chunk, gemm_f32 runs on this thread only.
      gemm_f32(false, true, M, r1 - r0, w.cols, 1.0f, x, ldx, panel.data(), w.cols, 0.0f, y + r0, ldy);
    }
  });
}

}  // namespace

void quant_matmul(const QuantMatrix& w, int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy) {
  ZCHECK(M >= 0 && ldx >= w.cols && ldy >= w.rows, ZEROTH_E_SHAPE, "quant_matmul: bad sizes or strides");
  if (M == 0 || w.rows == 0) return;
  if (w.cols == 0) {
    for (int64_t m = 0; m < M; ++m) std::fill(y + m * ldy, y + m * ldy + w.rows, 0.0f);
    return;
  }
  // A column-permuted weight (quant.h): gather x into stored-column order once, then the kernels
  // run unchanged on the stored layout. One pass over M·cols floats against M·rows·cols of work.
  std::vector<float> xg;
  if (w.perm) {
    xg.resize(static_cast<size_t>(M * w.cols));
    parallel_for(M, std::max<int64_t>(1, (1 << 16) / w.cols), [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) {
        const float* src = x + m * ldx;
        float* dst = xg.data() + m * w.cols;
        for (int64_t c = 0; c < w.cols; ++c) dst[c] = src[w.perm[c]];
      }
    });
    x = xg.data();
    ldx = w.cols;
  }
  if (M == 1) {
    std::vector<float> xd;
    gemv(w, x, y, xd);
    return;
  }
  gemm(w, M, x, ldx, y, ldy);
}

TensorPtr quant_matmul(const Tensor& x, const Tensor& q) {
  std::vector<float> storage;
  const QuantMatrix w = quant_matrix(q, storage);
  require_dtype(x, {ZEROTH_F32}, "int4Matmul: x");
  require_cpu(x, "int4Matmul: x");
  ZCHECK(x.ndim() == 1 || x.ndim() == 2, ZEROTH_E_SHAPE,
         "int4Matmul: x must be [in] or [M, in], got " + shape_string(x.shape));
  const int64_t in = x.shape.back(), M = x.ndim() == 2 ? x.shape[0] : 1;
  ZCHECK(in == w.cols, ZEROTH_E_SHAPE,
         "int4Matmul: x has " + std::to_string(in) + " input features but the weight " + shape_string(q.shape) +
             " expects " + std::to_string(w.cols) + " (the weight is [out, in])");
  const Shape out_shape = x.ndim() == 2 ? Shape{M, w.rows} : Shape{w.rows};
  TensorPtr y = tensor_empty(ZEROTH_F32, out_shape, x.device());
  quant_matmul(w, M, x.as<float>(), in, y->as<float>(), w.rows);
  return y;
}

const char* quant_gemv_kernel_name(const QuantMatrix& w) {
  switch (gemv_path(w)) {
    case GemvPath::Int4Avx512: return "int4 avx512";
    case GemvPath::Int4Avx2: return "int4 avx2";
    case GemvPath::Int8Avx512: return "int8 avx512";
    case GemvPath::Int8Avx2: return "int8 avx2";
    case GemvPath::Scalar: break;
  }
  return w.bits == 8 ? "int8 scalar" : "int4 scalar";
}

}  // namespace zeroth
