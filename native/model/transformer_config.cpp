// transformer_config.cpp — checking a TransformerConfig and binding checkpoint tensors to it:
// which names each family expects, with which shapes, and how they are stored (GPT-2's Conv1D
// keeps [in, out]; nn.Linear keeps [out, in]). Also the per-call weight view (Resolved).
#include <cmath>
#include <algorithm>
#include <unordered_set>

#include "core/errors.h"
#include "cpu/perturb.h"
#include "model/transformer_cuda.h"  // DeviceWorkspace, freed by ~Model
#include "model/transformer_internal.h"
#include "model/transformer_quant.h"

namespace zeroth::model {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Buffers some checkpoints carry that are not parameters (causal-mask and RoPE caches).
bool is_ignorable_buffer(const std::string& name) {
  return ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias") ||
         ends_with(name, "rotary_emb.inv_freq");
}

}  // namespace

void validate_config(const TransformerConfig& c) {
  auto positive = [](int64_t v, const char* field) {
    ZCHECK(v > 0 && v <= (int64_t{1} << 31), ZEROTH_E_INVALID_ARG,
           std::string("config field ") + field + " must be a positive integer below 2^31 (got " + str(v) + ")");
  };
  positive(c.n_layer, "n_layer");
  positive(c.d_model, "d_model");
  positive(c.n_head, "n_head");
  positive(c.n_kv_head, "n_kv_head");
  positive(c.head_dim, "head_dim");
  positive(c.d_ff, "d_ff");
  positive(c.vocab_size, "vocab_size");
  positive(c.max_positions, "max_positions");
  ZCHECK(c.n_head % c.n_kv_head == 0, ZEROTH_E_INVALID_ARG,
         "num_attention_heads (" + str(c.n_head) + ") must be a multiple of num_key_value_heads (" +
             str(c.n_kv_head) + ")");
  ZCHECK(c.norm_eps > 0 && c.norm_eps < 1, ZEROTH_E_INVALID_ARG, "config norm epsilon must be in (0, 1)");
  if (c.family != Family::Llama) {
    ZCHECK(c.n_kv_head == c.n_head, ZEROTH_E_UNSUPPORTED, "grouped-query attention exists only in the Llama family");
    ZCHECK(c.head_dim * c.n_head == c.d_model, ZEROTH_E_INVALID_ARG,
           "hidden size " + str(c.d_model) + " must be divisible by the number of heads " + str(c.n_head));
  } else {
    ZCHECK(c.head_dim % 2 == 0, ZEROTH_E_UNSUPPORTED, "RoPE needs an even head_dim (got " + str(c.head_dim) + ")");
    ZCHECK(c.rope_theta > 0, ZEROTH_E_INVALID_ARG, "rope_theta must be positive");
  }
  if (c.family == Family::Opt) {
    positive(c.word_embed_proj_dim, "word_embed_proj_dim");
  } else {
    ZCHECK(c.pre_norm, ZEROTH_E_UNSUPPORTED, "post-LN blocks exist only in the OPT family");
  }
  ZCHECK(c.pad_token_id < c.vocab_size, ZEROTH_E_INVALID_ARG,
         "pad_token_id " + str(c.pad_token_id) + " is outside the vocabulary of " + str(c.vocab_size));
}

// ---- weights ----------------------------------------------------------------------------------

int Model::add_weight(const std::unordered_map<std::string, TensorPtr>& given, const std::string& name,
                      const Shape& shape, bool in_out) {
  auto it = given.find(name);
  ZCHECK(it != given.end() && it->second, ZEROTH_E_FORMAT,
         "the checkpoint has no tensor '" + name + "', which this " + "config needs; check config.json matches the weights");
  const TensorPtr& t = it->second;
  ZCHECK(t->on_cpu(), ZEROTH_E_DEVICE, "tensor '" + name + "' must be on the CPU to build a CPU model");
  if (t->quant) {
    // Quantized weights are stored [out, in]: a Conv1D's [in, out] shape arrives transposed.
    // Only block linear layers may be quantized; bind_weights checks that once all are bound.
    const Shape out_in = in_out && shape.size() == 2 ? Shape{shape[1], shape[0]} : shape;
    ZCHECK(t->shape == out_in, ZEROTH_E_FORMAT,
           "quantized tensor '" + name + "' has shape " + shape_string(t->shape) + " but the config implies " +
               shape_string(out_in) + " ([out, in])");
    auto found = index_.find(name);
    if (found != index_.end()) return found->second;
    weights_.push_back(Weight{name, quantized_with_f32_scales(*t), false});
    index_[name] = static_cast<int>(weights_.size() - 1);
    return index_[name];
  }
  ZCHECK(t->shape == shape, ZEROTH_E_FORMAT,
         "tensor '" + name + "' has shape " + shape_string(t->shape) + " but the config implies " + shape_string(shape));
  TensorPtr f32 = t;
  if (t->dtype == ZEROTH_F16 || t->dtype == ZEROTH_BF16) {
    f32 = tensor_copy(*t, ZEROTH_F32, t->device());  // compute in f32 (exact widening)
  } else {
    ZCHECK(t->dtype == ZEROTH_F32, ZEROTH_E_DTYPE,
           "tensor '" + name + "' is " + dtype_traits(t->dtype).name + "; weights must be f32, f16 or bf16");
  }
  auto found = index_.find(name);
  if (found != index_.end()) return found->second;  // the same tensor bound twice (tied weights)
  weights_.push_back(Weight{name, f32, in_out});
  const int idx = static_cast<int>(weights_.size() - 1);
  index_[name] = idx;
  return idx;
}

void Model::bind_weights(const std::unordered_map<std::string, TensorPtr>& given) {
  const TransformerConfig& c = config_;
  const int64_t d = c.d_model, V = c.vocab_size, F = c.d_ff;
  const int64_t qdim = c.n_head * c.head_dim, kvdim = c.n_kv_head * c.head_dim;
  auto has = [&](const std::string& n) { return given.count(n) != 0; };
  layers_.assign(static_cast<size_t>(c.n_layer), LayerWeights{});
  std::unordered_set<std::string> optional_extra;  // present names we accept but do not read

  if (c.family == Family::Gpt2) {
    // Hub checkpoints use "transformer.h.0..." ; the original OpenAI conversions "h.0...".
    const std::string p = has("transformer.wte.weight") ? "transformer." : "";
    tok_embed_ = add_weight(given, p + "wte.weight", {V, d}, false);
    pos_embed_ = add_weight(given, p + "wpe.weight", {c.max_positions, d}, false);
    for (int64_t l = 0; l < c.n_layer; ++l) {
      const std::string h = p + "h." + str(l) + ".";
      LayerWeights& L = layers_[static_cast<size_t>(l)];
      L.norm1_w = add_weight(given, h + "ln_1.weight", {d}, false);
      L.norm1_b = add_weight(given, h + "ln_1.bias", {d}, false);
      L.qkv = add_weight(given, h + "attn.c_attn.weight", {d, 3 * d}, true);
      L.qkv_b = add_weight(given, h + "attn.c_attn.bias", {3 * d}, false);
      L.o = add_weight(given, h + "attn.c_proj.weight", {d, d}, true);
      L.o_b = add_weight(given, h + "attn.c_proj.bias", {d}, false);
      L.norm2_w = add_weight(given, h + "ln_2.weight", {d}, false);
      L.norm2_b = add_weight(given, h + "ln_2.bias", {d}, false);
      L.fc1 = add_weight(given, h + "mlp.c_fc.weight", {d, F}, true);
      L.fc1_b = add_weight(given, h + "mlp.c_fc.bias", {F}, false);
      L.fc2 = add_weight(given, h + "mlp.c_proj.weight", {F, d}, true);
      L.fc2_b = add_weight(given, h + "mlp.c_proj.bias", {d}, false);
    }
    final_norm_w_ = add_weight(given, p + "ln_f.weight", {d}, false);
    final_norm_b_ = add_weight(given, p + "ln_f.bias", {d}, false);
  } else if (c.family == Family::Opt) {
    const std::string p = has("model.decoder.embed_tokens.weight") ? "model.decoder." : "decoder.";
    const int64_t E = c.word_embed_proj_dim;
    const bool bias = c.qkv_bias, affine = c.norm_affine;
    tok_embed_ = add_weight(given, p + "embed_tokens.weight", {V, E}, false);
    pos_embed_ = add_weight(given, p + "embed_positions.weight", {c.max_positions + 2, d}, false);
    if (E != d) {
      project_in_ = add_weight(given, p + "project_in.weight", {d, E}, false);
      project_out_ = add_weight(given, p + "project_out.weight", {E, d}, false);
    }
    for (int64_t l = 0; l < c.n_layer; ++l) {
      const std::string h = p + "layers." + str(l) + ".";
      LayerWeights& L = layers_[static_cast<size_t>(l)];
      if (affine) {
        L.norm1_w = add_weight(given, h + "self_attn_layer_norm.weight", {d}, false);
        L.norm1_b = add_weight(given, h + "self_attn_layer_norm.bias", {d}, false);
        L.norm2_w = add_weight(given, h + "final_layer_norm.weight", {d}, false);
        L.norm2_b = add_weight(given, h + "final_layer_norm.bias", {d}, false);
      }
      L.q = add_weight(given, h + "self_attn.q_proj.weight", {d, d}, false);
      L.k = add_weight(given, h + "self_attn.k_proj.weight", {d, d}, false);
      L.v = add_weight(given, h + "self_attn.v_proj.weight", {d, d}, false);
      L.o = add_weight(given, h + "self_attn.out_proj.weight", {d, d}, false);
      L.fc1 = add_weight(given, h + "fc1.weight", {F, d}, false);
      L.fc2 = add_weight(given, h + "fc2.weight", {d, F}, false);
      if (bias) {
        L.q_b = add_weight(given, h + "self_attn.q_proj.bias", {d}, false);
        L.k_b = add_weight(given, h + "self_attn.k_proj.bias", {d}, false);
        L.v_b = add_weight(given, h + "self_attn.v_proj.bias", {d}, false);
        L.o_b = add_weight(given, h + "self_attn.out_proj.bias", {d}, false);
        L.fc1_b = add_weight(given, h + "fc1.bias", {F}, false);
        L.fc2_b = add_weight(given, h + "fc2.bias", {d}, false);
      }
    }
    // HF OPT has a final LayerNorm only in pre-LN models (opt-350m, post-LN, has none).
    if (c.pre_norm && affine) {
      final_norm_w_ = add_weight(given, p + "final_layer_norm.weight", {d}, false);
      final_norm_b_ = add_weight(given, p + "final_layer_norm.bias", {d}, false);
    }
  } else {
    tok_embed_ = add_weight(given, "model.embed_tokens.weight", {V, d}, false);
    for (int64_t l = 0; l < c.n_layer; ++l) {
      const std::string h = "model.layers." + str(l) + ".";
      LayerWeights& L = layers_[static_cast<size_t>(l)];
      L.norm1_w = add_weight(given, h + "input_layernorm.weight", {d}, false);
      L.norm2_w = add_weight(given, h + "post_attention_layernorm.weight", {d}, false);
      L.q = add_weight(given, h + "self_attn.q_proj.weight", {qdim, d}, false);
      L.k = add_weight(given, h + "self_attn.k_proj.weight", {kvdim, d}, false);
      L.v = add_weight(given, h + "self_attn.v_proj.weight", {kvdim, d}, false);
      L.o = add_weight(given, h + "self_attn.o_proj.weight", {d, qdim}, false);
      if (c.qkv_bias) {
        L.q_b = add_weight(given, h + "self_attn.q_proj.bias", {qdim}, false);
        L.k_b = add_weight(given, h + "self_attn.k_proj.bias", {kvdim}, false);
        L.v_b = add_weight(given, h + "self_attn.v_proj.bias", {kvdim}, false);
      }
      if (c.out_bias) L.o_b = add_weight(given, h + "self_attn.o_proj.bias", {d}, false);
      L.gate = add_weight(given, h + "mlp.gate_proj.weight", {F, d}, false);
      L.fc1 = add_weight(given, h + "mlp.up_proj.weight", {F, d}, false);
      L.fc2 = add_weight(given, h + "mlp.down_proj.weight", {d, F}, false);
      if (c.mlp_bias) {
        L.fc1_b = add_weight(given, h + "mlp.up_proj.bias", {F}, false);
        L.fc2_b = add_weight(given, h + "mlp.down_proj.bias", {d}, false);
        L.gate_b = add_weight(given, h + "mlp.gate_proj.bias", {F}, false);
      }
      optional_extra.insert(h + "self_attn.rotary_emb.inv_freq");
    }
    final_norm_w_ = add_weight(given, "model.norm.weight", {d}, false);
  }

  // The LM head reads the token embedding when tied; a tied checkpoint may still store a copy.
  const int64_t hw = head_width();
  if (c.tied_embeddings) {
    head_ = tok_embed_;
    optional_extra.insert("lm_head.weight");
  } else {
    head_ = add_weight(given, "lm_head.weight", {V, hw}, false);
  }

  for (const auto& kv : given) {
    if (index_.count(kv.first) || optional_extra.count(kv.first) || is_ignorable_buffer(kv.first)) continue;
    fail(ZEROTH_E_FORMAT, "the checkpoint has a tensor '" + kv.first +
                              "' that this config does not use; check config.json belongs to these weights");
  }

  // The fused quantized kernels serve the blocks' linear layers, the token embedding (its rows
  // are de-quantized on lookup) and the LM head; norms and position tables stay in float. Only
  // the block layers' scales train (QZO), so only they get a "<stem>.scales" entry.
  const size_t bound = weights_.size();
  for (size_t i = 0; i < bound; ++i) {
    if (!weights_[i].tensor->quant) continue;
    ZCHECK(may_quantize(static_cast<int>(i)), ZEROTH_E_UNSUPPORTED,
           "'" + weights_[i].name + "' is quantized, but only the blocks' linear layers, the token embedding "
           "and the LM head may be; keep norms and position tables in f32/f16/bf16");
    if (is_block_linear(static_cast<int>(i))) add_scales_entry(static_cast<int>(i));
  }
}

int64_t Model::head_width() const {
  return config_.family == Family::Opt ? config_.word_embed_proj_dim : config_.d_model;
}

Model::Model(const TransformerConfig& config, const std::unordered_map<std::string, TensorPtr>& weights,
             const GptqFormat* gptq)
    : config_(config) {
  validate_config(config_);
  if (gptq) bind_weights(unpack_gptq_layers(weights, *gptq));
  else bind_weights(weights);
}

Model::~Model() = default;

Model::Model(const Model& o)
    : config_(o.config_), weights_(o.weights_), index_(o.index_), layers_(o.layers_), tok_embed_(o.tok_embed_),
      pos_embed_(o.pos_embed_), final_norm_w_(o.final_norm_w_), final_norm_b_(o.final_norm_b_), head_(o.head_),
      project_in_(o.project_in_), project_out_(o.project_out_), loss_chunk_rows_(o.loss_chunk_rows_), loss_vocab_chunk_(o.loss_vocab_chunk_),
      device_(o.device_) {}

std::shared_ptr<Model> Model::with_lora(const std::string& weight, const TensorPtr& a, const TensorPtr& b,
                                        float scale) const {
  auto it = index_.find(weight);
  ZCHECK(it != index_.end(), ZEROTH_E_INVALID_ARG, "LoRA target '" + weight + "' is not a weight of this model");
  const int w = it->second;
  // Only the block matrices go through linear(); embeddings and the head do not.
  ZCHECK(is_block_linear(w), ZEROTH_E_INVALID_ARG,
         "LoRA target '" + weight + "' is not a linear layer of a block (attention or MLP projection)");
  const Weight& base = weights_[static_cast<size_t>(w)];
  ZCHECK(base.lora_a < 0, ZEROTH_E_INVALID_ARG, "'" + weight + "' already has a LoRA adapter");
  const int64_t out = base.in_out ? base.tensor->shape[1] : base.tensor->shape[0];
  const int64_t in = base.in_out ? base.tensor->shape[0] : base.tensor->shape[1];
  for (const TensorPtr* t : {&a, &b}) {
    // On the model's device (a CUDA model's adapters are uploaded by the caller).
    ZCHECK(*t && (*t)->device().type == device_.type && (*t)->device().index == device_.index &&
               (*t)->dtype == ZEROTH_F32 && (*t)->ndim() == 2,
           ZEROTH_E_DTYPE, "LoRA matrices must be 2-D f32 tensors on the model's device (" + device_string(device_) + ")");
  }
  const int64_t rank = a->shape[0];
  ZCHECK(rank >= 1 && a->shape[1] == in && b->shape[0] == out && b->shape[1] == rank, ZEROTH_E_SHAPE,
         "LoRA for '" + weight + "' needs A [rank, " + std::to_string(in) + "] and B [" + std::to_string(out) +
             ", rank]; got A " + shape_string(a->shape) + " and B " + shape_string(b->shape));
  ZCHECK(std::isfinite(scale), ZEROTH_E_INVALID_ARG, "LoRA scale must be finite");
  const std::string stem = weight_stem(weight);
  auto m = std::shared_ptr<Model>(new Model(*this));
  auto add = [&](const std::string& name, const TensorPtr& t) {
    ZCHECK(!m->index_.count(name), ZEROTH_E_INVALID_ARG, "the model already has a weight named '" + name + "'");
    m->weights_.push_back(Weight{name, t, false});
    m->index_[name] = static_cast<int>(m->weights_.size() - 1);
    return static_cast<int>(m->weights_.size() - 1);
  };
  const int ia = add(stem + ".lora_A.weight", a);
  const int ib = add(stem + ".lora_B.weight", b);
  Weight& target = m->weights_[static_cast<size_t>(w)];
  target.lora_a = ia;
  target.lora_b = ib;
  target.lora_scale = scale;
  return m;
}

// ---- the per-call weight view ---------------------------------------------------------------

Model::Resolved::Resolved(const std::vector<Weight>& w, const ForwardPerturbation* p) : weights(w), desc(w.size()) {
  if (!p || p->scale == 0.0f) return;
  for (size_t i = 0; i < w.size(); ++i) {
    auto it = p->streams.find(w[i].name);
    if (it == p->streams.end()) continue;
    ZCHECK(!w[i].tensor->quant, ZEROTH_E_INVALID_ARG,
           "'" + w[i].name + "' is quantized: its integer codes cannot be perturbed; train its '.scales' "
           "(trainable({mode: 'scales'})) or LoRA adapters instead");
    desc[i] = PerturbDesc{true, p->seed, it->second, p->scale, p->dist};
  }
}

std::vector<float> Model::Resolved::vec(int w) const {
  if (w < 0) return {};
  const Tensor& t = *weights[static_cast<size_t>(w)].tensor;
  std::vector<float> out(t.as<float>(), t.as<float>() + t.numel);
  const PerturbDesc& d = desc[static_cast<size_t>(w)];
  if (d.active) add_scaled_z(d.seed, d.stream, d.dist, d.scale, 0, t.numel, out.data());
  return out;
}

void Model::Resolved::row(int w, int64_t r, int64_t width, float* out) const {
  const Tensor& t = *weights[static_cast<size_t>(w)].tensor;
  if (t.quant) {  // a quantized embedding: de-quantize the one row (never perturbed: no scales entry)
    std::vector<float> storage;
    const QuantMatrix q = quant_matrix(t, storage);
    dequantize_rows(q, r, r + 1, out, width);
    return;
  }
  const float* src = data(w) + r * width;
  const PerturbDesc& d = desc[static_cast<size_t>(w)];
  if (d.active) add_scaled_z_from(d.seed, d.stream, d.dist, d.scale, static_cast<uint64_t>(r * width), width, src, out);
  else std::copy(src, src + width, out);
}

}  // namespace zeroth::model
