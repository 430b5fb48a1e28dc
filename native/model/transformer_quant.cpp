// transformer_quant.cpp — quantized linear layers of a Model (transformer.h): GPTQ layers
// converted at load, Model::quantized for weights quantized after load, and the "<stem>.scales"
// entries through which ZO fine-tuning reaches a quantized layer's scales (QZO).
#include "model/transformer_quant.h"

#include <algorithm>
#include <optional>

#include "core/errors.h"
#include "cpu/quant.h"
#include "model/transformer_internal.h"

namespace zeroth::model {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A contiguous [cols, rows] copy of a 2-D f32 tensor.
TensorPtr transposed(const Tensor& t) {
  const int64_t rows = t.shape[0], cols = t.shape[1];
  TensorPtr out = tensor_empty(ZEROTH_F32, {cols, rows}, t.device());
  const float* src = t.as<float>();
  float* dst = out->as<float>();
  constexpr int64_t kTile = 32;  // cache-friendly tiles: both sides stay within a few lines
  for (int64_t r0 = 0; r0 < rows; r0 += kTile)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile)
      for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + kTile); ++c) dst[c * rows + r] = src[r * cols + c];
  return out;
}

}  // namespace

std::string weight_stem(const std::string& name) {
  return ends_with(name, ".weight") ? name.substr(0, name.size() - 7) : name;
}

TensorPtr host_copy(const Tensor& t) {
  TensorPtr out = tensor_copy(t, t.dtype, zeroth_device{ZEROTH_DEVICE_CPU, 0});
  if (t.quant) {
    auto info = std::make_shared<QuantInfo>(*t.quant);
    for (TensorPtr* p : {&info->scales, &info->zeros, &info->perm})
      if (*p) *p = tensor_copy(**p, (*p)->dtype, zeroth_device{ZEROTH_DEVICE_CPU, 0});
    out->quant = std::move(info);
  }
  return out;
}

TensorPtr quantized_with_f32_scales(const Tensor& q) {
  ZCHECK(q.quant && q.quant->scales, ZEROTH_E_INVALID_ARG, "a quantized weight carries no scales");
  std::vector<float> check_storage;
  quant_matrix(q, check_storage);  // validates shapes, dtypes and the permutation
  auto info = std::make_shared<QuantInfo>(*q.quant);
  auto widen = [](const TensorPtr& t) {
    return t && t->dtype != ZEROTH_F32 ? tensor_copy(*t, ZEROTH_F32, t->device()) : t;
  };
  info->scales = widen(info->scales);
  info->zeros = widen(info->zeros);
  auto out = std::make_shared<Tensor>(q);
  out->quant = std::move(info);
  return out;
}

std::unordered_map<std::string, TensorPtr> unpack_gptq_layers(const std::unordered_map<std::string, TensorPtr>& given,
                                                              const GptqFormat& format) {
  std::unordered_map<std::string, TensorPtr> out;
  for (const auto& [name, t] : given) {
    if (!ends_with(name, ".qweight")) continue;
    const std::string stem = name.substr(0, name.size() - 8);
    auto part = [&](const char* suffix, bool required) -> const Tensor* {
      auto it = given.find(stem + suffix);
      ZCHECK(!required || (it != given.end() && it->second), ZEROTH_E_FORMAT,
             "GPTQ layer '" + stem + "' has a qweight but no '" + stem + suffix + "'; the checkpoint is incomplete");
      return it == given.end() ? nullptr : it->second.get();
    };
    const Tensor* qzeros = part(".qzeros", true);
    const Tensor* scales = part(".scales", true);
    const Tensor* g_idx = part(".g_idx", false);
    ZCHECK(!given.count(stem + ".weight"), ZEROTH_E_FORMAT,
           "layer '" + stem + "' has both a float weight and GPTQ tensors; the checkpoint is ambiguous");
    const std::optional<GptqFormat> f = gptq_layer_format(format, stem);
    ZCHECK(f.has_value(), ZEROTH_E_FORMAT,
           "layer '" + stem + "' has GPTQ tensors, but a \"-:\" key of quantization_config.dynamic excludes it from "
           "quantization; the checkpoint contradicts its config");
    out[stem + ".weight"] = gptq_to_quantized(stem, *t, *qzeros, *scales, g_idx, *f);
  }
  for (const auto& [name, t] : given) {
    const size_t dot = name.rfind('.');
    const std::string suffix = dot == std::string::npos ? "" : name.substr(dot);
    const std::string stem = dot == std::string::npos ? name : name.substr(0, dot);
    const bool gptq_part = (suffix == ".qweight" || suffix == ".qzeros" || suffix == ".scales" || suffix == ".g_idx") &&
                           out.count(stem + ".weight") && !given.count(stem + ".weight");
    if (!gptq_part) out.emplace(name, t);
  }
  return out;
}

GptqFormat gptq_checkpoint_format(const std::vector<const Weight*>& quantized,
                                  const std::vector<std::string>& float_linear) {
  // One layer's own format: its width, group size (-1 for one group per row), act order, sym.
  struct Layer {
    std::string stem;
    int bits;
    int64_t gs, in;
    bool one_group, perm, sym;
  };
  std::vector<Layer> layers;
  bool any4 = false, v2 = false;
  for (const Weight* w : quantized) {
    const Tensor& q = *w->tensor;
    ZCHECK(w->scales >= 0, ZEROTH_E_UNSUPPORTED,
           "'" + w->name + "' (an embedding or the LM head) is quantized; GPTQ checkpoints keep them in float, "
           "so save the model before quantizing its embeddings");
    ZCHECK(q.dtype == ZEROTH_INT4 || q.dtype == ZEROTH_I8, ZEROTH_E_UNSUPPORTED,
           "'" + w->name + "' is not an int4 or int8 weight; GPTQ checkpoints hold 4- and 8-bit layers");
    std::vector<float> storage;
    const QuantMatrix m = quant_matrix(q, storage);
    Layer L{weight_stem(w->name), m.bits, m.group_size, m.cols, m.group_size >= m.cols, static_cast<bool>(m.perm), true};
    // sym: every zero point is 8 (int4; GPTQ stores zeros even then, and a symmetric layer loaded
    // from a checkpoint arrives with explicit zeros); int8 is symmetric by construction.
    if (m.zeros)
      for (int64_t i = 0; i < m.rows * m.groups; ++i) {
        v2 = v2 || m.zeros[i] == 0.0f;
        L.sym = L.sym && m.zeros[i] == 8.0f;
      }
    any4 = any4 || L.bits == 4;
    layers.push_back(std::move(L));
  }

  GptqFormat f;
  f.bits = any4 ? 4 : 8;
  f.v2 = v2;
  // Base group size: the one most layers of the base width share (ties: the first in layer
  // order); -1 when all of them have one group per row.
  f.group_size = -1;
  {
    std::vector<std::pair<int64_t, int>> counts;
    for (const Layer& L : layers) {
      if (L.bits != f.bits || L.one_group) continue;
      auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& c) { return c.first == L.gs; });
      if (it == counts.end()) counts.emplace_back(L.gs, 1);
      else ++it->second;
    }
    int best = 0;
    for (const auto& [gs, n] : counts)
      if (n > best) best = n, f.group_size = gs;
  }
  // A layer with one group per row fits group_size -1 or any size >= its width.
  auto fits = [&](const Layer& L) {
    if (L.bits != f.bits) return false;
    return L.one_group ? f.group_size == -1 || f.group_size >= L.in : f.group_size == L.gs;
  };
  f.desc_act = false;
  f.sym = true;
  for (const Layer& L : layers) {
    if (fits(L)) {
      f.desc_act = f.desc_act || L.perm;
      f.sym = f.sym && L.sym;
      continue;
    }
    GptqOverride o;
    o.key = gptq_exact_key(L.stem, false);
    o.bits = L.bits;
    o.group_size = L.one_group ? -1 : L.gs;
    o.desc_act = L.perm;
    o.sym = L.sym;
    f.dynamic.push_back(std::move(o));
  }
  for (const std::string& name : float_linear) {
    GptqOverride o;
    o.key = gptq_exact_key(weight_stem(name), true);
    f.dynamic.push_back(std::move(o));
  }
  return f;
}

// ---- Model members ------------------------------------------------------------------------

bool Model::is_block_linear(int w) const {
  if (w < 0) return false;
  for (const LayerWeights& L : layers_)
    for (int m : {L.qkv, L.q, L.k, L.v, L.o, L.gate, L.fc1, L.fc2})
      if (m == w) return true;
  return false;
}

bool Model::may_quantize(int w) const { return w >= 0 && (is_block_linear(w) || w == tok_embed_ || w == head_); }

std::vector<std::string> Model::linear_names() const {
  std::vector<std::string> names;
  for (const LayerWeights& L : layers_)
    for (int m : {L.qkv, L.q, L.k, L.v, L.o, L.gate, L.fc1, L.fc2})
      if (m >= 0) names.push_back(weights_[static_cast<size_t>(m)].name);
  return names;
}

void Model::add_scales_entry(int w) {
  Weight& q = weights_[static_cast<size_t>(w)];
  const std::string name = weight_stem(q.name) + ".scales";
  ZCHECK(!index_.count(name), ZEROTH_E_FORMAT,
         "the model already has a tensor named '" + name + "'; it would clash with the scales of '" + q.name + "'");
  TensorPtr scales = q.tensor->quant->scales;
  weights_.push_back(Weight{name, scales, false});
  const int idx = static_cast<int>(weights_.size() - 1);
  index_[name] = idx;
  weights_[static_cast<size_t>(w)].scales = idx;
}

std::shared_ptr<Model> Model::quantized(const std::vector<std::pair<std::string, QuantizeOptions>>& plan) const {
  if (device_.type != ZEROTH_DEVICE_CPU) return quantized_cuda(plan);  // weights on a GPU
  auto m = std::shared_ptr<Model>(new Model(*this));
  for (const auto& [name, opts] : plan) {
    auto it = m->index_.find(name);
    ZCHECK(it != m->index_.end(), ZEROTH_E_INVALID_ARG, "quantize: '" + name + "' is not a weight of this model");
    const int w = it->second;
    ZCHECK(m->may_quantize(w), ZEROTH_E_INVALID_ARG,
           "quantize: '" + name + "' is not a block linear layer, the token embedding or the LM head; norms and "
           "position tables stay in f32");
    Weight& W = m->weights_[static_cast<size_t>(w)];
    ZCHECK(!W.tensor->quant, ZEROTH_E_INVALID_ARG, "quantize: '" + name + "' is quantized already");
    const TensorPtr out_in = W.in_out ? transposed(*W.tensor) : W.tensor;
    W.tensor = quantized_with_f32_scales(*quantize(*out_in, opts));
    W.in_out = false;
    if (m->is_block_linear(w)) m->add_scales_entry(w);
  }
  return m;
}

}  // namespace zeroth::model
