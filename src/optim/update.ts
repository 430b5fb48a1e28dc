// update.ts — the update rule of each ZO optimizer, as one function shared by a live step
// and by replay: both make exactly the same native calls, so replay is bit-exact.
import { check } from '../errors.js';
import { native } from '../native.js';
import * as ops from '../ops.js';
import { zeros, type Tensor } from '../tensor.js';
import type { ParamSet } from './params.js';
import type { TrajectoryHeader, TrajectoryStep } from './trajectory.js';

/** Quantization scales of a quantized model's layers (what QZO trains) are named '<layer>.scales'. */
export function isQuantScale(name: string): boolean {
  return name.endsWith('.scales');
}

/**
 * Optimizer state that lives between steps (allocated lazily, f32, one per parameter, on the
 * parameter's device: the native update rules take parameters and state on one device).
 */
export class UpdateState {
  momentum: Tensor<'f32'>[] | undefined;
  second: Tensor<'f32'>[] | undefined;
  scratch: Tensor<'f32'>[] | undefined;
  /** Updates applied so far (Adam's bias correction uses it). */
  applied = 0;
  /** QZO's scale floor: quantization scales and their floors (scaleFloor × the starting scale). */
  floors: { index: number; floor: Tensor<'f32'> }[] = [];

  /** Sets the floors of the quantization scales among `params` from their current values. */
  initFloors(params: ParamSet, fraction: number | boolean | undefined): void {
    if (typeof fraction !== 'number' || fraction <= 0) return;
    params.names.forEach((name, index) => {
      if (!isQuantScale(name)) return;
      const t = params.tensors[index]!;
      check(t.dtype === 'f32', `${name}: quantization scales must be f32 to train, got ${t.dtype}`, 'E_DTYPE');
      this.floors.push({ index, floor: scaledCopy(t as Tensor<'f32'>, fraction) });
    });
  }

  buffers(params: ParamSet, which: 'momentum' | 'second' | 'scratch'): Tensor<'f32'>[] {
    this[which] ??= params.zerosLike((shape, device) => zeros(shape, { device }));
    return this[which]!;
  }

  /** Applies the floors after an update (nothing when there are none). */
  holdFloors(params: ParamSet): void {
    if (this.floors.length === 0) return;
    native.holdFloor(this.floors.map((f) => params.tensors[f.index]!.handle), this.floors.map((f) => f.floor.handle));
  }

  dispose(): void {
    for (const list of [this.momentum, this.second, this.scratch]) list?.forEach((t) => t.dispose());
    this.momentum = this.second = this.scratch = undefined;
    for (const f of this.floors) f.floor.dispose();
    this.floors = [];
  }
}

/**
 * fraction × t, on t's device. The elementwise ops are CPU-only, so a device tensor is
 * multiplied on a host copy (the same f32 product) and the result copied back: once per run.
 */
function scaledCopy(t: Tensor<'f32'>, fraction: number): Tensor<'f32'> {
  if (t.device === 'cpu') return ops.mul(t, fraction) as Tensor<'f32'>;
  using host = t.to('cpu');
  using floor = ops.mul(host, fraction) as Tensor<'f32'>;
  return floor.to(t.device);
}

type GradArg = { seed: bigint; dist: string; c: number } | { scratch: unknown[] };

/** ĝ = Σ_k (g_k / q)·z_k: regenerated from the seed for one query, accumulated for several. */
async function gradient(params: ParamSet, state: UpdateState, header: TrajectoryHeader, step: TrajectoryStep): Promise<GradArg> {
  const q = step.seeds.length;
  if (q === 1) return { seed: step.seeds[0]!, dist: header.distribution, c: step.projectedGrads[0]! };
  const scratch = state.buffers(params, 'scratch');
  const handles = scratch.map((t) => t.handle);
  for (let k = 0; k < q; k++) {
    await native.accumulateZ(params.targets(), handles, step.seeds[k], header.distribution, k === 0 ? 0 : 1, step.projectedGrads[k]! / q);
  }
  return { scratch: handles };
}

/** Stochastic rounding of f16/bf16 updates draws from a seed distinct from the perturbation's. */
export function roundingSeed(seed: bigint): bigint {
  return BigInt.asUintN(64, seed ^ 0x5851f42d4c957f2dn);
}

function sgdOptions(header: TrajectoryHeader, stepScale: number, decay: number, seed: bigint): Record<string, unknown> {
  const sr = header.options.stochasticRounding === true;
  return sr ? { stepScale, decay, stochasticRounding: true, roundingSeed: roundingSeed(seed) } : { stepScale, decay };
}

/**
 * Applies one recorded step to clean weights. `fused`, when given, restores weights left
 * perturbed by the last query; for a single-query SGD step it applies the update in the same
 * pass (the same bits as applyUpdate on clean weights, by the kernels' guarantee).
 */
export async function applyStep(
  params: ParamSet,
  state: UpdateState,
  header: TrajectoryHeader,
  step: TrajectoryStep,
  fused?: (opts: Record<string, unknown>) => Promise<void>,
): Promise<void> {
  const { lr, weightDecay } = step;
  const decay = lr * weightDecay;
  const q = step.seeds.length;
  const o = header.options;
  const t = state.applied + 1; // committed only once the update succeeded (Adam's bias correction)
  if (header.optimizer === 'zosgd' && !(Number(o.momentum) > 0)) {
    const opts = (k: number): Record<string, unknown> =>
      sgdOptions(header, (lr * step.projectedGrads[k]!) / q, k === 0 ? decay : 0, step.seeds[k]!);
    if (fused && q === 1) await fused(opts(0));
    else {
      if (fused) await fused({}); // restore exactly, then one update pass per query
      for (let k = 0; k < q; k++) await native.applyUpdate(params.targets(), step.seeds[k], header.distribution, opts(k));
    }
    state.holdFloors(params);
    state.applied = t;
    return;
  }
  if (fused) await fused({}); // restore exactly, then apply the stateful rule to clean weights
  const grad = await gradient(params, state, header, step);
  const targets = params.targets();
  switch (header.optimizer) {
    case 'zosgd': {
      const m = state.buffers(params, 'momentum').map((t) => t.handle);
      await native.momentumUpdate(targets, m, grad, Number(o.momentum), lr, decay);
      break;
    }
    case 'zoadam': {
      const m = state.buffers(params, 'momentum').map((t) => t.handle);
      const v = state.buffers(params, 'second').map((t) => t.handle);
      await native.adamUpdate(targets, m, v, grad, {
        beta1: Number(o.beta1), beta2: Number(o.beta2), eps: Number(o.adamEps), lr, decay, t,
      });
      break;
    }
    case 'zosign':
      await native.signUpdate(targets, grad, lr, decay);
      break;
  }
  state.holdFloors(params);
  state.applied = t;
}
