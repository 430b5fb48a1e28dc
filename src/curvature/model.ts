// model.ts — curvature probes on a built-in model: the fused path. A probe is a forward that
// reads each weight of the probed block as w + s·z(seed, stream(name)) on the fly (DESIGN
// principle 2), so "perturbing" records the descriptor and writes nothing, and "restoring"
// forgets it. The estimates in trace.ts run unchanged on top of this Perturber.
import { check } from '../errors.js';
import { native } from '../native.js';
import type { Model } from '../model.js';
import type { Batch } from '../optim/model_prober.js';
import { streamId } from '../optim/params.js';
import type { Tensor } from '../tensor.js';
import type { CurvatureClosure } from './loss.js';
import type { Distribution, Perturber } from './perturber.js';

export class ModelPerturber implements Perturber {
  readonly names: readonly string[];
  readonly #numel = new Map<string, number>();
  #current: { names: readonly string[]; seed: bigint; scale: number; dist: Distribution } | undefined;

  /** `names`: the weights to perturb (default: the model's trainable set). */
  constructor(private readonly model: Model, names?: readonly string[]) {
    this.names = names ? [...names] : model.trainableNames();
    for (const [n, t] of Object.entries(model.parameters())) {
      if (this.names.includes(n)) this.#numel.set(n, t.numel);
      t.dispose();
    }
    for (const n of this.names) check(this.#numel.has(n), `hessianTrace: '${n}' is not a float parameter of the model`);
  }

  numel(name: string): number {
    const n = this.#numel.get(name);
    check(n !== undefined, `unknown parameter ${name}`);
    return n;
  }

  async perturb(names: readonly string[], seed: bigint, scale: number, dist: Distribution): Promise<void> {
    this.#current = { names, seed, scale, dist };
  }

  async restore(): Promise<void> {
    this.#current = undefined;
  }

  z(name: string, seed: bigint, dist: Distribution): Float64Array {
    return Float64Array.from(native.fillZ(seed, streamId(name), dist, 0, this.numel(name)) as Float32Array);
  }

  /** Per-row losses [B] (f64) of the batch at the current perturbation. */
  closure(batch: Batch): CurvatureClosure {
    return (): Promise<Tensor> => {
      const c = this.#current;
      return this.model.loss(batch.inputIds, {
        attentionMask: batch.attentionMask,
        perturbation: c && { seed: c.seed, scale: c.scale, dist: c.dist, trainable: c.names },
      });
    };
  }
}
