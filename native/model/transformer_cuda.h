// transformer_cuda.h — what the CUDA twin of the forward (transformer_cuda.cpp) keeps between
// calls: the device twin of Workspace (transformer_internal.h). Plain C++ with no CUDA types,
// so Model (whose destructor frees it) compiles the same with and without the CUDA backend;
// device memory comes from the backend's caching allocator through tensor_empty.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>

#include "core/tensor.h"
#include "model/transformer_internal.h"

namespace zeroth::model {

// Scratch buffers of one device call, by slot: the CPU Workspace's float slots (same names and
// roles as in Model::run / Model::loss) and the twin's own. get() grows a buffer and never
// shrinks it, so a model that runs the same shapes again allocates nothing; contents are not
// cleared. Buffers are only grown before a call writes them, never in the middle of their use.
enum DeviceSlot {
  kDevKv = kWsSlots,  // KV cache storage, one layer: [k | v][B][n_kv][capacity][head_dim]
  kDevLora,           // x·Aᵀ of a LoRA adapter [M, rank]
  kDevInputs,         // run's host inputs, uploaded in one copy (ids, positions, key validity)
  kDevPairs,          // the loss's scored rows and their target tokens, uploaded in one copy
  kDevNll,            // per scored pair, f64
  kDevBf16,           // a bf16 product's input x rounded to bf16 [M, K] (linear_cuda)
  kDevSlots
};

struct DeviceWorkspace {
  explicit DeviceWorkspace(zeroth_device d) : device(d) {}
  // At least `n` elements of T in slot `slot`.
  template <typename T>
  T* get(int slot, int64_t n) {
    const int64_t bytes = n * static_cast<int64_t>(sizeof(T));
    TensorPtr& b = bufs[slot];
    if (!b || static_cast<int64_t>(b->nbytes()) < bytes)
      b = tensor_empty(ZEROTH_U8, {bytes > 0 ? bytes : 1}, device);  // the old one goes back to the cache
    return b->as<T>();
  }
  zeroth_device device;
  TensorPtr bufs[kDevSlots];
};

// Holds the model's device workspace for one call, or a private one when another call has it
// (WorkspaceLease's rule).
class DeviceWorkspaceLease {
 public:
  explicit DeviceWorkspaceLease(const Model& m) : lock_(m.device_workspace_mutex_, std::try_to_lock) {
    if (lock_.owns_lock()) {
      if (!m.device_workspace_) m.device_workspace_ = std::make_unique<DeviceWorkspace>(m.device_);
      ws_ = m.device_workspace_.get();
    } else {
      own_ = std::make_unique<DeviceWorkspace>(m.device_);
      ws_ = own_.get();
    }
  }
  DeviceWorkspace& operator*() { return *ws_; }

 private:
  std::unique_lock<std::mutex> lock_;
  std::unique_ptr<DeviceWorkspace> own_;
  DeviceWorkspace* ws_ = nullptr;
};

}  // namespace zeroth::model
