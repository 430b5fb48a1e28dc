// ops.h — the tensor ops users write losses with (zeroth.ops in TypeScript).
//
// Every op takes CPU tensors (E_DEVICE otherwise), checks every shape and size it is given
// (E_SHAPE messages name both shapes), and returns a new dense tensor. Float ops compute in
// the input's dtype (f32 or f64; other dtypes are E_DTYPE naming the allowed ones); the
// shape ops (gather, concat, slice, transpose) move bytes and accept every non-packed dtype.
//
// Where float64 is used (DESIGN principle 4): sum/mean always accumulate in double and round
// once at the end; crossEntropy and mse return an f64 scalar formed from per-row values
// summed in double. SIMD (AVX2 / AVX-512 polynomials for exp) is chosen at run time; the
// scalar path, built on <cmath>, is the reference.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace zeroth::ops {

enum class BinaryOp { Add, Sub, Mul, Div };
enum class UnaryOp { Neg, Relu, GeluTanh, GeluErf, Silu, Tanh, Exp, Log, Sigmoid };

// numpy broadcasting of two same-dtype f32/f64 tensors.
TensorPtr binary(BinaryOp op, const TensorPtr& a, const TensorPtr& b);
// `scalar op t` (scalar_first) or `t op scalar`; the scalar is rounded to t's dtype.
TensorPtr binary_scalar(BinaryOp op, const TensorPtr& t, double scalar, bool scalar_first);
TensorPtr unary(UnaryOp op, const TensorPtr& x);

// The broadcast shape of two shapes (numpy rules); E_SHAPE naming both otherwise.
Shape broadcast_shapes(const Shape& a, const Shape& b);

// Batched matmul [..., M, K] x [..., K, N] with batch broadcasting; a 1-D left operand is
// a row [1, K], a 1-D right operand a column [K, 1], and that dim is dropped from the result.
TensorPtr matmul(const TensorPtr& a, const TensorPtr& b);

// sum/mean over `axes` (negative axes count from the end; empty = all axes). Accumulates in
// double; the result has dtype `out_dtype` (f32 or f64; pass x's dtype to keep it).
TensorPtr sum(const TensorPtr& x, const std::vector<int64_t>& axes, bool keep_dims, zeroth_dtype out_dtype);
TensorPtr mean(const TensorPtr& x, const std::vector<int64_t>& axes, bool keep_dims, zeroth_dtype out_dtype);

TensorPtr softmax(const TensorPtr& x, int64_t axis);
TensorPtr log_softmax(const TensorPtr& x, int64_t axis);
// logits [..., C], targets i32 of shape logits.shape[:-1]; mean over rows whose target is
// not `ignore_index` (when has_ignore). An f64 scalar; NaN when every row is ignored.
TensorPtr cross_entropy(const TensorPtr& logits, const TensorPtr& targets, bool has_ignore, int64_t ignore_index);
// mean((a - b)^2) over identical shapes, as an f64 scalar.
TensorPtr mse(const TensorPtr& a, const TensorPtr& b);

// table [V, D], ids i32 of any shape -> [...ids.shape, D]; E_INVALID_ARG names a bad id.
TensorPtr gather(const TensorPtr& table, const TensorPtr& ids);
TensorPtr concat(const std::vector<TensorPtr>& xs, int64_t axis);
// Per-axis [start, end) (negative values count from the end); axes past the lists are whole.
TensorPtr slice(const TensorPtr& x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends);
// perm empty: swap the last two axes.
TensorPtr transpose(const TensorPtr& x, const std::vector<int64_t>& perm);

}  // namespace zeroth::ops
