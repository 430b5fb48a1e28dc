// ops_softmax.cpp — softmax, logSoftmax, and the two losses (crossEntropy, mse).
//
// Stability: every row is shifted by its maximum before exp, so no exp overflows and the
// largest term is exactly 1. The row sum Σ exp(x − max) is accumulated in double (the f32
// path converts each exp to double before adding), and log-sum-exp = max + log(sum) is formed
// in double. A row containing NaN gives NaN everywhere in that row; an all −inf row gives NaN
// (0/0), as in PyTorch.
//
// Losses (DESIGN principle 4): per-row losses are computed in double, stored, and added in row
// order, so the f64 result does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "ops.h"
#include "ops_util.h"

namespace zeroth::ops {
namespace {

// Row max and Σ exp(row − max) (in double); writes exp(row − max) to `exps` when non-null.
struct RowStats {
  double max;
  double sum;
};

RowStats row_stats(const float* x, int64_t n, float* exps) {
  const float m = vec_max(x, n);
  return {m, vec_exp_shift_sum(x, n, m, exps)};
}

RowStats row_stats(const double* x, int64_t n, double* exps) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = std::exp(x[i] - m);
    if (exps) exps[i] = e;
    s += e;
  }
  return {m, s};
}

// One contiguous row: y = softmax(x) or log_softmax(x).
template <typename T>
void softmax_row(const T* x, T* y, int64_t n, bool log) {
  if (log) {
    const RowStats st = row_stats(x, n, nullptr);
    const double lse = st.max + std::log(st.sum);
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>(static_cast<double>(x[i]) - lse);
  } else {
    const RowStats st = row_stats(x, n, y);
    const T inv = static_cast<T>(1.0 / st.sum);
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
  }
}

template <typename T>
void softmax_typed(const T* x, T* y, int64_t outer, int64_t classes, int64_t inner, bool log) {
  const int64_t rows = outer * inner;
  const int64_t grain = std::max<int64_t>(1, kElementGrain / std::max<int64_t>(classes, 1));
  for_range(rows, grain, [&](int64_t b, int64_t e) {
    if (inner == 1) {
      for (int64_t r = b; r < e; ++r) softmax_row(x + r * classes, y + r * classes, classes, log);
      return;
    }
    // A strided row (axis not last): gather it, work on the copy, scatter the result.
    std::vector<T> in(static_cast<size_t>(classes)), out(static_cast<size_t>(classes));
    for (int64_t r = b; r < e; ++r) {
      const int64_t base = (r / inner) * classes * inner + (r % inner);
      for (int64_t c = 0; c < classes; ++c) in[c] = x[base + c * inner];
      softmax_row(in.data(), out.data(), classes, log);
      for (int64_t c = 0; c < classes; ++c) y[base + c * inner] = out[c];
    }
  });
}

TensorPtr softmax_common(const char* name, const TensorPtr& x, int64_t axis, bool log) {
  const std::string op = name;
  require_float_cpu(*x, op + ": input");
  ZCHECK(x->ndim() >= 1, ZEROTH_E_SHAPE, op + ": input is a scalar (shape []); it needs at least one axis");
  const int ax = norm_axis(axis, x->ndim(), op);
  TensorPtr y = tensor_empty(x->dtype, x->shape, x->device());
  if (y->numel == 0) return y;
  const int64_t outer = dims_product(x->shape, 0, ax), classes = x->shape[ax];
  const int64_t inner = dims_product(x->shape, ax + 1, x->ndim());
  if (x->dtype == ZEROTH_F32)
    softmax_typed(x->as<float>(), y->as<float>(), outer, classes, inner, log);
  else
    softmax_typed(x->as<double>(), y->as<double>(), outer, classes, inner, log);
  return y;
}

TensorPtr f64_scalar(double v, zeroth_device device) {
  TensorPtr t = tensor_empty(ZEROTH_F64, Shape{}, device);
  *t->as<double>() = v;
  return t;
}

template <typename T>
double cross_entropy_typed(const T* logits, const int32_t* targets, int64_t rows, int64_t classes, bool has_ignore,
                           int64_t ignore_index, int64_t* counted) {
  std::vector<double> loss(static_cast<size_t>(rows), 0.0);
  for_range(rows, std::max<int64_t>(1, kElementGrain / classes), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      if (has_ignore && targets[r] == ignore_index) continue;
      const T* row = logits + r * classes;
      const RowStats st = row_stats(row, classes, nullptr);
      loss[r] = st.max + std::log(st.sum) - static_cast<double>(row[targets[r]]);
    }
  });
  double total = 0;
  int64_t n = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (has_ignore && targets[r] == ignore_index) continue;
    total += loss[r];
    ++n;
  }
  *counted = n;
  return total;
}

template <typename T>
double squared_error_sum(const T* a, const T* b, int64_t n) {
  constexpr int64_t kBlock = 65536;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
  for_range(blocks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      double acc[4] = {0, 0, 0, 0};
      const int64_t begin = k * kBlock, end = std::min(n, begin + kBlock);
      int64_t i = begin;
      for (; i + 4 <= end; i += 4)
        for (int j = 0; j < 4; ++j) {
          const double d = static_cast<double>(a[i + j]) - static_cast<double>(b[i + j]);
          acc[j] += d * d;
        }
      for (; i < end; ++i) {
        const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
        acc[0] += d * d;
      }
      partial[k] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace

TensorPtr softmax(const TensorPtr& x, int64_t axis) { return softmax_common("softmax", x, axis, false); }
TensorPtr log_softmax(const TensorPtr& x, int64_t axis) { return softmax_common("logSoftmax", x, axis, true); }

TensorPtr cross_entropy(const TensorPtr& logits, const TensorPtr& targets, bool has_ignore, int64_t ignore_index) {
  require_float_cpu(*logits, "crossEntropy: logits");
  require_cpu(*targets, "crossEntropy: targets");
  require_dtype(*targets, {ZEROTH_I32}, "crossEntropy: targets");
  ZCHECK(logits->ndim() >= 1, ZEROTH_E_SHAPE, "crossEntropy: logits must have a class axis, e.g. [N, C]; got shape []");
  const int64_t classes = logits->shape.back();
  const Shape row_shape(logits->shape.begin(), logits->shape.end() - 1);
  ZCHECK(targets->shape == row_shape, ZEROTH_E_SHAPE,
         "crossEntropy: logits " + shape_string(logits->shape) + " need targets of shape " + shape_string(row_shape) +
             " (one class index per row), got " + shape_string(targets->shape));
  ZCHECK(classes >= 1, ZEROTH_E_SHAPE,
         "crossEntropy: logits " + shape_string(logits->shape) + " have no classes (last dimension is 0)");
  const int64_t rows = targets->numel;
  const int32_t* t = targets->as<int32_t>();
  for (int64_t r = 0; r < rows; ++r) {
    if (has_ignore && t[r] == ignore_index) continue;
    ZCHECK(t[r] >= 0 && t[r] < classes, ZEROTH_E_INVALID_ARG,
           "crossEntropy: target " + std::to_string(t[r]) + " at row " + std::to_string(r) +
               " is out of range for " + std::to_string(classes) + " classes (use 0.." + std::to_string(classes - 1) +
               (has_ignore ? ", or the ignoreIndex " + std::to_string(ignore_index) : std::string()) + ")");
  }
  int64_t counted = 0;
  const double total =
      logits->dtype == ZEROTH_F32
          ? cross_entropy_typed(logits->as<float>(), t, rows, classes, has_ignore, ignore_index, &counted)
          : cross_entropy_typed(logits->as<double>(), t, rows, classes, has_ignore, ignore_index, &counted);
  // No counted rows: 0/0 = NaN, as PyTorch's mean reduction gives.
  return f64_scalar(counted == 0 ? std::nan("") : total / static_cast<double>(counted), logits->device());
}

TensorPtr mse(const TensorPtr& a, const TensorPtr& b) {
  require_float_cpu(*a, "mse: prediction");
  require_float_cpu(*b, "mse: target");
  ZCHECK(a->dtype == b->dtype, ZEROTH_E_DTYPE,
         std::string("mse: prediction and target have dtypes ") + dtype_traits(a->dtype).name + " and " +
             dtype_traits(b->dtype).name + "; convert one with .to() first");
  ZCHECK(a->shape == b->shape, ZEROTH_E_SHAPE,
         "mse: prediction " + shape_string(a->shape) + " and target " + shape_string(b->shape) +
             " must have the same shape");
  const int64_t n = a->numel;
  const double total = a->dtype == ZEROTH_F32 ? squared_error_sum(a->as<float>(), b->as<float>(), n)
                                              : squared_error_sum(a->as<double>(), b->as<double>(), n);
  return f64_scalar(n == 0 ? std::nan("") : total / static_cast<double>(n), a->device());
}

}  // namespace zeroth::ops
