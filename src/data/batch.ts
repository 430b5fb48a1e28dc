// batch.ts — token-id rows into the rectangular int32 tensors the model takes (right padding,
// attention mask 1 on real tokens), and helpers to read logits back.
import { check } from '../errors.js';
import { tensor, type Tensor } from '../tensor.js';

export interface TokenBatch {
  inputIds: Tensor<'i32'>;
  attentionMask: Tensor<'i32'>;
  /** Real tokens per row. */
  lengths: number[];
  dispose(): void;
}

/** Pads `rows` on the right with `padId` to the longest row. */
export function padBatch(rows: readonly (readonly number[])[], padId: number): TokenBatch {
  check(rows.length > 0, 'a batch needs at least one row');
  const width = Math.max(...rows.map((r) => r.length));
  check(width > 0, 'every row of the batch is empty');
  const ids = new Int32Array(rows.length * width).fill(padId);
  const mask = new Int32Array(rows.length * width);
  rows.forEach((r, b) => {
    ids.set(r, b * width);
    mask.fill(1, b * width, b * width + r.length);
  });
  const inputIds = tensor(ids, { dtype: 'i32', shape: [rows.length, width] });
  const attentionMask = tensor(mask, { dtype: 'i32', shape: [rows.length, width] });
  return {
    inputIds, attentionMask, lengths: rows.map((r) => r.length),
    dispose() {
      inputIds.dispose();
      attentionMask.dispose();
    },
  };
}

/** The last `max` ids of a row: prompts keep their end, where the answer is predicted. */
export function keepLast(ids: readonly number[], max: number): number[] {
  return ids.length <= max ? [...ids] : ids.slice(ids.length - max);
}

/** log Σ exp(x[i]) over a slice of a logits row, in float64. */
export function logSumExp(x: Float32Array, start: number, end: number): number {
  let m = -Infinity;
  for (let i = start; i < end; i++) if (x[i]! > m) m = x[i]!;
  if (m === -Infinity) return -Infinity;
  let s = 0;
  for (let i = start; i < end; i++) s += Math.exp(x[i]! - m);
  return m + Math.log(s);
}
