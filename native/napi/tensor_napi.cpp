// tensor_napi.cpp — creating, reading, converting and freeing tensors; device listing.
#include <cstring>

#include "common.h"
#include "core/backend.h"
#include "core/cpu_features.h"
#include "core/parallel.h"

namespace zeroth::napi {
namespace {

Napi::Value meta(Napi::Env env, const Tensor& t) {
  Napi::Object o = Napi::Object::New(env);
  // An i8 tensor with group scales is a quantized int8 weight, 'int8' in TypeScript.
  o.Set("dtype", t.dtype == ZEROTH_I8 && t.quant ? "int8" : dtype_traits(t.dtype).name);
  Napi::Array shape = Napi::Array::New(env, t.shape.size());
  for (size_t i = 0; i < t.shape.size(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(t.shape[i])));
  o.Set("shape", shape);
  o.Set("device", device_value(env, t.device()));
  return o;
}

// fromData(bytes: Uint8Array, dtype, shape, device). For int4, `bytes` holds one code
// (0..15) per element and is packed here.
Napi::Value FromData(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw_error(env, ZEROTH_E_INVALID_ARG, "data must be a typed array");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  const zeroth_dtype dtype = arg_dtype(env, info[1], "dtype");
  const Shape shape = arg_shape(env, info[2], "shape");
  const zeroth_device device = arg_device(env, info[3], "device");
  const uint8_t* bytes = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  const size_t len = ta.ByteLength();
  return guarded(env, [&] {
    if (dtype == ZEROTH_INT4) {
      const int64_t n = shape_numel(shape);
      ZCHECK(static_cast<int64_t>(len) == n, ZEROTH_E_SHAPE,
             "int4 data holds " + std::to_string(len) + " codes but shape " + shape_string(shape) + " has " +
                 std::to_string(n) + " elements");
      for (size_t i = 0; i < len; ++i)
        ZCHECK(bytes[i] < 16, ZEROTH_E_INVALID_ARG,
               "int4 code at index " + std::to_string(i) + " is " + std::to_string(bytes[i]) + "; codes are 0..15");
      std::vector<uint8_t> packed(storage_bytes(ZEROTH_INT4, n));
      int4_pack(bytes, n, packed.data());
      return wrap_tensor(env, tensor_from_host(dtype, shape, device, packed.data(), packed.size()));
    }
    return wrap_tensor(env, tensor_from_host(dtype, shape, device, bytes, len));
  });
}

Napi::Value Zeros(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const zeroth_dtype dtype = arg_dtype(env, info[0], "dtype");
  const Shape shape = arg_shape(env, info[1], "shape");
  const zeroth_device device = arg_device(env, info[2], "device");
  return guarded(env, [&] { return wrap_tensor(env, tensor_zeros(dtype, shape, device)); });
}

// read(handle) -> ArrayBuffer with the elements (int4: one code per byte).
Napi::Value Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr t = unwrap_tensor(env, info[0], "tensor");
  return guarded(env, [&]() -> Napi::Value {
    if (t->dtype == ZEROTH_INT4) {
      std::vector<uint8_t> packed(t->nbytes());
      tensor_to_host(*t, packed.data(), packed.size());
      Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, static_cast<size_t>(t->numel));
      int4_unpack(packed.data(), t->numel, static_cast<uint8_t*>(ab.Data()));
      return ab;
    }
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, t->nbytes());
    tensor_to_host(*t, ab.Data(), ab.ByteLength());
    return ab;
  });
}

Napi::Value Meta(const Napi::CallbackInfo& info) {
  TensorPtr t = unwrap_tensor(info.Env(), info[0], "tensor");
  return meta(info.Env(), *t);
}

Napi::Value Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr t = unwrap_tensor(env, info[0], "tensor");
  const zeroth_dtype dtype = arg_dtype(env, info[1], "dtype");
  const zeroth_device device = arg_device(env, info[2], "device");
  return guarded(env, [&] { return wrap_tensor(env, tensor_copy(*t, dtype, device)); });
}

Napi::Value Reshape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr t = unwrap_tensor(env, info[0], "tensor");
  if (!info[1].IsArray()) throw_error(env, ZEROTH_E_SHAPE, "shape must be an array");
  Napi::Array a = info[1].As<Napi::Array>();
  Shape shape;
  for (uint32_t i = 0; i < a.Length(); ++i) shape.push_back(arg_int(env, a.Get(i), "shape entry"));
  return guarded(env, [&] {
    ZCHECK(t->dtype != ZEROTH_INT4 || t->quant == nullptr, ZEROTH_E_UNSUPPORTED,
           "a quantized int4 weight cannot be reshaped: its groups follow its rows");
    return wrap_tensor(env, tensor_reshape(t, shape));
  });
}

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorBox* box = unwrap_box(env, info[0], "tensor");
  if (box->tensor) {
    box->tensor.reset();
    if (box->reported_bytes) Napi::MemoryManagement::AdjustExternalMemory(env, -box->reported_bytes);
    box->reported_bytes = 0;
  }
  return env.Undefined();
}

Napi::Value IsDisposed(const Napi::CallbackInfo& info) {
  TensorBox* box = unwrap_box(info.Env(), info[0], "tensor");
  return Napi::Boolean::New(info.Env(), !box->tensor);
}

Napi::Value Devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&] {
    Napi::Array out = Napi::Array::New(env);
    uint32_t k = 0;
    auto push = [&](const DeviceInfo& d) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("type", d.device.type == ZEROTH_DEVICE_CPU ? "cpu" : "cuda");
      o.Set("index", d.device.index);
      o.Set("name", d.name);
      o.Set("totalMemory", Napi::Number::New(env, static_cast<double>(d.total_memory)));
      out.Set(k++, o);
    };
    push(device_info(zeroth_device{ZEROTH_DEVICE_CPU, 0}));
    const int n = device_count(ZEROTH_DEVICE_CUDA);
    for (int i = 0; i < n; ++i) push(device_info(zeroth_device{ZEROTH_DEVICE_CUDA, i}));
    return out;
  });
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("cuda", cuda_backend() != nullptr);
  o.Set("simd", simd_level_name(simd_level()));
  o.Set("threads", num_threads());
  o.Set("version", ZEROTH_VERSION_MAJOR * 10000 + ZEROTH_VERSION_MINOR * 100 + ZEROTH_VERSION_PATCH);
  return o;
}

Napi::Value MemoryStatsJs(const Napi::CallbackInfo& info) {
  const MemoryStats s = memory_stats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("liveTensors", Napi::Number::New(info.Env(), static_cast<double>(s.live_storages)));
  o.Set("liveBytes", Napi::Number::New(info.Env(), static_cast<double>(s.live_bytes)));
  o.Set("cachedBytes", Napi::Number::New(info.Env(), static_cast<double>(cached_memory_bytes())));
  return o;
}

// deviceMemoryStats(device, resetPeak) -> {allocatedBytes, cachedBytes, peakAllocatedBytes} of
// a CUDA device's caching allocator; resetPeak then restarts the peak from what is allocated.
// The CPU's figures are memoryStats(); a build or machine without the device: E_DEVICE.
Napi::Value DeviceMemoryStatsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const zeroth_device device = arg_device(env, info[0], "device");
  if (!info[1].IsBoolean()) throw_error(env, ZEROTH_E_INVALID_ARG, "resetPeak must be a boolean");
  const bool reset = info[1].As<Napi::Boolean>().Value();
  return guarded(env, [&]() -> Napi::Value {
    ZCHECK(device.type == ZEROTH_DEVICE_CUDA, ZEROTH_E_INVALID_ARG,
           "device memory statistics are for CUDA devices; memoryStats() with no device gives the CPU's");
    backend_for(device);  // E_DEVICE without a CUDA build, driver or this index
#ifdef ZEROTH_WITH_CUDA
    const DeviceMemoryStats s = cuda_memory_stats(device.index, reset);
    Napi::Object o = Napi::Object::New(env);
    o.Set("allocatedBytes", Napi::Number::New(env, static_cast<double>(s.allocated)));
    o.Set("cachedBytes", Napi::Number::New(env, static_cast<double>(s.cached)));
    o.Set("peakAllocatedBytes", Napi::Number::New(env, static_cast<double>(s.peak_allocated)));
    return o;
#else
    (void)reset;
    fail(ZEROTH_E_DEVICE, device_string(device) + " is not available: this build of zeroth has no CUDA backend");
#endif
  });
}

Napi::Value TrimMemory(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(release_cached_memory()));
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  const int64_t n = arg_int(info.Env(), info[0], "threads");
  if (n < 1 || n > 1024) throw_error(info.Env(), ZEROTH_E_INVALID_ARG, "threads must be between 1 and 1024");
  set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

Napi::Value SetSimd(const Napi::CallbackInfo& info) {
  const std::string s = arg_string(info.Env(), info[0], "simd");
  SimdLevel l = SimdLevel::Scalar;
  if (s == "avx2") l = SimdLevel::Avx2;
  else if (s == "avx512") l = SimdLevel::Avx512;
  else if (s != "scalar") throw_error(info.Env(), ZEROTH_E_INVALID_ARG, "simd must be 'scalar', 'avx2' or 'avx512'");
  set_simd_level(l);
  return Napi::String::New(info.Env(), simd_level_name(simd_level()));
}

void init(Napi::Env env, Napi::Object exports) {
  exports.Set("tensorFromData", Napi::Function::New(env, FromData));
  exports.Set("tensorZeros", Napi::Function::New(env, Zeros));
  exports.Set("tensorRead", Napi::Function::New(env, Read));
  exports.Set("tensorMeta", Napi::Function::New(env, Meta));
  exports.Set("tensorCopy", Napi::Function::New(env, Copy));
  exports.Set("tensorReshape", Napi::Function::New(env, Reshape));
  exports.Set("tensorDispose", Napi::Function::New(env, Dispose));
  exports.Set("tensorIsDisposed", Napi::Function::New(env, IsDisposed));
  exports.Set("devices", Napi::Function::New(env, Devices));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStatsJs));
  exports.Set("deviceMemoryStats", Napi::Function::New(env, DeviceMemoryStatsJs));
  exports.Set("trimMemory", Napi::Function::New(env, TrimMemory));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("setSimd", Napi::Function::New(env, SetSimd));
}

}  // namespace

ZEROTH_NAPI_MODULE(tensor, init);

}  // namespace zeroth::napi
