// zo_update_napi.cpp — the stateful ZO update rules of native/cpu/zo_update.h for JavaScript.
//
//   accumulateZ(targets, buffers, seed, dist, beta, c) -> Promise<void>
//   momentumUpdate(targets, m, grad, beta, lr, decay) -> Promise<void>
//   adamUpdate(targets, m, v, grad, {beta1, beta2, eps, lr, decay, t}) -> Promise<void>
//   signUpdate(targets, grad, lr, decay) -> Promise<void>
//   preconditionedUpdate(targets, precond, seed, dist, step, decay) -> Promise<void>
//   holdFloor(tensors, floors) -> void   (small tensors: quantization scales; runs inline)
// where grad is {seed, dist, c} (ĝ = c·z(seed)) or {scratch: [buffers]}.
#include "cpu/zo_update.h"
#include "zo_args.h"

namespace zeroth::napi {
namespace {

struct GradArg {
  GradSource source;
  std::shared_ptr<std::vector<TensorPtr>> scratch;  // keeps the buffers alive during async work
};

GradArg arg_grad(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "grad must be {seed, dist, c} or {scratch}");
  Napi::Object o = v.As<Napi::Object>();
  GradArg g;
  if (!o.Get("scratch").IsUndefined()) {
    g.scratch = std::make_shared<std::vector<TensorPtr>>(arg_tensor_list(env, o.Get("scratch"), "grad.scratch"));
    g.source.scratch = g.scratch.get();
    return g;
  }
  g.source.seed = arg_u64(env, o.Get("seed"), "grad.seed");
  g.source.dist = arg_distribution(env, o.Get("dist"));
  g.source.c = arg_f32(env, o.Get("c"), "grad.c");
  return g;
}

Napi::Value undefined_value(Napi::Env env) { return env.Undefined(); }

Napi::Value AccumulateZ(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto targets = arg_perturb_targets(env, info[0]);
  auto buffers = arg_tensor_list(env, info[1], "buffers");
  const uint64_t seed = arg_u64(env, info[2], "seed");
  const rng::Distribution dist = arg_distribution(env, info[3]);
  const float beta = arg_f32(env, info[4], "beta");
  const float c = arg_f32(env, info[5], "c");
  return run_async(env, [=] { accumulate_z(targets, buffers, seed, dist, beta, c); }, undefined_value);
}

Napi::Value MomentumUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto targets = arg_perturb_targets(env, info[0]);
  auto m = arg_tensor_list(env, info[1], "momentum buffers");
  GradArg g = arg_grad(env, info[2]);
  const float beta = arg_f32(env, info[3], "beta");
  const float lr = arg_f32(env, info[4], "lr");
  const float decay = arg_f32(env, info[5], "decay");
  return run_async(env, [=] { momentum_update(targets, m, g.source, beta, lr, decay); }, undefined_value);
}

Napi::Value AdamUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto targets = arg_perturb_targets(env, info[0]);
  auto m = arg_tensor_list(env, info[1], "adam m");
  auto v = arg_tensor_list(env, info[2], "adam v");
  GradArg g = arg_grad(env, info[3]);
  if (!info[4].IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "adam options must be an object");
  Napi::Object o = info[4].As<Napi::Object>();
  AdamParams p;
  p.beta1 = arg_f32(env, o.Get("beta1"), "beta1");
  p.beta2 = arg_f32(env, o.Get("beta2"), "beta2");
  p.eps = arg_f32(env, o.Get("eps"), "eps");
  p.lr = arg_f32(env, o.Get("lr"), "lr");
  p.decay = arg_f32(env, o.Get("decay"), "decay");
  p.t = arg_int(env, o.Get("t"), "t");
  return run_async(env, [=] { adam_update(targets, m, v, g.source, p); }, undefined_value);
}

Napi::Value SignUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto targets = arg_perturb_targets(env, info[0]);
  GradArg g = arg_grad(env, info[1]);
  const float lr = arg_f32(env, info[2], "lr");
  const float decay = arg_f32(env, info[3], "decay");
  return run_async(env, [=] { sign_update(targets, g.source, lr, decay); }, undefined_value);
}

Napi::Value PreconditionedUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto targets = arg_perturb_targets(env, info[0]);
  auto precond = arg_tensor_list(env, info[1], "preconditioner");
  const uint64_t seed = arg_u64(env, info[2], "seed");
  const rng::Distribution dist = arg_distribution(env, info[3]);
  const float step = arg_f32(env, info[4], "step");
  const float decay = arg_f32(env, info[5], "decay");
  return run_async(env, [=] { preconditioned_update(targets, precond, seed, dist, step, decay); }, undefined_value);
}

Napi::Value HoldFloor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = arg_tensor_list(env, info[0], "tensors");
  auto floors = arg_tensor_list(env, info[1], "floors");
  guarded(env, [&] { hold_floor(x, floors); });
  return env.Undefined();
}

void init(Napi::Env env, Napi::Object exports) {
  exports.Set("holdFloor", Napi::Function::New(env, HoldFloor));
  exports.Set("accumulateZ", Napi::Function::New(env, AccumulateZ));
  exports.Set("momentumUpdate", Napi::Function::New(env, MomentumUpdate));
  exports.Set("adamUpdate", Napi::Function::New(env, AdamUpdate));
  exports.Set("signUpdate", Napi::Function::New(env, SignUpdate));
  exports.Set("preconditionedUpdate", Napi::Function::New(env, PreconditionedUpdate));
}

}  // namespace

ZEROTH_NAPI_MODULE(zo_update, init);

}  // namespace zeroth::napi
