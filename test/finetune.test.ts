import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as zeroth from '../src/index.js';
import { fixtureBatch, FIXTURES } from './helpers.js';

// ZO fine-tuning of a built-in model, on the reference GPT-2 fixture (random weights) and a
// fixed batch made from its reference inputs.
const FIXTURE = join(FIXTURES, 'gpt2-tiny');
const { optim } = zeroth;
const tmp = mkdtempSync(join(tmpdir(), 'zeroth-finetune-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const batch = (): Promise<zeroth.optim.Batch> => fixtureBatch(FIXTURE);

function snapshot(model: zeroth.Model): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [n, t] of Object.entries(model.parameters())) {
    out[n] = t.toTypedArray() as Float32Array;
    t.dispose();
  }
  return out;
}

function sameBits(a: Record<string, Float32Array>, b: Record<string, Float32Array>, names = Object.keys(a)): boolean {
  return names.every((n) => Buffer.compare(Buffer.from(a[n]!.buffer), Buffer.from(b[n]!.buffer)) === 0);
}

async function meanLoss(model: zeroth.Model, b: zeroth.optim.Batch): Promise<number> {
  using l = await model.loss(b.inputIds, { attentionMask: b.attentionMask });
  const v = l.toTypedArray();
  return v.reduce((s, x) => s + x, 0) / v.length;
}

describe('ZO fine-tuning of a model', () => {
  it('the fused step (perturbed reads) equals the in-place step: same losses, gradient and weights', async () => {
    const b = await batch();
    using fusedModel = await zeroth.loadModel(FIXTURE);
    using inPlaceModel = await zeroth.loadModel(FIXTURE);
    using fused = new optim.ZOSGD(fusedModel, { lr: 1e-3, eps: 1e-3, seed: 42 });
    // The in-place path: the same named tensors, perturbed in memory by the journaled kernels.
    const params = inPlaceModel.parameters();
    using inPlace = new optim.ZOSGD(params, { lr: 1e-3, eps: 1e-3, seed: 42 });
    for (let s = 0; s < 3; s++) {
      const a = await fused.step(b);
      const c = await inPlace.step(() => meanLoss(inPlaceModel, b));
      expect(a.seed).toBe(c.seed);
      expect(a.lossPlus).toBe(c.lossPlus);
      expect(a.lossMinus).toBe(c.lossMinus);
      expect(a.projectedGrad).toBe(c.projectedGrad);
    }
    expect(sameBits(snapshot(fusedModel), snapshot(inPlaceModel))).toBe(true);
    for (const t of Object.values(params)) t.dispose();
  });

  it('MeZO lowers the loss of a fixed batch', async () => {
    const b = await batch();
    using model = await zeroth.loadModel(FIXTURE);
    const before = await meanLoss(model, b);
    using opt = new optim.ZOSGD(model, { lr: 2e-3, eps: 1e-3, seed: 1 });
    for (let s = 0; s < 60; s++) await opt.step(b);
    const after = await meanLoss(model, b);
    expect(after).toBeLessThan(before - 0.05);
  });

  it("trainable({mode: 'bias'}) leaves every other weight bit-identical", async () => {
    const b = await batch();
    using model = await zeroth.loadModel(FIXTURE);
    const base = snapshot(model);
    const chosen = model.trainable({ mode: 'bias' });
    const names = Object.keys(chosen);
    for (const t of Object.values(chosen)) t.dispose();
    expect(names.length).toBeGreaterThan(0);
    expect(names.every((n) => n.endsWith('.bias') || /ln_|ln_f/.test(n))).toBe(true);
    using opt = new optim.ZOSGD(model, { lr: 1e-2, seed: 3 });
    for (let s = 0; s < 4; s++) await opt.step(b);
    const after = snapshot(model);
    const frozen = Object.keys(base).filter((n) => !names.includes(n));
    expect(sameBits(base, after, frozen)).toBe(true);
    expect(sameBits(base, after, names)).toBe(false);
  });

  it("trainable({mode: 'mask'}) (Sparse MeZO) leaves masked elements bit-identical", async () => {
    const b = await batch();
    using model = await zeroth.loadModel(FIXTURE);
    const base = snapshot(model);
    for (const t of Object.values(model.trainable({ mode: 'mask', fraction: 0.2 }))) t.dispose();
    const masks = model.trainableMasks();
    using opt = new optim.ZOSGD(model, { lr: 1e-2, seed: 4 });
    for (let s = 0; s < 3; s++) await opt.step(b);
    const after = snapshot(model);
    let changed = 0;
    for (const [n, m] of Object.entries(masks)) {
      const bits = m.toTypedArray();
      const w0 = base[n]!, w1 = after[n]!;
      for (let i = 0; i < w0.length; i++) {
        const trains = (bits[i >> 3]! >> (i & 7)) & 1;
        if (!trains) expect(w1[i]).toBe(w0[i]);
        else if (w1[i] !== w0[i]) changed++;
      }
    }
    expect(changed).toBeGreaterThan(0);
  });

  it('save -> load gives the same logits; replay(model) and resume equal the uninterrupted run', async () => {
    const b = await batch();
    // Uninterrupted: 6 steps.
    using full = await zeroth.loadModel(FIXTURE);
    using optFull = new optim.ZOSGD(full, { lr: 1e-3, seed: 9, momentum: 0.5 });
    for (let s = 0; s < 6; s++) await optFull.step(b);

    // Interrupted: 4 steps, stop, resume from the trajectory on a fresh base model, 2 more.
    using first = await zeroth.loadModel(FIXTURE);
    using opt1 = new optim.ZOSGD(first, { lr: 1e-3, seed: 9, momentum: 0.5 });
    for (let s = 0; s < 4; s++) await opt1.step(b);
    using second = await zeroth.loadModel(FIXTURE);
    using opt2 = new optim.ZOSGD(second, { lr: 1e-3, seed: 9, momentum: 0.5 });
    await opt2.resume(opt1.trajectory());
    for (let s = 0; s < 2; s++) await opt2.step(b);
    expect(sameBits(snapshot(second), snapshot(full))).toBe(true);
    expect(opt2.trajectory()).toEqual(optFull.trajectory());

    // Replay onto the base model, without a forward pass.
    using replayed = await zeroth.loadModel(FIXTURE);
    await optim.replay(replayed, optFull.trajectory());
    expect(sameBits(snapshot(replayed), snapshot(full))).toBe(true);

    // Save and load back.
    const dir = join(tmp, 'saved');
    await full.save(dir);
    using loaded = await zeroth.loadModel(dir);
    using l1 = await full.forward(b.inputIds, { attentionMask: b.attentionMask });
    using l2 = await loaded.forward(b.inputIds, { attentionMask: b.attentionMask });
    expect(Buffer.compare(Buffer.from(l1.toTypedArray().buffer), Buffer.from(l2.toTypedArray().buffer))).toBe(0);
  });

  it('LoRA: only the adapters train, the base stays bit-identical, save merges, replay rebuilds', async () => {
    const b = await batch();
    using model = await zeroth.loadModel(FIXTURE);
    const base = snapshot(model);
    const adapters = model.trainable({ mode: 'lora', rank: 4, alpha: 8, seed: 5 });
    const names = Object.keys(adapters).sort();
    for (const t of Object.values(adapters)) t.dispose();
    expect(names).toEqual(['transformer.h.0.attn.c_attn.lora_A.weight', 'transformer.h.0.attn.c_attn.lora_B.weight',
      'transformer.h.1.attn.c_attn.lora_A.weight', 'transformer.h.1.attn.c_attn.lora_B.weight']);
    // B starts at zero: the adapted model computes exactly what the base does.
    using base0 = await zeroth.loadModel(FIXTURE);
    using la = await model.forward(b.inputIds, { attentionMask: b.attentionMask });
    using lb = await base0.forward(b.inputIds, { attentionMask: b.attentionMask });
    expect(Buffer.compare(Buffer.from(la.toTypedArray().buffer), Buffer.from(lb.toTypedArray().buffer))).toBe(0);

    const before = await meanLoss(model, b);
    using opt = new optim.ZOSGD(model, { lr: 5e-3, eps: 1e-3, seed: 2 });
    for (let s = 0; s < 40; s++) await opt.step(b);
    expect(await meanLoss(model, b)).toBeLessThan(before - 0.01);
    const after = snapshot(model);
    expect(sameBits(base, after, Object.keys(base))).toBe(true); // every base weight untouched
    expect(after['transformer.h.0.attn.c_attn.lora_B.weight']!.some((v) => v !== 0)).toBe(true); // B moved off zero

    // Replay: the same adapters (same seed) on a fresh base model, then the trajectory.
    // (replay adds them itself: the trajectory records rank, alpha and seed.)
    using again = await zeroth.loadModel(FIXTURE);
    await optim.replay(again, opt.trajectory());
    expect(sameBits(snapshot(again), after)).toBe(true);

    // Save merges W + (alpha/rank)·B·A into a plain checkpoint with the same outputs.
    const dir = join(tmp, 'lora');
    await model.save(dir);
    using merged = await zeroth.loadModel(dir);
    expect(merged.parameterNames().some((n) => n.includes('lora'))).toBe(false);
    using l1 = await model.forward(b.inputIds, { attentionMask: b.attentionMask });
    using l2 = await merged.forward(b.inputIds, { attentionMask: b.attentionMask });
    const x = l1.toTypedArray(), y = l2.toTypedArray();
    let maxErr = 0;
    for (let i = 0; i < x.length; i++) maxErr = Math.max(maxErr, Math.abs(x[i]! - y[i]!));
    expect(maxErr).toBeLessThan(1e-4);
  });
});
