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

// The checkpoint's tensors with every GPTQ layer (<stem>.qweight, .qzeros, .scales, optional
// .g_idx) replaced by one zeroth int4 tensor named <stem>.weight ([out, in]); other tensors
// pass through. E_FORMAT when a layer's tensors are incomplete.
std::unordered_map<std::string, TensorPtr> unpack_gptq_layers(const std::unordered_map<std::string, TensorPtr>& given,
                                                              const GptqFormat& format);

struct Weight;

// The one GPTQ format a checkpoint of these quantized weights can be written in: bits 4, the
// group size they share (-1 when every layer has one group per row), desc_act when any layer
// has a column permutation, sym when all are symmetric, v2 when some zero point is 0 (v1
// stores zero − 1). E_UNSUPPORTED when they cannot share one (int8 layers, mixed group sizes).
GptqFormat gptq_checkpoint_format(const std::vector<const Weight*>& quantized);

}  // namespace zeroth::model
