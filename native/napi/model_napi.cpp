// model_napi.cpp — the transformer models (native/model/transformer.h) as N-API functions.
//
//   modelCreate(config, weights: {name: tensor handle}, gptq|null, device?, dtype?) -> Promise<model handle>
//        device {type, index} (default cpu): a CUDA device uploads every weight there once
//        (Model::to_device); forward / loss then run on it, inputs and results stay CPU tensors.
//        dtype 'f32' (default) or 'bf16': the device model's matrices in bf16 (tensor cores);
//        'bf16' on a CPU model is E_UNSUPPORTED
//   modelDevice(model) -> {type, index}              where the model's weights live
//   modelForward(model, ids, mask|null, perturbation|null) -> Promise<tensor handle>  f32 [B, T, V]
//   modelLoss(model, ids, mask|null, perturbation|null) -> Promise<tensor handle>     f64 [B]
//   modelGenerate(model, ids, mask|null, sampling) -> Promise<tensor handle>          i32 [B, N]
//   modelParameters(model) -> [{name, tensor}]   the model's own float weights (shared, not copies):
//        f32, or bf16 for the matrices of a bf16 device model
//   modelParameterNames(model) -> [name]
//   modelDispose(model)
//   modelQuantize(model, plan: [{name, bits, groupSize?, symmetric?, scaleDtype?, clip?}]) -> Promise<void>
//        the handle's model becomes one with those block linear weights quantized
//   modelQuantizedWeights(model) -> [{name, tensor}]  the quantized weights (int4 / i8 with quant info)
//   modelLinearNames(model) -> [name]                 the blocks' linear weights, in layer order
//   modelEmbeddingNames(model) -> {embedding, head}   the token embedding and LM head (equal when tied)
//   modelGptqCheckpoint(model) -> {format, layers: [{name, qweight, qzeros, scales, g_idx}]}  for save
//
// modelCreate's optional third argument {bits, groupSize, descAct, sym, v2, dynamic?: [{key, bits?,
// groupSize?, descAct?, sym?}]} says the checkpoint stores GPTQ layers (config.json
// quantization_config; dynamic: its per-module overrides in order), converted at load (model/gptq.h).
//
// `config` is the plain object src/model.ts builds from config.json (camelCase fields of
// TransformerConfig). `perturbation` is {seed, scale, dist: 'normal'|'rademacher', trainable:
// [names], streams?: {name: stream}}; a trainable weight's stream defaults to stream_id(name).
// Work runs on libuv threads; each call holds the model alive until it finishes.
#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>

#include "common.h"
#include "quant_args.h"
#include "model/transformer.h"
#include "model/transformer_quant.h"

namespace zeroth::napi {
namespace {

using model::Model;

const napi_type_tag kModelTag = {0x7a65726f74684d6fULL, 0x64656c48616e646cULL};

struct ModelBox {
  std::shared_ptr<const Model> model;
};

std::shared_ptr<const Model> unwrap_model(Napi::Env env, const Napi::Value& v) {
  bool tagged = false;
  if (v.IsExternal()) NAPI_THROW_IF_FAILED(env, napi_check_object_type_tag(env, v, &kModelTag, &tagged), nullptr);
  if (!tagged) throw_error(env, ZEROTH_E_INVALID_ARG, "handle is not a zeroth model handle");
  ModelBox* box = v.As<Napi::External<ModelBox>>().Data();
  if (!box->model) throw_error(env, ZEROTH_E_DISPOSED, "the model was disposed; load it again");
  return box->model;
}

bool is_absent(const Napi::Value& v) { return v.IsUndefined() || v.IsNull(); }

Napi::Value field(Napi::Env env, const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined()) throw_error(env, ZEROTH_E_INVALID_ARG, std::string("model config is missing '") + name + "'");
  return v;
}

bool bool_field(Napi::Env env, const Napi::Object& o, const char* name) {
  Napi::Value v = field(env, o, name);
  if (!v.IsBoolean()) throw_error(env, ZEROTH_E_INVALID_ARG, std::string("model config '") + name + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

model::TransformerConfig parse_config(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "model config must be an object");
  Napi::Object o = v.As<Napi::Object>();
  model::TransformerConfig c;
  const std::string family = arg_string(env, field(env, o, "family"), "config.family");
  if (family == "gpt2") c.family = model::Family::Gpt2;
  else if (family == "opt") c.family = model::Family::Opt;
  else if (family == "llama") c.family = model::Family::Llama;
  else throw_error(env, ZEROTH_E_UNSUPPORTED, "config.family must be 'gpt2', 'opt' or 'llama' (got '" + family + "')");
  const std::string act = arg_string(env, field(env, o, "activation"), "config.activation");
  if (act == "gelu_tanh") c.activation = model::Activation::GeluTanh;
  else if (act == "gelu") c.activation = model::Activation::GeluErf;
  else if (act == "relu") c.activation = model::Activation::Relu;
  else if (act == "silu") c.activation = model::Activation::Silu;
  else throw_error(env, ZEROTH_E_UNSUPPORTED, "config.activation must be 'gelu_tanh', 'gelu', 'relu' or 'silu'");
  c.n_layer = arg_int(env, field(env, o, "nLayer"), "config.nLayer");
  c.d_model = arg_int(env, field(env, o, "dModel"), "config.dModel");
  c.n_head = arg_int(env, field(env, o, "nHead"), "config.nHead");
  c.n_kv_head = arg_int(env, field(env, o, "nKvHead"), "config.nKvHead");
  c.head_dim = arg_int(env, field(env, o, "headDim"), "config.headDim");
  c.d_ff = arg_int(env, field(env, o, "dFf"), "config.dFf");
  c.vocab_size = arg_int(env, field(env, o, "vocabSize"), "config.vocabSize");
  c.max_positions = arg_int(env, field(env, o, "maxPositions"), "config.maxPositions");
  c.norm_eps = arg_number(env, field(env, o, "normEps"), "config.normEps");
  c.rope_theta = arg_number(env, field(env, o, "ropeTheta"), "config.ropeTheta");
  c.pre_norm = bool_field(env, o, "preNorm");
  c.qkv_bias = bool_field(env, o, "qkvBias");
  c.out_bias = bool_field(env, o, "outBias");
  c.mlp_bias = bool_field(env, o, "mlpBias");
  c.norm_affine = bool_field(env, o, "normAffine");
  c.tied_embeddings = bool_field(env, o, "tiedEmbeddings");
  c.word_embed_proj_dim = arg_int(env, field(env, o, "wordEmbedProjDim"), "config.wordEmbedProjDim");
  c.pad_token_id = arg_int(env, field(env, o, "padTokenId"), "config.padTokenId");
  return c;
}

std::unique_ptr<model::ForwardPerturbation> parse_perturbation(Napi::Env env, const Napi::Value& v,
                                                               const Model& m) {
  if (is_absent(v)) return nullptr;
  if (!v.IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "perturbation must be an object");
  Napi::Object o = v.As<Napi::Object>();
  auto p = std::make_unique<model::ForwardPerturbation>();
  p->seed = arg_u64(env, o.Get("seed"), "perturbation.seed");
  const double scale = arg_number(env, o.Get("scale"), "perturbation.scale");
  if (!std::isfinite(scale)) throw_error(env, ZEROTH_E_INVALID_ARG, "perturbation.scale must be finite");
  p->scale = static_cast<float>(scale);
  const std::string dist = is_absent(o.Get("dist")) ? "normal" : arg_string(env, o.Get("dist"), "perturbation.dist");
  if (dist == "normal") p->dist = rng::Distribution::Normal;
  else if (dist == "rademacher") p->dist = rng::Distribution::Rademacher;
  else throw_error(env, ZEROTH_E_INVALID_ARG, "perturbation.dist must be 'normal' or 'rademacher'");
  Napi::Value trainable = o.Get("trainable");
  if (!trainable.IsArray()) throw_error(env, ZEROTH_E_INVALID_ARG, "perturbation.trainable must be an array of weight names");
  Napi::Value streams = o.Get("streams");
  if (!is_absent(streams) && !streams.IsObject())
    throw_error(env, ZEROTH_E_INVALID_ARG, "perturbation.streams must be an object {name: stream}");
  Napi::Array names = trainable.As<Napi::Array>();
  for (uint32_t i = 0; i < names.Length(); ++i) {
    const std::string name = arg_string(env, names.Get(i), "perturbation.trainable entry");
    bool known = false;
    for (const auto& w : m.weights()) known = known || w.name == name;
    if (!known) throw_error(env, ZEROTH_E_INVALID_ARG, "perturbation.trainable names '" + name + "', which is not a weight of this model");
    uint64_t stream = rng::stream_id(name.data(), name.size());
    if (!is_absent(streams)) {
      Napi::Value s = streams.As<Napi::Object>().Get(name);
      if (!is_absent(s)) stream = arg_u64(env, s, ("perturbation.streams['" + name + "']").c_str());
    }
    p->streams[name] = stream;
  }
  return p;
}

TensorPtr optional_tensor(Napi::Env env, const Napi::Value& v, const char* what) {
  return is_absent(v) ? nullptr : unwrap_tensor(env, v, what);
}

std::shared_ptr<const model::GptqFormat> parse_gptq(Napi::Env env, const Napi::Value& v) {
  if (is_absent(v)) return nullptr;
  if (!v.IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "the GPTQ format must be an object");
  Napi::Object o = v.As<Napi::Object>();
  auto f = std::make_shared<model::GptqFormat>();
  f->bits = static_cast<int>(arg_int(env, o.Get("bits"), "quantization_config.bits"));
  f->group_size = arg_int(env, o.Get("groupSize"), "quantization_config.group_size");
  f->desc_act = bool_field(env, o, "descAct");
  f->sym = bool_field(env, o, "sym");
  f->v2 = bool_field(env, o, "v2");
  // dynamic: [{key, bits?, groupSize?, descAct?, sym?}] in the config's order (absent: none).
  Napi::Value dyn = o.Get("dynamic");
  if (!is_absent(dyn)) {
    if (!dyn.IsArray()) throw_error(env, ZEROTH_E_INVALID_ARG, "the GPTQ format's dynamic must be an array");
    Napi::Array list = dyn.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); ++i) {
      Napi::Value e = list.Get(i);
      if (!e.IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "a GPTQ dynamic entry must be an object");
      Napi::Object eo = e.As<Napi::Object>();
      model::GptqOverride d;
      d.key = arg_string(env, eo.Get("key"), "quantization_config.dynamic key");
      const std::string what = "quantization_config.dynamic['" + d.key + "'].";
      if (!is_absent(eo.Get("bits"))) d.bits = static_cast<int>(arg_int(env, eo.Get("bits"), (what + "bits").c_str()));
      if (!is_absent(eo.Get("groupSize"))) d.group_size = arg_int(env, eo.Get("groupSize"), (what + "group_size").c_str());
      if (!is_absent(eo.Get("descAct"))) d.desc_act = bool_field(env, eo, "descAct");
      if (!is_absent(eo.Get("sym"))) d.sym = bool_field(env, eo, "sym");
      f->dynamic.push_back(std::move(d));
    }
  }
  return f;
}

Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const model::TransformerConfig config = parse_config(env, info[0]);
  std::shared_ptr<const model::GptqFormat> gptq = parse_gptq(env, info[2]);
  if (!info[1].IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "weights must be an object {name: tensor}");
  Napi::Object w = info[1].As<Napi::Object>();
  Napi::Array keys = w.GetPropertyNames();
  auto weights = std::make_shared<std::unordered_map<std::string, TensorPtr>>();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string name = keys.Get(i).ToString().Utf8Value();
    (*weights)[name] = unwrap_tensor(env, w.Get(name), ("weights['" + name + "']").c_str());
  }
  // The device is checked here (E_DEVICE naming what is missing) before any work starts.
  const zeroth_device device = is_absent(info[3]) ? zeroth_device{ZEROTH_DEVICE_CPU, 0} : arg_device(env, info[3], "device");
  // The matrices' dtype on a device model; checked before any work starts, as the device.
  zeroth_dtype matrices = ZEROTH_F32;
  if (!is_absent(info[4])) {
    const std::string name = arg_string(env, info[4], "dtype");
    if (name == "bf16") matrices = ZEROTH_BF16;
    else if (name != "f32")
      throw_error(env, ZEROTH_E_UNSUPPORTED, "dtype '" + name + "' is not supported; use 'f32' or, on a CUDA device, 'bf16'");
    if (matrices == ZEROTH_BF16 && device.type == ZEROTH_DEVICE_CPU)
      throw_error(env, ZEROTH_E_UNSUPPORTED,
                  "dtype 'bf16' needs a CUDA device (the CPU forward computes in f32; f16/bf16 checkpoints are "
                  "widened at load); use device 'cuda' or dtype 'f32'");
    if (matrices == ZEROTH_BF16 && gptq)
      throw_error(env, ZEROTH_E_UNSUPPORTED,
                  "dtype 'bf16' applies to float matrices; this checkpoint stores GPTQ layers: load it with dtype 'f32'");
  }
  auto result = std::make_shared<std::shared_ptr<const Model>>();
  return run_async(
      env,
      [config, weights, gptq, device, matrices, result] {
        auto cpu = std::make_shared<const Model>(config, *weights, gptq.get());
        // The host copy goes once the device one exists (the caller's tensors are its only other owner).
        if (device.type == ZEROTH_DEVICE_CPU) *result = std::move(cpu);
        else *result = cpu->to_device(device, matrices);
      },
      [result](Napi::Env e) -> Napi::Value {
        auto* box = new ModelBox{std::move(*result)};
        auto handle = Napi::External<ModelBox>::New(e, box, [](Napi::Env, ModelBox* b) { delete b; });
        NAPI_THROW_IF_FAILED(e, napi_type_tag_object(e, handle, &kModelTag), Napi::Value());
        return handle;
      });
}

// forward and loss share their arguments; `loss` picks which one runs.
Napi::Value ForwardOrLoss(const Napi::CallbackInfo& info, bool loss) {
  Napi::Env env = info.Env();
  std::shared_ptr<const Model> m = unwrap_model(env, info[0]);
  TensorPtr ids = unwrap_tensor(env, info[1], "inputIds");
  TensorPtr mask = optional_tensor(env, info[2], "attentionMask");
  std::shared_ptr<model::ForwardPerturbation> p = guarded(env, [&] { return parse_perturbation(env, info[3], *m); });
  auto result = std::make_shared<TensorPtr>();
  return run_async(
      env,
      [m, ids, mask, p, result, loss] {
        *result = loss ? m->loss(*ids, mask.get(), p.get()) : m->forward(*ids, mask.get(), p.get());
      },
      [result](Napi::Env e) { return wrap_tensor(e, std::move(*result)); });
}

Napi::Value Forward(const Napi::CallbackInfo& info) { return ForwardOrLoss(info, false); }
Napi::Value Loss(const Napi::CallbackInfo& info) { return ForwardOrLoss(info, true); }

Napi::Value Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<const Model> m = unwrap_model(env, info[0]);
  TensorPtr ids = unwrap_tensor(env, info[1], "inputIds");
  TensorPtr mask = optional_tensor(env, info[2], "attentionMask");
  if (!info[3].IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "sampling options must be an object");
  Napi::Object o = info[3].As<Napi::Object>();
  model::SamplingOptions s;
  s.max_new_tokens = arg_int(env, o.Get("maxNewTokens"), "maxNewTokens");
  s.temperature = static_cast<float>(arg_number(env, o.Get("temperature"), "temperature"));
  s.top_k = arg_int(env, o.Get("topK"), "topK");
  s.top_p = static_cast<float>(arg_number(env, o.Get("topP"), "topP"));
  s.seed = arg_u64(env, o.Get("seed"), "seed");
  s.eos_token_id = arg_int(env, o.Get("eosTokenId"), "eosTokenId");
  auto result = std::make_shared<TensorPtr>();
  return run_async(
      env, [m, ids, mask, s, result] { *result = m->generate(*ids, mask.get(), s); },
      [result](Napi::Env e) { return wrap_tensor(e, std::move(*result)); });
}

// The f32 weights (parameters) or the quantized ones, as [{name, tensor}].
Napi::Value WeightList(const Napi::CallbackInfo& info, bool quantized) {
  Napi::Env env = info.Env();
  std::shared_ptr<const Model> m = unwrap_model(env, info[0]);
  Napi::Array out = Napi::Array::New(env);
  uint32_t k = 0;
  for (const auto& w : m->weights()) {
    if (static_cast<bool>(w.tensor->quant) != quantized) continue;
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", w.name);
    o.Set("tensor", wrap_tensor(env, w.tensor));
    out.Set(k++, o);
  }
  return out;
}

Napi::Value Parameters(const Napi::CallbackInfo& info) { return WeightList(info, false); }
Napi::Value QuantizedWeights(const Napi::CallbackInfo& info) { return WeightList(info, true); }

Napi::Value ParameterNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<const Model> m = unwrap_model(env, info[0]);
  Napi::Array out = Napi::Array::New(env);
  uint32_t k = 0;
  for (const auto& w : m->weights())
    if (!w.tensor->quant) out.Set(k++, w.name);
  return out;
}

Napi::Value LinearNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<const Model> m = unwrap_model(env, info[0]);
  const std::vector<std::string> names = m->linear_names();
  Napi::Array out = Napi::Array::New(env, names.size());
  for (uint32_t i = 0; i < names.size(); ++i) out.Set(i, names[i]);
  return out;
}

Napi::Value EmbeddingNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<const Model> m = unwrap_model(env, info[0]);
  Napi::Object o = Napi::Object::New(env);
  o.Set("embedding", m->embedding_name());
  o.Set("head", m->head_name());
  return o;
}

Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<const Model> m = unwrap_model(env, info[0]);
  if (!info[1].IsArray()) throw_error(env, ZEROTH_E_INVALID_ARG, "the quantization plan must be an array");
  Napi::Array items = info[1].As<Napi::Array>();
  auto plan = std::make_shared<std::vector<std::pair<std::string, QuantizeOptions>>>();
  for (uint32_t i = 0; i < items.Length(); ++i) {
    if (!items.Get(i).IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "each plan entry must be an object");
    Napi::Object o = items.Get(i).As<Napi::Object>();
    plan->emplace_back(arg_string(env, o.Get("name"), "plan entry name"), quant_options(env, o));
  }
  // The box is updated on the main thread once the new model exists; calls in flight keep theirs.
  auto box = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(info[0]));
  auto result = std::make_shared<std::shared_ptr<const Model>>();
  return run_async(
      env, [m, plan, result] { *result = m->quantized(*plan); },
      [box, result](Napi::Env e) -> Napi::Value {
        ModelBox* b = box->Value().As<Napi::External<ModelBox>>().Data();
        if (b->model) b->model = std::move(*result);  // a model disposed meanwhile stays disposed
        return e.Undefined();
      });
}

// modelGptqCheckpoint(model) -> {format: {bits, groupSize, descAct, sym, v2, dynamic: [{key, bits?,
// groupSize?, descAct?, sym?}]}, layers: [{name, qweight, qzeros, scales, g_idx}]}: every
// quantized layer in GPTQ layout, in the checkpoint's format resolved for that layer (int8 layers
// and other group sizes through exact-name dynamic entries; float block linear layers get "-:"
// entries). E_UNSUPPORTED when a layer cannot be written (model/transformer_quant.h).
Napi::Value GptqCheckpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<const Model> m = unwrap_model(env, info[0]);
  struct Layer {
    std::string name;
    model::GptqTensors t;
  };
  std::vector<Layer> layers;
  model::GptqFormat format;
  guarded(env, [&] {
    const std::vector<std::string> linear = m->linear_names();
    // The quantized layers, a device model's as host copies (the GPTQ packing is CPU code).
    std::vector<model::Weight> host;
    std::vector<std::string> float_linear;
    for (const auto& w : m->weights()) {
      if (w.tensor->quant) host.push_back(w);
      else if (std::find(linear.begin(), linear.end(), w.name) != linear.end()) float_linear.push_back(w.name);
    }
    std::vector<const model::Weight*> quantized;
    for (model::Weight& w : host) {
      if (!w.tensor->on_cpu()) w.tensor = model::host_copy(*w.tensor);
      quantized.push_back(&w);
    }
    format = model::gptq_checkpoint_format(quantized, float_linear);
    for (const model::Weight* w : quantized) {
      const std::string stem = model::weight_stem(w->name);
      const std::optional<model::GptqFormat> lf = model::gptq_layer_format(format, stem);
      ZCHECK(lf.has_value(), ZEROTH_E_INVALID_ARG, "internal: the checkpoint format excludes quantized '" + stem + "'");
      layers.push_back({w->name, model::quantized_to_gptq(stem, *w->tensor, *lf)});
    }
  });
  Napi::Object out = Napi::Object::New(env);
  Napi::Object f = Napi::Object::New(env);
  f.Set("bits", Napi::Number::New(env, format.bits));
  f.Set("groupSize", Napi::Number::New(env, static_cast<double>(format.group_size)));
  f.Set("descAct", Napi::Boolean::New(env, format.desc_act));
  f.Set("sym", Napi::Boolean::New(env, format.sym));
  f.Set("v2", Napi::Boolean::New(env, format.v2));
  Napi::Array dyn = Napi::Array::New(env, format.dynamic.size());
  for (uint32_t i = 0; i < format.dynamic.size(); ++i) {
    const model::GptqOverride& d = format.dynamic[i];
    Napi::Object e = Napi::Object::New(env);
    e.Set("key", d.key);
    if (d.bits) e.Set("bits", Napi::Number::New(env, *d.bits));
    if (d.group_size) e.Set("groupSize", Napi::Number::New(env, static_cast<double>(*d.group_size)));
    if (d.desc_act) e.Set("descAct", Napi::Boolean::New(env, *d.desc_act));
    if (d.sym) e.Set("sym", Napi::Boolean::New(env, *d.sym));
    dyn.Set(i, e);
  }
  f.Set("dynamic", dyn);
  out.Set("format", f);
  Napi::Array list = Napi::Array::New(env, layers.size());
  for (uint32_t i = 0; i < layers.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", layers[i].name);
    o.Set("qweight", wrap_tensor(env, layers[i].t.qweight));
    o.Set("qzeros", wrap_tensor(env, layers[i].t.qzeros));
    o.Set("scales", wrap_tensor(env, layers[i].t.scales));
    o.Set("g_idx", wrap_tensor(env, layers[i].t.g_idx));
    list.Set(i, o);
  }
  out.Set("layers", list);
  return out;
}

// modelAddLora(model, weightName, A, B, scale): the handle's model is replaced by one with the
// adapter (calls in flight keep the old one).
Napi::Value AddLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<const Model> m = unwrap_model(env, info[0]);
  const std::string name = arg_string(env, info[1], "weight name");
  TensorPtr a = unwrap_tensor(env, info[2], "lora A");
  TensorPtr b = unwrap_tensor(env, info[3], "lora B");
  const double scale = arg_number(env, info[4], "lora scale");
  if (m->device().type != ZEROTH_DEVICE_CPU) {
    // A device model's adapters live beside its weights: upload the (small) CPU matrices.
    guarded(env, [&] {
      if (a->on_cpu() && a->dtype == ZEROTH_F32) a = tensor_copy(*a, ZEROTH_F32, m->device());
      if (b->on_cpu() && b->dtype == ZEROTH_F32) b = tensor_copy(*b, ZEROTH_F32, m->device());
    });
  }
  std::shared_ptr<const Model> next = guarded(env, [&] { return m->with_lora(name, a, b, static_cast<float>(scale)); });
  info[0].As<Napi::External<ModelBox>>().Data()->model = next;
  return env.Undefined();
}

Napi::Value Device(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return device_value(env, unwrap_model(env, info[0])->device());
}

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool tagged = false;
  if (info[0].IsExternal()) NAPI_THROW_IF_FAILED(env, napi_check_object_type_tag(env, info[0], &kModelTag, &tagged), env.Undefined());
  if (!tagged) throw_error(env, ZEROTH_E_INVALID_ARG, "handle is not a zeroth model handle");
  info[0].As<Napi::External<ModelBox>>().Data()->model.reset();  // calls in flight keep their own reference
  return env.Undefined();
}

void init(Napi::Env env, Napi::Object exports) {
  exports.Set("modelCreate", Napi::Function::New(env, Create));
  exports.Set("modelAddLora", Napi::Function::New(env, AddLora));
  exports.Set("modelForward", Napi::Function::New(env, Forward));
  exports.Set("modelLoss", Napi::Function::New(env, Loss));
  exports.Set("modelGenerate", Napi::Function::New(env, Generate));
  exports.Set("modelParameters", Napi::Function::New(env, Parameters));
  exports.Set("modelParameterNames", Napi::Function::New(env, ParameterNames));
  exports.Set("modelDispose", Napi::Function::New(env, Dispose));
  exports.Set("modelDevice", Napi::Function::New(env, Device));
  exports.Set("modelQuantize", Napi::Function::New(env, Quantize));
  exports.Set("modelQuantizedWeights", Napi::Function::New(env, QuantizedWeights));
  exports.Set("modelLinearNames", Napi::Function::New(env, LinearNames));
  exports.Set("modelEmbeddingNames", Napi::Function::New(env, EmbeddingNames));
  exports.Set("modelGptqCheckpoint", Napi::Function::New(env, GptqCheckpoint));
}

}  // namespace

ZEROTH_NAPI_MODULE(model, init);

}  // namespace zeroth::napi
