// safetensors.ts — reading and writing safetensors checkpoints (single files, or shards listed by
// model.safetensors.index.json). The native reader validates the whole file and memory-maps it;
// `load` copies one tensor out, converted to the dtype asked for.
//
// For now tensors cross this API as raw native handles (`NativeHandle`); `writeSafetensors` also
// takes anything with a `handle` property (a Tensor).
import { parseDevice, DeviceName } from './device.js';
import { check, ZerothError } from './errors.js';
import { native } from './native.js';

/** Opaque native tensor handle (an N-API External). */
export type NativeHandle = object & { readonly __nativeHandle?: never };

/** The dtypes a safetensors tensor can be loaded as (int4 comes from quantization, not files). */
export type LoadDType = 'f64' | 'f32' | 'f16' | 'bf16' | 'i32' | 'i8' | 'u8';
const LOAD_DTYPES: readonly LoadDType[] = ['f64', 'f32', 'f16', 'bf16', 'i32', 'i8', 'u8'];

export interface SafetensorsTensorInfo {
  readonly name: string;
  /**
   * The zeroth dtype the tensor loads as by default: the file's own type, except I64 and I16
   * -> 'i32' (range-checked) and BOOL -> 'u8'. null when zeroth cannot load the file's dtype
   * (F8_E4M3, U64, ...): `load` then fails with E_UNSUPPORTED.
   */
  readonly dtype: LoadDType | null;
  /** The dtype as written in the file: 'F32', 'BF16', 'I64', 'F8_E4M3', ... */
  readonly fileDtype: string;
  readonly shape: readonly number[];
  /** The .safetensors file holding it (a shard, for sharded checkpoints). */
  readonly file: string;
  /** [begin, end) byte offsets inside that file's data section. */
  readonly byteRange: readonly [number, number];
}

export interface SafetensorsLoadOptions {
  /** Convert to this dtype on load (e.g. bf16 weights -> 'f32'); default: `info(name).dtype`. */
  dtype?: LoadDType;
  /** Device of the new tensor; default 'cpu'. */
  device?: DeviceName;
}

export interface SafetensorsReader {
  /** Tensor names, sorted. */
  readonly names: readonly string[];
  /** The file's __metadata__ (or the index's "metadata", scalars as strings). */
  readonly metadata: Readonly<Record<string, string>>;
  has(name: string): boolean;
  info(name: string): SafetensorsTensorInfo;
  /** A new tensor holding a copy of the named tensor. It stays valid after close(). */
  load(name: string, options?: SafetensorsLoadOptions): Promise<NativeHandle>;
  /** Unmaps the file(s); later loads fail with E_DISPOSED. Safe to call twice. */
  close(): void;
  [Symbol.dispose](): void;
}

interface NativeOpenResult {
  handle: object;
  tensors: Array<{ name: string; dtype: LoadDType | null; fileDtype: string; shape: number[]; file: string; begin: number; end: number }>;
  metadata: Record<string, string>;
}

/**
 * Opens a checkpoint: a .safetensors file, a *.index.json, or a folder holding
 * model.safetensors.index.json or model.safetensors. Rejects with E_FORMAT (malformed file,
 * naming the file, tensor and rule) or E_IO (missing / unreadable).
 */
export async function readSafetensors(path: string): Promise<SafetensorsReader> {
  check(typeof path === 'string' && path.length > 0, 'path must be a non-empty string');
  const opened = (await native.safetensorsOpen(path)) as NativeOpenResult;
  const infos = new Map<string, SafetensorsTensorInfo>();
  for (const t of opened.tensors) {
    infos.set(
      t.name,
      Object.freeze({
        name: t.name,
        dtype: t.dtype,
        fileDtype: t.fileDtype,
        shape: Object.freeze([...t.shape]),
        file: t.file,
        byteRange: Object.freeze([t.begin, t.end] as [number, number]),
      }),
    );
  }
  const names = Object.freeze([...infos.keys()]);
  const metadata = Object.freeze({ ...opened.metadata });
  let handle: object | undefined = opened.handle;

  const info = (name: string): SafetensorsTensorInfo => {
    const i = infos.get(name);
    if (!i) {
      throw new ZerothError(
        'E_INVALID_ARG',
        `no tensor named ${JSON.stringify(name)} in the checkpoint (it has ${names.length}: ` +
          `${names.slice(0, 5).map((n) => JSON.stringify(n)).join(', ')}${names.length > 5 ? ', ...' : ''})`,
      );
    }
    return i;
  };

  const close = (): void => {
    if (handle !== undefined) native.safetensorsClose(handle);
    handle = undefined;
  };

  return {
    names,
    metadata,
    has: (name) => infos.has(name),
    info,
    async load(name, options = {}) {
      check(typeof name === 'string', 'name must be a string');
      const i = info(name);
      const { dtype, device } = options;
      check(
        dtype === undefined || (LOAD_DTYPES as readonly string[]).includes(dtype),
        `dtype must be one of ${LOAD_DTYPES.map((d) => `'${d}'`).join(', ')}`,
        'E_DTYPE',
      );
      if (i.dtype === null) {
        throw new ZerothError(
          'E_UNSUPPORTED',
          `tensor ${JSON.stringify(name)} in ${i.file} has dtype ${i.fileDtype}, which zeroth cannot load; ` +
            'convert the checkpoint to F32, BF16 or F16 first',
        );
      }
      if (handle === undefined) {
        throw new ZerothError('E_DISPOSED', 'this safetensors reader was closed; open the file again');
      }
      return (await native.safetensorsLoad(handle, name, dtype, device === undefined ? undefined : parseDevice(device))) as NativeHandle;
    },
    close,
    [Symbol.dispose]: close,
  };
}

/** A tensor to write: a raw native handle, or an object (a Tensor) carrying one in `handle`. */
export type WritableTensor = NativeHandle | { readonly handle: NativeHandle };

function handleOf(name: string, t: WritableTensor): NativeHandle {
  if (t !== null && typeof t === 'object' && 'handle' in t) return (t as { handle: NativeHandle }).handle;
  check(t !== null && typeof t === 'object', `tensors[${JSON.stringify(name)}] must be a tensor`);
  return t as NativeHandle;
}

/**
 * Writes tensors (name -> tensor) and string metadata as one .safetensors file that any
 * safetensors reader accepts: header sorted by name, contiguous data, header padded to 8
 * bytes. The file appears atomically (written under a temporary name, then renamed).
 * int4 tensors are refused (E_UNSUPPORTED): safetensors has no packed int4 dtype.
 */
export async function writeSafetensors(
  path: string,
  tensors: Readonly<Record<string, WritableTensor>>,
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  check(typeof path === 'string' && path.length > 0, 'path must be a non-empty string');
  check(tensors !== null && typeof tensors === 'object', 'tensors must be an object {name: tensor}');
  check(metadata !== null && typeof metadata === 'object', 'metadata must be an object of strings');
  const list: Array<{ name: string; tensor: NativeHandle }> = [];
  for (const [name, t] of Object.entries(tensors)) {
    check(name !== '__metadata__', '"__metadata__" is reserved by the safetensors format; rename that tensor');
    list.push({ name, tensor: handleOf(name, t) });
  }
  for (const [k, v] of Object.entries(metadata)) {
    check(typeof v === 'string', `metadata.${k} must be a string (safetensors metadata is string -> string)`);
  }
  await native.safetensorsSave(path, list, metadata);
}
