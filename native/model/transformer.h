// transformer.h — the CPU forward pass of the three causal-LM families zeroth loads:
// GPT-2 (GPT2LMHeadModel), OPT (OPTForCausalLM) and the Llama family (LlamaForCausalLM,
// Qwen2ForCausalLM, SmolLM). Semantics follow the Hugging Face transformers implementations
// (tested against reference logits within 1e-4 in f32).
//
// A Model is a parsed config plus named f32 weights, named as in the checkpoint. Weights given
// in f16/bf16 are converted to f32 once at creation; f32 weights are shared, not copied, so an
// optimizer writing them in place changes what the next forward reads.
//
// Every weight read can carry an on-the-fly perturbation (DESIGN.md principle 2): element i of
// a trainable weight W is read as fl(W[i] + fl(scale·z(seed, stream(W), i))) — in GEMM packing
// for matrices, and through add_scaled_z for embedding rows, norm weights and biases — so a
// perturbed forward equals a forward on weights perturbed in place, and writes no weights.
//
// Positions. A real token's position is the number of real tokens before it in its row, so
// right padding matches the reference forward and left padding works like HF generate. Pad
// tokens get the slot index (GPT-2, Llama) or OPT's padding position (index 1 of the table).
// Keys at padded slots are masked out; a query with no visible key yields zeros.
//
// Devices. A model made by to_device holds every weight on one CUDA device and runs forward
// and loss there (transformer_cuda.cpp, the twin of Model::run / forward / loss, with the same
// semantics); inputs stay CPU int32 tensors and results come back as CPU tensors. Its matrices
// are f32 or, on request, bf16 (tensor-core products; see to_device).
//
// Memory. A Model keeps its activation buffers (and the loss's logits block: scored rows × a
// vocabulary chunk of 8192, at most 128 MiB) between calls, sized by the largest batch seen, so
// repeated forwards fault in no new pages.
// Calls may run concurrently; a call that finds the buffers busy uses a private set.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/philox.h"
#include "core/tensor.h"
#include "cpu/gemm.h"
#include "cpu/quant.h"
#include "model/gptq.h"

namespace zeroth::model {

enum class Family { Gpt2, Opt, Llama };
enum class Activation { GeluTanh, GeluErf, Relu, Silu };

// The architecture facts the forward needs; the TypeScript layer maps config.json onto this
// (src/model.ts) and validate_config re-checks it here.
struct TransformerConfig {
  Family family = Family::Gpt2;
  int64_t n_layer = 0;
  int64_t d_model = 0;
  int64_t n_head = 0;
  int64_t n_kv_head = 0;   // grouped-query attention when < n_head
  int64_t head_dim = 0;    // usually d_model / n_head
  int64_t d_ff = 0;
  int64_t vocab_size = 0;
  int64_t max_positions = 0;  // learned position table size (GPT-2, OPT); a bound for Llama
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  Activation activation = Activation::GeluTanh;
  bool pre_norm = true;         // OPT do_layer_norm_before=false: post-LN blocks, no final norm
  bool qkv_bias = true;         // Llama family: attention_bias; Qwen2: always
  bool out_bias = true;         // o_proj / out_proj / c_proj bias
  bool mlp_bias = true;
  bool norm_affine = true;      // OPT layer_norm_elementwise_affine
  bool tied_embeddings = true;  // lm_head reads the token embedding
  int64_t word_embed_proj_dim = 0;  // OPT: embedding width (project_in/out when != d_model)
  int64_t pad_token_id = -1;
};

void validate_config(const TransformerConfig& c);  // E_UNSUPPORTED / E_INVALID_ARG naming the field

// "<stem>.weight" -> "<stem>" (other names unchanged): the module a weight belongs to, which
// names its LoRA adapters, its quantization scales and its GPTQ tensors.
std::string weight_stem(const std::string& name);

// The perturbation a forward applies to its weight reads. Only weights named in `streams`
// are perturbed (the trainable ones), each with its own stream id.
struct ForwardPerturbation {
  uint64_t seed = 0;
  float scale = 0.0f;
  rng::Distribution dist = rng::Distribution::Normal;
  std::unordered_map<std::string, uint64_t> streams;  // weight name -> stream id
};

struct SamplingOptions {
  int64_t max_new_tokens = 16;
  float temperature = 0.0f;  // 0: greedy (argmax, lowest index on ties)
  int64_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // 1: off
  uint64_t seed = 0;         // Philox key of the sampling uniforms
  int64_t eos_token_id = -1; // a row stops after emitting it; -1: never
};

struct Weight {
  std::string name;
  // f32, CPU, contiguous; or, for a block's linear layer, a quantized weight (int4 / int8,
  // cpu/quant.h) stored [out, in] whatever the checkpoint's layout, with f32 scales and zeros.
  // On a device model: on its device, and bf16 for the matrices of to_device(…, ZEROTH_BF16).
  TensorPtr tensor;
  bool in_out = false;   // stored [in, out] (GPT-2 Conv1D) rather than [out, in] (nn.Linear)
  // A quantized weight's scales [out, groups] appear as their own f32 weight "<stem>.scales"
  // (index here, -1: none), sharing memory with the quant info: QZO perturbs and updates them
  // while the integer codes stay frozen.
  int scales = -1;
  // LoRA adapter of a linear weight (indices into Model::weights, -1: none): the layer reads
  // W + lora_scale·(B·A) as x·Wᵀ + lora_scale·(x·Aᵀ)·Bᵀ, A [rank, in], B [out, rank].
  int lora_a = -1, lora_b = -1;
  float lora_scale = 0.0f;
};

// One block's weights as indices into Model::weights (-1: absent). GPT-2 fuses q/k/v into
// c_attn (qkv); the Llama family has a gated MLP (gate, up = fc1, down = fc2).
struct LayerWeights {
  int norm1_w = -1, norm1_b = -1, norm2_w = -1, norm2_b = -1;
  int qkv = -1, qkv_b = -1;
  int q = -1, q_b = -1, k = -1, k_b = -1, v = -1, v_b = -1;
  int o = -1, o_b = -1;
  int gate = -1, gate_b = -1, fc1 = -1, fc1_b = -1, fc2 = -1, fc2_b = -1;
};

struct KVCache;          // transformer_internal.h
struct Workspace;        // transformer_internal.h
struct DeviceWorkspace;  // transformer_cuda.h

class Model {
 public:
  // `weights` maps checkpoint names to CPU tensors (f32, f16 or bf16). Missing, misshaped or
  // unexpected weights give E_FORMAT naming the tensor.
  // With `gptq`, layers stored as GPTQ tensors (<stem>.qweight / qzeros / scales / g_idx) are
  // converted to zeroth's int4 layout at creation (model/gptq.h).
  Model(const TransformerConfig& config, const std::unordered_map<std::string, TensorPtr>& weights,
        const GptqFormat* gptq = nullptr);
  ~Model();

  const TransformerConfig& config() const { return config_; }

  // Where the weights live: the CPU, or the CUDA device of a model made by to_device.
  zeroth_device device() const { return device_; }
  // A model with every weight uploaded once to CUDA device `device` (f32 weights copied;
  // quantized weights as device codes, f32 scales and zeros, their "<stem>.scales" entry the
  // same device tensor as the scales the kernels read). Its forward, loss and the optimizer's
  // updates of weights() then run on that device. E_DEVICE when the build has no CUDA backend,
  // or the machine no usable device (the message says which); E_UNSUPPORTED for shapes the
  // device kernels do not take (head_dim > 256).
  // `matrices` ZEROTH_BF16 stores the matrices the products read (block linear weights, the
  // token embedding / LM head, project_in / project_out) as bf16 device tensors, rounded to
  // nearest even from f32 (tensor_copy's conversion); they then run on tensor cores
  // (cuda::gemm_bf16: activations rounded to bf16, f32 accumulation, the perturbation applied
  // in the weight-tile load), and weights() holds them as bf16. Norms, biases, position tables
  // and LoRA adapters stay f32. E_UNSUPPORTED for other dtypes and for a model with quantized
  // weights (bf16 applies to float matrices only).
  std::shared_ptr<Model> to_device(zeroth_device device, zeroth_dtype matrices = ZEROTH_F32) const;

  // A new model sharing these weights, with a LoRA adapter on linear weight `weight`: A [rank,
  // in] and B [out, rank] (f32 CPU) become weights named "<stem>.lora_A.weight" and
  // "<stem>.lora_B.weight" (stem: `weight` without ".weight"), read with scale alpha / rank.
  // A new object, so forwards in flight on this one are not disturbed.
  std::shared_ptr<Model> with_lora(const std::string& weight, const TensorPtr& a, const TensorPtr& b,
                                   float scale) const;
  const std::vector<Weight>& weights() const { return weights_; }

  // A new model sharing the other weights, with each named weight (block linear layers, the
  // token embedding, the LM head) quantized with
  // its options (transposed to [out, in] first when stored [in, out]). Scales and zeros are
  // held in f32 (f16 scales are widened exactly). E_INVALID_ARG for names that are not block
  // linear weights or are quantized already.
  std::shared_ptr<Model> quantized(const std::vector<std::pair<std::string, QuantizeOptions>>& plan) const;
  // Names of the blocks' linear weights (attention and MLP projections), in layer order.
  std::vector<std::string> linear_names() const;
  bool is_block_linear(int w) const;
  // Block linear layers, the token embedding and the LM head may be held quantized.
  bool may_quantize(int w) const;
  // The token embedding's name, and the LM head's (the same when tied).
  std::string embedding_name() const { return weights_[static_cast<size_t>(tok_embed_)].name; }
  std::string head_name() const { return weights_[static_cast<size_t>(head_)].name; }

  // logits f32 [B, T, V]. ids i32 [B, T]; mask i32 [B, T] of 0/1, or nullptr (all ones).
  TensorPtr forward(const Tensor& ids, const Tensor* mask, const ForwardPerturbation* p = nullptr) const;
  // f64 [B]: per row, the mean next-token cross entropy over pairs (t, t+1) that are both
  // real; NaN for a row with no such pair. Reduced in float64.
  TensorPtr loss(const Tensor& ids, const Tensor* mask, const ForwardPerturbation* p = nullptr) const;
  // i32 [B, max_new_tokens]: tokens generated after each row's last real token, with a KV
  // cache; rows that emitted eos are filled with the pad id (or eos when there is none).
  TensorPtr generate(const Tensor& ids, const Tensor* mask, const SamplingOptions& opts) const;

  // Rows of the LM head per loss chunk (0: as many as a 128 MiB logits buffer holds). Tests
  // set small values to cover the chunked path.
  void set_loss_chunk_rows(int64_t rows) { loss_chunk_rows_ = rows; }
  // Vocabulary entries per chunk of the loss's LM head (0: kLossVocabChunk). Tests set small
  // values; the losses agree with one whole-vocabulary chunk up to float rounding.
  void set_loss_vocab_chunk(int64_t n) { loss_vocab_chunk_ = n; }
  static constexpr int64_t kLossVocabChunk = 8192;

  // Per-call view of the weights with their perturbation descriptors (transformer_internal.h).
  struct Resolved;
  // The device twin's KV cache (transformer_cuda.cpp).
  struct DeviceCache;

 private:
  Model(const Model& other);  // shares the weight tensors; fresh workspace (with_lora)
  void bind_weights(const std::unordered_map<std::string, TensorPtr>& given);
  int add_weight(const std::unordered_map<std::string, TensorPtr>& given, const std::string& name,
                 const Shape& shape, bool in_out);
  // Appends the "<stem>.scales" entry of quantized weight w (transformer_quant.cpp).
  void add_scales_entry(int w);
  // Runs S new tokens per row through the network, appending their keys/values to `cache`,
  // and returns the final hidden states (after final norm and project_out), [B*S, head_width()],
  // which live in `ws` until its next use.
  const float* run(const int32_t* ids, const int32_t* mask, int64_t B, int64_t S, KVCache& cache, const Resolved& r,
                   Workspace& ws) const;
  // The model's scratch buffers when no other call holds them, else a fresh set (see
  // WorkspaceLease in transformer_internal.h).
  friend class WorkspaceLease;
  friend class DeviceWorkspaceLease;
  // logits[M, V] = hidden[M, head_width] · head^T
  void lm_head(const float* hidden, int64_t M, const Resolved& r, float* logits) const;
  int64_t head_width() const;
  // Rows of the LM head per loss block: set_loss_chunk_rows's, or what a 128 MiB buffer of
  // logits `width` wide holds.
  int64_t loss_chunk(int64_t width) const;
  // logits[M, nv] = hidden · rows [v0, v0 + nv) of the head, transposed (the loss's vocabulary
  // chunks; the whole head takes lm_head).
  void lm_head_slice(const float* hidden, int64_t M, const Resolved& r, int64_t v0, int64_t nv, float* logits) const;
  void check_inputs(const Tensor& ids, const Tensor* mask) const;
  // Weight w is a matrix to_device may hold in bf16 (transformer_cuda.cpp).
  bool is_device_matrix(int w) const;

  // The CUDA twins (transformer_cuda.cpp), called by forward / loss / quantized when the
  // weights live on a CUDA device. run_cuda mirrors run (device pointers, the hidden states
  // live in `ws`); lm_head_cuda mirrors lm_head.
  TensorPtr forward_cuda(const Tensor& ids, const Tensor* mask, const ForwardPerturbation* p) const;
  TensorPtr loss_cuda(const Tensor& ids, const Tensor* mask, const ForwardPerturbation* p) const;
  std::shared_ptr<Model> quantized_cuda(const std::vector<std::pair<std::string, QuantizeOptions>>& plan) const;
  const float* run_cuda(const int32_t* ids, const int32_t* mask, int64_t B, int64_t S, DeviceCache& cache,
                        const Resolved& r, DeviceWorkspace& ws) const;
  void lm_head_cuda(const float* hidden, int64_t M, const Resolved& r, DeviceWorkspace& ws, float* logits) const;

  TransformerConfig config_;
  std::vector<Weight> weights_;
  std::unordered_map<std::string, int> index_;
  std::vector<LayerWeights> layers_;
  // Top-level weights (-1 when absent).
  int tok_embed_ = -1, pos_embed_ = -1, final_norm_w_ = -1, final_norm_b_ = -1, head_ = -1;
  int project_in_ = -1, project_out_ = -1;
  int64_t loss_chunk_rows_ = 0;
  int64_t loss_vocab_chunk_ = 0;
  // Activation buffers kept between calls: re-faulting tens of MB of fresh pages per forward
  // costs more than the norms and attention together on small machines.
  mutable std::mutex workspace_mutex_;
  mutable std::unique_ptr<Workspace> workspace_;
  // The device the weights live on, and the device twin's buffers (transformer_cuda.h).
  zeroth_device device_{ZEROTH_DEVICE_CPU, 0};
  mutable std::mutex device_workspace_mutex_;
  mutable std::unique_ptr<DeviceWorkspace> device_workspace_;
};

}  // namespace zeroth::model
