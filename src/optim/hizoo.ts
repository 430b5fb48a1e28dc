// hizoo.ts — HiZOO (Zhao et al., "Second-Order Fine-Tuning without Pain for LLMs: a Hessian
// Informed Zeroth-Order Optimizer"): ZO-SGD preconditioned by a running diagonal Hessian H.
//
// One step, three forwards (seed s, u = z(s) ~ N(0, I), p = 1/√H elementwise):
//   L0 = L(θ),  L± = L(θ ± ε·p⊙u)                       (journaled in-place perturbation)
//   g  = (L+ − L−)/(2ε)                                  projected gradient
//   θ ← θ·(1 − lr·wd) − lr·g·p⊙u                         (fused into the restoring pass)
//   Ĥ_i = (L+ + L− − 2·L0)/(2ε²) · H_i·(u_i² − 1)        centred diagonal estimate
//   H ← clamp((1 − α)·H + α·|Ĥ|, hMin, hMax),  p = 1/√H  (native hessianDiagUpdate)
// The step uses the p the losses were measured with: g·p⊙u is then an unbiased estimate of
// H⁻¹∇L (E[g·p⊙u] ≈ p²⊙∇L); the paper's code steps with the freshly updated H, which differs
// by a factor (1 + O(α)) per element.
//
// Defaults: H₀ = 1 and ε = 1e-3 as in the paper (MeZO's ε); α = 1e-6, the constant smoothing of
// the paper's code for LoRA runs (its full-parameter OPT runs use 1e-10 — set `alpha` there).
// The paper states no clip range; hMin/hMax (1e-6, 1e6) only keep p finite.
// A non-finite loss rejects the step: the weights are restored bit-exactly and H is unchanged.
// State: two f32 buffers per parameter (H and p). Trajectories (replay) do not cover HiZOO:
// its steps depend on H, which depends on the losses of every earlier step.
import { check, ZerothError } from '../errors.js';
import { native } from '../native.js';
import { full, Tensor } from '../tensor.js';
import { readLoss, type LossClosure } from './optimizer.js';
import { ParamSet, type Masks, type NativeTarget, type Params } from './params.js';
import { SeedSequence } from './seeds.js';

export interface HiZOOOptions {
  /** Learning rate, or a schedule of the step index (0-based). */
  lr: number | ((step: number) => number);
  /** Perturbation size ε (default 1e-3). */
  eps?: number;
  /** EMA weight α of the Hessian update (default 1e-6), or a schedule of the step index. */
  alpha?: number | ((step: number) => number);
  /** Initial diagonal Hessian (default 1). */
  hessianInit?: number;
  /** Clip range of H (default [1e-6, 1e6]). */
  hMin?: number;
  hMax?: number;
  /** Decoupled weight decay: θ ← θ − lr·wd·θ (default 0). */
  weightDecay?: number;
  /** Seed of the run (default 0). */
  seed?: number | bigint;
  /** Per-parameter u8 bitmasks: cleared bits are never perturbed or updated (H too). */
  masks?: Masks;
  /** What a NaN/Inf loss does: 'skip' the step (default) or 'throw' an E_NAN ZerothError. */
  nonFinite?: 'skip' | 'throw';
}

export interface HiZOOStepResult {
  step: number;
  seed: bigint;
  /** The clean loss L(θ) before the step. */
  loss0: number;
  lossPlus: number;
  lossMinus: number;
  projectedGrad: number;
  /** (L+ + L− − 2·L0)/ε²: the probe's curvature uᵀ(PHP)u along the preconditioned direction. */
  curvature: number;
  lr: number;
  alpha: number;
  accepted: boolean;
  reason?: string;
}

function schedule(v: number | ((step: number) => number), step: number, name: string, max = Infinity): number {
  const x = typeof v === 'function' ? v(step) : v;
  check(Number.isFinite(x) && x >= 0 && x <= max, `${name} at step ${step} is ${x}; it must be a number in [0, ${max}]`);
  return x;
}

const F32_MAX = 3.4028234663852886e38;

export class HiZOO {
  readonly eps: number;
  readonly weightDecay: number;
  readonly hMin: number;
  readonly hMax: number;
  readonly nonFinite: 'skip' | 'throw';
  readonly #params: ParamSet;
  readonly #lr: number | ((step: number) => number);
  readonly #alpha: number | ((step: number) => number);
  readonly #seeds: SeedSequence;
  readonly #journal: object;
  #hessian: Tensor<'f32'>[];
  #precond: Tensor<'f32'>[];
  #attempts = 0;
  #busy = false;

  constructor(params: Params, opts: HiZOOOptions) {
    check(opts !== null && typeof opts === 'object', 'HiZOO options are required: at least {lr}');
    check(typeof opts.lr === 'function' || (Number.isFinite(opts.lr) && opts.lr >= 0),
      `lr must be a non-negative number or a function of the step, got ${String(opts.lr)}`);
    const alpha = opts.alpha ?? 1e-6;
    check(typeof alpha === 'function' || (Number.isFinite(alpha) && alpha >= 0 && alpha <= 1), 'alpha must be in [0, 1] or a function of the step');
    this.eps = opts.eps ?? 1e-3;
    check(Number.isFinite(this.eps) && this.eps > 0, `eps must be a positive finite number, got ${this.eps}`);
    this.weightDecay = opts.weightDecay ?? 0;
    check(Number.isFinite(this.weightDecay) && this.weightDecay >= 0, 'weightDecay must be a non-negative number');
    this.hMin = opts.hMin ?? 1e-6;
    this.hMax = opts.hMax ?? 1e6;
    check(this.hMin > 0 && this.hMin <= this.hMax && this.hMax <= F32_MAX, 'hMin and hMax need 0 < hMin <= hMax within f32 range');
    const h0 = opts.hessianInit ?? 1;
    check(Number.isFinite(h0) && h0 >= this.hMin && h0 <= this.hMax, `hessianInit must lie in [hMin, hMax], got ${h0}`);
    this.nonFinite = opts.nonFinite ?? 'skip';
    check(this.nonFinite === 'skip' || this.nonFinite === 'throw', "nonFinite must be 'skip' or 'throw'");
    const seed = opts.seed ?? 0;
    check(typeof seed === 'bigint' || Number.isSafeInteger(seed), 'seed must be a safe integer or a bigint');
    this.#params = new ParamSet(params, opts.masks);
    this.#lr = opts.lr;
    this.#alpha = alpha;
    this.#seeds = new SeedSequence(seed);
    this.#journal = native.journalCreate() as object;
    // H and p live on each parameter's device (the native kernels take them there).
    this.#hessian = this.#params.tensors.map((t) => full(t.shape, h0, { device: t.device }));
    this.#precond = this.#params.tensors.map((t) => full(t.shape, 1 / Math.sqrt(h0), { device: t.device }));
  }

  /** Steps attempted so far. */
  get stepCount(): number {
    return this.#attempts;
  }

  /** Copies of the current diagonal Hessian estimate, by parameter name. */
  hessian(): Record<string, Tensor<'f32'>> {
    const out: Record<string, Tensor<'f32'>> = {};
    this.#params.names.forEach((n, i) => {
      out[n] = this.#hessian[i]!.clone();
    });
    return out;
  }

  #targets(): NativeTarget[] {
    return this.#params.targets().map((t, i) => ({ ...t, precond: this.#precond[i]!.handle }) as NativeTarget);
  }

  /** One HiZOO step: three calls of `closure` (clean, +, −), then the update of θ and H. */
  async step(closure: LossClosure): Promise<HiZOOStepResult> {
    check(typeof closure === 'function', 'step(closure): pass a function that returns the loss');
    check(!this.#busy, 'a step is already running on this optimizer; await it before starting another');
    this.#busy = true;
    const index = this.#attempts++;
    let perturbed = false;
    const targets = this.#targets();
    try {
      const lr = schedule(this.#lr, index, 'lr');
      const alpha = schedule(this.#alpha, index, 'alpha', 1);
      const seed = this.#seeds.next();
      const loss0 = await readLoss(closure);
      perturbed = true;
      await native.perturbTo(targets, this.#journal, seed, this.eps, 'normal');
      const lossPlus = await readLoss(closure);
      await native.perturbTo(targets, this.#journal, seed, -this.eps, 'normal');
      const lossMinus = await readLoss(closure);
      const projectedGrad = (lossPlus - lossMinus) / (2 * this.eps);
      const curvature = ((lossPlus - loss0) + (lossMinus - loss0)) / (this.eps * this.eps);
      const record = { step: index, seed, loss0, lossPlus, lossMinus, projectedGrad, curvature, lr, alpha };
      const stepScale = lr * projectedGrad;
      if (![loss0, lossPlus, lossMinus, curvature].every(Number.isFinite) || !(Math.abs(stepScale) <= F32_MAX)) {
        await native.restoreAndUpdate(targets, this.#journal, {});
        perturbed = false;
        const reason = `non-finite loss (L0 = ${loss0}, L+ = ${lossPlus}, L- = ${lossMinus})`;
        if (this.nonFinite === 'throw') {
          throw new ZerothError('E_NAN', `HiZOO step ${index}: ${reason}; the weights were restored unchanged. Lower lr or eps, or check the data`);
        }
        return { ...record, accepted: false, reason };
      }
      // Restore and step along the same preconditioned direction in one pass.
      await native.restoreAndUpdate(targets, this.#journal, { stepScale, decay: lr * this.weightDecay });
      perturbed = false;
      const coeff = Math.max(-F32_MAX, Math.min(F32_MAX, curvature / 2));
      await native.hessianDiagUpdate(targets, this.#hessian.map((h) => h.handle), seed, 'normal',
        { coeff, alpha, hMin: this.hMin, hMax: this.hMax });
      return { ...record, accepted: true };
    } catch (err) {
      if (perturbed) await native.restoreAndUpdate(targets, this.#journal, {});
      throw err;
    } finally {
      this.#busy = false;
    }
  }

  /** Frees H and p. */
  dispose(): void {
    for (const t of [...this.#hessian, ...this.#precond]) t.dispose();
    this.#hessian = [];
    this.#precond = [];
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
