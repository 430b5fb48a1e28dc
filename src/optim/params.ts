// params.ts — a named parameter list as the native kernels see it: each tensor with its rng
// stream id (FNV-1a 64 of its name, so z never depends on which other tensors train) and
// its optional sparse mask.
import { check, ZerothError } from '../errors.js';
import { native } from '../native.js';
import type { DeviceName } from '../device.js';
import type { NativeHandle, Tensor } from '../tensor.js';

export type Params = Record<string, Tensor>;
export type Masks = Record<string, Tensor<'u8'>>;

export interface NativeTarget {
  tensor: NativeHandle;
  stream: bigint;
  mask?: NativeHandle;
}

export interface ParamDescriptor {
  name: string;
  dtype: string;
  shape: number[];
  /** Stream id as a decimal string (JSON has no 64-bit integers). */
  stream: string;
  /** FNV-1a 64 of the mask bytes, when the parameter is masked. */
  maskDigest?: string;
}

/** The documented stream id of a parameter name: FNV-1a 64 of its UTF-8 bytes. */
export function streamId(name: string): bigint {
  return native.streamId(name) as bigint;
}

function fnv1a64(bytes: Uint8Array): string {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h.toString(16).padStart(16, '0');
}

export class ParamSet {
  readonly names: readonly string[];
  readonly tensors: readonly Tensor[];
  readonly masks: readonly (Tensor<'u8'> | undefined)[];
  readonly streams: readonly bigint[];

  constructor(params: Params, masks: Masks = {}) {
    check(params !== null && typeof params === 'object', 'params must be a Record<string, Tensor> of named parameters');
    const names = Object.keys(params);
    check(names.length > 0, 'params is empty: pass at least one named tensor to train');
    for (const name of Object.keys(masks)) {
      check(name in params, `masks.${name} names no parameter; masks must use the parameters' names`);
    }
    this.names = names;
    this.tensors = names.map((n) => {
      const t = params[n]!;
      check(t && typeof t === 'object' && 'dtype' in t, `params.${n} is not a zeroth Tensor`);
      if (t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16') {
        throw new ZerothError('E_DTYPE', `params.${n} has dtype ${t.dtype}; trainable parameters must be f32, f16 or bf16`);
      }
      return t;
    });
    this.masks = names.map((n) => {
      const m = masks[n];
      if (!m) return undefined;
      const want = Math.ceil(this.tensors[names.indexOf(n)]!.numel / 8);
      if (m.dtype !== 'u8' || m.numel !== want) {
        throw new ZerothError('E_SHAPE', `masks.${n} must be a u8 bitmask of ${want} bytes (one bit per element)`);
      }
      const device = this.tensors[names.indexOf(n)]!.device;
      if (m.device !== device) {
        throw new ZerothError('E_DEVICE', `masks.${n} is on ${m.device} but the parameter is on ${device}; ` +
          `move the mask with mask.to('${device}')`);
      }
      return m;
    });
    this.streams = names.map(streamId);
  }

  /** The list the native kernels take; re-read each call so disposed tensors are caught. */
  targets(): NativeTarget[] {
    return this.tensors.map((t, i) => {
      const target: NativeTarget = { tensor: t.handle, stream: this.streams[i]! };
      const m = this.masks[i];
      if (m) target.mask = m.handle;
      return target;
    });
  }

  /** Number of elements that train (masked-out elements excluded). */
  get trainableCount(): number {
    let n = 0;
    this.tensors.forEach((t, i) => {
      const m = this.masks[i];
      if (!m) {
        n += t.numel;
        return;
      }
      const bits = m.toTypedArray();
      for (let e = 0; e < t.numel; e++) n += (bits[e >> 3]! >> (e & 7)) & 1;
    });
    return n;
  }

  describe(): ParamDescriptor[] {
    return this.names.map((name, i) => {
      const t = this.tensors[i]!;
      const d: ParamDescriptor = { name, dtype: t.dtype, shape: [...t.shape], stream: this.streams[i]!.toString() };
      const m = this.masks[i];
      if (m) d.maskDigest = fnv1a64(m.toTypedArray());
      return d;
    });
  }

  /** Throws unless `other` names the same tensors with the same shapes, dtypes and masks. */
  assertMatches(expected: readonly ParamDescriptor[], what: string): void {
    const mine = this.describe();
    const key = (d: ParamDescriptor): string => `${d.name}:${d.dtype}:[${d.shape.join(',')}]:${d.maskDigest ?? '-'}`;
    const want = new Set(expected.map(key));
    const have = new Set(mine.map(key));
    for (const k of want) {
      if (!have.has(k)) {
        throw new ZerothError('E_INVALID_ARG', `${what}: the parameters do not match the trajectory (missing or different: ${k}); ` +
          'pass the same named tensors (and masks) the run trained');
      }
    }
    check(want.size === have.size, `${what}: the parameters include tensors the trajectory did not train`);
  }

  /** f32 zero buffers of each parameter's size, on its device (optimizer state). */
  zerosLike(zeros: (shape: readonly number[], device: DeviceName) => Tensor<'f32'>): Tensor<'f32'>[] {
    return this.tensors.map((t) => zeros(t.shape, t.device));
  }
}
