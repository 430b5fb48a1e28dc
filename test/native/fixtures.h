// fixtures.h — the reference fixtures of ../shared/fixtures (gpt2-tiny, opt-tiny, llama-tiny; see
// their README) as the native test programs use them: the model config transcribed from each
// config.json (the TypeScript layer parses config.json; test/model.test.ts covers that path),
// the checkpoint's weights, and the reference inputs, logits and per-row losses.
#pragma once
#include <string>
#include <unordered_map>

#include "core/tensor.h"
#include "model/safetensors.h"
#include "model/transformer.h"

namespace zeroth_test {

struct Fixture {
  zeroth::model::TransformerConfig config;
  std::unordered_map<std::string, zeroth::TensorPtr> weights;
  zeroth::TensorPtr ids, mask, logits, loss;
};

// The three fixture configs, transcribed from their config.json.
inline zeroth::model::TransformerConfig fixture_config(const std::string& name) {
  using namespace zeroth::model;
  TransformerConfig c;
  c.vocab_size = 320;
  c.d_model = 64;
  c.n_layer = 2;
  c.n_head = c.n_kv_head = 4;
  c.head_dim = 16;
  c.max_positions = 64;
  if (name == "gpt2-tiny") {
    c.family = Family::Gpt2;
    c.d_ff = 256;
    c.norm_eps = 1e-5;
    c.activation = Activation::GeluTanh;
  } else if (name == "opt-tiny") {
    c.family = Family::Opt;
    c.d_ff = 256;
    c.norm_eps = 1e-5;
    c.activation = Activation::Relu;
    c.word_embed_proj_dim = 64;
    c.pad_token_id = 1;
  } else {
    c.family = Family::Llama;
    c.d_ff = 176;
    c.n_kv_head = 2;
    c.norm_eps = 1e-6;
    c.rope_theta = 10000.0;
    c.activation = Activation::Silu;
    c.qkv_bias = c.out_bias = c.mlp_bias = false;
    c.tied_embeddings = false;
  }
  return c;
}

inline Fixture load_fixture(const std::string& dir, const std::string& name) {
  Fixture f;
  f.config = fixture_config(name);
  auto ck = zeroth::safetensors::Checkpoint::open(dir + "/" + name + "/model.safetensors");
  for (const auto& e : ck->tensors()) f.weights[e.info->name] = ck->load(e.info->name);
  auto ref = zeroth::safetensors::SafetensorsFile::open(dir + "/" + name + "/reference.safetensors");
  f.ids = ref->load("input_ids", ZEROTH_I32);
  f.mask = ref->load("attention_mask", ZEROTH_I32);
  f.logits = ref->load("logits", ZEROTH_F32);
  f.loss = ref->load("loss", ZEROTH_F64);
  return f;
}

}  // namespace zeroth_test
