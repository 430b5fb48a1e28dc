// ops_napi.cpp — the tensor ops (native/cpu/ops.h) as synchronous N-API functions. Each one
// reads its handles and plain arguments, runs the op under guarded() and returns a new handle.
// src/ops.ts validates first; the op re-checks shapes, dtypes and devices.
#include <string>
#include <vector>

#include "common.h"
#include "cpu/ops.h"

namespace zeroth::napi {
namespace {

TensorPtr tensor_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return unwrap_tensor(info.Env(), info[i], what);  // a copy keeps it alive during the op
}

std::vector<int64_t> int_list(Napi::Env env, const Napi::Value& v, const char* what) {
  std::vector<int64_t> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) throw_error(env, ZEROTH_E_INVALID_ARG, std::string(what) + " must be an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > 64) throw_error(env, ZEROTH_E_INVALID_ARG, std::string(what) + " has too many entries");
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(arg_int(env, a.Get(i), what));
  return out;
}

bool binary_op_of(const std::string& s, ops::BinaryOp* op) {
  if (s == "add") *op = ops::BinaryOp::Add;
  else if (s == "sub") *op = ops::BinaryOp::Sub;
  else if (s == "mul") *op = ops::BinaryOp::Mul;
  else if (s == "div") *op = ops::BinaryOp::Div;
  else return false;
  return true;
}

bool unary_op_of(const std::string& s, ops::UnaryOp* op) {
  static const std::pair<const char*, ops::UnaryOp> table[] = {
      {"neg", ops::UnaryOp::Neg},         {"relu", ops::UnaryOp::Relu},   {"geluTanh", ops::UnaryOp::GeluTanh},
      {"geluErf", ops::UnaryOp::GeluErf}, {"silu", ops::UnaryOp::Silu},   {"tanh", ops::UnaryOp::Tanh},
      {"exp", ops::UnaryOp::Exp},         {"log", ops::UnaryOp::Log},     {"sigmoid", ops::UnaryOp::Sigmoid}};
  for (const auto& [name, value] : table)
    if (s == name) {
      *op = value;
      return true;
    }
  return false;
}

// opsBinary(op, a, b): a and b are handles or numbers (not both numbers).
Napi::Value Binary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ops::BinaryOp op;
  if (!binary_op_of(arg_string(env, info[0], "op"), &op))
    throw_error(env, ZEROTH_E_INVALID_ARG, "op must be 'add', 'sub', 'mul' or 'div'");
  const bool a_num = info[1].IsNumber(), b_num = info[2].IsNumber();
  if (a_num && b_num) throw_error(env, ZEROTH_E_INVALID_ARG, "at least one operand must be a tensor");
  if (a_num) {
    TensorPtr b = tensor_arg(info, 2, "right operand");
    const double s = info[1].As<Napi::Number>().DoubleValue();
    return guarded(env, [&] { return wrap_tensor(env, ops::binary_scalar(op, b, s, true)); });
  }
  TensorPtr a = tensor_arg(info, 1, "left operand");
  if (b_num) {
    const double s = info[2].As<Napi::Number>().DoubleValue();
    return guarded(env, [&] { return wrap_tensor(env, ops::binary_scalar(op, a, s, false)); });
  }
  TensorPtr b = tensor_arg(info, 2, "right operand");
  return guarded(env, [&] { return wrap_tensor(env, ops::binary(op, a, b)); });
}

Napi::Value Unary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ops::UnaryOp op;
  if (!unary_op_of(arg_string(env, info[0], "op"), &op)) throw_error(env, ZEROTH_E_INVALID_ARG, "unknown unary op");
  TensorPtr x = tensor_arg(info, 1, "input");
  return guarded(env, [&] { return wrap_tensor(env, ops::unary(op, x)); });
}

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr a = tensor_arg(info, 0, "matmul: left operand"), b = tensor_arg(info, 1, "matmul: right operand");
  return guarded(env, [&] { return wrap_tensor(env, ops::matmul(a, b)); });
}

// opsReduce(kind 'sum' | 'mean', x, axes: number[] (empty = all), keepDims, outDtype)
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string kind = arg_string(env, info[0], "kind");
  if (kind != "sum" && kind != "mean") throw_error(env, ZEROTH_E_INVALID_ARG, "kind must be 'sum' or 'mean'");
  TensorPtr x = tensor_arg(info, 1, "input");
  const std::vector<int64_t> axes = int_list(env, info[2], "axes");
  const bool keep = info[3].ToBoolean();
  const zeroth_dtype out = arg_dtype(env, info[4], "dtype");
  return guarded(env, [&] {
    return wrap_tensor(env, kind == "sum" ? ops::sum(x, axes, keep, out) : ops::mean(x, axes, keep, out));
  });
}

// opsSoftmax(x, axis, log)
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr x = tensor_arg(info, 0, "input");
  const int64_t axis = arg_int(env, info[1], "axis");
  const bool log = info[2].ToBoolean();
  return guarded(env, [&] { return wrap_tensor(env, log ? ops::log_softmax(x, axis) : ops::softmax(x, axis)); });
}

// opsCrossEntropy(logits, targets, ignoreIndex: number | null)
Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr logits = tensor_arg(info, 0, "crossEntropy: logits");
  TensorPtr targets = tensor_arg(info, 1, "crossEntropy: targets");
  const bool has_ignore = !(info[2].IsUndefined() || info[2].IsNull());
  const int64_t ignore = has_ignore ? arg_int(env, info[2], "ignoreIndex") : 0;
  return guarded(env, [&] { return wrap_tensor(env, ops::cross_entropy(logits, targets, has_ignore, ignore)); });
}

Napi::Value Mse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr a = tensor_arg(info, 0, "mse: prediction"), b = tensor_arg(info, 1, "mse: target");
  return guarded(env, [&] { return wrap_tensor(env, ops::mse(a, b)); });
}

Napi::Value Gather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr table = tensor_arg(info, 0, "gather: table"), ids = tensor_arg(info, 1, "gather: ids");
  return guarded(env, [&] { return wrap_tensor(env, ops::gather(table, ids)); });
}

Napi::Value Concat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::vector<TensorPtr> xs = arg_tensor_list(env, info[0], "concat: tensors");
  const int64_t axis = arg_int(env, info[1], "axis");
  return guarded(env, [&] { return wrap_tensor(env, ops::concat(xs, axis)); });
}

Napi::Value Slice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr x = tensor_arg(info, 0, "slice: input");
  const std::vector<int64_t> starts = int_list(env, info[1], "starts"), ends = int_list(env, info[2], "ends");
  return guarded(env, [&] { return wrap_tensor(env, ops::slice(x, starts, ends)); });
}

Napi::Value Transpose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorPtr x = tensor_arg(info, 0, "transpose: input");
  const std::vector<int64_t> perm = int_list(env, info[1], "perm");
  return guarded(env, [&] { return wrap_tensor(env, ops::transpose(x, perm)); });
}

void init(Napi::Env env, Napi::Object exports) {
  exports.Set("opsBinary", Napi::Function::New(env, Binary));
  exports.Set("opsUnary", Napi::Function::New(env, Unary));
  exports.Set("opsMatmul", Napi::Function::New(env, Matmul));
  exports.Set("opsReduce", Napi::Function::New(env, Reduce));
  exports.Set("opsSoftmax", Napi::Function::New(env, Softmax));
  exports.Set("opsCrossEntropy", Napi::Function::New(env, CrossEntropy));
  exports.Set("opsMse", Napi::Function::New(env, Mse));
  exports.Set("opsGather", Napi::Function::New(env, Gather));
  exports.Set("opsConcat", Napi::Function::New(env, Concat));
  exports.Set("opsSlice", Napi::Function::New(env, Slice));
  exports.Set("opsTranspose", Napi::Function::New(env, Transpose));
}

}  // namespace

ZEROTH_NAPI_MODULE(ops, init);

}  // namespace zeroth::napi
