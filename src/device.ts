// device.ts — device names ('cpu', 'cuda', 'cuda:N') and the device list.
import { ZerothError } from './errors.js';
import { native } from './native.js';

export type DeviceType = 'cpu' | 'cuda';
/** 'cpu', 'cuda' (= 'cuda:0') or 'cuda:N'. */
export type DeviceName = 'cpu' | 'cuda' | `cuda:${number}`;

export interface DeviceSpec {
  readonly type: DeviceType;
  readonly index: number;
}

export interface DeviceInfo {
  readonly type: DeviceType;
  readonly index: number;
  readonly name: string;
  /** Bytes of memory on the device (host RAM for the CPU). */
  readonly totalMemory: number;
}

export function parseDevice(device: DeviceName | string | undefined): DeviceSpec {
  if (device === undefined || device === 'cpu') return { type: 'cpu', index: 0 };
  if (device === 'cuda') return { type: 'cuda', index: 0 };
  const m = typeof device === 'string' ? /^cuda:(\d{1,4})$/.exec(device) : null;
  if (m) return { type: 'cuda', index: Number(m[1]) };
  throw new ZerothError('E_DEVICE', `unknown device ${JSON.stringify(device)}; use 'cpu', 'cuda' or 'cuda:N'`);
}

export function deviceName(d: DeviceSpec): DeviceName {
  return d.type === 'cpu' ? 'cpu' : `cuda:${d.index}`;
}

/** The CPU and every usable CUDA device (CUDA is initialised on the first call). */
export function devices(): DeviceInfo[] {
  return native.devices() as DeviceInfo[];
}

/** How this copy of zeroth was built: CUDA backend present, SIMD level in use, threads. */
export interface BuildInfo {
  readonly cuda: boolean;
  readonly simd: 'scalar' | 'avx2' | 'avx512';
  readonly threads: number;
  readonly version: number;
}

export function buildInfo(): BuildInfo {
  return native.buildInfo() as BuildInfo;
}

/** Sets the number of CPU threads zeroth's kernels use (default: all cores, or ZEROTH_NUM_THREADS). */
export function setNumThreads(n: number): void {
  native.setThreads(n);
}
