// zo_args.h — argument readers shared by the N-API files of the ZO kernels.
#pragma once
#include "common.h"
#include "cpu/perturb.h"

namespace zeroth::napi {

// A finite number within float32 range.
float arg_f32(Napi::Env env, const Napi::Value& v, const char* what);
// 'normal' | 'rademacher'
rng::Distribution arg_distribution(Napi::Env env, const Napi::Value& v);
// [{tensor, stream: BigInt, mask?}]
std::vector<PerturbTarget> arg_perturb_targets(Napi::Env env, const Napi::Value& v);

}  // namespace zeroth::napi
