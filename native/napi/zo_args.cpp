#include "zo_args.h"

#include <cmath>

namespace zeroth::napi {

float arg_f32(Napi::Env env, const Napi::Value& v, const char* what) {
  const double x = arg_number(env, v, what);
  if (!std::isfinite(x) || std::fabs(x) > 3.4028234663852886e38)
    throw_error(env, ZEROTH_E_INVALID_ARG, std::string(what) + " must be a finite number within float32 range");
  return static_cast<float>(x);
}

rng::Distribution arg_distribution(Napi::Env env, const Napi::Value& v) {
  const std::string s = v.IsUndefined() ? "normal" : arg_string(env, v, "dist");
  if (s == "normal") return rng::Distribution::Normal;
  if (s == "rademacher") return rng::Distribution::Rademacher;
  throw_error(env, ZEROTH_E_INVALID_ARG, "dist must be 'normal' or 'rademacher', got '" + s + "'");
}

std::vector<PerturbTarget> arg_perturb_targets(Napi::Env env, const Napi::Value& v) {
  if (!v.IsArray()) throw_error(env, ZEROTH_E_INVALID_ARG, "targets must be an array of {tensor, stream, mask?}");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<PerturbTarget> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    const std::string what = "targets[" + std::to_string(i) + "]";
    Napi::Value item = a.Get(i);
    if (!item.IsObject()) throw_error(env, ZEROTH_E_INVALID_ARG, what + " must be an object {tensor, stream, mask?}");
    Napi::Object o = item.As<Napi::Object>();
    PerturbTarget t;
    t.tensor = unwrap_tensor(env, o.Get("tensor"), (what + ".tensor").c_str());
    t.stream = arg_u64(env, o.Get("stream"), (what + ".stream").c_str());
    Napi::Value mask = o.Get("mask");
    if (!mask.IsUndefined() && !mask.IsNull()) t.mask = unwrap_tensor(env, mask, (what + ".mask").c_str());
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace zeroth::napi
