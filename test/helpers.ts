// helpers.ts — small pieces several test files share (not a spec file).
import { join } from 'node:path';
import * as zeroth from '../src/index.js';

/** Deterministic uniform numbers in [0, 1) (mulberry32). */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The shared reference fixtures (../shared/fixtures beside the repository). */
export const FIXTURES = join(import.meta.dirname, '..', '..', 'shared', 'fixtures');

/** The reference batch of a fixture: int32 input_ids and attention_mask [3, 12]. */
export async function fixtureBatch(dir: string): Promise<{ inputIds: zeroth.Tensor; attentionMask: zeroth.Tensor }> {
  const ref = await zeroth.readSafetensors(join(dir, 'reference.safetensors'));
  try {
    return {
      inputIds: new zeroth.Tensor(await ref.load('input_ids', { dtype: 'i32' })),
      attentionMask: new zeroth.Tensor(await ref.load('attention_mask', { dtype: 'i32' })),
    };
  } finally {
    ref.close();
  }
}
