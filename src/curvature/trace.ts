// trace.ts — Hutchinson's estimate of tr(H) from forward passes only.
//
// Per probe z (Rademacher by default, or normal), with one clean loss L0 shared by the call
// (the closure's batch is fixed):
//     D(ε) = (L(θ+εz) + L(θ−εz) − 2·L0) / ε²  ≈  zᵀHz,     E[zᵀHz] = tr(H),
// formed in float64 as ((L+ − L0) + (L− − L0)) / ε². Var(zᵀHz) is 2·Σ_{i≠j} H_ij² for
// Rademacher z and 2·‖H‖_F² for normal z, so Rademacher is never worse. Optional Richardson
// extrapolation (4·D(ε/2) − D(ε))/3 cancels the ε² term of the central difference for two
// more forwards per probe.
//
// Choosing ε. Two errors pull in opposite directions. Truncation: D(ε) − zᵀHz = O(ε²·‖z‖⁴·L'''')
// grows with the step. Cancellation: the weights are f32, so θ ± εz is rounded per element
// and the loss is computed in f32; the second difference must stand clear of that noise. A
// perturbation of fixed length ‖εz‖ (not a fixed ε per element) keeps the loss change
// ε²·zᵀHz ≈ ‖εz‖²·(mean curvature) at the same size for any parameter count. We take
// ‖εz‖ = 0.05 (ε = 0.05/√n; ‖z‖ = √n exactly for Rademacher z): test/curvature.test.ts shows
// that on an f32 MLP this stays within 1% of the exact trace per probe, while a MeZO-sized
// ε = 1e-3 per element is off by orders of magnitude, and one small enough to leave the f32
// weights unchanged returns exactly 0.
import { check, ZerothError } from '../errors.js';
import { SeedSequence } from '../optim/seeds.js';
import { checkBlocks, defaultBlocks } from './blocks.js';
import { readMeanLoss, type CurvatureClosure } from './loss.js';
import { Model } from '../model.js';
import { isBatch, type Batch } from '../optim/model_prober.js';
import { ModelPerturber } from './model.js';
import { ClosurePerturber, type CurvatureParams, type Distribution, type Perturber } from './perturber.js';

/** Default perturbation length ‖εz‖ (see the header). */
export const DEFAULT_STEP_LENGTH = 0.05;
/** The relative standard error is tested only once this many probes are in (or the budget). */
const MIN_PROBES_FOR_STOP = 8;

export interface TraceProgress {
  /** Probes done (per block). */
  probes: number;
  /** The probe budget. */
  budget: number;
  trace: number;
  stdErr: number;
  forwards: number;
}

export interface HessianTraceOptions {
  /** Closures: the named parameters the closure reads (zeroth Tensors f32/f16/bf16, or Float64Array/Float32Array). */
  params?: CurvatureParams;
  /** Models: the batch whose loss is probed (the model's trainable set is perturbed, on the fly). */
  batch?: Batch;
  /** Models: the weights to perturb instead of the trainable set. */
  names?: readonly string[];
  /** Probe budget (per block): default 64, or 1024 when relStdErr is given. */
  probes?: number;
  /** Stop once stdErr ≤ relStdErr·|trace| (tested from 8 probes on). */
  relStdErr?: number;
  /** Perturbation per element; default stepLength/√n for the n perturbed elements. */
  eps?: number;
  /** Target ‖εz‖ when eps is not given (default 0.05). */
  stepLength?: number;
  /** Distribution of z: 'rademacher' (default) or 'normal'. */
  distribution?: Distribution;
  /** Seed of the probe sequence (default 0): the same seed gives the same probes. */
  seed?: number | bigint;
  /** Richardson extrapolation (4·D(ε/2) − D(ε))/3: four perturbed forwards per probe. */
  richardson?: boolean;
  /** Per-block traces: true groups parameters by their prefix before the last '.'; or a Record of block -> names. */
  perBlock?: boolean | Record<string, string[]>;
  signal?: AbortSignal;
  onProgress?: (progress: TraceProgress) => void;
}

export interface BlockTrace {
  trace: number;
  stdErr: number;
  samples: number[];
  probes: number;
  eps: number;
  /** Elements in the block. */
  numel: number;
}

export interface HessianTraceResult {
  /** Estimate of tr(H) (with perBlock: the sum of the block traces, an unbiased estimate of tr(H)). */
  trace: number;
  stdErr: number;
  /** Per-probe values zᵀHz (with perBlock: per probe, the sum over blocks). */
  samples: number[];
  /** Closure calls made: 1 clean + 2 per probe (4 with Richardson), per block. */
  forwards: number;
  /** Probes per block. */
  probes: number;
  /** ε per element (with perBlock: the smallest block ε; each block reports its own). */
  eps: number;
  blocks?: Record<string, BlockTrace>;
}

/** Mean and standard error of the mean, in float64. */
export function meanAndStdErr(samples: readonly number[]): { mean: number; stdErr: number } {
  const k = samples.length;
  if (k === 0) return { mean: NaN, stdErr: NaN };
  let mean = 0;
  let m2 = 0;
  samples.forEach((x, i) => {
    const d = x - mean;
    mean += d / (i + 1);
    m2 += d * (x - mean);
  });
  return { mean, stdErr: k > 1 ? Math.sqrt(m2 / (k - 1) / k) : NaN };
}

export function parseSeed(seed: number | bigint | undefined): bigint {
  const s = seed ?? 0;
  check(typeof s === 'bigint' || Number.isSafeInteger(s), 'seed must be a safe integer or a bigint');
  return BigInt(s);
}

export function parseDistribution(d: unknown, fallback: Distribution): Distribution {
  const dist = d ?? fallback;
  check(dist === 'rademacher' || dist === 'normal', `distribution must be 'rademacher' or 'normal', got ${String(d)}`);
  return dist as Distribution;
}

export function checkAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new ZerothError('E_ABORTED', `${what} aborted; the parameters were restored to their clean values`);
}

/** Per-element ε: the given eps, or stepLength/√n. */
export function chooseEps(n: number, eps: number | undefined, stepLength: number | undefined): number {
  if (eps !== undefined) {
    check(Number.isFinite(eps) && eps > 0, `eps must be a positive finite number, got ${eps}`);
    return eps;
  }
  const len = stepLength ?? DEFAULT_STEP_LENGTH;
  check(Number.isFinite(len) && len > 0, `stepLength must be a positive finite number, got ${len}`);
  return len / Math.sqrt(n);
}

/** One forward with the abort check and the finite-loss check around it. */
export async function forward(closure: CurvatureClosure, signal: AbortSignal | undefined, what: string): Promise<number> {
  checkAborted(signal, what);
  const loss = await readMeanLoss(closure);
  if (!Number.isFinite(loss)) {
    throw new ZerothError('E_NAN', `${what}: the closure returned a non-finite loss (${loss}); the parameters were restored. ` +
      'Check the data, or use a smaller eps');
  }
  return loss;
}

/**
 * The second difference (L(θ+sz) + L(θ−sz) − 2·L0)/s² along z(seed) for the parameters
 * `names`, in float64; the weights are left perturbed (the caller restores).
 */
export async function secondDifference(
  perturber: Perturber, closure: CurvatureClosure, names: readonly string[], seed: bigint, dist: Distribution,
  s: number, loss0: number, signal: AbortSignal | undefined, what: string,
): Promise<{ value: number; lossPlus: number; lossMinus: number }> {
  await perturber.perturb(names, seed, s, dist);
  const lossPlus = await forward(closure, signal, what);
  await perturber.perturb(names, seed, -s, dist);
  const lossMinus = await forward(closure, signal, what);
  return { value: ((lossPlus - loss0) + (lossMinus - loss0)) / (s * s), lossPlus, lossMinus };
}

interface Group {
  name: string;
  names: string[];
  numel: number;
  eps: number;
  samples: number[];
}

/**
 * Hutchinson estimate of the trace of the loss Hessian with respect to `opts.params`, from
 * forward passes only. The parameters are perturbed in place and restored to the bit, also
 * when the closure throws, returns NaN or the signal aborts.
 */
export async function hessianTrace(target: CurvatureClosure | Model, opts: HessianTraceOptions): Promise<HessianTraceResult> {
  check(opts !== null && typeof opts === 'object', 'hessianTrace: options are required: {params} for a closure, {batch} for a model');
  let closure: CurvatureClosure;
  let perturber: Perturber;
  if (target instanceof Model) {
    check(isBatch(opts.batch), 'hessianTrace(model, {batch}): pass batch: {inputIds, attentionMask} (int32 [B, T])');
    const mp = new ModelPerturber(target, opts.names);
    perturber = mp;
    closure = mp.closure(opts.batch);
  } else {
    check(typeof target === 'function', 'hessianTrace(target, opts): pass a loss closure or a model');
    check(opts.params !== undefined, 'hessianTrace(closure, {params}): name the parameters the closure reads');
    closure = target;
    perturber = new ClosurePerturber(opts.params);
  }
  const dist = parseDistribution(opts.distribution, 'rademacher');
  const relStdErr = opts.relStdErr;
  check(relStdErr === undefined || (Number.isFinite(relStdErr) && relStdErr > 0), 'relStdErr must be a positive number');
  const budget = opts.probes ?? (relStdErr !== undefined ? 1024 : 64);
  check(Number.isInteger(budget) && budget >= 1 && budget <= 1 << 20, 'probes must be an integer from 1 to 2^20');
  const richardson = opts.richardson ?? false;
  check(typeof richardson === 'boolean', 'richardson must be a boolean');
  const seeds = new SeedSequence(parseSeed(opts.seed));
  const signal = opts.signal;

  const layout: Record<string, string[]> = opts.perBlock === undefined || opts.perBlock === false
    ? { all: [...perturber.names] }
    : opts.perBlock === true ? defaultBlocks(perturber.names) : checkBlocks(opts.perBlock, perturber.names);
  const groups: Group[] = Object.entries(layout).map(([name, names]) => {
    const numel = names.reduce((a, n) => a + perturber.numel(n), 0);
    check(numel > 0, `block '${name}' has no elements`);
    return { name, names, numel, eps: chooseEps(numel, opts.eps, opts.stepLength), samples: [] };
  });

  const totals: number[] = [];
  let forwards = 0;
  try {
    const loss0 = await forward(closure, signal, 'hessianTrace');
    forwards++;
    for (let k = 0; k < budget; k++) {
      const seed = seeds.next();
      let total = 0;
      for (const g of groups) {
        const d1 = await secondDifference(perturber, closure, g.names, seed, dist, g.eps, loss0, signal, 'hessianTrace');
        forwards += 2;
        let value = d1.value;
        if (richardson) {
          const d2 = await secondDifference(perturber, closure, g.names, seed, dist, g.eps / 2, loss0, signal, 'hessianTrace');
          forwards += 2;
          value = (4 * d2.value - d1.value) / 3;
        }
        await perturber.restore();
        g.samples.push(value);
        total += value;
      }
      totals.push(total);
      const { mean, stdErr } = meanAndStdErr(totals);
      opts.onProgress?.({ probes: k + 1, budget, trace: mean, stdErr, forwards });
      if (relStdErr !== undefined && k + 1 >= Math.min(budget, MIN_PROBES_FOR_STOP) && stdErr <= relStdErr * Math.abs(mean)) break;
    }
  } finally {
    await perturber.restore();
  }

  const { mean, stdErr } = meanAndStdErr(totals);
  const result: HessianTraceResult = {
    trace: mean, stdErr, samples: totals, forwards, probes: totals.length, eps: Math.min(...groups.map((g) => g.eps)),
  };
  if (opts.perBlock) {
    result.blocks = {};
    for (const g of groups) {
      const s = meanAndStdErr(g.samples);
      result.blocks[g.name] = { trace: s.mean, stdErr: s.stdErr, samples: g.samples, probes: g.samples.length, eps: g.eps, numel: g.numel };
    }
  }
  return result;
}
