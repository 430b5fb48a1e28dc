// ops.ts — tensor ops for writing losses in TypeScript (zeroth.ops.*).
//
// Every op returns a new tensor (dispose it, or declare it with `using`). Inputs must be CPU
// tensors (E_DEVICE otherwise). Float ops take f32 or f64 and compute in that dtype (other
// dtypes: E_DTYPE); both operands of a binary op must have the same dtype. Shape ops
// (gather, concat, slice, transpose) accept every dtype except int4. Shape errors (E_SHAPE)
// name the shapes involved.
//
// float64 where numbers are compared: sum and mean always accumulate in float64 and round
// once to the result dtype (pass { dtype: 'f64' } to keep the float64 value); crossEntropy and
// mse return an f64 scalar whose per-row terms are summed in float64 in a fixed order.
import { ZerothError } from './errors.js';
import { native } from './native.js';
import { Tensor } from './tensor.js';

/** A tensor, or a number that broadcasts like a 0-d tensor of the other operand's dtype. */
export type Operand = Tensor | number;

function tensorArg(x: unknown, what: string): Tensor {
  if (!(x instanceof Tensor)) {
    throw new ZerothError('E_INVALID_ARG', `${what} must be a zeroth Tensor, got ${x === null ? 'null' : typeof x}`);
  }
  return x;
}

function intArg(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x)) {
    throw new ZerothError('E_INVALID_ARG', `${what} must be an integer, got ${String(x)}`);
  }
  return x;
}

function intList(x: unknown, what: string): number[] {
  if (!Array.isArray(x)) throw new ZerothError('E_INVALID_ARG', `${what} must be an array of integers`);
  return x.map((v, i) => intArg(v, `${what}[${i}]`));
}

function wrap(handle: unknown): Tensor {
  return new Tensor(handle as object);
}

// ---- elementwise ---------------------------------------------------------------------------

function binary(op: 'add' | 'sub' | 'mul' | 'div', a: Operand, b: Operand): Tensor {
  const ha = typeof a === 'number' ? a : tensorArg(a, `${op}: left operand`).handle;
  const hb = typeof b === 'number' ? b : tensorArg(b, `${op}: right operand`).handle;
  if (typeof ha === 'number' && typeof hb === 'number') {
    throw new ZerothError('E_INVALID_ARG', `${op}: at least one operand must be a tensor`);
  }
  return wrap(native.opsBinary(op, ha, hb));
}

/** a + b with numpy broadcasting. */
export function add(a: Operand, b: Operand): Tensor {
  return binary('add', a, b);
}
/** a − b with numpy broadcasting. */
export function sub(a: Operand, b: Operand): Tensor {
  return binary('sub', a, b);
}
/** a · b (elementwise) with numpy broadcasting. */
export function mul(a: Operand, b: Operand): Tensor {
  return binary('mul', a, b);
}
/** a / b (elementwise, IEEE: x/0 is ±inf or NaN) with numpy broadcasting. */
export function div(a: Operand, b: Operand): Tensor {
  return binary('div', a, b);
}

function unary(op: string, x: Tensor, name = op): Tensor {
  return wrap(native.opsUnary(op, tensorArg(x, `${name}: input`).handle));
}

export function neg(x: Tensor): Tensor {
  return unary('neg', x);
}
/** max(x, 0); NaN stays NaN. */
export function relu(x: Tensor): Tensor {
  return unary('relu', x);
}
export interface GeluOptions {
  /** 'none' (default, as in PyTorch): 0.5·x·(1 + erf(x/√2)); 'tanh': the GPT-2 approximation. */
  approximate?: 'none' | 'tanh';
}
export function gelu(x: Tensor, opts: GeluOptions = {}): Tensor {
  const approximate = opts.approximate ?? 'none';
  if (approximate !== 'none' && approximate !== 'tanh') {
    throw new ZerothError('E_INVALID_ARG', `gelu: approximate must be 'none' or 'tanh', got ${JSON.stringify(approximate)}`);
  }
  return unary(approximate === 'tanh' ? 'geluTanh' : 'geluErf', x, 'gelu');
}
/** x · sigmoid(x). */
export function silu(x: Tensor): Tensor {
  return unary('silu', x);
}
export function tanh(x: Tensor): Tensor {
  return unary('tanh', x);
}
export function exp(x: Tensor): Tensor {
  return unary('exp', x);
}
/** Natural log (log of a negative number is NaN, log 0 is −inf). */
export function log(x: Tensor): Tensor {
  return unary('log', x);
}
export function sigmoid(x: Tensor): Tensor {
  return unary('sigmoid', x);
}

// ---- linear algebra --------------------------------------------------------------------------

/**
 * Matrix product [..., M, K] x [..., K, N] -> [..., M, N], batch dims broadcast (numpy
 * semantics; a 1-D left operand is a row, a 1-D right operand a column, and that dim is dropped).
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  return wrap(native.opsMatmul(tensorArg(a, 'matmul: left operand').handle, tensorArg(b, 'matmul: right operand').handle));
}

// ---- reductions ---------------------------------------------------------------------------------

export interface ReduceOptions {
  /** Keep reduced axes as size-1 dims (default false). */
  keepDims?: boolean;
  /** Result dtype: the input's (default) or 'f64' to keep the float64 accumulation unrounded. */
  dtype?: 'f32' | 'f64';
}

function reduce(kind: 'sum' | 'mean', x: Tensor, axes: number | readonly number[] | undefined, opts: ReduceOptions): Tensor {
  const t = tensorArg(x, `${kind}: input`);
  const list = axes === undefined ? [] : typeof axes === 'number' ? [intArg(axes, `${kind}: axis`)] : intList(axes, `${kind}: axes`);
  if (Array.isArray(axes) && axes.length === 0) {
    throw new ZerothError('E_INVALID_ARG', `${kind}: axes is empty; omit it to reduce over every axis`);
  }
  const dtype = opts.dtype ?? t.dtype;
  return wrap(native.opsReduce(kind, t.handle, list, opts.keepDims === true, dtype));
}

/** Sum over `axes` (one axis, a list, or all when omitted; negative axes count from the end). */
export function sum(x: Tensor, axes?: number | readonly number[], opts: ReduceOptions = {}): Tensor {
  return reduce('sum', x, axes, opts);
}
/** Mean over `axes` (one axis, a list, or all when omitted). The mean of no elements is NaN. */
export function mean(x: Tensor, axes?: number | readonly number[], opts: ReduceOptions = {}): Tensor {
  return reduce('mean', x, axes, opts);
}

// ---- softmax and losses ------------------------------------------------------------------------

/** exp(x − max) / Σ exp(x − max) along `axis` (default: the last). */
export function softmax(x: Tensor, axis = -1): Tensor {
  return wrap(native.opsSoftmax(tensorArg(x, 'softmax: input').handle, intArg(axis, 'softmax: axis'), false));
}
/** x − logsumexp(x) along `axis` (default: the last), stable for any magnitudes. */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return wrap(native.opsSoftmax(tensorArg(x, 'logSoftmax: input').handle, intArg(axis, 'logSoftmax: axis'), true));
}

export interface CrossEntropyOptions {
  /** Rows whose target equals this value add nothing and are not counted in the mean. */
  ignoreIndex?: number;
}

/**
 * Mean cross-entropy of logits [..., C] against i32 class targets of shape [...] (one per row),
 * as an f64 scalar tensor: mean over counted rows of logsumexp(row) − row[target], formed in
 * float64. NaN when every row is ignored; a target outside 0..C−1 is E_INVALID_ARG.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const ignore = opts.ignoreIndex === undefined ? null : intArg(opts.ignoreIndex, 'crossEntropy: ignoreIndex');
  return wrap(native.opsCrossEntropy(tensorArg(logits, 'crossEntropy: logits').handle,
    tensorArg(targets, 'crossEntropy: targets').handle, ignore));
}

/** mean((prediction − target)²) over same-shaped tensors, as an f64 scalar (float64 sum). */
export function mse(prediction: Tensor, target: Tensor): Tensor {
  return wrap(native.opsMse(tensorArg(prediction, 'mse: prediction').handle, tensorArg(target, 'mse: target').handle));
}

// ---- shape ops --------------------------------------------------------------------------------

/** Rows of `table` [V, D] picked by i32 `ids` of any shape: the result is [...ids.shape, D]. */
export function gather(table: Tensor, ids: Tensor): Tensor {
  return wrap(native.opsGather(tensorArg(table, 'gather: table').handle, tensorArg(ids, 'gather: ids').handle));
}
/** An embedding lookup: the same as gather(table, ids). */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  return gather(table, ids);
}

/** Joins tensors along `axis` (default 0); every other dim must match. */
export function concat(tensors: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(tensors) || tensors.length === 0) {
    throw new ZerothError('E_INVALID_ARG', 'concat: give a non-empty array of tensors');
  }
  const handles = tensors.map((t, i) => tensorArg(t, `concat: tensor ${i}`).handle);
  return wrap(native.opsConcat(handles, intArg(axis, 'concat: axis')));
}

/**
 * x[starts[0]:ends[0], starts[1]:ends[1], ...]; axes past the lists are taken whole and
 * negative values count from the end. Ranges must fit (0 <= start <= end <= dim): E_INVALID_ARG.
 */
export function slice(x: Tensor, starts: readonly number[], ends: readonly number[]): Tensor {
  return wrap(native.opsSlice(tensorArg(x, 'slice: input').handle, intList(starts, 'slice: starts'), intList(ends, 'slice: ends')));
}

/** Permutes axes: result dim i is input dim perm[i]. Without perm, swaps the last two axes. */
export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  const p = perm === undefined ? null : intList(perm, 'transpose: perm');
  return wrap(native.opsTranspose(tensorArg(x, 'transpose: input').handle, p));
}

// ---- reading --------------------------------------------------------------------------------

/** The value of a one-element tensor as a number (E_SHAPE for any other size). */
export function item(t: Tensor): number {
  const x = tensorArg(t, 'item: input');
  void x.handle; // E_DISPOSED before any shape complaint
  if (x.numel !== 1) {
    throw new ZerothError('E_SHAPE', `item: tensor of shape [${x.shape.join(', ')}] has ${x.numel} elements; item() needs exactly 1`);
  }
  let v: unknown = x.toArray();
  while (Array.isArray(v)) v = v[0];
  return v as number;
}
