// ops_util.h — what the ops_*.cpp files share: argument checks, axis handling, checked
// arithmetic and the f32 vector kernels (ops_vec.cpp) behind run-time SIMD dispatch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/parallel.h"
#include "core/tensor.h"

namespace zeroth::ops {

// Elements per parallel_for chunk for streaming elementwise work: large enough that the
// pool's hand-off (~µs) is noise, small enough that 2..16 threads all get work on 1M elements.
constexpr int64_t kElementGrain = 32768;

// parallel_for, but small jobs run on the calling thread without waking the pool.
template <typename F>
void for_range(int64_t n, int64_t grain, F&& fn) {
  if (n <= 0) return;
  if (n <= grain) {
    fn(int64_t{0}, n);
    return;
  }
  parallel_for(n, grain, fn);
}

// `x` must be a live CPU f32/f64 tensor; `what` reads like "add: left operand".
inline void require_float_cpu(const Tensor& t, const std::string& what) {
  require_cpu(t, what.c_str());
  require_dtype(t, {ZEROTH_F32, ZEROTH_F64}, what.c_str());
}

// A shape op may move any non-packed dtype.
inline void require_unpacked_cpu(const Tensor& t, const std::string& what) {
  require_cpu(t, what.c_str());
  ZCHECK(t.dtype != ZEROTH_INT4, ZEROTH_E_DTYPE,
         what + " has dtype int4 (packed); dequantize or use f64, f32, f16, bf16, i32, i8 or u8");
}

// Axis in [-ndim, ndim) -> [0, ndim); E_INVALID_ARG otherwise.
inline int norm_axis(int64_t axis, int ndim, const std::string& op) {
  ZCHECK(axis >= -ndim && axis < ndim, ZEROTH_E_INVALID_ARG,
         op + ": axis " + std::to_string(axis) + " is out of range for a tensor with " + std::to_string(ndim) +
             " dimensions (use -" + std::to_string(ndim) + ".." + std::to_string(ndim - 1) + ")");
  return static_cast<int>(axis < 0 ? axis + ndim : axis);
}

// Product of shape[begin, end) (the shape is already validated, so this cannot overflow).
inline int64_t dims_product(const Shape& s, int begin, int end) {
  int64_t p = 1;
  for (int i = begin; i < end; ++i) p *= s[i];
  return p;
}

// ---- f32 vector kernels (ops_vec.cpp); each has a scalar reference path -------------------
void vec_exp(const float* x, float* y, int64_t n);
void vec_sigmoid(const float* x, float* y, int64_t n);
void vec_silu(const float* x, float* y, int64_t n);
void vec_tanh(const float* x, float* y, int64_t n);
void vec_gelu_tanh(const float* x, float* y, int64_t n);
void vec_gelu_erf(const float* x, float* y, int64_t n);
// Largest element of x[0, n) (NaNs ignored; -inf for n == 0).
float vec_max(const float* x, int64_t n);
// Σ exp(x[i] − shift) accumulated in double; writes the exp values to `out` when non-null.
double vec_exp_shift_sum(const float* x, int64_t n, float shift, float* out);

}  // namespace zeroth::ops
