// perturber.ts — moving parameters to θ + s·z(seed) and back, exactly, for curvature probes.
//
// A curvature estimate only needs two things from its target: "perturb these blocks by s·z
// around the clean weights" and "restore the clean weights to the bit". Closures over named
// parameters get this class:
//   - zeroth Tensors (f32 / f16 / bf16) use the journaled in-place kernels of the optimizers
//     (native perturbTo / restoreAndUpdate, see native/cpu/perturb.h): one fused pass per move,
//     exact restore, no copy of the weights;
//   - host arrays (Float64Array, Float32Array) are perturbed here in JavaScript from a backup
//     copy (f64 parameters have no native kernel; the arrays are small by nature). Their z is
//     the same f32 draw as the native path's (native.fillZ with the parameter's stream id).
// The model path (built-in models perturbing while they read weights) implements the same
// interface, Perturber, so trace.ts and diagonal.ts do not change when it arrives.
import { check, ZerothError } from '../errors.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { ParamSet, streamId, type NativeTarget } from '../optim/params.js';

/** A named parameter a curvature estimate may perturb in place. */
export type CurvatureParam = Tensor | Float64Array | Float32Array;
export type CurvatureParams = Record<string, CurvatureParam>;
export type Distribution = 'rademacher' | 'normal';

/** What trace.ts and diagonal.ts need from a target (closure parameters now, models later). */
export interface Perturber {
  /** Parameter names, in a stable order. */
  readonly names: readonly string[];
  /** Number of elements of a parameter. */
  numel(name: string): number;
  /** Moves the parameters `names` to clean + scale·z(seed); all others stay clean. */
  perturb(names: readonly string[], seed: bigint, scale: number, dist: Distribution): Promise<void>;
  /** Restores every parameter to its clean bits (no-op when clean). */
  restore(): Promise<void>;
  /** z(seed) of one parameter as float64 (the values perturb() uses). */
  z(name: string, seed: bigint, dist: Distribution): Float64Array;
}

interface HostEntry {
  array: Float64Array | Float32Array;
  backup: Float64Array | Float32Array;
  stream: bigint;
}

export class ClosurePerturber implements Perturber {
  readonly names: readonly string[];
  readonly #tensors: ParamSet | undefined;
  readonly #tensorIndex = new Map<string, number>();
  readonly #host = new Map<string, HostEntry>();
  readonly #streams = new Map<string, bigint>();
  readonly #journal: object;
  /** Tensor targets moved by the current perturbation (the journal's layout). */
  #moved: NativeTarget[] | undefined;
  /** Host arrays moved by the current perturbation. */
  #hostMoved: HostEntry[] = [];
  /** Seed and distribution of the current perturbation (the journal moves only along one z). */
  #key = '';

  constructor(params: CurvatureParams) {
    check(params !== null && typeof params === 'object', 'params must be a Record<string, Tensor | Float64Array | Float32Array>');
    const names = Object.keys(params);
    check(names.length > 0, 'params is empty: pass at least one named parameter');
    const tensors: Record<string, Tensor> = {};
    for (const name of names) {
      const p = params[name];
      if (p instanceof Tensor) {
        if (p.dtype === 'f64') {
          throw new ZerothError('E_DTYPE', `params.${name} is an f64 tensor; the in-place kernels take f32/f16/bf16 tensors. ` +
            'Pass f64 parameters as Float64Array host arrays that the closure reads');
        }
        check(p.device === 'cpu', `params.${name} is on ${p.device}; curvature probes over closures run on the CPU`, 'E_DEVICE');
        tensors[name] = p;
      } else if (p instanceof Float64Array || p instanceof Float32Array) {
        this.#host.set(name, { array: p, backup: p.slice(), stream: streamId(name) });
      } else {
        throw new ZerothError('E_INVALID_ARG', `params.${name} must be a zeroth Tensor, a Float64Array or a Float32Array`);
      }
      this.#streams.set(name, streamId(name));
    }
    const tensorNames = Object.keys(tensors);
    this.#tensors = tensorNames.length > 0 ? new ParamSet(tensors) : undefined;
    tensorNames.forEach((n, i) => this.#tensorIndex.set(n, i));
    this.names = names;
    this.#journal = native.journalCreate() as object;
  }

  numel(name: string): number {
    const i = this.#tensorIndex.get(name);
    if (i !== undefined) return this.#tensors!.tensors[i]!.numel;
    const h = this.#host.get(name);
    check(h !== undefined, `no parameter named '${name}'`);
    return h.array.length;
  }

  async perturb(names: readonly string[], seed: bigint, scale: number, dist: Distribution): Promise<void> {
    const wanted = new Set(names);
    const targets = this.#tensors ? this.#tensors.targets().filter((_, i) => wanted.has(this.#tensors!.names[i]!)) : [];
    const host = [...this.#host.entries()].filter(([n]) => wanted.has(n)).map(([, h]) => h);
    const key = `${seed}:${dist}`;
    const same = this.#moved !== undefined && this.#key === key && this.#moved.length === targets.length &&
      this.#moved.every((t, i) => t.stream === targets[i]!.stream);
    if (this.#moved !== undefined && !same) await this.restore();
    if (targets.length > 0) {
      this.#moved = targets;
      this.#key = key;
      await native.perturbTo(targets, this.#journal, seed, scale, dist);
    }
    // Host arrays that the previous perturbation moved but this one does not go back first.
    for (const h of this.#hostMoved) if (!host.includes(h)) h.array.set(h.backup);
    for (const h of host) {
      const z = native.fillZ(seed, h.stream, dist, 0, h.array.length) as Float32Array;
      const a = h.array;
      const b = h.backup;
      if (a instanceof Float32Array) {
        const s = Math.fround(scale);
        // fl(w + fl(s·z)): the value the native f32 kernel writes.
        for (let i = 0; i < a.length; i++) a[i] = Math.fround(b[i]! + Math.fround(s * z[i]!));
      } else {
        for (let i = 0; i < a.length; i++) a[i] = b[i]! + scale * z[i]!;
      }
    }
    this.#hostMoved = host;
  }

  async restore(): Promise<void> {
    if (this.#moved !== undefined) {
      const targets = this.#moved;
      this.#moved = undefined;
      await native.restoreAndUpdate(targets, this.#journal, {});
    }
    for (const h of this.#hostMoved) h.array.set(h.backup);
    this.#hostMoved = [];
  }

  z(name: string, seed: bigint, dist: Distribution): Float64Array {
    const stream = this.#streams.get(name);
    check(stream !== undefined, `no parameter named '${name}'`);
    return Float64Array.from(native.fillZ(seed, stream, dist, 0, this.numel(name)) as Float32Array);
  }
}
