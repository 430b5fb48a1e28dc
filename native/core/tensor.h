// tensor.h — the one tensor type: a dtype, a shape, a device and shared storage.
//
// Tensors are dense and row-major. Storage is owned by C++ and 64-byte aligned; a
// reshape shares storage with its source (it is a view), every other op allocates.
// int4 tensors hold packed codes (see zeroth_int4_layout in zeroth.h); their group
// scales and zero points travel in `quant` once quantized.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../include/zeroth.h"
#include "backend.h"
#include "dtype.h"

namespace zeroth {

using Shape = std::vector<int64_t>;

// Product of dims; throws E_SHAPE on a negative dim, too many dims, or overflow.
int64_t shape_numel(const Shape& shape);
std::string shape_string(const Shape& shape);

// Live storages and their bytes, per process (for leak tests and memory reports).
struct MemoryStats {
  int64_t live_storages;
  int64_t live_bytes;
};
MemoryStats memory_stats();
// Freed CPU blocks the allocator keeps mapped for reuse (at most 1 GiB), and a way to return
// them to the OS now, with the C heap's free pages (backend_cpu.cpp).
size_t cached_memory_bytes();
size_t release_cached_memory();

struct Storage {
  Storage(zeroth_device device, size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  zeroth_device device;
  size_t bytes;
  void* data;
};

struct Tensor;
using TensorPtr = std::shared_ptr<Tensor>;

// Group-wise quantization parameters of an int4/int8 weight (filled by the int4 work).
struct QuantInfo {
  int64_t group_size = 0;
  bool symmetric = false;
  TensorPtr scales;  // [rows, groups] f32 or f16
  TensorPtr zeros;   // [rows, groups] same dtype, null when symmetric
  // i32 [cols] or null: stored column j holds input feature perm[j] (GPTQ act-order checkpoints
  // store columns sorted by group so that groups stay contiguous; cpu/quant.h).
  TensorPtr perm;
};

struct Tensor {
  zeroth_dtype dtype = ZEROTH_F32;
  Shape shape;
  int64_t numel = 0;
  std::shared_ptr<Storage> storage;
  std::shared_ptr<QuantInfo> quant;

  zeroth_device device() const { return storage->device; }
  bool on_cpu() const { return storage->device.type == ZEROTH_DEVICE_CPU; }
  size_t nbytes() const { return storage_bytes(dtype, numel); }
  void* data() const { return storage->data; }
  template <typename T>
  T* as() const { return static_cast<T*>(storage->data); }
  int ndim() const { return static_cast<int>(shape.size()); }
};

TensorPtr tensor_empty(zeroth_dtype dtype, const Shape& shape, zeroth_device device);
TensorPtr tensor_zeros(zeroth_dtype dtype, const Shape& shape, zeroth_device device);
// Copies `bytes` host bytes in; `bytes` must equal the tensor's storage size exactly.
TensorPtr tensor_from_host(zeroth_dtype dtype, const Shape& shape, zeroth_device device, const void* data,
                           size_t bytes);
void tensor_to_host(const Tensor& t, void* out, size_t bytes);
// A copy in `dtype` on `device`; float dtypes convert with round-to-nearest-even,
// integer targets truncate toward zero and saturate, NaN becomes 0 for integers.
TensorPtr tensor_copy(const Tensor& src, zeroth_dtype dtype, zeroth_device device);
// A view with a new shape of the same numel (one dim may be -1).
TensorPtr tensor_reshape(const TensorPtr& src, Shape shape);

// Element conversion on the host between any two non-packed dtypes.
void convert_host(zeroth_dtype from, const void* src, zeroth_dtype to, void* dst, int64_t n);

// int4 packing of unsigned codes 0..15 (two per byte, low nibble first).
void int4_pack(const uint8_t* codes, int64_t n, uint8_t* packed);
void int4_unpack(const uint8_t* packed, int64_t n, uint8_t* codes);

// Throws E_DTYPE unless `t.dtype` is one of the allowed ones; `what` names the argument.
void require_dtype(const Tensor& t, std::initializer_list<zeroth_dtype> allowed, const char* what);
void require_cpu(const Tensor& t, const char* what);

}  // namespace zeroth
