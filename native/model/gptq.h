// gptq.h — conversion between GPTQ checkpoint tensors (AutoGPTQ / GPTQModel / transformers +
// optimum) and zeroth's int4 weights (cpu/quant.h), one linear layer at a time.
//
// GPTQ layer "<stem>" (4-bit, the only width read here):
//   <stem>.qweight  i32 [in/8, out]        8 codes per word along the INPUT dimension, low bits
//                                          first: q[i, o] = (qweight[i/8, o] >> 4·(i%8)) & 15
//   <stem>.qzeros   i32 [groups, ⌈out/8⌉]  8 zero points per word along the OUTPUT dimension,
//                                          low bits first; field z[g, o] = (qzeros[g, o/8] >> 4·(o%8)) & 15
//   <stem>.scales   f16 (or f32) [groups, out]
//   <stem>.g_idx    i32 [in]               group of each input feature (optional: i / group_size)
//   w[o, i] = scales[g, o]·(q[i, o] − zero[g, o]), g = g_idx[i]
// zero = field + 1 in the common "gptq" (v1) checkpoint format: the quantizers wrote zero − 1, so
// a zero of 0 cannot be written in v1, and a field of 15 reads back as 16 (AutoGPTQ's and
// transformers' reading; GPTQModel's v1→v2 conversion instead adds 0x11111111 to the whole word,
// which carries into the next field there). checkpoint_format "gptq_v2" stores the zero itself.
// groups = ⌈in / group_size⌉ (group_size −1: one group). With desc_act (act-order) g_idx is not
// monotone: the quantizer visited inputs in a data-dependent order and cut groups along it.
// out not a multiple of 8: qzeros' last word is partly used (the unused high fields are 0 when
// written here). The Python loaders allocate out // 8 words (out must be a multiple of 8, in
// practice of 32, for their kernels), so such a checkpoint is readable by zeroth only.
//
// zeroth form: int4 [out, in], quant {group_size, symmetric = false, scales f32 [out, groups],
// zeros f32 [out, groups], perm}. Columns are stored sorted by group (a stable sort of g_idx), so
// each group is a contiguous run of group_size stored columns (the last may be shorter) and
// stored column j holds input feature perm[j]; perm is null when that order is the identity.
// Codes, zeros and scales are carried over exactly (f16 → f32 is exact), so dequantize() equals
// the loaders' w[o, i] above evaluated in f32: (q − zero)·scale is one rounding of an exact product.
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace zeroth::model {

// The per-model "quantization_config" fields that shape one layer's tensors.
struct GptqFormat {
  int bits = 4;
  int64_t group_size = 128;  // -1: one group for all inputs
  bool desc_act = false;     // informational: g_idx decides the column order (desc_act without g_idx is refused)
  bool sym = true;           // informational: GPTQ stores zero points for sym too (8 each)
  bool v2 = false;           // checkpoint_format "gptq_v2": qzeros hold the zero itself, not zero − 1
};

// One GPTQ linear layer -> zeroth int4 weight [out, in] (see the top of this file). `stem` names
// the layer in errors. All tensors must be on the CPU. Throws
//   E_UNSUPPORTED  bits != 4; groups that are not runs of exactly group_size inputs (last: the rest)
//   E_FORMAT       naming the tensor: wrong dtype (qweight / qzeros / g_idx i32, scales f16 or f32),
//                  qweight not 2-D with in = rows·8 (in = g_idx length when present), qzeros shape
//                  != [groups, ⌈out/8⌉], scales shape != [groups, out], g_idx entries outside
//                  [0, groups), group_size 0 or < -1, g_idx missing with desc_act.
TensorPtr gptq_to_quantized(const std::string& stem, const Tensor& qweight, const Tensor& qzeros,
                            const Tensor& scales, const Tensor* g_idx, const GptqFormat& f);

struct GptqTensors {
  TensorPtr qweight, qzeros, scales, g_idx;
  bool v2 = false;  // some zero is 0: write checkpoint_format "gptq_v2"
  // For the caller's quantization_config (not in the brief's interface, added for model.save):
  int64_t group_size = 0;  // the weight's group size (= in for one group: write -1 or this)
  bool sym = false;        // every zero point is 8 (GPTQ's symmetric quantization)
};

// The inverse, for saving: an int4 weight [out, in] (perm or not, symmetric or not, f32 or f16
// scales) -> GPTQ tensors. scales are written as f16 rounded to nearest, ties to even (exact when
// they were f16 to begin with); g_idx is always written (act-order exactly when perm is present:
// g_idx[perm[j]] = j / group_size). Zeros must be integers: 1..16 are written in v1 (field = zero
// − 1; 16 only comes from a v1 file's field 15 and round-trips to it), and when some zero is 0 the
// layer is written in v2 (fields = zeros, v2 = true), which then cannot hold 16. Throws
// E_UNSUPPORTED for in not a multiple of 8 (GPTQ packs 8 inputs per word), a zero that is not an
// integer in 0..16 or both 0 and 16 in one layer, a scale that overflows f16; E_DTYPE / E_SHAPE /
// E_INVALID_ARG for a weight that is not a valid int4 tensor (quant_matrix).
// Round trip: gptq_to_quantized(quantized_to_gptq(q)) has q's codes, zeros, perm and (f16) scales,
// and for a v1 checkpoint with g_idx the tensors written are the ones read, bit for bit (up to
// unused high fields of qzeros' last word).
GptqTensors quantized_to_gptq(const std::string& stem, const Tensor& q);

// The same in a format chosen for the whole checkpoint (one checkpoint_format and group_size for
// every layer): f.v2 decides how zeros are written (E_UNSUPPORTED for a zero of 0 in v1 or 16 in
// v2), f.bits must be 4, and f.group_size must describe the weight's groups (its group size, or
// -1 / any size >= in for a weight with one group per row; E_UNSUPPORTED otherwise). desc_act and
// sym are not read: g_idx carries the order, and the zeros are written whatever sym says.
GptqTensors quantized_to_gptq(const std::string& stem, const Tensor& q, const GptqFormat& f);

}  // namespace zeroth::model
