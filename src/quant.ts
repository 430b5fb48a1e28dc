// quant.ts — int4 / int8 weight quantization (zeroth.quantize) and the fused quantized matmul.
//
// quantize(w, {bits: 4, groupSize: 128}) turns a 2-D f32 weight [out, in] into an int4 tensor:
// groups of `groupSize` consecutive input features of a row share one scale and one zero point,
// value = (code − zero)·scale with codes 0..15 (packed two per byte natively). bits 8 gives an int8
// tensor with one scale per output row (symmetric, codes −127..127; GPTQ 8-bit files may hold −128). The conventions (range
// choice, symmetric scale = max|w|/7 with zero 8, f16 scales rounded up, clipping search) are
// documented in native/cpu/quant.h.
//
// The native core stores int8 weights as i8 codes with quantization info; this module reports
// them with dtype 'int8' so they are not mistaken for plain i8 tensors.
import type { DType } from './dtype.js';
import { check, ZerothError } from './errors.js';
import { native } from './native.js';
import { NativeHandle, Tensor } from './tensor.js';

export interface QuantizeOptions {
  /** 4 (group-wise int4) or 8 (per-output-channel int8). */
  bits: 4 | 8;
  /** Input features per scale (int4; default 128, clamped to the row length). int8 default: the whole row. */
  groupSize?: number;
  /** int4: zero point fixed at 8 and no zeros stored (default false). int8 is always symmetric. */
  symmetric?: boolean;
  /** Dtype of the stored scales and zero points (default 'f32'). */
  scaleDtype?: 'f32' | 'f16';
  /** Search per group for the range shrink factor (1, 0.95, ..., 0.5) with the least squared error. */
  clip?: boolean;
}

export interface QuantInfo {
  bits: 4 | 8;
  groupSize: number;
  symmetric: boolean;
  /** [out, groups] f32 or f16 (a new tensor handle on shared storage: dispose it when done). */
  scales: Tensor;
  /** [out, groups], absent when symmetric. */
  zeros?: Tensor;
  /**
   * i32 [in], act-order weights only (GPTQ desc_act): stored column j holds input feature
   * perm[j]; codes, and the groups they form, are in stored-column order.
   */
  perm?: Tensor<'i32'>;
}

export type QuantizedTensor = Tensor<'int4'> | Tensor<'int8' & DType>;

function tensorArg(x: unknown, what: string): Tensor {
  if (!(x instanceof Tensor)) {
    throw new ZerothError('E_INVALID_ARG', `${what} must be a zeroth Tensor, got ${x === null ? 'null' : typeof x}`);
  }
  return x;
}

/** Wraps a native quantized handle, reporting int8 weights as dtype 'int8'. */
export function wrapQuantized(handle: NativeHandle): QuantizedTensor {
  const meta = native.tensorMeta(handle) as { dtype: string; shape: number[]; device: unknown };
  if (meta.dtype === 'i8') meta.dtype = 'int8';
  return new Tensor(handle, meta as ConstructorParameters<typeof Tensor>[1]) as QuantizedTensor;
}

/** Quantizes a 2-D f32 CPU weight [out, in] to int4 (group-wise) or int8 (per output row). */
export function quantize(weight: Tensor, opts: QuantizeOptions): QuantizedTensor {
  const w = tensorArg(weight, 'quantize: weight');
  check(typeof opts === 'object' && opts !== null, 'quantize: options {bits, groupSize?, symmetric?} are required');
  const { bits, groupSize, symmetric, scaleDtype, clip } = opts;
  check(bits === 4 || bits === 8, `quantize: bits must be 4 or 8, got ${String(bits)}`);
  check(w.dtype === 'f32', `quantize: the weight must be f32, got ${w.dtype}; convert it with .to('f32')`, 'E_DTYPE');
  check(w.device === 'cpu', `quantize: the weight must be on the CPU, got ${w.device}; use .to('cpu')`, 'E_DEVICE');
  check(w.ndim === 2, `quantize: the weight must be 2-D [out, in], got shape [${w.shape.join(', ')}]`, 'E_SHAPE');
  check(groupSize === undefined || (Number.isSafeInteger(groupSize) && groupSize >= 1),
    `quantize: groupSize must be a positive integer, got ${String(groupSize)}`);
  check(symmetric === undefined || typeof symmetric === 'boolean', 'quantize: symmetric must be a boolean');
  check(bits === 4 || symmetric !== false,
    'quantize: int8 is symmetric only (codes -127..127, no zero point); leave symmetric out or pass true');
  check(scaleDtype === undefined || scaleDtype === 'f32' || scaleDtype === 'f16',
    `quantize: scaleDtype must be 'f32' or 'f16', got ${JSON.stringify(scaleDtype)}`);
  check(clip === undefined || typeof clip === 'boolean', 'quantize: clip must be a boolean');
  const native_opts: Record<string, unknown> = { bits };
  if (groupSize !== undefined) native_opts.groupSize = groupSize;
  if (symmetric !== undefined) native_opts.symmetric = symmetric;
  if (scaleDtype !== undefined) native_opts.scaleDtype = scaleDtype;
  if (clip !== undefined) native_opts.clip = clip;
  return wrapQuantized(native.quantize(w.handle, native_opts));
}

function quantizedArg(x: unknown, what: string): Tensor {
  const t = tensorArg(x, what);
  check((t.dtype as string) === 'int4' || (t.dtype as string) === 'int8',
    `${what} must be an int4 or int8 tensor made by zeroth.quantize, got ${t.dtype}`, 'E_DTYPE');
  return t;
}

/** The f32 weights of an int4 / int8 tensor: (code − zero)·scale per element. */
export function dequantize(q: Tensor): Tensor<'f32'> {
  return new Tensor<'f32'>(native.dequantize(quantizedArg(q, 'dequantize: input').handle));
}

/** Bits, group size, and the scale / zero-point tensors of a quantized weight. */
export function quantInfo(q: Tensor): QuantInfo {
  const info = native.quantInfo(quantizedArg(q, 'quantInfo: input').handle) as
    | { bits: 4 | 8; groupSize: number; symmetric: boolean; scales: NativeHandle; zeros?: NativeHandle; perm?: NativeHandle }
    | null;
  if (info === null) throw new ZerothError('E_INVALID_ARG', 'quantInfo: this tensor carries no quantization scales');
  const out: QuantInfo = {
    bits: info.bits,
    groupSize: info.groupSize,
    symmetric: info.symmetric,
    scales: new Tensor(info.scales),
  };
  if (info.zeros !== undefined) out.zeros = new Tensor(info.zeros);
  if (info.perm !== undefined) out.perm = new Tensor<'i32'>(info.perm);
  return out;
}

/**
 * The integer codes, one per element: 0..15 for int4 (Uint8Array), −128..127 for int8 (Int8Array;
 * quantize writes −127..127, GPTQ 8-bit checkpoints may hold −128),
 * row-major in stored-column order (see QuantInfo.perm for act-order weights).
 */
export function quantCodes(q: Tensor): Uint8Array | Int8Array {
  const t = quantizedArg(q, 'quantCodes: input');
  const buffer = native.tensorRead(t.handle) as ArrayBuffer;
  return (t.dtype as string) === 'int8' ? new Int8Array(buffer) : new Uint8Array(buffer);
}

function matmulArgs(x: Tensor, q: Tensor): [NativeHandle, NativeHandle] {
  const xt = tensorArg(x, 'quantizedMatmul: x');
  const qt = quantizedArg(q, 'quantizedMatmul: weight');
  check(xt.dtype === 'f32', `quantizedMatmul: x must be f32, got ${xt.dtype}`, 'E_DTYPE');
  check(xt.ndim === 1 || xt.ndim === 2, `quantizedMatmul: x must be [in] or [M, in], got [${xt.shape.join(', ')}]`, 'E_SHAPE');
  check(xt.shape[xt.ndim - 1] === qt.shape[1],
    `quantizedMatmul: x has ${xt.shape[xt.ndim - 1]} input features but the weight [${qt.shape.join(', ')}] ` +
      `expects ${qt.shape[1]} (the weight is [out, in])`, 'E_SHAPE');
  return [xt.handle, qt.handle];
}

/**
 * y = x·Wᵀ for x f32 [M, in] (or [in]) and a quantized weight W [out, in], without de-quantizing W:
 * the fused GEMV (M = 1) / panel GEMM of native/cpu/int4_gemm.h. Result f32 [M, out] (or [out]).
 */
export function quantizedMatmul(x: Tensor, q: Tensor): Tensor<'f32'> {
  return new Tensor<'f32'>(native.int4Matmul(...matmulArgs(x, q)));
}

/** quantizedMatmul on a worker thread (for large products: the event loop stays free). */
export async function quantizedMatmulAsync(x: Tensor, q: Tensor): Promise<Tensor<'f32'>> {
  const handle = (await native.int4MatmulAsync(...matmulArgs(x, q))) as NativeHandle;
  return new Tensor<'f32'>(handle);
}
