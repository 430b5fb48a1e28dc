// dtype.h — per-dtype facts in one table (ggml's traits habit), not in switches.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "../include/zeroth.h"

namespace zeroth {

struct DTypeTraits {
  const char* name;     // the TypeScript name: 'f32', 'bf16', 'int4', ...
  size_t size;          // bytes per element; 0 for packed int4
  bool is_float;        // f64, f32, f16, bf16
  bool trainable;       // a ZO optimizer may perturb tensors of this dtype in place
};

const DTypeTraits& dtype_traits(zeroth_dtype dtype);  // throws E_DTYPE for an unknown value
bool dtype_from_name(const std::string& name, zeroth_dtype* out);

// Bytes needed for `numel` elements (int4: two per byte, rounded up). Throws on overflow.
size_t storage_bytes(zeroth_dtype dtype, int64_t numel);

}  // namespace zeroth
