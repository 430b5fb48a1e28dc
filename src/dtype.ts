// dtype.ts — the element types and the typed array each one reads back as.

/** int4 and int8 are quantized weights (codes plus group scales), made by zeroth.quantize. */
export type DType = 'f64' | 'f32' | 'f16' | 'bf16' | 'i32' | 'i8' | 'u8' | 'int4' | 'int8';
export type FloatDType = 'f64' | 'f32' | 'f16' | 'bf16';

/**
 * The typed array `Tensor#toTypedArray()` returns for each dtype. f16 and bf16 come back as
 * their raw IEEE bits in a Uint16Array (Node 20 has no Float16Array); use `.to('f32')` for
 * numbers. int4 comes back as one unsigned code (0..15) per element, int8 as its signed codes;
 * `.dequantize()` gives their values.
 */
export interface TypedArrayMap {
  f64: Float64Array;
  f32: Float32Array;
  f16: Uint16Array;
  bf16: Uint16Array;
  i32: Int32Array;
  i8: Int8Array;
  u8: Uint8Array;
  int4: Uint8Array;
  int8: Int8Array;
}
export type TypedArrayFor<D extends DType> = TypedArrayMap[D];

/** Any typed array zeroth accepts as tensor data. */
export type TensorData = Float64Array | Float32Array | Uint16Array | Int32Array | Int8Array | Uint8Array;

interface DTypeInfo {
  /** Bytes per element in a typed array (int4: one code per byte). */
  readonly arrayBytes: number;
  readonly isFloat: boolean;
  readonly make: (buffer: ArrayBuffer, offset: number, length: number) => TensorData;
}

/** Per-dtype facts in one table (the TypeScript twin of native/core/dtype.cpp). */
export const DTYPES: Readonly<Record<DType, DTypeInfo>> = {
  f64: { arrayBytes: 8, isFloat: true, make: (b, o, n) => new Float64Array(b, o, n) },
  f32: { arrayBytes: 4, isFloat: true, make: (b, o, n) => new Float32Array(b, o, n) },
  f16: { arrayBytes: 2, isFloat: true, make: (b, o, n) => new Uint16Array(b, o, n) },
  bf16: { arrayBytes: 2, isFloat: true, make: (b, o, n) => new Uint16Array(b, o, n) },
  i32: { arrayBytes: 4, isFloat: false, make: (b, o, n) => new Int32Array(b, o, n) },
  i8: { arrayBytes: 1, isFloat: false, make: (b, o, n) => new Int8Array(b, o, n) },
  u8: { arrayBytes: 1, isFloat: false, make: (b, o, n) => new Uint8Array(b, o, n) },
  int4: { arrayBytes: 1, isFloat: false, make: (b, o, n) => new Uint8Array(b, o, n) },
  int8: { arrayBytes: 1, isFloat: false, make: (b, o, n) => new Int8Array(b, o, n) },
};

export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(DTYPES, x);
}

/** The dtype a typed array holds when no dtype is given. Uint16Array is ambiguous (f16 or bf16). */
export function dtypeOfArray(a: TensorData): DType | undefined {
  if (a instanceof Float64Array) return 'f64';
  if (a instanceof Float32Array) return 'f32';
  if (a instanceof Int32Array) return 'i32';
  if (a instanceof Int8Array) return 'i8';
  if (a instanceof Uint8Array) return 'u8';
  return undefined;
}

/** Whether typed array `a` can carry the elements of `dtype` bit for bit. */
export function arrayMatchesDType(a: TensorData, dtype: DType): boolean {
  switch (dtype) {
    case 'f64': return a instanceof Float64Array;
    case 'f32': return a instanceof Float32Array;
    case 'f16':
    case 'bf16': return a instanceof Uint16Array;
    case 'i32': return a instanceof Int32Array;
    case 'i8': return a instanceof Int8Array;
    case 'u8':
    case 'int4': return a instanceof Uint8Array;
    case 'int8': return a instanceof Int8Array;
  }
}
