#include "dtype.h"

#include <cstring>
#include <limits>

#include "errors.h"

namespace zeroth {

static const DTypeTraits kTraits[ZEROTH_DTYPE_COUNT] = {
    /* ZEROTH_F64  */ {"f64", 8, true, false},
    /* ZEROTH_F32  */ {"f32", 4, true, true},
    /* ZEROTH_F16  */ {"f16", 2, true, true},
    /* ZEROTH_BF16 */ {"bf16", 2, true, true},
    /* ZEROTH_I32  */ {"i32", 4, false, false},
    /* ZEROTH_I8   */ {"i8", 1, false, false},
    /* ZEROTH_U8   */ {"u8", 1, false, false},
    /* ZEROTH_INT4 */ {"int4", 0, false, false},
};

const DTypeTraits& dtype_traits(zeroth_dtype dtype) {
  ZCHECK(dtype >= 0 && dtype < ZEROTH_DTYPE_COUNT, ZEROTH_E_DTYPE,
         "unknown dtype value " + std::to_string(static_cast<int>(dtype)) +
             "; use one of f64, f32, f16, bf16, i32, i8, u8, int4");
  return kTraits[dtype];
}

bool dtype_from_name(const std::string& name, zeroth_dtype* out) {
  for (int i = 0; i < ZEROTH_DTYPE_COUNT; ++i) {
    if (name == kTraits[i].name) {
      *out = static_cast<zeroth_dtype>(i);
      return true;
    }
  }
  return false;
}

size_t storage_bytes(zeroth_dtype dtype, int64_t numel) {
  ZCHECK(numel >= 0, ZEROTH_E_SHAPE, "negative element count");
  const DTypeTraits& t = dtype_traits(dtype);
  if (dtype == ZEROTH_INT4) return static_cast<size_t>(numel / 2 + (numel & 1));
  const uint64_t max = std::numeric_limits<int64_t>::max() / t.size;
  ZCHECK(static_cast<uint64_t>(numel) <= max, ZEROTH_E_SHAPE,
         "tensor of " + std::to_string(numel) + " elements is too large to address");
  return static_cast<size_t>(numel) * t.size;
}

const char* status_name(zeroth_status s) noexcept {
  switch (s) {
    case ZEROTH_OK: return "OK";
    case ZEROTH_E_INVALID_ARG: return "E_INVALID_ARG";
    case ZEROTH_E_SHAPE: return "E_SHAPE";
    case ZEROTH_E_DTYPE: return "E_DTYPE";
    case ZEROTH_E_DEVICE: return "E_DEVICE";
    case ZEROTH_E_DISPOSED: return "E_DISPOSED";
    case ZEROTH_E_FORMAT: return "E_FORMAT";
    case ZEROTH_E_UNSUPPORTED: return "E_UNSUPPORTED";
    case ZEROTH_E_OOM: return "E_OOM";
    case ZEROTH_E_IO: return "E_IO";
    case ZEROTH_E_NAN: return "E_NAN";
    case ZEROTH_E_ABORTED: return "E_ABORTED";
    case ZEROTH_E_INTERNAL: return "E_INTERNAL";
  }
  return "E_INTERNAL";
}

}  // namespace zeroth
