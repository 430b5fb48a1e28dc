#include "tensor.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "errors.h"
#include "half.h"
#include "parallel.h"

namespace zeroth {

int64_t shape_numel(const Shape& shape) {
  ZCHECK(shape.size() <= ZEROTH_MAX_DIMS, ZEROTH_E_SHAPE,
         "a tensor has at most " + std::to_string(ZEROTH_MAX_DIMS) + " dimensions, got " +
             std::to_string(shape.size()));
  int64_t n = 1;
  for (int64_t d : shape) {
    ZCHECK(d >= 0, ZEROTH_E_SHAPE, "shape " + shape_string(shape) + " has a negative dimension");
    ZCHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / d, ZEROTH_E_SHAPE,
           "shape " + shape_string(shape) + " has more elements than can be addressed");
    n *= d;
  }
  return n;
}

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {
std::atomic<int64_t> g_live_storages{0};
std::atomic<int64_t> g_live_bytes{0};
}  // namespace

MemoryStats memory_stats() { return MemoryStats{g_live_storages.load(), g_live_bytes.load()}; }

Storage::Storage(zeroth_device dev, size_t n) : device(dev), bytes(n), data(nullptr) {
  data = backend_for(dev).alloc(dev.index, n);
  g_live_storages.fetch_add(1);
  g_live_bytes.fetch_add(static_cast<int64_t>(n));
}

Storage::~Storage() {
  g_live_storages.fetch_sub(1);
  g_live_bytes.fetch_sub(static_cast<int64_t>(bytes));
  try {
    backend_for(device).free(device.index, data);
  } catch (...) {
    // The device vanished: nothing left to free.
  }
}

TensorPtr tensor_empty(zeroth_dtype dtype, const Shape& shape, zeroth_device device) {
  auto t = std::make_shared<Tensor>();
  t->dtype = dtype;
  t->shape = shape;
  t->numel = shape_numel(shape);
  t->storage = std::make_shared<Storage>(device, storage_bytes(dtype, t->numel));
  return t;
}

TensorPtr tensor_zeros(zeroth_dtype dtype, const Shape& shape, zeroth_device device) {
  TensorPtr t = tensor_empty(dtype, shape, device);
  backend_for(device).memset_zero(device.index, t->data(), t->storage->bytes);
  return t;
}

TensorPtr tensor_from_host(zeroth_dtype dtype, const Shape& shape, zeroth_device device, const void* data,
                           size_t bytes) {
  const int64_t n = shape_numel(shape);
  const size_t need = storage_bytes(dtype, n);
  ZCHECK(bytes == need, ZEROTH_E_SHAPE,
         "data holds " + std::to_string(bytes) + " bytes but shape " + shape_string(shape) + " of " +
             dtype_traits(dtype).name + " needs " + std::to_string(need));
  TensorPtr t = tensor_empty(dtype, shape, device);
  backend_for(device).copy_from_host(device.index, t->data(), data, bytes);
  return t;
}

void tensor_to_host(const Tensor& t, void* out, size_t bytes) {
  ZCHECK(bytes == t.nbytes(), ZEROTH_E_SHAPE,
         "output buffer holds " + std::to_string(bytes) + " bytes, the tensor has " + std::to_string(t.nbytes()));
  backend_for(t.device()).copy_to_host(t.device().index, out, t.data(), bytes);
}

namespace {

template <typename T>
double load(const void* p, int64_t i) {
  return static_cast<double>(static_cast<const T*>(p)[i]);
}

// Reads element i of any unpacked dtype as double (exact for every source type).
double load_any(zeroth_dtype d, const void* p, int64_t i) {
  switch (d) {
    case ZEROTH_F64: return load<double>(p, i);
    case ZEROTH_F32: return load<float>(p, i);
    case ZEROTH_F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case ZEROTH_BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case ZEROTH_I32: return load<int32_t>(p, i);
    case ZEROTH_I8: return load<int8_t>(p, i);
    case ZEROTH_U8: return load<uint8_t>(p, i);
    default: fail(ZEROTH_E_DTYPE, "cannot convert from packed dtype int4 directly");
  }
}

// f64 -> f32 rounded to odd: the inexact result keeps a sticky 1 in its last bit, so a
// second rounding to f16/bf16 (11 or 8 significant bits, far fewer than f32's 24) gives
// the correctly rounded result of the f64 value — no double rounding.
float f64_to_f32_round_odd(double v) {
  float f = static_cast<float>(v);
  if (std::isnan(v) || static_cast<double>(f) == v) return f;
  if (std::fabs(static_cast<double>(f)) > std::fabs(v)) f = std::nextafterf(f, 0.0f);  // truncate
  return f32_from_bits(f32_bits(f) | 1u);
}

template <typename I>
I saturate(double v) {
  if (std::isnan(v)) return 0;
  const double lo = static_cast<double>(std::numeric_limits<I>::min());
  const double hi = static_cast<double>(std::numeric_limits<I>::max());
  if (v <= lo) return std::numeric_limits<I>::min();
  if (v >= hi) return std::numeric_limits<I>::max();
  return static_cast<I>(v);  // truncates toward zero
}

void store_any(zeroth_dtype d, void* p, int64_t i, double v) {
  switch (d) {
    case ZEROTH_F64: static_cast<double*>(p)[i] = v; break;
    // double -> float rounds to nearest even; f16/bf16 go through f32. Every source value
    // except f64 is exactly representable in f32, so no double rounding happens for them.
    case ZEROTH_F32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case ZEROTH_F16: static_cast<uint16_t*>(p)[i] = f32_to_f16(f64_to_f32_round_odd(v)); break;
    case ZEROTH_BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(f64_to_f32_round_odd(v)); break;
    case ZEROTH_I32: static_cast<int32_t*>(p)[i] = saturate<int32_t>(v); break;
    case ZEROTH_I8: static_cast<int8_t*>(p)[i] = saturate<int8_t>(v); break;
    case ZEROTH_U8: static_cast<uint8_t*>(p)[i] = saturate<uint8_t>(v); break;
    default: fail(ZEROTH_E_DTYPE, "cannot convert to packed dtype int4 directly; use zeroth.quantize");
  }
}

}  // namespace

void convert_host(zeroth_dtype from, const void* src, zeroth_dtype to, void* dst, int64_t n) {
  if (from == to) {
    std::memcpy(dst, src, storage_bytes(from, n));
    return;
  }
  // Fast paths for the conversions models use on load.
  if (from == ZEROTH_BF16 && to == ZEROTH_F32) {
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        static_cast<float*>(dst)[i] = bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
    });
    return;
  }
  if (from == ZEROTH_F16 && to == ZEROTH_F32) {
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        static_cast<float*>(dst)[i] = f16_to_f32(static_cast<const uint16_t*>(src)[i]);
    });
    return;
  }
  parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) store_any(to, dst, i, load_any(from, src, i));
  });
}

void int4_pack(const uint8_t* codes, int64_t n, uint8_t* packed) {
  for (int64_t i = 0; i + 1 < n; i += 2) packed[i / 2] = static_cast<uint8_t>((codes[i] & 15) | (codes[i + 1] << 4));
  if (n & 1) packed[n / 2] = static_cast<uint8_t>(codes[n - 1] & 15);
}

void int4_unpack(const uint8_t* packed, int64_t n, uint8_t* codes) {
  for (int64_t i = 0; i < n; ++i) codes[i] = (i & 1) ? (packed[i / 2] >> 4) : (packed[i / 2] & 15);
}

TensorPtr tensor_copy(const Tensor& src, zeroth_dtype dtype, zeroth_device device) {
  if (src.dtype == ZEROTH_INT4 || dtype == ZEROTH_INT4) {
    ZCHECK(src.dtype == dtype, ZEROTH_E_DTYPE,
           "int4 tensors convert only through zeroth.quantize / dequantize(), not .to(dtype)");
  }
  TensorPtr out = tensor_empty(dtype, src.shape, device);
  if (src.quant) out->quant = src.quant;  // quant parameters are immutable once made
  if (src.dtype == dtype) {
    const size_t n = src.nbytes();
    if (src.on_cpu()) backend_for(device).copy_from_host(device.index, out->data(), src.data(), n);
    else if (device.type == ZEROTH_DEVICE_CPU) backend_for(src.device()).copy_to_host(src.device().index, out->data(), src.data(), n);
    else if (src.device().type == device.type && src.device().index == device.index)
      backend_for(device).copy_device(device.index, out->data(), src.data(), n);
    else {
      std::vector<uint8_t> staging(n);
      backend_for(src.device()).copy_to_host(src.device().index, staging.data(), src.data(), n);
      backend_for(device).copy_from_host(device.index, out->data(), staging.data(), n);
    }
    return out;
  }
  // Dtype conversion happens on the host (device kernels for it come with the CUDA backend).
  std::vector<uint8_t> in_host, out_host(out->nbytes());
  const void* in_ptr = src.data();
  if (!src.on_cpu()) {
    in_host.resize(src.nbytes());
    backend_for(src.device()).copy_to_host(src.device().index, in_host.data(), src.data(), in_host.size());
    in_ptr = in_host.data();
  }
  void* out_ptr = out->on_cpu() ? out->data() : out_host.data();
  convert_host(src.dtype, in_ptr, dtype, out_ptr, src.numel);
  if (!out->on_cpu()) backend_for(device).copy_from_host(device.index, out->data(), out_host.data(), out->nbytes());
  return out;
}

TensorPtr tensor_reshape(const TensorPtr& src, Shape shape) {
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      ZCHECK(infer < 0, ZEROTH_E_SHAPE, "reshape to " + shape_string(shape) + ": only one dimension may be -1");
      infer = static_cast<int>(i);
    } else {
      ZCHECK(shape[i] >= 0, ZEROTH_E_SHAPE, "reshape to " + shape_string(shape) + ": negative dimension");
      known = shape_numel(Shape{known, shape[i]});
    }
  }
  if (infer >= 0) {
    ZCHECK(known > 0 && src->numel % known == 0, ZEROTH_E_SHAPE,
           "cannot reshape " + shape_string(src->shape) + " to " + shape_string(shape));
    shape[infer] = src->numel / known;
  }
  ZCHECK(shape_numel(shape) == src->numel, ZEROTH_E_SHAPE,
         "cannot reshape " + shape_string(src->shape) + " (" + std::to_string(src->numel) + " elements) to " +
             shape_string(shape));
  auto t = std::make_shared<Tensor>(*src);
  t->shape = std::move(shape);
  return t;
}

void require_dtype(const Tensor& t, std::initializer_list<zeroth_dtype> allowed, const char* what) {
  std::string names;
  for (zeroth_dtype d : allowed) {
    if (t.dtype == d) return;
    names += std::string(names.empty() ? "" : ", ") + dtype_traits(d).name;
  }
  fail(ZEROTH_E_DTYPE, std::string(what) + " has dtype " + dtype_traits(t.dtype).name + "; expected " + names);
}

void require_cpu(const Tensor& t, const char* what) {
  ZCHECK(t.on_cpu(), ZEROTH_E_DEVICE,
         std::string(what) + " is on " + device_string(t.device()) + " but this operation runs on the CPU; call .to('cpu') first");
}

}  // namespace zeroth
