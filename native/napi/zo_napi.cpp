// zo_napi.cpp — the perturbation kernels of native/cpu/perturb.h for JavaScript.
//
//   journalCreate() -> External                 the undo journal of one parameter list
//   journalEntryCount(journal) -> number        journaled elements (8 bytes each)
//   perturbTo(targets, journal, seed, scale, dist) -> Promise<void>
//   restoreAndUpdate(targets, journal, {stepScale, decay, stochasticRounding, roundingSeed}) -> Promise<void>
//   applyUpdate(targets, seed, dist, opts) -> Promise<void>
//   perturb(targets, seed, scale, dist) -> Promise<void>      (no journal; not exactly invertible)
//   streamId(name) -> BigInt                    FNV-1a 64 of the UTF-8 name
//   fillZ(seed, stream, dist, first, n) -> Float32Array
//   maskFromMagnitude(tensor, {threshold} | {fraction, keep: 'smallest' | 'largest'}) -> tensor handle
//   hessianDiagUpdate(targets, hessians, seed, dist, {coeff, alpha, hMin?, hMax?}) -> Promise<void>
//
// A target is {tensor: handle, stream: BigInt, mask?: handle, precond?: handle}; precond (an f32
// tensor of the target's numel) multiplies its scaled z elementwise (perturb.h, guarantee 5) in
// perturbTo, restoreAndUpdate, applyUpdate and perturb. Seeds and streams are BigInt
// (64-bit), dist is 'normal' | 'rademacher'. A journal is used by one call at a time: a
// second call while one is running is rejected with E_INVALID_ARG instead of racing.
#include <atomic>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "zo_args.h"
#include "cpu/perturb.h"

namespace zeroth::napi {
namespace {

struct JournalBox {
  PerturbJournal journal;
  std::atomic<bool> busy{false};
};
using JournalRef = std::shared_ptr<JournalBox>;

JournalRef& unwrap_journal(Napi::Env env, const Napi::Value& v) {
  if (!v.IsExternal()) throw_error(env, ZEROTH_E_INVALID_ARG, "journal must be a handle from journalCreate()");
  return *v.As<Napi::External<JournalRef>>().Data();
}

// Marks a journal in use for the lifetime of an async call.
struct JournalLease {
  JournalRef box;
  explicit JournalLease(Napi::Env env, JournalRef b) : box(std::move(b)) {
    bool expected = false;
    if (!box->busy.compare_exchange_strong(expected, true))
      throw_error(env, ZEROTH_E_INVALID_ARG,
                  "this journal is in use by a perturbTo/restoreAndUpdate that has not finished; await it first");
  }
  ~JournalLease() {
    if (box) box->busy.store(false);
  }
  JournalLease(const JournalLease&) = delete;
};


UpdateOptions arg_update(Napi::Env env, const Napi::Value& v) {
  UpdateOptions o;
  if (v.IsUndefined()) return o;
  if (!v.IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "update options must be an object");
  Napi::Object obj = v.As<Napi::Object>();
  if (obj.Has("stepScale") && !obj.Get("stepScale").IsUndefined())
    o.step_scale = arg_f32(env, obj.Get("stepScale"), "stepScale");
  if (obj.Has("decay") && !obj.Get("decay").IsUndefined()) o.decay = arg_f32(env, obj.Get("decay"), "decay");
  Napi::Value sr = obj.Get("stochasticRounding");
  if (!sr.IsUndefined()) {
    if (!sr.IsBoolean()) throw_error(env, ZEROTH_E_INVALID_ARG, "stochasticRounding must be a boolean");
    o.stochastic_rounding = sr.As<Napi::Boolean>().Value();
  }
  Napi::Value rs = obj.Get("roundingSeed");
  if (!rs.IsUndefined()) o.rounding_seed = arg_u64(env, rs, "roundingSeed");
  return o;
}

Napi::Value done_undefined(Napi::Env env) { return env.Undefined(); }

// The targets with their optional `precond` tensors (read here so the shared reader in
// zo_args.cpp stays as it is for the kernels that take no preconditioner).
std::vector<PerturbTarget> arg_targets(Napi::Env env, const Napi::Value& v) {
  std::vector<PerturbTarget> targets = arg_perturb_targets(env, v);
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value pc = a.Get(i).As<Napi::Object>().Get("precond");
    if (!pc.IsUndefined() && !pc.IsNull())
      targets[i].precond = unwrap_tensor(env, pc, ("targets[" + std::to_string(i) + "].precond").c_str());
  }
  return targets;
}

Napi::Value JournalCreate(const Napi::CallbackInfo& info) {
  auto* ref = new JournalRef(std::make_shared<JournalBox>());
  return Napi::External<JournalRef>::New(info.Env(), ref, [](Napi::Env, JournalRef* r) { delete r; });
}

Napi::Value JournalEntryCount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  JournalRef box = unwrap_journal(env, info[0]);
  if (box->busy.load()) throw_error(env, ZEROTH_E_INVALID_ARG, "this journal is in use; await the pending call first");
  return Napi::Number::New(env, static_cast<double>(box->journal.entry_count()));
}

Napi::Value PerturbTo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto targets = arg_targets(env, info[0]);
  auto lease = std::make_shared<JournalLease>(env, unwrap_journal(env, info[1]));
  const uint64_t seed = arg_u64(env, info[2], "seed");
  const float scale = arg_f32(env, info[3], "scale");
  const rng::Distribution dist = arg_distribution(env, info[4]);
  return run_async(
      env,
      // The lease lives in the worker until it is destroyed, right after the Promise settles.
      [targets, lease, seed, scale, dist] { perturb_to(targets, lease->box->journal, seed, scale, dist); },
      done_undefined);
}

Napi::Value RestoreAndUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto targets = arg_targets(env, info[0]);
  auto lease = std::make_shared<JournalLease>(env, unwrap_journal(env, info[1]));
  const UpdateOptions opts = arg_update(env, info[2]);
  return run_async(
      env,
      [targets, lease, opts] { restore_and_update(targets, lease->box->journal, opts); },
      done_undefined);
}

Napi::Value ApplyUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto targets = arg_targets(env, info[0]);
  const uint64_t seed = arg_u64(env, info[1], "seed");
  const rng::Distribution dist = arg_distribution(env, info[2]);
  const UpdateOptions opts = arg_update(env, info[3]);
  return run_async(env, [targets, seed, dist, opts] { apply_update(targets, seed, dist, opts); }, done_undefined);
}

Napi::Value Perturb(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto targets = arg_targets(env, info[0]);
  const uint64_t seed = arg_u64(env, info[1], "seed");
  const float scale = arg_f32(env, info[2], "scale");
  const rng::Distribution dist = arg_distribution(env, info[3]);
  return run_async(env, [targets, seed, scale, dist] { perturb(targets, seed, scale, dist); }, done_undefined);
}

Napi::Value StreamId(const Napi::CallbackInfo& info) {
  const std::string name = arg_string(info.Env(), info[0], "name");
  return Napi::BigInt::New(info.Env(), rng::stream_id(name.data(), name.size()));
}

Napi::Value FillZ(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint64_t seed = arg_u64(env, info[0], "seed");
  const uint64_t stream = arg_u64(env, info[1], "stream");
  const rng::Distribution dist = arg_distribution(env, info[2]);
  const uint64_t first = arg_u64(env, info[3], "first");
  const int64_t n = arg_int(env, info[4], "n");
  if (n < 0 || n > (int64_t{1} << 32))
    throw_error(env, ZEROTH_E_INVALID_ARG, "n must be between 0 and 2^32 (fill larger ranges in pieces)");
  return guarded(env, [&] {
    Napi::Float32Array out = Napi::Float32Array::New(env, static_cast<size_t>(n));
    fill_z(seed, stream, dist, first, n, out.Data());
    return out;
  });
}

Napi::Value MaskFromMagnitude(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr t = unwrap_tensor(env, info[0], "tensor");
  if (!info[1].IsObject())
    throw_error(env, ZEROTH_E_INVALID_ARG, "rule must be {threshold} or {fraction, keep: 'smallest' | 'largest'}");
  Napi::Object rule = info[1].As<Napi::Object>();
  MagnitudeRule r;
  double value;
  if (!rule.Get("threshold").IsUndefined()) {
    r = MagnitudeRule::AtMost;
    value = arg_number(env, rule.Get("threshold"), "rule.threshold");
  } else if (!rule.Get("fraction").IsUndefined()) {
    value = arg_number(env, rule.Get("fraction"), "rule.fraction");
    const std::string keep = rule.Get("keep").IsUndefined() ? "smallest" : arg_string(env, rule.Get("keep"), "rule.keep");
    if (keep == "smallest") r = MagnitudeRule::Smallest;
    else if (keep == "largest") r = MagnitudeRule::Largest;
    else throw_error(env, ZEROTH_E_INVALID_ARG, "rule.keep must be 'smallest' or 'largest', got '" + keep + "'");
  } else {
    throw_error(env, ZEROTH_E_INVALID_ARG, "rule must have a threshold or a fraction");
  }
  return guarded(env, [&] { return wrap_tensor(env, mask_from_magnitude(*t, r, value)); });
}

Napi::Value HessianDiagUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto targets = arg_targets(env, info[0]);
  if (!info[1].IsArray()) throw_error(env, ZEROTH_E_INVALID_ARG, "hessians must be an array of f32 tensor handles");
  Napi::Array list = info[1].As<Napi::Array>();
  std::vector<TensorPtr> h;
  for (uint32_t i = 0; i < list.Length(); ++i)
    h.push_back(unwrap_tensor(env, list.Get(i), ("hessians[" + std::to_string(i) + "]").c_str()));
  const uint64_t seed = arg_u64(env, info[2], "seed");
  const rng::Distribution dist = arg_distribution(env, info[3]);
  if (!info[4].IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, "options must be {coeff, alpha, hMin?, hMax?}");
  Napi::Object o = info[4].As<Napi::Object>();
  DiagHessianUpdate u;
  u.coeff = arg_f32(env, o.Get("coeff"), "coeff");
  u.alpha = arg_f32(env, o.Get("alpha"), "alpha");
  if (!o.Get("hMin").IsUndefined()) u.h_min = arg_f32(env, o.Get("hMin"), "hMin");
  if (!o.Get("hMax").IsUndefined()) u.h_max = arg_f32(env, o.Get("hMax"), "hMax");
  return run_async(env, [targets, h, seed, dist, u] { hessian_diag_update(targets, h, seed, dist, u); }, done_undefined);
}

void init(Napi::Env env, Napi::Object exports) {
  exports.Set("journalCreate", Napi::Function::New(env, JournalCreate));
  exports.Set("journalEntryCount", Napi::Function::New(env, JournalEntryCount));
  exports.Set("perturbTo", Napi::Function::New(env, PerturbTo));
  exports.Set("restoreAndUpdate", Napi::Function::New(env, RestoreAndUpdate));
  exports.Set("applyUpdate", Napi::Function::New(env, ApplyUpdate));
  exports.Set("perturb", Napi::Function::New(env, Perturb));
  exports.Set("streamId", Napi::Function::New(env, StreamId));
  exports.Set("fillZ", Napi::Function::New(env, FillZ));
  exports.Set("maskFromMagnitude", Napi::Function::New(env, MaskFromMagnitude));
  exports.Set("hessianDiagUpdate", Napi::Function::New(env, HessianDiagUpdate));
}

}  // namespace

ZEROTH_NAPI_MODULE(zo, init);

}  // namespace zeroth::napi
