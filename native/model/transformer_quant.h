// transformer_quant.h — quantized linear layers in a Model: converting GPTQ checkpoints at load
// and holding quantized weights with f32 scales (what QZO trains). Internal to native/model.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "model/gptq.h"

namespace zeroth::model {

// The same codes (shared storage) with scales and zeros as f32: shared when they already are
// f32, widened exactly from f16 otherwise. The permutation, if any, is kept.
TensorPtr quantized_with_f32_scales(const Tensor& q);

// A host copy of a weight, a quantized one with host copies of its scales, zeros and
// permutation (a device model's weights, for the CPU code that quantizes or writes them).
TensorPtr host_copy(const Tensor& t);

// The checkpoint's tensors with every GPTQ layer (<stem>.qweight, .qzeros, .scales, optional
// .g_idx) replaced by one zeroth int4 / int8 tensor named <stem>.weight ([out, in]), each in its
// format under format.dynamic (gptq_layer_format(format, stem)); other tensors pass through.
// E_FORMAT when a layer's tensors are incomplete or a "-:" dynamic key excludes a layer that has
// GPTQ tensors.
std::unordered_map<std::string, TensorPtr> unpack_gptq_layers(const std::unordered_map<std::string, TensorPtr>& given,
                                                              const GptqFormat& format);

struct Weight;

// The GPTQ format a checkpoint of these quantized weights is written in. Base fields: bits 4 when
// any layer is int4 (else 8); the group size most of the layers of that width share (-1 when
// they all have one group per row); desc_act when one of them has a column permutation; sym when
// they are all symmetric; v2 when some int4 zero point is 0 (v1 stores zero − 1; global to the
// checkpoint). Every layer the base does not describe (the other width, another group size) gets
// an exact-name dynamic entry gptq_exact_key(stem) -> {bits, group_size (-1: one group per row),
// desc_act, sym}; every name in `float_linear` (block linear layers kept in float) gets a "-:"
// exact-name entry, so GPTQModel leaves them float too. Resolving a layer with
// gptq_layer_format(result, stem) gives the format to write it in. E_UNSUPPORTED for quantized
// embeddings / LM head and for zero points no single checkpoint_format holds.
GptqFormat gptq_checkpoint_format(const std::vector<const Weight*>& quantized,
                                  const std::vector<std::string>& float_linear = {});

}  // namespace zeroth::model
