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

/** A fixture on the CPU and on a GPU, with its reference batch: `using` frees all four. */
export interface DevicePair extends Disposable {
  cpu: zeroth.Model;
  gpu: zeroth.Model;
  batch: { inputIds: zeroth.Tensor; attentionMask: zeroth.Tensor };
}

/** Loads `dir` on the CPU (f32) and with `gpu` options (default: the first CUDA device, f32). */
export async function loadDevicePair(dir: string, gpu: zeroth.LoadModelOptions = { device: 'cuda' }): Promise<DevicePair> {
  const cpuModel = await zeroth.loadModel(dir);
  const held: Disposable[] = [cpuModel];
  const release = () => {
    for (const d of held) d[Symbol.dispose]();
  };
  try {
    const gpuModel = await zeroth.loadModel(dir, gpu);
    held.push(gpuModel);
    const batch = await fixtureBatch(dir);
    held.push(batch.inputIds, batch.attentionMask);
    return { cpu: cpuModel, gpu: gpuModel, batch, [Symbol.dispose]: release };
  } catch (e) {
    release();
    throw e;
  }
}
