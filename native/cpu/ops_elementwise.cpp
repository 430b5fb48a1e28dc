// ops_elementwise.cpp — add/sub/mul/div with numpy broadcasting, and the unary activations.
//
// Broadcasting: each operand gets a stride per output dim (0 where it is broadcast); adjacent
// dims whose strides chain are merged, so same-shape operands become one flat loop and a
// row-vector bias becomes [rows, cols] with strides (cols, 1) and (0, 1). The output is
// split into index ranges across the thread pool; each range walks runs of the innermost dim
// with a loop specialised for unit/zero strides so the compiler vectorises it.
#include <cmath>
#include <string>

#include "ops.h"
#include "ops_util.h"

namespace zeroth::ops {
namespace {

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
  }
  return "?";
}

template <typename T, BinaryOp OP>
inline T apply(T a, T b) {
  if constexpr (OP == BinaryOp::Add) return a + b;
  if constexpr (OP == BinaryOp::Sub) return a - b;
  if constexpr (OP == BinaryOp::Mul) return a * b;
  return a / b;
}

// One run of `n` outputs; sa / sb are 0 or 1 after coalescing of the innermost dim, or any
// stride when a middle dim is broadcast (general fallback).
template <typename T, BinaryOp OP>
void run(const T* a, int64_t sa, const T* b, int64_t sb, T* y, int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) y[i] = apply<T, OP>(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const T bv = *b;
    for (int64_t i = 0; i < n; ++i) y[i] = apply<T, OP>(a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const T av = *a;
    for (int64_t i = 0; i < n; ++i) y[i] = apply<T, OP>(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = apply<T, OP>(a[i * sa], b[i * sb]);
  }
}

// Output dims with each operand's stride, after dropping size-1 dims and merging chains.
struct BroadcastPlan {
  std::vector<int64_t> size, sa, sb;
};

BroadcastPlan plan_broadcast(const Shape& out, const Shape& a, const Shape& b) {
  const int nd = static_cast<int>(out.size());
  auto strides_for = [&](const Shape& s) {
    std::vector<int64_t> st(nd, 0);
    const int off = nd - static_cast<int>(s.size());
    int64_t stride = 1;
    for (int i = static_cast<int>(s.size()) - 1; i >= 0; --i) {
      st[i + off] = s[i] == 1 ? 0 : stride;
      stride *= s[i];
    }
    return st;
  };
  const std::vector<int64_t> fa = strides_for(a), fb = strides_for(b);
  BroadcastPlan p;
  for (int i = 0; i < nd; ++i) {
    if (out[i] == 1) continue;
    if (!p.size.empty()) {
      const size_t k = p.size.size() - 1;
      // Dim k (outer) and i (inner) merge when outer stride == inner stride × inner size.
      if (p.sa[k] == fa[i] * out[i] && p.sb[k] == fb[i] * out[i]) {
        p.size[k] *= out[i];
        p.sa[k] = fa[i];
        p.sb[k] = fb[i];
        continue;
      }
    }
    p.size.push_back(out[i]);
    p.sa.push_back(fa[i]);
    p.sb.push_back(fb[i]);
  }
  if (p.size.empty()) {  // every dim is 1: a single element
    p.size.push_back(1);
    p.sa.push_back(0);
    p.sb.push_back(0);
  }
  return p;
}

template <typename T, BinaryOp OP>
void binary_kernel(const BroadcastPlan& p, const T* a, const T* b, T* y, int64_t n) {
  const int nd = static_cast<int>(p.size.size());
  const int64_t inner = p.size[nd - 1];
  for_range(n, kElementGrain, [&](int64_t begin, int64_t end) {
    int64_t pos = begin;
    while (pos < end) {
      // Offsets of output index `pos` in a and b.
      int64_t rest = pos, oa = 0, ob = 0, i_inner = 0;
      for (int d = nd - 1; d >= 0; --d) {
        const int64_t idx = rest % p.size[d];
        rest /= p.size[d];
        oa += idx * p.sa[d];
        ob += idx * p.sb[d];
        if (d == nd - 1) i_inner = idx;
      }
      const int64_t count = std::min(inner - i_inner, end - pos);
      run<T, OP>(a + oa, p.sa[nd - 1], b + ob, p.sb[nd - 1], y + pos, count);
      pos += count;
    }
  });
}

template <typename T>
void binary_typed(BinaryOp op, const BroadcastPlan& p, const T* a, const T* b, T* y, int64_t n) {
  switch (op) {
    case BinaryOp::Add: return binary_kernel<T, BinaryOp::Add>(p, a, b, y, n);
    case BinaryOp::Sub: return binary_kernel<T, BinaryOp::Sub>(p, a, b, y, n);
    case BinaryOp::Mul: return binary_kernel<T, BinaryOp::Mul>(p, a, b, y, n);
    case BinaryOp::Div: return binary_kernel<T, BinaryOp::Div>(p, a, b, y, n);
  }
}

// ---- unary ------------------------------------------------------------------------------

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "neg";
    case UnaryOp::Relu: return "relu";
    case UnaryOp::GeluTanh: return "gelu";
    case UnaryOp::GeluErf: return "gelu";
    case UnaryOp::Silu: return "silu";
    case UnaryOp::Tanh: return "tanh";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::Sigmoid: return "sigmoid";
  }
  return "?";
}

void unary_f32(UnaryOp op, const float* x, float* y, int64_t n) {
  switch (op) {
    case UnaryOp::Neg:
      for (int64_t i = 0; i < n; ++i) y[i] = -x[i];
      return;
    case UnaryOp::Relu:  // NaN < 0 is false, so NaN passes through as in PyTorch
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
      return;
    case UnaryOp::Log:
      for (int64_t i = 0; i < n; ++i) y[i] = std::log(x[i]);
      return;
    case UnaryOp::GeluTanh: return vec_gelu_tanh(x, y, n);
    case UnaryOp::GeluErf: return vec_gelu_erf(x, y, n);
    case UnaryOp::Silu: return vec_silu(x, y, n);
    case UnaryOp::Tanh: return vec_tanh(x, y, n);
    case UnaryOp::Exp: return vec_exp(x, y, n);
    case UnaryOp::Sigmoid: return vec_sigmoid(x, y, n);
  }
}

double unary_f64_one(UnaryOp op, double v) {
  switch (op) {
    case UnaryOp::Neg: return -v;
    case UnaryOp::Relu: return v < 0.0 ? 0.0 : v;
    case UnaryOp::Log: return std::log(v);
    case UnaryOp::GeluTanh: return 0.5 * v * (1.0 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
    case UnaryOp::GeluErf: return 0.5 * v * std::erfc(-v * 0.70710678118654752);
    case UnaryOp::Silu: return v / (1.0 + std::exp(-v));
    case UnaryOp::Tanh: return std::tanh(v);
    case UnaryOp::Exp: return std::exp(v);
    case UnaryOp::Sigmoid: return 1.0 / (1.0 + std::exp(-v));
  }
  return 0.0;
}

}  // namespace

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t nd = std::max(a.size(), b.size());
  Shape out(nd);
  for (size_t i = 0; i < nd; ++i) {
    // i counts from the right.
    const int64_t da = i < a.size() ? a[a.size() - 1 - i] : 1;
    const int64_t db = i < b.size() ? b[b.size() - 1 - i] : 1;
    ZCHECK(da == db || da == 1 || db == 1, ZEROTH_E_SHAPE,
           "shapes " + shape_string(a) + " and " + shape_string(b) + " do not broadcast: dimension " +
               std::to_string(static_cast<int64_t>(nd - 1 - i)) + " of the result would need " + std::to_string(da) +
               " and " + std::to_string(db) + " to be equal or 1");
    out[nd - 1 - i] = da == 1 ? db : da;
  }
  return out;
}

TensorPtr binary(BinaryOp op, const TensorPtr& a, const TensorPtr& b) {
  const std::string name = binary_name(op);
  require_float_cpu(*a, name + ": left operand");
  require_float_cpu(*b, name + ": right operand");
  ZCHECK(a->dtype == b->dtype, ZEROTH_E_DTYPE,
         name + ": operands have dtypes " + dtype_traits(a->dtype).name + " and " + dtype_traits(b->dtype).name +
             "; convert one with .to('" + dtype_traits(a->dtype).name + "') first");
  Shape out_shape;
  try {
    out_shape = broadcast_shapes(a->shape, b->shape);
  } catch (const Error& e) {
    fail(e.code(), name + ": " + e.what());
  }
  TensorPtr y = tensor_empty(a->dtype, out_shape, a->device());
  if (y->numel == 0) return y;
  const BroadcastPlan p = plan_broadcast(out_shape, a->shape, b->shape);
  if (a->dtype == ZEROTH_F32)
    binary_typed<float>(op, p, a->as<float>(), b->as<float>(), y->as<float>(), y->numel);
  else
    binary_typed<double>(op, p, a->as<double>(), b->as<double>(), y->as<double>(), y->numel);
  return y;
}

TensorPtr binary_scalar(BinaryOp op, const TensorPtr& t, double scalar, bool scalar_first) {
  require_float_cpu(*t, std::string(binary_name(op)) + ": tensor operand");
  // A 0-d tensor of t's dtype broadcasts through the zero-stride loop above.
  TensorPtr s = tensor_empty(t->dtype, Shape{}, t->device());
  if (t->dtype == ZEROTH_F32)
    *s->as<float>() = static_cast<float>(scalar);
  else
    *s->as<double>() = scalar;
  return scalar_first ? binary(op, s, t) : binary(op, t, s);
}

TensorPtr unary(UnaryOp op, const TensorPtr& x) {
  require_float_cpu(*x, std::string(unary_name(op)) + ": input");
  TensorPtr y = tensor_empty(x->dtype, x->shape, x->device());
  if (x->dtype == ZEROTH_F32) {
    const float* xs = x->as<float>();
    float* ys = y->as<float>();
    for_range(x->numel, kElementGrain, [&](int64_t b, int64_t e) { unary_f32(op, xs + b, ys + b, e - b); });
  } else {
    const double* xs = x->as<double>();
    double* ys = y->as<double>();
    for_range(x->numel, kElementGrain / 4, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ys[i] = unary_f64_one(op, xs[i]);
    });
  }
  return y;
}

}  // namespace zeroth::ops
