// gptq.h — conversion between GPTQ checkpoint tensors (AutoGPTQ / GPTQModel / transformers +
// optimum) and zeroth's quantized weights (cpu/quant.h), one linear layer at a time.
//
// GPTQ layer "<stem>", b = bits (4 or 8, the widths read here), p = 32 / b codes per int32:
//   <stem>.qweight  i32 [in/p, out]        p codes per word along the INPUT dimension, low bits
//                                          first: q[i, o] = (qweight[i/p, o] >> b·(i%p)) & (2^b − 1)
//   <stem>.qzeros   i32 [groups, ⌈out/p⌉]  p zero points per word along the OUTPUT dimension,
//                                          low bits first; field z[g, o] = (qzeros[g, o/p] >> b·(o%p)) & (2^b − 1)
//   <stem>.scales   f16 (or f32) [groups, out]
//   <stem>.g_idx    i32 [in]               group of each input feature (optional: i / group_size)
//   w[o, i] = scales[g, o]·(q[i, o] − zero[g, o]), g = g_idx[i]
// zero = field + 1 in the common "gptq" (v1) checkpoint format: the quantizers wrote zero − 1, so
// a zero of 0 cannot be written in v1, and a field of 2^b − 1 reads back as 2^b (AutoGPTQ's and
// transformers' reading; GPTQModel's v1→v2 conversion instead adds 0x11111111 (4-bit) or
// 0x01010101 (8-bit) to the whole word, which carries into the next field there).
// checkpoint_format "gptq_v2" stores the zero itself. Symmetric GPTQ ("sym": true) stores the
// zero 2^(b−1) everywhere: 8 for 4 bits, 128 for 8 bits (v1 fields 7 and 127).
// groups = ⌈in / group_size⌉ (group_size −1: one group). With desc_act (act-order) g_idx is not
// monotone: the quantizer visited inputs in a data-dependent order and cut groups along it.
// out not a multiple of p: qzeros' last word is partly used (the unused high fields are 0 when
// written here). The Python loaders allocate out / p words (out must be a multiple of p, in
// practice of 32, for their kernels), so such a checkpoint is readable by zeroth only.
//
// zeroth form, 4 bits: int4 [out, in], quant {group_size, symmetric = false, scales f32 [out,
// groups], zeros f32 [out, groups], perm}. 8 bits: i8 [out, in] holding q − 128 (−128..127),
// quant {group_size, symmetric = true, scales f32 [out, groups], no zeros, perm}: zeroth's int8
// is symmetric, so only 8-bit layers whose zeros are all 128 are read (value (q − 128)·scale is
// then the loaders' w exactly); others are refused. Columns are stored sorted by group (a stable
// sort of g_idx), so each group is a contiguous run of group_size stored columns (the last may be
// shorter) and stored column j holds input feature perm[j]; perm is null when that order is the
// identity. Codes, zeros and scales are carried over exactly (f16 → f32 is exact), so
// dequantize() equals the loaders' w[o, i] above evaluated in f32: (q − zero)·scale is one
// rounding of an exact product.
//
// Per-module formats (GPTQModel's quantization_config "dynamic"): an ordered map from a module-
// name regex to overrides of the base fields ({"bits": 8, "group_size": 32, ...}). The first key
// whose regex matches at the START of the module name (Python's re.match: anchored at the start,
// not at the end) decides; a key prefixed "-:" excludes the module from quantization (it stays a
// float nn.Linear), "+:" or no prefix applies the overrides. The module name is the layer's stem
// ("model.layers.0.self_attn.q_proj"). zeroth evaluates the regex as ECMAScript (std::regex),
// which agrees with Python's re on the syntax such keys use (escapes, classes, groups,
// alternation, quantifiers); a key it cannot compile (Python-only syntax such as (?P<name>...))
// is refused.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace zeroth::model {

// One entry of quantization_config "dynamic" (see the top of this file). Unset fields keep the
// base value.
struct GptqOverride {
  std::string key;  // as in the config: "+:<regex>", "-:<regex>" or "<regex>"
  std::optional<int> bits;
  std::optional<int64_t> group_size;
  std::optional<bool> desc_act, sym;
};

// The per-model "quantization_config" fields that shape one layer's tensors.
struct GptqFormat {
  int bits = 4;              // 4 or 8
  int64_t group_size = 128;  // -1: one group for all inputs
  bool desc_act = false;     // informational: g_idx decides the column order (desc_act without g_idx is refused)
  bool sym = true;           // informational: GPTQ stores zero points for sym too (2^(bits-1) each)
  bool v2 = false;           // checkpoint_format "gptq_v2": qzeros hold the zero itself, not zero − 1
  std::vector<GptqOverride> dynamic;  // per-module overrides, in the config's order
};

// The format of module `module` (a layer's stem): f with the first matching dynamic entry's
// overrides applied (dynamic emptied), or nullopt when that entry is a "-:" key (the module is
// not quantized). E_UNSUPPORTED naming the key when its regex cannot be compiled.
std::optional<GptqFormat> gptq_layer_format(const GptqFormat& f, const std::string& module);

// The "dynamic" key that matches exactly one module name: "+:^<name, metacharacters escaped>$"
// (or "-:..." when skip), the form GPTQModel writes and recognises as a literal name.
std::string gptq_exact_key(const std::string& module, bool skip);

// One GPTQ linear layer -> zeroth int4 or int8 weight [out, in] (see the top of this file), in
// the format f (already resolved for this layer: f.dynamic is not read). `stem` names the layer
// in errors. All tensors must be on the CPU. Throws
//   E_UNSUPPORTED  bits other than 4 and 8; groups that are not runs of exactly group_size inputs
//                  (last: the rest); an 8-bit layer with a zero point other than 128 (asymmetric)
//   E_FORMAT       naming the tensor: wrong dtype (qweight / qzeros / g_idx i32, scales f16 or f32),
//                  qweight not 2-D with in = rows·p (in = g_idx length when present), qzeros shape
//                  != [groups, ⌈out/p⌉], scales shape != [groups, out], g_idx entries outside
//                  [0, groups), group_size 0 or < -1, g_idx missing with desc_act.
TensorPtr gptq_to_quantized(const std::string& stem, const Tensor& qweight, const Tensor& qzeros,
                            const Tensor& scales, const Tensor* g_idx, const GptqFormat& f);

struct GptqTensors {
  TensorPtr qweight, qzeros, scales, g_idx;
  bool v2 = false;  // some zero is 0: write checkpoint_format "gptq_v2"
  // For the caller's quantization_config (not in the brief's interface, added for model.save):
  int bits = 4;            // 4 (int4 weight) or 8 (int8 weight)
  int64_t group_size = 0;  // the weight's group size (= in for one group: write -1 or this)
  bool sym = false;        // every zero point is 2^(bits-1) (GPTQ's symmetric quantization)
};

// The inverse, for saving: an int4 weight [out, in] (perm or not, symmetric or not, f32 or f16
// scales) -> 4-bit GPTQ tensors; an int8 weight (codes c in −128..127) -> 8-bit GPTQ tensors
// with q = c + 128 and every zero 128 (v1 field 127, v2 field 128), t.sym = true. scales are written as f16 rounded to nearest, ties to even (exact when
// they were f16 to begin with); g_idx is always written (act-order exactly when perm is present:
// g_idx[perm[j]] = j / group_size). Zeros must be integers: 1..16 are written in v1 (field = zero
// − 1; 16 only comes from a v1 file's field 15 and round-trips to it), and when some zero is 0 the
// layer is written in v2 (fields = zeros, v2 = true), which then cannot hold 16. Throws
// E_UNSUPPORTED for in not a multiple of p (GPTQ packs 8 int4 / 4 int8 inputs per word), a zero
// that is not an integer in 0..16 or both 0 and 16 in one layer, a scale that overflows f16;
// E_DTYPE / E_SHAPE / E_INVALID_ARG for a weight that is not a valid int4 / int8 tensor (quant_matrix).
// Round trip: gptq_to_quantized(quantized_to_gptq(q)) has q's codes, zeros, perm and (f16) scales,
// and for a v1 checkpoint with g_idx the tensors written are the ones read, bit for bit (up to
// unused high fields of qzeros' last word).
GptqTensors quantized_to_gptq(const std::string& stem, const Tensor& q);

// The same in a format chosen for the whole checkpoint (one checkpoint_format and group_size for
// every layer, resolved per layer by gptq_layer_format): f.v2 decides how zeros are written
// (E_UNSUPPORTED for a zero of 0 in v1 or 16 in v2), f.bits must be the weight's width (4 for
// int4, 8 for int8), and f.group_size must describe the weight's groups (its group size, or -1 /
// any size >= in for a weight with one group per row; E_UNSUPPORTED otherwise). desc_act, sym and
// dynamic are not read: g_idx carries the order, and the zeros are written whatever sym says.
GptqTensors quantized_to_gptq(const std::string& stem, const Tensor& q, const GptqFormat& f);

}  // namespace zeroth::model
