// gemm_napi.cpp — f32 matrix multiply on tensor handles, and the native timing loops of
// bench/gemm.mjs (timed in C++ so that no JS call overhead enters the figures).
//
//   gemm(a, b, {transA?, transB?, alpha?, beta?, c?, perturb?: {seed, stream, scale, dist?}}) -> handle
//   benchGemm(M, N, K, reps, variant: 'packed' | 'naive', {transA?, transB?, perturb?, clock?}?)
//     -> seconds of the fastest of `reps` calls (after one warm-up call); clock 'wall' (default) or
//        'cpu' (CPU seconds of the whole process: all threads, while they were scheduled)
//   benchPeakFlops(seconds) -> {gflops, gflopsPerCpuSecond, threads, simd}
//   gemmInfo() -> {kernel, threads}
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include <ctime>

#include "common.h"
#include "core/cpu_features.h"
#include "core/parallel.h"
#include "cpu/gemm.h"

namespace zeroth::napi {
namespace {

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}
double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool opt_bool(Napi::Env env, const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return false;
  if (!v.IsBoolean()) throw_error(env, ZEROTH_E_INVALID_ARG, std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

float opt_float(Napi::Env env, const Napi::Object& o, const char* key, float fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  const double x = arg_number(env, v, key);
  if (!std::isfinite(x)) throw_error(env, ZEROTH_E_INVALID_ARG, std::string(key) + " must be a finite number");
  return static_cast<float>(x);
}

Napi::Object opt_object(Napi::Env env, const Napi::Value& v, const char* what) {
  if (v.IsUndefined() || v.IsNull()) return Napi::Object::New(env);
  if (!v.IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, std::string(what) + " must be an object");
  return v.As<Napi::Object>();
}

PerturbDesc arg_perturb(Napi::Env env, const Napi::Value& v) {
  PerturbDesc d;
  if (v.IsUndefined() || v.IsNull()) return d;
  if (!v.IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "perturb must be {seed, stream, scale, dist?}");
  Napi::Object o = v.As<Napi::Object>();
  d.active = true;
  d.seed = arg_u64(env, o.Get("seed"), "perturb.seed");
  d.stream = arg_u64(env, o.Get("stream"), "perturb.stream");
  d.scale = opt_float(env, o, "scale", NAN);
  if (!std::isfinite(d.scale)) throw_error(env, ZEROTH_E_INVALID_ARG, "perturb.scale must be a finite number");
  Napi::Value dist = o.Get("dist");
  if (!dist.IsUndefined()) {
    const std::string name = arg_string(env, dist, "perturb.dist");
    if (name == "normal") d.dist = rng::Distribution::Normal;
    else if (name == "rademacher") d.dist = rng::Distribution::Rademacher;
    else throw_error(env, ZEROTH_E_INVALID_ARG, "perturb.dist must be 'normal' or 'rademacher', got '" + name + "'");
  }
  return d;
}

const TensorPtr& matrix_arg(Napi::Env env, const Napi::Value& v, const char* what) {
  const TensorPtr& t = unwrap_tensor(env, v, what);
  guarded(env, [&] {
    require_dtype(*t, {ZEROTH_F32}, what);
    require_cpu(*t, what);
    ZCHECK(t->ndim() == 2, ZEROTH_E_SHAPE,
           std::string(what) + " must be a 2-D matrix, got shape " + shape_string(t->shape));
  });
  return t;
}

// C = alpha·op(a)·op(b) + beta·c, as a new [M, N] f32 tensor.
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr a = matrix_arg(env, info[0], "a");
  TensorPtr b = matrix_arg(env, info[1], "b");
  Napi::Object o = opt_object(env, info[2], "options");
  const bool ta = opt_bool(env, o, "transA"), tb = opt_bool(env, o, "transB");
  const float alpha = opt_float(env, o, "alpha", 1.0f);
  const float beta = opt_float(env, o, "beta", 0.0f);
  const PerturbDesc perturb = arg_perturb(env, o.Get("perturb"));
  TensorPtr c;
  if (!o.Get("c").IsUndefined()) c = matrix_arg(env, o.Get("c"), "c");
  return guarded(env, [&] {
    const int64_t M = ta ? a->shape[1] : a->shape[0], K = ta ? a->shape[0] : a->shape[1];
    const int64_t Kb = tb ? b->shape[1] : b->shape[0], N = tb ? b->shape[0] : b->shape[1];
    ZCHECK(K == Kb, ZEROTH_E_SHAPE,
           "gemm: op(a) is " + std::to_string(M) + " x " + std::to_string(K) + " but op(b) is " + std::to_string(Kb) +
               " x " + std::to_string(N) + "; the inner dimensions must agree (check transA / transB)");
    TensorPtr out;
    if (c) {
      ZCHECK(c->shape == Shape({M, N}), ZEROTH_E_SHAPE,
             "gemm: c has shape " + shape_string(c->shape) + " but the product is [" + std::to_string(M) + ", " +
                 std::to_string(N) + "]");
      out = tensor_copy(*c, ZEROTH_F32, c->device());
    } else {
      ZCHECK(beta == 0.0f, ZEROTH_E_INVALID_ARG, "gemm: beta is " + std::to_string(beta) + " but no c was given");
      out = tensor_empty(ZEROTH_F32, {M, N}, a->device());
    }
    gemm_f32(ta, tb, M, N, K, alpha, a->as<float>(), a->shape[1], b->as<float>(), b->shape[1], c ? beta : 0.0f,
             out->as<float>(), N, perturb);
    return wrap_tensor(env, out);
  });
}

// Seconds of the fastest of `reps` timed calls (after one untimed warm-up call): on a shared machine
// the minimum is the figure least disturbed by other processes.
Napi::Value BenchGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t M = arg_int(env, info[0], "M"), N = arg_int(env, info[1], "N"), K = arg_int(env, info[2], "K");
  const int64_t reps = arg_int(env, info[3], "reps");
  const std::string variant = arg_string(env, info[4], "variant");
  Napi::Object o = opt_object(env, info[5], "options");
  const bool ta = opt_bool(env, o, "transA"), tb = opt_bool(env, o, "transB"), perturbed = opt_bool(env, o, "perturb");
  const std::string clock = o.Get("clock").IsUndefined() ? "wall" : arg_string(env, o.Get("clock"), "clock");
  if (clock != "wall" && clock != "cpu") throw_error(env, ZEROTH_E_INVALID_ARG, "benchGemm: clock must be 'wall' or 'cpu'");
  if (M < 1 || N < 1 || K < 1 || M > (1 << 16) || N > (1 << 20) || K > (1 << 16))
    throw_error(env, ZEROTH_E_INVALID_ARG, "benchGemm: M, K must be in [1, 65536] and N in [1, 1048576]");
  if (reps < 1 || reps > 10000) throw_error(env, ZEROTH_E_INVALID_ARG, "benchGemm: reps must be in [1, 10000]");
  if (variant != "packed" && variant != "naive")
    throw_error(env, ZEROTH_E_INVALID_ARG, "benchGemm: variant must be 'packed' or 'naive'");
  return guarded(env, [&] {
    std::vector<float> A(static_cast<size_t>(M * K)), B(static_cast<size_t>(K * N)), C(static_cast<size_t>(M * N));
    uint32_t s = 12345;
    auto fill = [&](std::vector<float>& v) {
      for (float& x : v) x = static_cast<float>((s = s * 1664525u + 1013904223u) >> 8) * 0x1p-24f - 0.5f;
    };
    fill(A);
    fill(B);
    PerturbDesc d;
    d.active = perturbed;
    d.seed = 7;
    d.stream = 11;
    d.scale = 1e-3f;
    const int64_t lda = ta ? M : K, ldb = tb ? K : N;
    auto once = [&] {
      if (variant == "naive") gemm_f32_naive(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), N);
      else gemm_f32(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), N, d);
    };
    once();
    std::vector<double> times;
    for (int64_t r = 0; r < reps; ++r) {
      const double t0 = clock == "cpu" ? cpu_seconds() : wall_seconds();
      once();
      times.push_back((clock == "cpu" ? cpu_seconds() : wall_seconds()) - t0);
    }
    return Napi::Number::New(env, *std::min_element(times.begin(), times.end()));
  });
}

Napi::Value BenchPeakFlops(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double seconds = arg_number(env, info[0], "seconds");
  return guarded(env, [&] {
    const int threads = num_threads();
    const double c0 = cpu_seconds(), w0 = wall_seconds();
    const double gflops = measure_peak_gflops(seconds, threads);
    const double cpu = cpu_seconds() - c0, wall = wall_seconds() - w0;
    Napi::Object o = Napi::Object::New(env);
    o.Set("gflops", gflops);
    // The same flops over the CPU time the threads actually got: the rate of one dedicated core.
    o.Set("gflopsPerCpuSecond", gflops * wall / cpu);
    o.Set("threads", threads);
    o.Set("simd", simd_level_name(simd_level()));
    return o;
  });
}

Napi::Value GemmInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("kernel", gemm_f32_kernel_name());
  o.Set("threads", num_threads());
  return o;
}

void init(Napi::Env env, Napi::Object exports) {
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  exports.Set("benchGemm", Napi::Function::New(env, BenchGemm));
  exports.Set("benchPeakFlops", Napi::Function::New(env, BenchPeakFlops));
  exports.Set("gemmInfo", Napi::Function::New(env, GemmInfo));
}

}  // namespace

ZEROTH_NAPI_MODULE(gemm, init);

}  // namespace zeroth::napi
