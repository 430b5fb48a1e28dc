// tensor.ts — the Tensor type: a handle on memory owned by the native core.
//
// Lifetimes: call dispose() (or declare with `using`) when done; a FinalizationRegistry frees
// the native memory of tensors that are garbage-collected undisposed, as a backstop only.
import { arrayMatchesDType, DType, DTYPES, dtypeOfArray, isDType, TensorData, TypedArrayFor } from './dtype.js';
import { deviceName, DeviceName, DeviceSpec, parseDevice } from './device.js';
import { check, ZerothError } from './errors.js';
import { native } from './native.js';

/** Opaque native handle (an N-API External). */
export type NativeHandle = object & { readonly __nativeHandle?: never };

/** Nested arrays of numbers, any depth (rectangular). */
export type NestedNumbers = number | readonly NestedNumbers[];

export interface TensorOptions<D extends DType = DType> {
  /** Shape; defaults to the nested arrays' shape, or [length] for a typed array. */
  shape?: readonly number[];
  /** Element type; defaults to the typed array's own type, or 'f32' for numbers. */
  dtype?: D;
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: DeviceName;
}

const registry = new FinalizationRegistry<NativeHandle>((handle) => {
  native.tensorDispose(handle);
});

interface Meta {
  dtype: DType;
  shape: number[];
  device: DeviceSpec;
}

export class Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly device: DeviceName;
  #handle: NativeHandle | undefined;

  /** @internal Wrap a native handle; use zeroth.tensor / zeros / ... to make tensors. */
  constructor(handle: NativeHandle, meta?: Meta) {
    const m = meta ?? (native.tensorMeta(handle) as Meta);
    this.#handle = handle;
    this.dtype = m.dtype as D;
    this.shape = Object.freeze([...m.shape]);
    this.device = deviceName(m.device);
    registry.register(this, handle, this);
  }

  /** @internal The live native handle; throws E_DISPOSED after dispose(). */
  get handle(): NativeHandle {
    if (this.#handle === undefined) {
      throw new ZerothError('E_DISPOSED', `this ${this.describe()} tensor was disposed; create a new one instead of reusing it`);
    }
    return this.#handle;
  }

  get disposed(): boolean {
    return this.#handle === undefined;
  }

  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get ndim(): number {
    return this.shape.length;
  }

  /** A copy of the elements in the typed array of this dtype (f16/bf16: raw bits; int4: codes). */
  toTypedArray(): TypedArrayFor<D> {
    const buffer = native.tensorRead(this.handle) as ArrayBuffer;
    return DTYPES[this.dtype].make(buffer, 0, this.numel) as TypedArrayFor<D>;
  }

  /** The elements as nested arrays of numbers (f16/bf16 decoded to their values). */
  toArray(): NestedNumbers {
    let flat: ArrayLike<number>;
    if (this.dtype === 'f16' || this.dtype === 'bf16') {
      using f = this.to('f32');
      flat = f.toTypedArray();
    } else {
      flat = this.toTypedArray();
    }
    if (this.shape.length === 0) return flat[0]!;
    const build = (dim: number, offset: number): NestedNumbers[] => {
      const n = this.shape[dim]!;
      const stride = this.shape.slice(dim + 1).reduce((a, b) => a * b, 1);
      const out: NestedNumbers[] = [];
      for (let i = 0; i < n; i++) {
        out.push(dim === this.shape.length - 1 ? flat[offset + i]! : build(dim + 1, offset + i * stride));
      }
      return out;
    };
    return build(0, 0);
  }

  /** A copy on another device, or converted to another dtype (round-to-nearest-even for floats). */
  to<T extends DType>(dtype: T): Tensor<T>;
  to(device: DeviceName): Tensor<D>;
  to(target: DType | DeviceName): Tensor<DType> {
    if (isDType(target)) {
      check(target !== 'int4' && target !== 'int8' || target === this.dtype,
        `.to('${target}'): quantized tensors come from zeroth.quantize(tensor, {bits}), not a dtype conversion`, 'E_DTYPE');
      return new Tensor(native.tensorCopy(this.handle, target, parseDevice(this.device)));
    }
    return new Tensor(native.tensorCopy(this.handle, this.dtype, parseDevice(target)));
  }

  clone(): Tensor<D> {
    return new Tensor<D>(native.tensorCopy(this.handle, this.dtype, parseDevice(this.device)));
  }

  /** A view with a new shape of the same number of elements (one dimension may be -1). */
  reshape(...shape: number[] | [readonly number[]]): Tensor<D> {
    const dims = (Array.isArray(shape[0]) ? shape[0] : shape) as readonly number[];
    for (const d of dims) check(Number.isInteger(d) && d >= -1, `reshape: dimension ${d} must be an integer >= -1`, 'E_SHAPE');
    return new Tensor<D>(native.tensorReshape(this.handle, dims));
  }

  /** The f32 weights of an int4 / int8 tensor made by zeroth.quantize. */
  dequantize(): Tensor<'f32'> {
    check(this.dtype === 'int4' || this.dtype === 'int8',
      `dequantize: this is a ${this.dtype} tensor; only int4 / int8 tensors made by zeroth.quantize dequantize`, 'E_DTYPE');
    return new Tensor<'f32'>(native.dequantize(this.handle));
  }

  /** Frees the native memory now. Safe to call twice; any later use throws E_DISPOSED. */
  dispose(): void {
    if (this.#handle === undefined) return;
    registry.unregister(this);
    native.tensorDispose(this.#handle);
    this.#handle = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `Tensor(${this.describe()})`;
  }

  private describe(): string {
    return `${this.dtype} [${this.shape.join(', ')}] on ${this.device}`;
  }
}

// ---- construction ----------------------------------------------------------------------------

function nestedShape(data: NestedNumbers): number[] {
  const shape: number[] = [];
  let cur: NestedNumbers = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    if (cur.length === 0) break;
    cur = (cur as readonly NestedNumbers[])[0]!;
  }
  return shape;
}

function flatten(data: NestedNumbers, shape: number[], out: number[], dim = 0): void {
  if (dim === shape.length) {
    check(typeof data === 'number', `tensor data must hold only numbers, found ${typeof data}`);
    out.push(data);
    return;
  }
  check(Array.isArray(data) && data.length === shape[dim],
    `tensor data is not rectangular: expected ${shape[dim]} entries at depth ${dim}`, 'E_SHAPE');
  for (const x of data as readonly NestedNumbers[]) flatten(x, shape, out, dim + 1);
}

export function validateShape(shape: readonly number[], what = 'shape'): number[] {
  check(Array.isArray(shape), `${what} must be an array of dimensions`, 'E_SHAPE');
  check(shape.length <= 8, `${what} has ${shape.length} dimensions; at most 8 are supported`, 'E_SHAPE');
  let n = 1;
  for (const d of shape) {
    check(Number.isSafeInteger(d) && d >= 0, `${what} [${shape.join(', ')}] must hold non-negative integers`, 'E_SHAPE');
    n *= d;
  }
  check(Number.isSafeInteger(n), `${what} [${shape.join(', ')}] has too many elements`, 'E_SHAPE');
  return [...shape];
}

function checkDType(dtype: unknown): DType {
  if (!isDType(dtype)) {
    throw new ZerothError('E_DTYPE', `unknown dtype ${JSON.stringify(dtype)}; use 'f64', 'f32', 'f16', 'bf16', 'i32', 'i8', 'u8' or 'int4'`);
  }
  check(dtype !== 'int8', "int8 tensors are quantized weights: make them with zeroth.quantize(tensor, {bits: 8})", 'E_DTYPE');
  return dtype;
}

function fromTyped<D extends DType>(data: TensorData, dtype: D, shape: number[], device: DeviceSpec): Tensor<D> {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return new Tensor<D>(native.tensorFromData(bytes, dtype, shape, device), { dtype, shape, device });
}

/** A tensor from a typed array, nested arrays of numbers, or a single number (a scalar). */
export function tensor<D extends DType = 'f32'>(data: TensorData | NestedNumbers, opts: TensorOptions<D> = {}): Tensor<D> {
  const device = parseDevice(opts.device);
  if (ArrayBuffer.isView(data)) {
    const arr = data as TensorData;
    const dtype = checkDType(opts.dtype ?? dtypeOfArray(arr) ?? 'missing') as D;
    const shape = validateShape(opts.shape ?? [arr.length]);
    const n = shape.reduce((a, b) => a * b, 1);
    check(n === arr.length, `data has ${arr.length} elements but shape [${shape.join(', ')}] needs ${n}`, 'E_SHAPE');
    if (arrayMatchesDType(arr, dtype)) return fromTyped(arr, dtype, shape, device);
    check(!(arr instanceof Uint16Array), `a Uint16Array holds raw f16/bf16 bits; pass dtype 'f16' or 'bf16'`, 'E_DTYPE');
    // Convert from the array's own type natively (one correct rounding).
    const own = dtypeOfArray(arr)!;
    using tmp = fromTyped(arr, own, shape, device);
    return tmp.to(dtype) as Tensor<D>;
  }
  const dtype = checkDType(opts.dtype ?? 'f32') as D;
  const nested = nestedShape(data as NestedNumbers);
  const flat: number[] = [];
  flatten(data as NestedNumbers, nested, flat);
  const shape = validateShape(opts.shape ?? nested);
  check(shape.reduce((a, b) => a * b, 1) === flat.length,
    `data has ${flat.length} elements but shape [${shape.join(', ')}] needs ${shape.reduce((a, b) => a * b, 1)}`, 'E_SHAPE');
  if (dtype === 'int4' || dtype === 'u8') return fromTyped(Uint8Array.from(flat), dtype, shape, device);
  if (dtype === 'i8') return fromTyped(Int8Array.from(flat), dtype, shape, device);
  if (dtype === 'i32') return fromTyped(Int32Array.from(flat), dtype, shape, device);
  if (dtype === 'f32') return fromTyped(Float32Array.from(flat), dtype, shape, device);
  using f64 = fromTyped(Float64Array.from(flat), 'f64', shape, device);
  return dtype === 'f64' ? (f64.clone() as Tensor<D>) : (f64.to(dtype) as Tensor<D>);
}

export interface CreateOptions<D extends DType = DType> {
  dtype?: D;
  device?: DeviceName;
}

export function zeros<D extends DType = 'f32'>(shape: readonly number[], opts: CreateOptions<D> = {}): Tensor<D> {
  const dtype = checkDType(opts.dtype ?? 'f32') as D;
  const s = validateShape(shape);
  const device = parseDevice(opts.device);
  return new Tensor<D>(native.tensorZeros(dtype, s, device), { dtype, shape: s, device });
}

export function full<D extends DType = 'f32'>(shape: readonly number[], value: number, opts: CreateOptions<D> = {}): Tensor<D> {
  const s = validateShape(shape);
  check(typeof value === 'number', 'full: value must be a number');
  const n = s.reduce((a, b) => a * b, 1);
  const dtype = checkDType(opts.dtype ?? 'f32') as D;
  if (dtype === 'f32') return tensor(new Float32Array(n).fill(value), { shape: s, dtype, device: opts.device }) as Tensor<D>;
  return tensor(new Float64Array(n).fill(value), { shape: s, dtype, device: opts.device });
}

export function ones<D extends DType = 'f32'>(shape: readonly number[], opts: CreateOptions<D> = {}): Tensor<D> {
  return full(shape, 1, opts);
}

/** Values start, start + step, ... below end (like numpy.arange). */
export function arange<D extends DType = 'f32'>(start: number, end?: number, step = 1, opts: CreateOptions<D> = {}): Tensor<D> {
  let lo = start;
  let hi = end;
  if (hi === undefined) {
    hi = start;
    lo = 0;
  }
  check(Number.isFinite(lo) && Number.isFinite(hi) && Number.isFinite(step) && step !== 0,
    'arange: start, end and step must be finite numbers and step non-zero');
  const n = Math.max(0, Math.ceil((hi - lo) / step));
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = lo + i * step;
  return tensor(values, { dtype: (opts.dtype ?? 'f32') as D, device: opts.device });
}

/** What memoryStats({device}) reports of one CUDA device's caching allocator, in bytes. */
export interface DeviceMemoryStats {
  device: DeviceName;
  /** In live blocks now, counted in the allocator's size classes (rounding included). */
  allocatedBytes: number;
  /** In freed blocks the allocator keeps for reuse (not given back to the driver). */
  cachedBytes: number;
  /** The most allocatedBytes has been since the device's first use or the last resetPeak. */
  peakAllocatedBytes: number;
}

/**
 * Bytes and number of tensors currently allocated by zeroth in this process, and the bytes of
 * freed CPU blocks the allocator keeps mapped for reuse (at most 1 GiB: repeated steps then
 * fault in no new pages).
 *
 * With `{device: 'cuda:N'}`: that GPU's allocator counters instead, with the peak (as
 * torch.cuda.max_memory_allocated); `resetPeak: true` restarts the peak from what is allocated
 * now, after reading it. E_DEVICE without a CUDA build or device; E_INVALID_ARG for 'cpu'.
 */
export function memoryStats(): { liveTensors: number; liveBytes: number; cachedBytes: number };
export function memoryStats(opts: { device: DeviceName; resetPeak?: boolean }): DeviceMemoryStats;
export function memoryStats(opts?: { device: DeviceName; resetPeak?: boolean }):
  { liveTensors: number; liveBytes: number; cachedBytes: number } | DeviceMemoryStats {
  if (opts === undefined) {
    return native.memoryStats() as { liveTensors: number; liveBytes: number; cachedBytes: number };
  }
  check(typeof opts === 'object' && opts !== null, 'memoryStats: options must be an object');
  const spec = parseDevice(opts.device);
  check(spec.type === 'cuda', "memoryStats: {device} is for CUDA devices; memoryStats() gives the CPU's figures");
  const reset = opts.resetPeak ?? false;
  check(typeof reset === 'boolean', 'memoryStats: resetPeak must be a boolean');
  const s = native.deviceMemoryStats(spec, reset) as Omit<DeviceMemoryStats, 'device'>;
  return { device: deviceName(spec), ...s };
}

/**
 * Returns the allocator's cached blocks to the OS now and says how many bytes that released:
 * call it after freeing a lot at once (quantizing a model frees its f32 weights) so the
 * process's resident memory drops to what is live.
 */
export function trimMemory(): number {
  return native.trimMemory() as number;
}
