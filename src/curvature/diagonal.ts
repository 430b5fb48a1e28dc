// diagonal.ts — the diagonal of the Hessian from the same three losses as a trace probe.
//
// With u ~ N(0, I) and c = (L+ + L− − 2·L0)/(2ε²) ≈ uᵀHu/2:
//   centred    c·(u_i² − 1)   has mean H_ii                (E[uᵀHu·(u_i² − 1)] = 2·H_ii)
//   uncentred  c·u_i²         has mean H_ii + tr(H)/2      (biased by half the trace, every entry)
// HiZOO uses the centred form (with its preconditioner folded in, see native/cpu/perturb_precond.cpp).
// Rademacher u has u_i² = 1, so the centred form is identically 0: the diagonal needs normal z.
// Estimates are combined by a running mean (default) or an EMA (`decay`), in float64.
import { check } from '../errors.js';
import { SeedSequence } from '../optim/seeds.js';
import type { CurvatureClosure } from './loss.js';
import { ClosurePerturber, type CurvatureParams } from './perturber.js';
import { chooseEps, forward, parseSeed, secondDifference } from './trace.js';

export interface HessianDiagonalOptions {
  params: CurvatureParams;
  /** Probes (default 64); each costs two forwards around one shared clean forward. */
  probes?: number;
  /** Perturbation per element; default stepLength/√n. */
  eps?: number;
  /** Target ‖εz‖ when eps is not given (default 0.05). */
  stepLength?: number;
  seed?: number | bigint;
  /** 'centred' (default, unbiased) or 'uncentred' (c·u_i²: biased by tr(H)/2; for comparison). */
  estimator?: 'centred' | 'uncentred';
  /** EMA weight of each new probe in (0, 1]; default: the running mean (weight 1/k). */
  decay?: number;
  signal?: AbortSignal;
  onProgress?: (progress: { probes: number; budget: number; forwards: number }) => void;
}

export interface HessianDiagonalResult {
  /** Per parameter, the estimated H_ii of each element (float64). */
  diagonal: Record<string, Float64Array>;
  probes: number;
  forwards: number;
  eps: number;
}

/** Estimates diag(H) of the closure's loss; the parameters are restored to the bit afterwards. */
export async function hessianDiagonal(closure: CurvatureClosure, opts: HessianDiagonalOptions): Promise<HessianDiagonalResult> {
  check(typeof closure === 'function', 'hessianDiagonal(closure, opts): pass a function that returns the loss');
  check(opts !== null && typeof opts === 'object', 'hessianDiagonal: options are required: at least {params}');
  const budget = opts.probes ?? 64;
  check(Number.isInteger(budget) && budget >= 1 && budget <= 1 << 20, 'probes must be an integer from 1 to 2^20');
  const estimator = opts.estimator ?? 'centred';
  check(estimator === 'centred' || estimator === 'uncentred', "estimator must be 'centred' or 'uncentred'");
  const decay = opts.decay;
  check(decay === undefined || (Number.isFinite(decay) && decay > 0 && decay <= 1), 'decay must be in (0, 1]');
  const seeds = new SeedSequence(parseSeed(opts.seed));
  const perturber = new ClosurePerturber(opts.params);
  const names = [...perturber.names];
  const n = names.reduce((a, name) => a + perturber.numel(name), 0);
  const eps = chooseEps(n, opts.eps, opts.stepLength);
  const diagonal: Record<string, Float64Array> = {};
  for (const name of names) diagonal[name] = new Float64Array(perturber.numel(name));

  let forwards = 0;
  let probes = 0;
  try {
    const loss0 = await forward(closure, opts.signal, 'hessianDiagonal');
    forwards++;
    for (let k = 0; k < budget; k++) {
      const seed = seeds.next();
      const d = await secondDifference(perturber, closure, names, seed, 'normal', eps, loss0, opts.signal, 'hessianDiagonal');
      forwards += 2;
      await perturber.restore();
      const c = d.value / 2;
      const w = decay === undefined ? 1 / (k + 1) : k === 0 ? 1 : decay;
      const shift = estimator === 'centred' ? 1 : 0;
      for (const name of names) {
        const z = perturber.z(name, seed, 'normal');
        const est = diagonal[name]!;
        for (let i = 0; i < est.length; i++) est[i] = est[i]! + w * (c * (z[i]! * z[i]! - shift) - est[i]!);
      }
      probes++;
      opts.onProgress?.({ probes, budget, forwards });
    }
  } finally {
    await perturber.restore();
  }
  return { diagonal, probes, forwards, eps };
}
