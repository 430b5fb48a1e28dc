import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as zeroth from '../src/index.js';
import { fixtureBatch, FIXTURES } from './helpers.js';

// hessianTrace on a built-in model (the fused path: perturbed weight reads) against the same
// estimate through the in-place closure path on the same weights.
const FIXTURE = join(FIXTURES, 'gpt2-tiny');

const batch = (): Promise<zeroth.optim.Batch> => fixtureBatch(FIXTURE);

describe('hessianTrace on a model', () => {
  it('the fused model path gives the same probes as the in-place closure path', async () => {
    const b = await batch();
    using fused = await zeroth.loadModel(FIXTURE);
    using inPlace = await zeroth.loadModel(FIXTURE);
    const a = await zeroth.hessianTrace(fused, { batch: b, probes: 6, seed: 3 });
    const params = inPlace.parameters();
    const c = await zeroth.hessianTrace(
      () => inPlace.loss(b.inputIds, { attentionMask: b.attentionMask }), { params, probes: 6, seed: 3 });
    expect(a.samples).toEqual(c.samples);
    expect(a.forwards).toBe(1 + 2 * 6);
    expect(Number.isFinite(a.trace)).toBe(true);
    for (const t of Object.values(params)) t.dispose();
  });

  it('per-block traces of a model sum to its full trace in expectation', async () => {
    const b = await batch();
    using model = await zeroth.loadModel(FIXTURE);
    const full = await zeroth.hessianTrace(model, { batch: b, probes: 48, seed: 1 });
    const blocks = await zeroth.hessianTrace(model, { batch: b, probes: 48, seed: 2, perBlock: true });
    const names = Object.keys(blocks.blocks!);
    expect(names.length).toBeGreaterThan(4);
    const sum = names.reduce((s, n) => s + blocks.blocks![n]!.trace, 0);
    const se = Math.hypot(full.stdErr, blocks.stdErr);
    expect(Math.abs(sum - full.trace)).toBeLessThan(4 * se);
    expect(zeroth.rankBlocksByTrace(blocks.blocks!)[0]!.trace).toBeGreaterThanOrEqual(
      zeroth.rankBlocksByTrace(blocks.blocks!).at(-1)!.trace);
  });
});
