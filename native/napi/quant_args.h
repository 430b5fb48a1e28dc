// quant_args.h — the JS quantize options object ({bits, groupSize?, symmetric?, scaleDtype?, clip?})
// as QuantizeOptions, shared by zeroth.quantize and model.quantize.
#pragma once
#include "common.h"
#include "cpu/quant.h"

namespace zeroth::napi {

QuantizeOptions quant_options(Napi::Env env, const Napi::Value& v);

}  // namespace zeroth::napi
