// zeroth_c.cpp — the C ABI (native/include/zeroth.h) over the C++ core.
// Every entry point catches everything: a C caller sees a status and zeroth_last_error().
#include <cstring>
#include <new>
#include <string>

#include "core/errors.h"
#include "core/philox.h"
#include "core/tensor.h"
#include "cpu/perturb.h"

struct zeroth_tensor {
  zeroth::TensorPtr t;
};

namespace {

thread_local std::string t_last_error;
thread_local zeroth_status t_last_status = ZEROTH_OK;

void set_error(zeroth_status s, const char* msg) {
  t_last_status = s;
  t_last_error = msg;
}

template <typename F>
zeroth_status guard(F&& fn) {
  try {
    fn();
    return ZEROTH_OK;
  } catch (const zeroth::Error& e) {
    set_error(e.code(), e.what());
    return e.code();
  } catch (const std::bad_alloc&) {
    set_error(ZEROTH_E_OOM, "out of memory");
    return ZEROTH_E_OOM;
  } catch (const std::exception& e) {
    set_error(ZEROTH_E_INTERNAL, e.what());
    return ZEROTH_E_INTERNAL;
  } catch (...) {
    set_error(ZEROTH_E_INTERNAL, "unknown internal error");
    return ZEROTH_E_INTERNAL;
  }
}

zeroth::Shape read_shape(const int64_t* shape, int32_t ndim) {
  ZCHECK(ndim >= 0 && ndim <= ZEROTH_MAX_DIMS, ZEROTH_E_SHAPE,
         "ndim must be between 0 and " + std::to_string(ZEROTH_MAX_DIMS));
  ZCHECK(ndim == 0 || shape != nullptr, ZEROTH_E_INVALID_ARG, "shape is NULL");
  return zeroth::Shape(shape, shape + ndim);
}

const zeroth::Tensor& deref(const zeroth_tensor* t) {
  ZCHECK(t != nullptr && t->t != nullptr, ZEROTH_E_INVALID_ARG, "tensor handle is NULL");
  return *t->t;
}

}  // namespace

extern "C" {

int32_t zeroth_version(void) {
  return ZEROTH_VERSION_MAJOR * 10000 + ZEROTH_VERSION_MINOR * 100 + ZEROTH_VERSION_PATCH;
}
int32_t zeroth_abi_version(void) { return ZEROTH_ABI_VERSION; }
const char* zeroth_last_error(void) { return t_last_error.c_str(); }
zeroth_status zeroth_last_status(void) { return t_last_status; }
const char* zeroth_status_name(zeroth_status s) { return zeroth::status_name(s); }

size_t zeroth_dtype_size(zeroth_dtype d) {
  size_t out = 0;
  guard([&] { out = zeroth::dtype_traits(d).size; });
  return out;
}
const char* zeroth_dtype_name(zeroth_dtype d) {
  const char* out = "invalid";
  guard([&] { out = zeroth::dtype_traits(d).name; });
  return out;
}

int32_t zeroth_device_count(zeroth_device_type type) {
  int32_t n = 0;
  guard([&] { n = zeroth::device_count(type); });
  return n;
}

zeroth_tensor* zeroth_tensor_create(zeroth_dtype dtype, const int64_t* shape, int32_t ndim, zeroth_device device) {
  zeroth_tensor* out = nullptr;
  guard([&] { out = new zeroth_tensor{zeroth::tensor_zeros(dtype, read_shape(shape, ndim), device)}; });
  return out;
}

zeroth_tensor* zeroth_tensor_from_data(zeroth_dtype dtype, const int64_t* shape, int32_t ndim, zeroth_device device,
                                       const void* data, size_t bytes) {
  zeroth_tensor* out = nullptr;
  guard([&] {
    ZCHECK(data != nullptr || bytes == 0, ZEROTH_E_INVALID_ARG, "data is NULL");
    out = new zeroth_tensor{zeroth::tensor_from_host(dtype, read_shape(shape, ndim), device, data, bytes)};
  });
  return out;
}

zeroth_tensor* zeroth_tensor_copy(const zeroth_tensor* src, zeroth_dtype dtype, zeroth_device device) {
  zeroth_tensor* out = nullptr;
  guard([&] { out = new zeroth_tensor{zeroth::tensor_copy(deref(src), dtype, device)}; });
  return out;
}

void zeroth_tensor_free(zeroth_tensor* t) { delete t; }

int32_t zeroth_tensor_ndim(const zeroth_tensor* t) {
  int32_t n = -1;
  guard([&] { n = deref(t).ndim(); });
  return n;
}
int64_t zeroth_tensor_dim(const zeroth_tensor* t, int32_t axis) {
  int64_t n = -1;
  guard([&] {
    const zeroth::Tensor& x = deref(t);
    ZCHECK(axis >= 0 && axis < x.ndim(), ZEROTH_E_INVALID_ARG, "axis out of range");
    n = x.shape[axis];
  });
  return n;
}
int64_t zeroth_tensor_numel(const zeroth_tensor* t) {
  int64_t n = -1;
  guard([&] { n = deref(t).numel; });
  return n;
}
zeroth_dtype zeroth_tensor_dtype(const zeroth_tensor* t) {
  zeroth_dtype d = ZEROTH_DTYPE_COUNT;
  guard([&] { d = deref(t).dtype; });
  return d;
}
zeroth_device zeroth_tensor_device(const zeroth_tensor* t) {
  zeroth_device d{ZEROTH_DEVICE_CPU, -1};
  guard([&] { d = deref(t).device(); });
  return d;
}
zeroth_status zeroth_tensor_read(const zeroth_tensor* t, void* out, size_t bytes) {
  return guard([&] {
    ZCHECK(out != nullptr || bytes == 0, ZEROTH_E_INVALID_ARG, "out is NULL");
    zeroth::tensor_to_host(deref(t), out, bytes);
  });
}

float zeroth_rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  return zeroth::rng::normal_at(seed, stream, index);
}
float zeroth_rng_rademacher(uint64_t seed, uint64_t stream, uint64_t index) {
  return zeroth::rng::rademacher_at(seed, stream, index);
}
uint64_t zeroth_stream_id(const char* name, size_t length) {
  return name ? zeroth::rng::stream_id(name, length) : 0;
}

zeroth_status zeroth_perturb(zeroth_tensor* t, uint64_t seed, uint64_t stream, float scale) {
  return guard([&] {
    ZCHECK(t != nullptr && t->t != nullptr, ZEROTH_E_INVALID_ARG, "tensor handle is NULL");
    zeroth::PerturbTarget target{t->t, stream, nullptr};
    zeroth::perturb({target}, seed, scale, zeroth::rng::Distribution::Normal);
  });
}

}  // extern "C"
