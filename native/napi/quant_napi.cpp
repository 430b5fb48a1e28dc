// quant_napi.cpp — int4/int8 quantization and the fused quantized matmul on tensor handles, plus
// the native timing loops of bench/int4.mjs (timed in C++ so no JS call overhead enters them).
//
//   quantize(w, {bits, groupSize?, symmetric?, scaleDtype?: 'f32'|'f16', clip?}) -> handle
//        (int4: dtype int4; int8: dtype i8 with quant info; src/quant.ts reports it as 'int8')
//   dequantize(q) -> f32 handle
//   quantInfo(q) -> {bits, groupSize, symmetric, scales: handle, zeros?: handle, perm?: handle} | null
//   int4Matmul(x, q) -> f32 handle [M, out] (or [out] for x [in]); int4MatmulAsync -> Promise
//   quantKernel(q) -> name of the GEMV kernel the current SIMD level runs for q
//   benchInt4Gemv(out, in, reps, {bits?, groupSize?}?) -> {seconds, weightBytes, kernel}
//   benchF32Gemv(out, in, reps, variant: 'plain' | 'packed') -> {seconds, weightBytes}
//   benchCopy(bytes, reps) -> seconds of one multithreaded memcpy of `bytes` bytes
//   All bench figures are the fastest of `reps` timed calls after one untimed warm-up call.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "common.h"
#include "quant_args.h"
#include "core/parallel.h"
#include "cpu/gemm.h"
#include "cpu/int4_gemm.h"
#include "cpu/quant.h"

namespace zeroth::napi {

namespace {

Napi::Object opt_object(Napi::Env env, const Napi::Value& v, const char* what) {
  if (v.IsUndefined() || v.IsNull()) return Napi::Object::New(env);
  if (!v.IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, std::string(what) + " must be an object");
  return v.As<Napi::Object>();
}

bool opt_bool(Napi::Env env, const Napi::Object& o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) throw_error(env, ZEROTH_E_INVALID_ARG, std::string("quantize: ") + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

}  // namespace

QuantizeOptions quant_options(Napi::Env env, const Napi::Value& v) {
  Napi::Object o = opt_object(env, v, "quantize options");
  QuantizeOptions q;
  q.bits = static_cast<int>(arg_int(env, o.Get("bits"), "bits"));
  if (q.bits != 4 && q.bits != 8) throw_error(env, ZEROTH_E_INVALID_ARG, "quantize: bits must be 4 or 8");
  q.symmetric = opt_bool(env, o, "symmetric", q.bits == 8);
  q.clip = opt_bool(env, o, "clip", false);
  q.group_size = o.Get("groupSize").IsUndefined() ? (q.bits == 8 ? 0 : 128) : arg_int(env, o.Get("groupSize"), "groupSize");
  if (!o.Get("scaleDtype").IsUndefined()) {
    const std::string s = arg_string(env, o.Get("scaleDtype"), "scaleDtype");
    if (s == "f32") q.scale_dtype = ZEROTH_F32;
    else if (s == "f16") q.scale_dtype = ZEROTH_F16;
    else throw_error(env, ZEROTH_E_INVALID_ARG, "quantize: scaleDtype must be 'f32' or 'f16', got '" + s + "'");
  }
  return q;
}

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

template <typename F>
double fastest(int64_t reps, F&& once) {
  once();
  double best = 1e300;
  for (int64_t r = 0; r < reps; ++r) {
    const double t0 = now();
    once();
    best = std::min(best, now() - t0);
  }
  return best;
}

Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr w = unwrap_tensor(env, info[0], "weight");
  const QuantizeOptions o = quant_options(env, info[1]);
  return guarded(env, [&] { return wrap_tensor(env, quantize(*w, o)); });
}

Napi::Value Dequantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr q = unwrap_tensor(env, info[0], "tensor");
  return guarded(env, [&] { return wrap_tensor(env, dequantize(*q)); });
}

Napi::Value QuantInfoOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr q = unwrap_tensor(env, info[0], "tensor");
  if (!q->quant || (q->dtype != ZEROTH_INT4 && q->dtype != ZEROTH_I8)) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("bits", q->dtype == ZEROTH_INT4 ? 4 : 8);
  o.Set("groupSize", static_cast<double>(q->quant->group_size));
  o.Set("symmetric", q->quant->symmetric);
  // Shared, not copied: quant parameters are immutable once made (core/tensor.cpp tensor_copy).
  o.Set("scales", wrap_tensor(env, q->quant->scales));
  if (q->quant->zeros) o.Set("zeros", wrap_tensor(env, q->quant->zeros));
  if (q->quant->perm) o.Set("perm", wrap_tensor(env, q->quant->perm));
  return o;
}

Napi::Value Int4Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr x = unwrap_tensor(env, info[0], "x");
  TensorPtr q = unwrap_tensor(env, info[1], "weight");
  return guarded(env, [&] { return wrap_tensor(env, quant_matmul(*x, *q)); });
}

Napi::Value Int4MatmulAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr x = unwrap_tensor(env, info[0], "x");
  TensorPtr q = unwrap_tensor(env, info[1], "weight");
  auto result = std::make_shared<TensorPtr>();
  return run_async(
      env, [x, q, result] { *result = quant_matmul(*x, *q); },
      [result](Napi::Env e) { return wrap_tensor(e, *result); });
}

Napi::Value QuantKernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr q = unwrap_tensor(env, info[0], "weight");
  return guarded(env, [&] {
    std::vector<float> storage;
    return Napi::String::New(env, quant_gemv_kernel_name(quant_matrix(*q, storage)));
  });
}

void bench_sizes(Napi::Env env, int64_t out, int64_t in, int64_t reps) {
  if (out < 1 || in < 1 || out > (1 << 17) || in > (1 << 17))
    throw_error(env, ZEROTH_E_INVALID_ARG, "bench: out and in must be in [1, 131072]");
  if (reps < 1 || reps > 100000) throw_error(env, ZEROTH_E_INVALID_ARG, "bench: reps must be in [1, 100000]");
}

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>((seed = seed * 1664525u + 1013904223u) >> 8) * 0x1p-24f - 0.5f;
  return v;
}

Napi::Value BenchInt4Gemv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t out = arg_int(env, info[0], "out"), in = arg_int(env, info[1], "in"), reps = arg_int(env, info[2], "reps");
  bench_sizes(env, out, in, reps);
  Napi::Object o = opt_object(env, info[3], "options");
  QuantizeOptions qo;
  qo.bits = o.Get("bits").IsUndefined() ? 4 : static_cast<int>(arg_int(env, o.Get("bits"), "bits"));
  qo.symmetric = qo.bits == 8;
  qo.group_size = o.Get("groupSize").IsUndefined() ? (qo.bits == 8 ? 0 : 128) : arg_int(env, o.Get("groupSize"), "groupSize");
  return guarded(env, [&] {
    std::vector<float> wv = random_floats(out * in, 12345);
    TensorPtr w = tensor_from_host(ZEROTH_F32, {out, in}, {ZEROTH_DEVICE_CPU, 0}, wv.data(), wv.size() * 4);
    wv = {};
    TensorPtr q = quantize(*w, qo);
    w.reset();
    std::vector<float> storage;
    const QuantMatrix m = quant_matrix(*q, storage);
    std::vector<float> x = random_floats(in, 777), y(static_cast<size_t>(out));
    const double s = fastest(reps, [&] { quant_matmul(m, 1, x.data(), in, y.data(), out); });
    Napi::Object r = Napi::Object::New(env);
    r.Set("seconds", s);
    r.Set("weightBytes", static_cast<double>(q->nbytes()));
    r.Set("scaleBytes", static_cast<double>(q->quant->scales->nbytes() + (q->quant->zeros ? q->quant->zeros->nbytes() : 0)));
    r.Set("kernel", quant_gemv_kernel_name(m));
    return r;
  });
}

Napi::Value BenchF32Gemv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t out = arg_int(env, info[0], "out"), in = arg_int(env, info[1], "in"), reps = arg_int(env, info[2], "reps");
  bench_sizes(env, out, in, reps);
  const std::string variant = arg_string(env, info[3], "variant");
  if (variant != "plain" && variant != "packed")
    throw_error(env, ZEROTH_E_INVALID_ARG, "benchF32Gemv: variant must be 'plain' or 'packed'");
  return guarded(env, [&] {
    std::vector<float> W = random_floats(out * in, 12345), x = random_floats(in, 777), y(static_cast<size_t>(out));
    const double s = fastest(reps, [&] {
      if (variant == "plain") f32_gemv(W.data(), out, in, x.data(), y.data());
      else gemm_f32(false, true, 1, out, in, 1.0f, x.data(), in, W.data(), in, 0.0f, y.data(), out);
    });
    Napi::Object r = Napi::Object::New(env);
    r.Set("seconds", s);
    r.Set("weightBytes", static_cast<double>(W.size() * 4));
    return r;
  });
}

Napi::Value BenchCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t bytes = arg_int(env, info[0], "bytes"), reps = arg_int(env, info[1], "reps");
  if (bytes < 1 || bytes > (int64_t{1} << 34)) throw_error(env, ZEROTH_E_INVALID_ARG, "benchCopy: bytes must be in [1, 2^34]");
  if (reps < 1 || reps > 100000) throw_error(env, ZEROTH_E_INVALID_ARG, "benchCopy: reps must be in [1, 100000]");
  return guarded(env, [&] {
    std::vector<uint8_t> src(static_cast<size_t>(bytes), 1), dst(static_cast<size_t>(bytes), 0);
    const int64_t chunk = 1 << 16;
    const double s = fastest(reps, [&] {
      parallel_for((bytes + chunk - 1) / chunk, 4, [&](int64_t b, int64_t e) {
        const int64_t lo = b * chunk, hi = std::min(bytes, e * chunk);
        std::memcpy(dst.data() + lo, src.data() + lo, static_cast<size_t>(hi - lo));
      });
    });
    return Napi::Number::New(env, s);
  });
}

void init(Napi::Env env, Napi::Object exports) {
  exports.Set("quantize", Napi::Function::New(env, Quantize));
  exports.Set("dequantize", Napi::Function::New(env, Dequantize));
  exports.Set("quantInfo", Napi::Function::New(env, QuantInfoOf));
  exports.Set("int4Matmul", Napi::Function::New(env, Int4Matmul));
  exports.Set("int4MatmulAsync", Napi::Function::New(env, Int4MatmulAsync));
  exports.Set("quantKernel", Napi::Function::New(env, QuantKernel));
  exports.Set("benchInt4Gemv", Napi::Function::New(env, BenchInt4Gemv));
  exports.Set("benchF32Gemv", Napi::Function::New(env, BenchF32Gemv));
  exports.Set("benchCopy", Napi::Function::New(env, BenchCopy));
}

}  // namespace

ZEROTH_NAPI_MODULE(quant, init);

}  // namespace zeroth::napi
