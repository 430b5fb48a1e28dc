// quant.h — group-wise int4 and per-channel int8 quantization of 2-D f32 weights, and the
// validated view of a quantized tensor that the fused kernels (int4_gemm.h) read.
//
// A quantized weight is a Tensor of shape [rows, cols] (rows = output features) with:
//   int4: dtype ZEROTH_INT4, codes 0..15 packed two per byte by element index
//         (element i = r·cols + c is in byte i/2, low nibble when i is even; int4_pack in
//         core/tensor.cpp). When cols is even this is exactly zeroth_int4_layout's
//         [rows, cols/2] bytes; when cols is odd a row may start in a high nibble.
//   int8: dtype ZEROTH_I8, codes -128..127 (any int8; quantize() writes -127..127, -128 comes
//         from 8-bit GPTQ checkpoints, whose code 0 under the symmetric zero 128 is -128; every
//         kernel sign-extends the byte, so the whole range is served alike), always symmetric
//         (no zeros).
//   quant: group_size (int8: cols unless asked otherwise), symmetric, scales [rows, groups]
//          f32 or f16, zeros [rows, groups] same dtype (int4 asymmetric only), and optionally
//          perm (i32 [cols], a permutation of 0..cols-1).
// value(r, c) = (code − zero)·scale in f32, zero = zeros[r, g] (asymmetric int4), 8 (symmetric
// int4) or 0 (int8), g = c / group_size. dequantize() and every kernel compute exactly this
// f32 expression, so a fused product differs from de-quantize-then-f32 only in summation order.
//
// Column permutation (act-order GPTQ checkpoints, model/gptq.h): c above is the STORED column.
// Without perm, stored column c is input feature c. With perm, stored column c holds input
// feature perm[c]: the weight matrix in input-feature order is W[r, perm[c]] = value(r, c).
// Storing columns sorted by group keeps every group contiguous, so the kernels stay unchanged:
// quant_matmul gathers x by perm first (x'[c] = x[perm[c]], Σ_c x'[c]·value(r, c) = (x·Wᵀ)[r]),
// and dequantize() scatters the columns back to input-feature order.
//
// Range choices (quantize):
//   int4 asymmetric: lo = min(min w, 0), hi = max(max w, 0) — 0 is always in range so the zero
//       point lies in 0..15 and every weight is within half a step; scale = (hi − lo)/15,
//       zero = round(−lo/scale).
//   int4 symmetric:  scale = max|w| / 7, zero 8: codes cover [−8, 7]·scale ⊇ [−max|w|, max|w|]
//       (/8 would clip the largest positive weight by up to a whole step).
//   int8:            scale = max|w| / 127, codes −127..127.
//   A group of zeros gets scale 1 (any positive scale represents it exactly).
//   f16 scales are rounded up to the next f16 when rounding to nearest made them smaller, so the
//   stored scale still covers the range; codes are computed with the stored (rounded) values.
//   clip: try range shrink factors 1, 0.95, ..., 0.5 per group and keep the one with the least
//   squared error (1 is a candidate, so clipping never makes a group worse).
// Rounding is to nearest, ties to even.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace zeroth {

struct QuantizeOptions {
  int bits = 4;                 // 4 or 8
  int64_t group_size = 128;     // int4: >= 1 (clamped to cols); int8: 0 means one group per row
  bool symmetric = false;       // int8 must be symmetric
  zeroth_dtype scale_dtype = ZEROTH_F32;  // ZEROTH_F32 or ZEROTH_F16
  bool clip = false;
};

// Quantizes a 2-D f32 CPU tensor [rows, cols]. Throws E_DTYPE / E_SHAPE / E_INVALID_ARG / E_NAN.
TensorPtr quantize(const Tensor& w, const QuantizeOptions& opts);

// The f32 weights of a quantized tensor (int4 or int8), in input-feature order (perm applied).
TensorPtr dequantize(const Tensor& q);

// A checked, read-only view of a quantized weight with its scales and zeros as f32.
struct QuantMatrix {
  int bits = 4;
  int64_t rows = 0, cols = 0, group_size = 0, groups = 0;
  const uint8_t* codes4 = nullptr;  // int4 packed codes
  const int8_t* codes8 = nullptr;   // int8 codes
  const float* scales = nullptr;    // [rows, groups]
  const float* zeros = nullptr;     // [rows, groups], or null: zero point 8 (int4) / 0 (int8)
  float fixed_zero = 0.0f;          // the zero point when zeros is null
  const int32_t* perm = nullptr;    // [cols]: stored column c holds input feature perm[c]; null: c

  float zero(int64_t r, int64_t g) const { return zeros ? zeros[r * groups + g] : fixed_zero; }
  float scale(int64_t r, int64_t g) const { return scales[r * groups + g]; }
  int code(int64_t r, int64_t c) const {
    if (bits == 8) return codes8[r * cols + c];
    const int64_t i = r * cols + c;
    const uint8_t b = codes4[i >> 1];
    return (i & 1) ? (b >> 4) : (b & 15);
  }
  // The one definition of a weight's value (see the top of this file).
  float value(int64_t r, int64_t c) const {
    const int64_t g = c / group_size;
    return (static_cast<float>(code(r, c)) - zero(r, g)) * scale(r, g);
  }
};

// Validates `q` (CPU, 2-D, int4 or int8 with consistent quant info, perm if present an i32 [cols]
// permutation; throws E_DTYPE / E_SHAPE / E_INVALID_ARG) and returns a view. f16 scales/zeros are converted into `storage`, which must
// outlive the view.
QuantMatrix quant_matrix(const Tensor& q, std::vector<float>& storage);

// Writes value(r, c) for rows [r0, r1) and STORED columns c in [0, cols) into out (row stride ld),
// i.e. in stored-column order even when w.perm is set: the GEMM multiplies these panels with the
// gathered x (int4_gemm.cpp), which costs one pass over x instead of a scatter per panel.
// dequantize() is the one place that scatters to input-feature order.
void dequantize_rows(const QuantMatrix& w, int64_t r0, int64_t r1, float* out, int64_t ld);

}  // namespace zeroth
