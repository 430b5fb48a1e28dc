// trajectory.ts — a ZO run as data: the base weights plus, per applied step, the seeds and
// projected gradients of its queries and the step's lr, weight decay and eps. A fine-tune of
// any size is a few KB and replays bit-exactly (see replay.ts).
//
// Binary layout (little-endian), version 1:
//   bytes 0..3   "ZOTR"
//   u32          format version (1)
//   u32          header length H, then H bytes of UTF-8 JSON: TrajectoryHeader
//   u32          number of steps S, then S step records:
//                  f64 lr, f64 weightDecay, f64 eps, u32 queries q,
//                  q × (u64 seed, f64 projectedGrad)
// A step with q queries takes 28 + 16·q bytes.
import { ZerothError } from '../errors.js';
import type { ParamDescriptor } from './params.js';

export type OptimizerKind = 'zosgd' | 'zoadam' | 'zosign';

export interface TrajectoryHeader {
  optimizer: OptimizerKind;
  distribution: 'normal' | 'rademacher';
  /** Optimizer constants that shape the update (momentum, Adam betas, ...). */
  options: Record<string, number | boolean>;
  params: ParamDescriptor[];
  /** LoRA adapters the run trained (replay onto a base model adds them first). */
  lora?: { rank: number; alpha: number; seed: string; targets?: string[] };
  /** Where the run stood when the trajectory was written (for exact resume). */
  run?: { seedState: string; attempts: number };
}

export interface TrajectoryStep {
  lr: number;
  weightDecay: number;
  eps: number;
  seeds: bigint[];
  projectedGrads: number[];
}

export interface Trajectory {
  header: TrajectoryHeader;
  steps: TrajectoryStep[];
}

const MAGIC = 0x52544f5a; // "ZOTR" read as a little-endian u32
const VERSION = 1;

export function encodeTrajectory(t: Trajectory): Uint8Array {
  const header = new TextEncoder().encode(JSON.stringify(t.header));
  let size = 16 + header.length;
  for (const s of t.steps) size += 28 + 16 * s.seeds.length;
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  let o = 0;
  v.setUint32(o, MAGIC, true); o += 4;
  v.setUint32(o, VERSION, true); o += 4;
  v.setUint32(o, header.length, true); o += 4;
  out.set(header, o); o += header.length;
  v.setUint32(o, t.steps.length, true); o += 4;
  for (const s of t.steps) {
    v.setFloat64(o, s.lr, true); o += 8;
    v.setFloat64(o, s.weightDecay, true); o += 8;
    v.setFloat64(o, s.eps, true); o += 8;
    v.setUint32(o, s.seeds.length, true); o += 4;
    s.seeds.forEach((seed, k) => {
      v.setBigUint64(o, seed, true); o += 8;
      v.setFloat64(o, s.projectedGrads[k]!, true); o += 8;
    });
  }
  return out;
}

function bad(what: string): never {
  throw new ZerothError('E_FORMAT', `not a valid zeroth trajectory: ${what}`);
}

export function decodeTrajectory(bytes: Uint8Array): Trajectory {
  if (!(bytes instanceof Uint8Array)) bad('expected a Uint8Array');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (o: number, n: number): void => {
    if (o + n > bytes.length) bad(`truncated at byte ${o} (file has ${bytes.length} bytes)`);
  };
  let o = 0;
  need(o, 12);
  if (v.getUint32(0, true) !== MAGIC) bad('missing the "ZOTR" magic bytes');
  const version = v.getUint32(4, true);
  if (version !== VERSION) bad(`format version ${version} is not supported (this zeroth reads version ${VERSION})`);
  const hlen = v.getUint32(8, true);
  o = 12;
  need(o, hlen);
  let header: TrajectoryHeader;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(o, o + hlen))) as TrajectoryHeader;
  } catch (e) {
    bad(`header is not UTF-8 JSON (${(e as Error).message})`);
  }
  if (!header || !['zosgd', 'zoadam', 'zosign'].includes(header.optimizer) || !Array.isArray(header.params)) {
    bad('header lacks optimizer or params');
  }
  if (header.distribution !== 'normal' && header.distribution !== 'rademacher') bad('unknown distribution');
  o += hlen;
  need(o, 4);
  const count = v.getUint32(o, true); o += 4;
  const steps: TrajectoryStep[] = [];
  for (let i = 0; i < count; i++) {
    need(o, 28);
    const lr = v.getFloat64(o, true); o += 8;
    const weightDecay = v.getFloat64(o, true); o += 8;
    const eps = v.getFloat64(o, true); o += 8;
    const q = v.getUint32(o, true); o += 4;
    if (q < 1 || q > 1 << 16) bad(`step ${i} has ${q} queries`);
    need(o, 16 * q);
    const seeds: bigint[] = [];
    const projectedGrads: number[] = [];
    for (let k = 0; k < q; k++) {
      seeds.push(v.getBigUint64(o, true)); o += 8;
      projectedGrads.push(v.getFloat64(o, true)); o += 8;
    }
    if (![lr, weightDecay, eps, ...projectedGrads].every(Number.isFinite)) bad(`step ${i} holds a non-finite number`);
    steps.push({ lr, weightDecay, eps, seeds, projectedGrads });
  }
  if (o !== bytes.length) bad(`${bytes.length - o} trailing bytes after the last step`);
  return { header, steps };
}
