// model_prober.ts — the fused ZO path of the built-in models: every probe is a forward that
// reads each trainable weight as w + scale·z(seed, stream(name)) on the fly (DESIGN principle 2),
// so probing writes no weight and restoring costs nothing; the update is one native pass.
import { check } from '../errors.js';
import type { Model, Perturbation } from '../model.js';
import { Tensor } from '../tensor.js';
import type { Prober } from './optimizer.js';

/** A batch for a model step: int32 [B, T] ids with right padding, and its 0/1 attention mask. */
export interface Batch {
  inputIds: Tensor;
  attentionMask?: Tensor;
}

export function isBatch(x: unknown): x is Batch {
  return typeof x === 'object' && x !== null && (x as Batch).inputIds instanceof Tensor;
}

/** The batch loss: the mean of the per-row mean next-token losses, summed in float64. */
export async function batchLoss(model: Model, batch: Batch, perturbation?: Perturbation): Promise<number> {
  using rows = await model.loss(batch.inputIds, { attentionMask: batch.attentionMask, perturbation });
  const values = rows.toTypedArray();
  check(values.length > 0, 'the batch is empty');
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

export class ModelProber implements Prober {
  constructor(private readonly model: Model, private readonly batch: Batch,
    private readonly trainable: readonly string[], private readonly dist: 'normal' | 'rademacher') {}

  probe(seed: bigint, scale: number): Promise<number> {
    return batchLoss(this.model, this.batch, { seed, scale, dist: this.dist, trainable: this.trainable });
  }

  clean(): Promise<number> {
    return batchLoss(this.model, this.batch);
  }

  async restore(): Promise<void> {
    // Nothing to do: probes never wrote the weights.
  }
}
