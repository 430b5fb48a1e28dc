// optimizer.ts — the ZO step: probe the loss at θ ± ε·z for q seeded directions, form the
// projected gradients (L+ − L−)/(2ε) in float64, restore θ exactly and apply the update.
//
// Closures over user tensors use the in-place path: the native kernels perturb the tensors
// with an undo journal, so restores are exact to the bit (see native/cpu/perturb.h). A
// non-finite loss or a throwing closure leaves every weight bit-identical to before the step.
import { check, ZerothError } from '../errors.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { Model } from '../model.js';
import { batchLoss, isBatch, ModelProber, type Batch } from './model_prober.js';
import { ParamSet, type Masks, type Params } from './params.js';
import { SeedSequence } from './seeds.js';
import { decodeTrajectory, encodeTrajectory, type OptimizerKind, type TrajectoryHeader, type TrajectoryStep } from './trajectory.js';
import { applyStep, isQuantScale, UpdateState } from './update.js';

/** A loss: a number, or a one-element tensor (which the optimizer reads and disposes). */
export type LossValue = number | Tensor;
export type LossClosure = () => LossValue | Promise<LossValue>;

export interface ZOOptions {
  /** Learning rate, or a schedule of the step index (0-based). */
  lr: number | ((step: number) => number);
  /** Perturbation size ε (default 1e-3, as in MeZO). */
  eps?: number;
  /** Decoupled weight decay: θ ← θ − lr·wd·θ (default 0). */
  weightDecay?: number;
  /** Heavy-ball momentum β for ZOSGD (default 0: none; needs one f32 buffer per parameter). */
  momentum?: number;
  /** Perturbations averaged per step, n-SPSA (default 1). */
  queries?: number;
  /** Seed of the run: the same seed and data give the same weights (default 0). */
  seed?: number | bigint;
  /** Distribution of z: 'normal' (default, MeZO) or 'rademacher'. */
  distribution?: 'normal' | 'rademacher';
  /** Per-parameter u8 bitmasks (1 bit per element): cleared bits are never perturbed or updated. */
  masks?: Masks;
  /** Accept a step only if the loss at the new weights does not exceed the clean loss (ZOSGD, q = 1). */
  conservative?: boolean;
  /** What a NaN/Inf loss does: 'skip' the step (default) or 'throw' an E_NAN ZerothError. */
  nonFinite?: 'skip' | 'throw';
  /** f16/bf16 parameters: round updates stochastically instead of to nearest (QuZO). */
  stochasticRounding?: boolean;
  /**
   * Clip each projected gradient to [−gradClip, gradClip] before the update (QZO's clipping of
   * the directional derivative, which keeps one noisy pair of losses from wrecking the
   * low-bit scales). Default: no clipping. The trajectory records the clipped value.
   */
  gradClip?: number;
  /**
   * A quantized model's scales ('<layer>.scales', which QZO trains) never fall below
   * scaleFloor × their value when the optimizer was made, nor change sign (default 0.1;
   * 0 turns the floor off). Other parameters are unaffected.
   */
  scaleFloor?: number;
}

export interface QueryResult {
  seed: bigint;
  lossPlus: number;
  lossMinus: number;
  projectedGrad: number;
}

export interface StepResult {
  /** 0-based index of this step attempt. */
  step: number;
  /** Seed of the first query. */
  seed: bigint;
  /** Means over the step's queries. */
  lossPlus: number;
  lossMinus: number;
  projectedGrad: number;
  queries: QueryResult[];
  lr: number;
  /** False when the step was rejected (non-finite loss, or a conservative step that raised the loss). */
  accepted: boolean;
  reason?: string;
  /** Conservative steps: the clean loss and the loss after the candidate update. */
  lossBefore?: number;
  lossAfter?: number;
}

function positive(x: number | undefined, name: string, fallback: number): number {
  if (x === undefined) return fallback;
  check(Number.isFinite(x) && x > 0, `${name} must be a positive finite number, got ${x}`);
  return x;
}

function nonNegative(x: number | undefined, name: string): number {
  if (x === undefined) return 0;
  check(Number.isFinite(x) && x >= 0, `${name} must be a non-negative finite number, got ${x}`);
  return x;
}

/** g clipped to [−clip, clip] (no clipping when clip is absent); NaN stays NaN so it is rejected. */
function clipGrad(g: number, clip: number | boolean | undefined): number {
  return typeof clip === 'number' && Math.abs(g) > clip ? Math.sign(g) * clip : g;
}

/** Reads a closure's loss: a number, or a one-element f32/f64 tensor (read, then disposed). */
export async function readLoss(closure: LossClosure): Promise<number> {
  const value = await closure();
  if (typeof value === 'number') return value;
  if (value instanceof Tensor) {
    try {
      check(value.numel === 1, `the loss closure returned a tensor of shape [${value.shape.join(', ')}]; return a scalar`, 'E_SHAPE');
      check(value.dtype === 'f64' || value.dtype === 'f32', `the loss tensor has dtype ${value.dtype}; use f32 or f64`, 'E_DTYPE');
      return Number(value.toTypedArray()[0]);
    } finally {
      value.dispose();
    }
  }
  throw new ZerothError('E_INVALID_ARG', 'the loss closure must return a number or a one-element tensor');
}

/**
 * How a step evaluates the loss at perturbed weights. The closure path perturbs the tensors
 * in place (journaled, exact restore); a model path reads perturbed weights on the fly and
 * never writes them.
 */
export interface Prober {
  /** Loss at θ + scale·z(seed); may leave the weights perturbed until restore / fused. */
  probe(seed: bigint, scale: number): Promise<number>;
  /** Loss at the clean weights. */
  clean(): Promise<number>;
  /** Makes the weights clean again, bit-exactly (a no-op when probing never wrote them). */
  restore(): Promise<void>;
  /** When set: restores perturbed weights and applies update `opts` in the same pass. */
  fused?: (opts: Record<string, unknown>) => Promise<void>;
}

/** The in-place prober of closures over user tensors. */
class ClosureProber implements Prober {
  constructor(private readonly params: ParamSet, private readonly journal: object,
    private readonly closure: LossClosure, private readonly dist: string) {}

  async probe(seed: bigint, scale: number): Promise<number> {
    await native.perturbTo(this.params.targets(), this.journal, seed, scale, this.dist);
    return readLoss(this.closure);
  }

  clean(): Promise<number> {
    return readLoss(this.closure);
  }

  async restore(): Promise<void> {
    await native.restoreAndUpdate(this.params.targets(), this.journal, {});
  }

  fused = async (opts: Record<string, unknown>): Promise<void> => {
    await native.restoreAndUpdate(this.params.targets(), this.journal, opts);
  };
}

export abstract class ZOOptimizer {
  protected readonly params: ParamSet;
  /** Set when the optimizer trains a built-in model (its trainable set). */
  protected readonly model: Model | undefined;
  #modelTensors: Tensor[] = [];
  protected readonly kind: OptimizerKind;
  readonly eps: number;
  readonly weightDecay: number;
  readonly queries: number;
  readonly distribution: 'normal' | 'rademacher';
  readonly conservative: boolean;
  readonly nonFinite: 'skip' | 'throw';
  #lr: number | ((step: number) => number);
  #seeds: SeedSequence;
  #journal: object;
  #state = new UpdateState();
  #steps: TrajectoryStep[] = [];
  #attempts = 0;
  #busy = false;
  protected options: Record<string, number | boolean>;

  protected constructor(kind: OptimizerKind, target: Params | Model, opts: ZOOptions, options: Record<string, number | boolean>) {
    check(opts !== null && typeof opts === 'object', 'optimizer options are required: at least {lr}');
    check(typeof opts.lr === 'function' || (Number.isFinite(opts.lr) && opts.lr >= 0),
      `lr must be a non-negative number or a function of the step, got ${String(opts.lr)}`);
    this.kind = kind;
    this.#lr = opts.lr;
    this.eps = positive(opts.eps, 'eps', 1e-3);
    this.weightDecay = nonNegative(opts.weightDecay, 'weightDecay');
    this.queries = opts.queries ?? 1;
    check(Number.isInteger(this.queries) && this.queries >= 1 && this.queries <= 4096, 'queries must be an integer from 1 to 4096');
    this.distribution = opts.distribution ?? 'normal';
    check(this.distribution === 'normal' || this.distribution === 'rademacher', "distribution must be 'normal' or 'rademacher'");
    this.nonFinite = opts.nonFinite ?? 'skip';
    check(this.nonFinite === 'skip' || this.nonFinite === 'throw', "nonFinite must be 'skip' or 'throw'");
    this.conservative = opts.conservative ?? false;
    const seed = opts.seed ?? 0;
    check(typeof seed === 'bigint' || Number.isSafeInteger(seed), 'seed must be a safe integer or a bigint');
    this.options = { ...options, stochasticRounding: opts.stochasticRounding ?? false };
    if (opts.gradClip !== undefined) this.options.gradClip = positive(opts.gradClip, 'gradClip', Infinity);
    const scaleFloor = opts.scaleFloor ?? 0.1;
    check(Number.isFinite(scaleFloor) && scaleFloor >= 0 && scaleFloor < 1, `scaleFloor must be in [0, 1), got ${scaleFloor}`);
    if (this.conservative && (kind !== 'zosgd' || Number(options.momentum) > 0 || this.queries !== 1 ||
        this.weightDecay !== 0 || this.options.stochasticRounding)) {
      // The candidate a conservative step scores is θ − lr·g·z; decay or stochastic rounding
      // would make the applied update differ from the one that was scored.
      throw new ZerothError('E_UNSUPPORTED',
        'conservative steps are supported for ZOSGD without momentum, weight decay or stochastic rounding, and with queries = 1');
    }
    let params: Params;
    let masks = opts.masks;
    if (target instanceof Model) {
      this.model = target;
      const names = new Set(target.trainableNames());
      params = {};
      for (const [n, t] of Object.entries(target.parameters())) {
        if (names.has(n)) params[n] = t;
        else t.dispose();
      }
      // Own copies of the masks: the model may choose another trainable set later.
      const own: Masks = {};
      for (const [n, m] of Object.entries(target.trainableMasks())) own[n] = m.clone();
      this.#modelTensors = [...Object.values(params), ...Object.values(own)];
      masks = { ...own, ...(opts.masks ?? {}) };
    } else {
      params = target;
    }
    try {
      this.params = new ParamSet(params, masks);
    } catch (err) {
      for (const t of this.#modelTensors) t.dispose();
      throw err;
    }
    // The floor is set from the scales as they are now: replay starts from the same base. It
    // applies to a quantized model's scales only, never to a user's tensor that happens to be
    // named '*.scales'.
    const quantized = new Set((this.model?.quantizedNames() ?? []).map((n) => `${n.replace(/\.weight$/, '')}.scales`));
    if (scaleFloor > 0 && this.params.names.some((n) => isQuantScale(n) && quantized.has(n))) this.options.scaleFloor = scaleFloor;
    this.#state.initFloors(this.params, this.options.scaleFloor);
    this.#seeds = new SeedSequence(seed);
    this.#journal = native.journalCreate() as object;
  }

  /** The learning rate the next step will use. */
  get lr(): number {
    return this.lrAt(this.#attempts);
  }

  /** Steps attempted so far (accepted or not). */
  get stepCount(): number {
    return this.#attempts;
  }

  private lrAt(step: number): number {
    const lr = typeof this.#lr === 'function' ? this.#lr(step) : this.#lr;
    check(Number.isFinite(lr) && lr >= 0, `the lr schedule returned ${lr} at step ${step}; it must be a non-negative number`);
    return lr;
  }

  /**
   * One ZO step: calls `closure` 2·queries times (plus twice more for conservative steps),
   * then updates the parameters. Resolves to the step's losses and projected gradient.
   */
  async step(closureOrBatch: LossClosure | Batch): Promise<StepResult> {
    if (typeof closureOrBatch === 'function') {
      return this.stepWith(new ClosureProber(this.params, this.#journal, closureOrBatch, this.distribution));
    }
    check(isBatch(closureOrBatch), 'step: pass a loss closure, or {inputIds, attentionMask} for an optimizer built on a model');
    const model = this.model;
    check(model !== undefined, 'step({inputIds}): this optimizer was built on tensors, not a model; pass a loss closure');
    const batch = closureOrBatch;
    if (this.params.masks.some((m) => m !== undefined)) {
      // Sparse masks: the fused forward perturbs whole tensors, so masked runs go in place.
      return this.stepWith(new ClosureProber(this.params, this.#journal, () => batchLoss(model, batch), this.distribution));
    }
    return this.stepWith(new ModelProber(model, batch, this.params.names, this.distribution));
  }

  /** @internal The step, for any way of probing the loss. */
  protected async stepWith(prober: Prober): Promise<StepResult> {
    check(!this.#busy, 'a step is already running on this optimizer; await it before starting another');
    const index = this.#attempts;
    const lr = this.lrAt(index); // a failing schedule throws before the step starts
    this.#busy = true;
    this.#attempts++;
    const queries: QueryResult[] = [];
    let perturbed = false;
    try {
      let lossBefore: number | undefined;
      if (this.conservative) lossBefore = await prober.clean();
      for (let k = 0; k < this.queries; k++) {
        const seed = this.#seeds.next();
        perturbed = true;
        const lossPlus = await prober.probe(seed, this.eps);
        const lossMinus = await prober.probe(seed, -this.eps);
        const projectedGrad = clipGrad((lossPlus - lossMinus) / (2 * this.eps), this.options.gradClip);
        queries.push({ seed, lossPlus, lossMinus, projectedGrad });
        const finite = Number.isFinite(projectedGrad) && (lossBefore === undefined || Number.isFinite(lossBefore));
        // Each query perturbs around the clean weights: restore before the next seed. The last
        // query of a plain step stays perturbed; the update pass restores it (fused).
        if (!finite || k < this.queries - 1) {
          await prober.restore();
          perturbed = false;
        }
        if (!finite) return this.reject(index, lr, queries, `non-finite loss (L+ = ${lossPlus}, L- = ${lossMinus})`);
      }
      const record: TrajectoryStep = {
        lr, weightDecay: this.weightDecay, eps: this.eps,
        seeds: queries.map((r) => r.seed), projectedGrads: queries.map((r) => r.projectedGrad),
      };
      let lossAfter: number | undefined;
      if (this.conservative) {
        // The candidate θ − lr·g·z, journaled like a probe so a rejection restores exactly.
        lossAfter = await prober.probe(record.seeds[0]!, -lr * record.projectedGrads[0]!);
        if (!(lossAfter <= lossBefore!)) {
          await prober.restore();
          perturbed = false;
          return { ...this.reject(index, lr, queries, `the update would raise the loss (${lossBefore} -> ${lossAfter})`), lossBefore, lossAfter };
        }
      }
      // The last query may have left the weights perturbed: applyStep's first native call
      // restores them (fused), or they are clean already (a prober that never writes them).
      await applyStep(this.params, this.#state, this.header(), record, prober.fused);
      perturbed = false;
      this.#steps.push(record);
      return { ...this.summary(index, lr, queries), accepted: true, lossBefore, lossAfter };
    } catch (err) {
      if (perturbed) await prober.restore();
      throw err;
    } finally {
      this.#busy = false;
    }
  }

  private summary(index: number, lr: number, queries: QueryResult[]): Omit<StepResult, 'accepted'> {
    const mean = (f: (r: QueryResult) => number): number => queries.reduce((a, r) => a + f(r), 0) / queries.length;
    return {
      step: index, seed: queries[0]!.seed, lr, queries,
      lossPlus: mean((r) => r.lossPlus), lossMinus: mean((r) => r.lossMinus), projectedGrad: mean((r) => r.projectedGrad),
    };
  }

  private reject(index: number, lr: number, queries: QueryResult[], reason: string): StepResult {
    if (this.nonFinite === 'throw' && reason.startsWith('non-finite')) {
      throw new ZerothError('E_NAN', `step ${index}: ${reason}; the weights were restored unchanged. Lower lr or eps, or check the data`);
    }
    return { ...this.summary(index, lr, queries), accepted: false, reason };
  }

  /** @internal The constants replay needs. */
  header(): TrajectoryHeader {
    return {
      optimizer: this.kind, distribution: this.distribution, options: this.options, params: this.params.describe(),
      run: { seedState: this.#seeds.state.toString(), attempts: this.#attempts },
      ...(this.model?.loraSpec() ? { lora: this.model.loraSpec() } : {}),
    };
  }

  /** The applied steps so far in the compact binary format of trajectory.ts (a few KB). */
  trajectory(): Uint8Array {
    return encodeTrajectory({ header: this.header(), steps: this.#steps });
  }

  /**
   * Continues a stopped run: replays `trajectory` (recorded by an optimizer with the same
   * options on the same base weights) onto this optimizer's parameters and takes over its seed
   * generator, step counter and state, so N steps + resume + M steps equals N + M steps.
   */
  async resume(trajectory: Uint8Array): Promise<void> {
    check(this.#attempts === 0 && this.#steps.length === 0, 'resume: call it on a fresh optimizer, before any step');
    const t = decodeTrajectory(trajectory);
    check(t.header.optimizer === this.kind, `resume: the trajectory was recorded by ${t.header.optimizer}, not ${this.kind}`);
    check(t.header.run !== undefined, 'resume: the trajectory has no run state (it was not written by opt.trajectory())');
    this.params.assertMatches(t.header.params, 'resume');
    for (const step of t.steps) {
      await applyStep(this.params, this.#state, t.header, step);
      this.#steps.push(step);
    }
    this.#seeds.state = BigInt(t.header.run.seedState);
    this.#attempts = t.header.run.attempts;
  }

  /** Frees the optimizer's state buffers (momentum, Adam moments). */
  dispose(): void {
    this.#state.dispose();
    for (const t of this.#modelTensors) t.dispose();
    this.#modelTensors = [];
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
