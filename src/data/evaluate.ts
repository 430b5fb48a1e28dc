// evaluate.ts — held-out loss (and accuracy) of a model on a task's examples, in batches.
import { ZerothError } from '../errors.js';
import type { Model } from '../model.js';
import type { Task } from './tasks.js';

export interface EvalResult {
  /** Mean per-example loss (lm: mean next-token cross entropy of each row, averaged over rows). */
  loss: number;
  /** Fraction right, for tasks that have an accuracy. */
  accuracy?: number;
  count: number;
}

export interface EvaluateOptions {
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export async function evaluate<E>(model: Model, task: Task<E>, examples: readonly E[], opts: EvaluateOptions = {}): Promise<EvalResult> {
  const batchSize = opts.batchSize ?? 16;
  if (examples.length === 0) throw new ZerothError('E_INVALID_ARG', 'evaluate: no examples to score');
  let lossSum = 0;
  let correct = 0;
  for (let i = 0; i < examples.length; i += batchSize) {
    if (opts.signal?.aborted) throw new ZerothError('E_ABORTED', `evaluation aborted after ${i} of ${examples.length} examples`);
    const s = await task.score(model, examples.slice(i, i + batchSize));
    lossSum += s.lossSum;
    correct += s.correct;
    opts.onProgress?.(Math.min(i + batchSize, examples.length), examples.length);
  }
  const result: EvalResult = { loss: lossSum / examples.length, count: examples.length };
  if (task.hasAccuracy) result.accuracy = correct / examples.length;
  return result;
}

/** "loss 3.2101 (ppl 24.78)" or "loss 0.6012, accuracy 71.0%". */
export function formatEval(r: EvalResult, kind: string): string {
  const parts = [`loss ${r.loss.toFixed(4)}`];
  if (kind === 'lm') parts[0] += ` (perplexity ${Math.exp(r.loss).toFixed(2)})`;
  if (r.accuracy !== undefined) parts.push(`accuracy ${(100 * r.accuracy).toFixed(1)}%`);
  return `${parts.join(', ')} on ${r.count} held-out examples`;
}
