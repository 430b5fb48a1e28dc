// transformer_internal.h — what the transformer_*.cpp files share and nobody else needs:
// the KV cache, the per-call weight view with perturbation descriptors, and the row kernels
// (norms, activations, RoPE, attention) the blocks are made of.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "model/transformer.h"

namespace zeroth::model {

// Keys and values of every layer, layout [B][n_kv_head][capacity][head_dim] per layer, so one
// (row, kv head) is a contiguous [slots, head_dim] matrix for the attention GEMMs. Slots are
// written before they are read, so `storage` needs no clearing (it may come from a Workspace).
// A whole-sequence forward or loss (every token in one run) never reads a layer's keys after
// that layer is done, so it keeps one layer's worth (`one_layer`): every layer then reads and
// writes the same storage, and the cache costs 1/n_layer of the memory (35 MB less for GPT-2
// small at 4 × 128). Generation keeps every layer.
struct KVCache {
  KVCache(const TransformerConfig& c, int64_t batch, int64_t capacity, std::vector<float> storage = {},
          bool one_layer = false);
  float* k(int64_t layer) { return storage.data() + slot(layer) * 2 * per_layer; }
  float* v(int64_t layer) { return k(layer) + per_layer; }
  const float* k(int64_t layer) const { return storage.data() + slot(layer) * 2 * per_layer; }
  const float* v(int64_t layer) const { return k(layer) + per_layer; }
  int64_t slot(int64_t layer) const { return one_layer ? 0 : layer; }

  bool one_layer = false;
  int64_t batch = 0;
  int64_t capacity = 0;
  int64_t length = 0;                  // slots filled so far (the same for every row)
  int64_t per_layer = 0;               // floats of one layer's keys (or values)
  std::vector<float> storage;          // [layer][k | v][B][n_kv][capacity][head_dim]
  std::vector<uint8_t> valid;          // [B, capacity]: the slot holds a real token
  std::vector<int64_t> real_count;     // per row: real tokens so far = next real position
};

// Scratch buffers of one call, by slot. get() grows a buffer and never shrinks it, so a model
// that runs the same shapes again touches no new pages; contents are not cleared.
enum WorkspaceSlot { kWsX, kWsTok, kWsH, kWsOut, kWsQ, kWsK, kWsV, kWsAtt, kWsQkv, kWsFf, kWsUp, kWsHidden,
                     kWsRows, kWsLogits, kWsSlots };
struct Workspace {
  std::vector<float>& get(WorkspaceSlot slot, int64_t n) {
    std::vector<float>& b = bufs[slot];
    if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
    return b;
  }
  std::vector<float> bufs[kWsSlots];
  std::vector<float> kv;  // KVCache storage between calls
};

// Holds the model's workspace for one call, or a private one when another call has it.
class WorkspaceLease {
 public:
  explicit WorkspaceLease(const Model& m) : lock_(m.workspace_mutex_, std::try_to_lock) {
    if (lock_.owns_lock()) {
      if (!m.workspace_) m.workspace_ = std::make_unique<Workspace>();
      ws_ = m.workspace_.get();
    } else {
      own_ = std::make_unique<Workspace>();
      ws_ = own_.get();
    }
  }
  Workspace& operator*() { return *ws_; }

 private:
  std::unique_lock<std::mutex> lock_;
  std::unique_ptr<Workspace> own_;
  Workspace* ws_ = nullptr;
};

// The weights as one call reads them: data pointers plus each weight's perturbation
// descriptor (inactive for frozen weights and for unperturbed calls).
struct Model::Resolved {
  Resolved(const std::vector<Weight>& weights, const ForwardPerturbation* p);
  const std::vector<Weight>& weights;
  std::vector<PerturbDesc> desc;

  const float* data(int w) const { return weights[static_cast<size_t>(w)].tensor->as<float>(); }
  // A copy of a small weight (bias, norm scale) with its perturbation applied; empty if w < 0.
  std::vector<float> vec(int w) const;
  // Copies row `row` (width `width`) of a 2-D weight into out, perturbed.
  void row(int w, int64_t row, int64_t width, float* out) const;
};

// ---- row kernels (transformer_norms.cpp) ----------------------------------------------------
// out = (x - mean) / sqrt(var + eps) * w + b per row; w, b may be null (no affine).
void layer_norm_rows(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps, float* out);
// out = x / sqrt(mean(x²) + eps) * w per row (Llama RMSNorm).
void rms_norm_rows(const float* x, int64_t rows, int64_t d, const float* w, float eps, float* out);
void activation_inplace(Activation a, float* x, int64_t n);
// gate = silu(gate) * up (SwiGLU), in place into gate.
void swiglu_inplace(float* gate, const float* up, int64_t n);
// x[r, :] += b for every row; b may be null.
void add_bias_rows(float* x, int64_t rows, int64_t n, const float* b);
void add_inplace(float* x, const float* y, int64_t n);

// ---- the loss (transformer_forward.cpp; shared with the CUDA twin) ----------------------------
// The scored pairs of a [B, T] batch: b·T + t for each prediction at (b, t) of token (b, t + 1),
// both real under the 0/1 mask (nullptr: all real).
std::vector<int64_t> scored_pairs(const int32_t* mask, int64_t B, int64_t T);
// The f64 [B] per-row means of the pairs' values, summed in pair order (the same bits whatever
// the threads or device that produced nll); NaN for a row without pairs.
TensorPtr row_means(const std::vector<int64_t>& pairs, const std::vector<double>& nll, int64_t B, int64_t T);

// ---- attention (transformer_attention.cpp) --------------------------------------------------
// Positions and key validity of S new tokens per row (the rules in transformer.h), from the 0/1
// mask (nullptr: all real): valid[b·capacity + length + s] = real, and the returned pos[b·S + s]
// is the number of real tokens before it in its row (real_count[b], advanced per real token) or,
// for a pad, the slot index (GPT-2, Llama) or OPT's padding position -1. E_INVALID_ARG when a
// row outgrows a learned position table. Shared by the CPU forward and its CUDA twin.
std::vector<int64_t> assign_positions(const TransformerConfig& c, const int32_t* mask, int64_t B, int64_t S,
                                      int64_t length, int64_t capacity, std::vector<uint8_t>& valid,
                                      std::vector<int64_t>& real_count);
// Rotates pairs (i, i + head_dim/2) of every head of x [rows, n_heads·head_dim] in place by
// angle position·theta^(-2i/head_dim) (the rotate-half convention of HF Llama).
void rope_rows(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const int64_t* positions, double theta);
// Writes S new tokens' k, v [B·S, n_kv·head_dim] into slots [length, length + S) of layer
// `layer` (the caller advances cache.length once all layers are done).
void cache_append(KVCache& cache, int64_t layer, const float* k, const float* v, int64_t S, int64_t n_kv,
                  int64_t head_dim);
// Causal attention of S new queries q [B·S, n_head·head_dim] over the cache slots
// [0, length + S) that are valid, query s seeing slots <= length + s. out has q's layout.
void attention(const KVCache& cache, int64_t layer, const float* q, int64_t S, int64_t n_head, int64_t n_kv,
               int64_t head_dim, float* out);

}  // namespace zeroth::model
