// int4_model.test.ts — quantized models: model.quantize, the int4 forward, QZO on the scales,
// LoRA over a frozen int4 base, the Hessian-aware precision plan, and GPTQ save -> load.
//
// References: the forward of a quantized model is compared with the f32 forward of a model
// built (modelFromWeights) from the de-quantized weights, max abs logit error <= 1e-4 (only the
// summation order differs). QZO must lower the held-out loss of the shipped default model at
// int4 while every integer code stays bit-identical.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import * as zeroth from '../src/index.js';
import { evaluate } from '../src/data/evaluate.js';
import { LmTask } from '../src/data/tasks.js';
import { BatchOrder } from '../src/data/sampler.js';
import { loadModel, modelFromWeights, type Model } from '../src/model.js';
import { dequantize, quantCodes, quantInfo } from '../src/quant.js';
import { fixtureBatch, FIXTURES } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'zeroth-int4-model-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const DEFAULT_MODEL = join(import.meta.dirname, '..', 'models', 'default');
const DEFAULT_DATA = join(import.meta.dirname, '..', 'data', 'default');

async function expectCode(p: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(zeroth.ZerothError);
    expect((e as zeroth.ZerothError).code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}`);
}

/** A float model whose linear weights are the de-quantized weights of `q` (the reference). */
async function dequantizedTwin(dir: string, q: Model): Promise<Model> {
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const weights: Record<string, zeroth.Tensor> = {};
  for (const [name, t] of Object.entries(q.parameters())) {
    if (name.endsWith('.scales')) t.dispose();
    else weights[name] = t;
  }
  const linear = new Set(q.linearNames());
  for (const [name, t] of Object.entries(q.quantizedWeights())) {
    const w = dequantize(t);
    t.dispose();
    // GPT-2's Conv1D weights are [in, out]; a quantized weight is [out, in] (embeddings: [V, d] both).
    const conv1d = q.config.family === 'gpt2' && linear.has(name);
    weights[name] = conv1d ? zeroth.ops.transpose(w) : w;
    if (conv1d) w.dispose();
  }
  try {
    return await modelFromWeights(config, weights);
  } finally {
    for (const t of Object.values(weights)) t.dispose();
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

function codesOf(m: Model): Record<string, Uint8Array | Int8Array> {
  const out: Record<string, Uint8Array | Int8Array> = {};
  for (const [n, t] of Object.entries(m.quantizedWeights())) {
    out[n] = quantCodes(t);
    t.dispose();
  }
  return out;
}

describe('model.quantize and the int4 forward', () => {
  for (const [fixture, opts] of [
    ['gpt2-tiny', { bits: 4, groupSize: 32 }],
    ['gpt2-tiny', { bits: 8 }],
    ['llama-tiny', { bits: 4, groupSize: 32, symmetric: true }], // down_proj: 176 inputs, a partial last group
    ['opt-tiny', { bits: 4, groupSize: 48, clip: true }],
    ['gpt2-tiny', { bits: 4, groupSize: 32, embeddings: 8 }], // tied: one int8 table for lookup and head
    ['llama-tiny', { bits: 4, groupSize: 32, embeddings: 4 }], // untied: both quantized
  ] as const) {
    it(`${fixture} ${JSON.stringify(opts)}: logits equal the f32 forward of the de-quantized weights`, async () => {
      const dir = join(FIXTURES, fixture);
      using model = await loadModel(dir);
      const linear = model.linearNames();
      const report = await model.quantize(opts);
      const embeddings = 'embeddings' in opts ? (fixture === 'gpt2-tiny' ? ['transformer.wte.weight'] : ['model.embed_tokens.weight', 'lm_head.weight']) : [];
      expect(report.layers.map((l) => l.name)).toEqual([...linear, ...embeddings]);
      expect(model.quantizedNames().sort()).toEqual([...linear, ...embeddings].sort());
      expect(report.bytesAfter).toBeLessThan(report.bytesBefore);
      // Linear weights left parameters(); their scales joined it.
      const names = model.parameterNames();
      for (const n of linear) {
        expect(names).not.toContain(n);
        expect(names).toContain(n.replace(/\.weight$/, '.scales'));
      }
      using twin = await dequantizedTwin(dir, model);
      const batch = await fixtureBatch(dir);
      using got = await model.forward(batch.inputIds, { attentionMask: batch.attentionMask });
      using want = await twin.forward(batch.inputIds, { attentionMask: batch.attentionMask });
      expect(maxAbsDiff(got.toTypedArray(), want.toTypedArray())).toBeLessThanOrEqual(1e-4);
      // Generation runs through the same kernels (GEMV at one token per step).
      using gq = await model.generate(batch.inputIds, { attentionMask: batch.attentionMask, maxNewTokens: 4 });
      using gf = await twin.generate(batch.inputIds, { attentionMask: batch.attentionMask, maxNewTokens: 4 });
      expect([...gq.toTypedArray()]).toEqual([...gf.toTypedArray()]);
      batch.inputIds.dispose();
      batch.attentionMask?.dispose();
    });
  }

  it('a perturbed forward of the scales equals a forward with the scales perturbed in place', async () => {
    const dir = join(FIXTURES, 'gpt2-tiny');
    using model = await loadModel(dir);
    await model.quantize({ bits: 4, groupSize: 16 });
    const scales = model.parameterNames().filter((n) => n.endsWith('.scales'));
    const batch = await fixtureBatch(dir);
    const perturbation = { seed: 7, scale: 1e-2, trainable: scales };
    using onTheFly = await model.loss(batch.inputIds, { attentionMask: batch.attentionMask, perturbation });
    // Perturb the scales in place with the optimizer's journaled kernel, score, restore.
    const params = model.parameters();
    const { native } = await import('../src/native.js');
    const journal = native.journalCreate() as object;
    const targets = () => scales.map((n) => ({ tensor: params[n]!.handle, stream: native.streamId(n) as bigint }));
    await native.perturbTo(targets(), journal, 7n, 1e-2, 'normal');
    using after = await model.loss(batch.inputIds, { attentionMask: batch.attentionMask });
    const inPlace = after.toTypedArray()[0]!;
    await native.restoreAndUpdate(targets(), journal, {});
    expect(onTheFly.toTypedArray()[0]).toBe(inPlace);
    for (const t of Object.values(params)) t.dispose();
    batch.inputIds.dispose();
    batch.attentionMask?.dispose();
  });

  it('refuses to perturb integer codes, to quantize twice, and position tables or norms', async () => {
    using model = await loadModel(join(FIXTURES, 'gpt2-tiny'));
    await model.quantize({ bits: 4, groupSize: 32, layers: ['*.mlp.*'] });
    const q = model.quantizedNames();
    expect(q.every((n) => n.includes('.mlp.'))).toBe(true);
    using ids = zeroth.tensor(new Int32Array([1, 2, 3]), { shape: [1, 3], dtype: 'i32' });
    await expectCode(model.loss(ids, { perturbation: { seed: 1, scale: 1e-3, trainable: [q[0]!] } }), 'E_INVALID_ARG');
    await expectCode(model.quantize({ bits: 4, layers: ['*.mlp.*'] }), 'E_INVALID_ARG');
    await expectCode(model.applyQuantization([{ name: 'transformer.wpe.weight', bits: 4 }]), 'E_INVALID_ARG');
    await expectCode(model.applyQuantization([{ name: 'transformer.ln_f.weight', bits: 8 }]), 'E_INVALID_ARG');
    expect(() => new zeroth.optim.ZOSGD(model, { lr: 1e-3 })).not.toThrow();
  });

  it("the scale floor applies to a quantized model's scales only, not to a user tensor named '*.scales'", async () => {
    using t = zeroth.tensor([0.5, 0.25]);
    const plain = new zeroth.optim.ZOSGD({ 'my.scales': t }, { lr: 0.1, seed: 1 });
    await plain.step(() => t.toTypedArray()[0]! * 100); // a large step: nothing holds it up
    expect(zeroth.optim.decodeTrajectory(plain.trajectory()).header.options.scaleFloor).toBeUndefined();
    plain.dispose();
    using model = await loadModel(join(FIXTURES, 'gpt2-tiny'));
    await model.quantize({ bits: 4, groupSize: 32 });
    for (const v of Object.values(model.trainable({ mode: 'scales' }))) v.dispose();
    const qzo = new zeroth.optim.ZOSGD(model, { lr: 1e-3, seed: 1 });
    expect(zeroth.optim.decodeTrajectory(qzo.trajectory()).header.options.scaleFloor).toBe(0.1);
    qzo.dispose();
  });

  it("trainable({mode: 'scales'}) needs a quantized model", async () => {
    using model = await loadModel(join(FIXTURES, 'gpt2-tiny'));
    expect(() => model.trainable({ mode: 'scales' })).toThrow(/quantized/);
  });
});

describe('QZO and LoRA on an int4 model', () => {
  async function defaultSetup(): Promise<{ model: Model; task: LmTask; train: number[][]; heldOut: number[][] }> {
    const model = await loadModel(DEFAULT_MODEL);
    const tok = await zeroth.loadTokenizer(DEFAULT_MODEL);
    const task = new LmTask(tok, 64);
    const train = (await task.load(join(DEFAULT_DATA, 'train.jsonl'))).examples;
    const heldOut = (await task.load(join(DEFAULT_DATA, 'eval.jsonl'))).examples.slice(0, 48);
    return { model, task, train, heldOut };
  }

  async function train(model: Model, task: LmTask, examples: number[][], opt: zeroth.optim.ZOSGD, steps: number): Promise<void> {
    const order = new BatchOrder(examples.length, 8, 1);
    for (let s = 0; s < steps; s++) {
      const batch = task.tensors(order.at(s).map((i) => examples[i]!));
      try {
        await opt.step({ inputIds: batch.inputIds, attentionMask: batch.attentionMask });
      } finally {
        batch.dispose();
      }
    }
  }

  it('QZO lowers the held-out loss of the default model at int4; codes stay bit-identical; replay rebuilds the scales', async () => {
    const { model, task, train: examples, heldOut } = await defaultSetup();
    try {
      await model.quantize({ bits: 4, groupSize: 64 });
      const codes = codesOf(model);
      const scales = model.trainable({ mode: 'scales' });
      expect(Object.keys(scales).every((n) => n.endsWith('.scales'))).toBe(true);
      const before: Record<string, Float32Array> = {};
      for (const [n, t] of Object.entries(scales)) {
        expect(t.dtype, `${n} is held in f32`).toBe('f32');
        before[n] = (t.toTypedArray() as Float32Array).slice();
        t.dispose();
      }
      const lossBefore = (await evaluate(model, task, heldOut)).loss;
      const opt = new zeroth.optim.ZOSGD(model, { lr: 5e-5, eps: 1e-3, seed: 3, gradClip: 50 });
      await train(model, task, examples, opt, 40);
      const lossAfter = (await evaluate(model, task, heldOut)).loss;
      expect(lossAfter).toBeLessThan(lossBefore - 0.02);
      expect(codesOf(model)).toEqual(codes);
      // The scales moved, and never below the floor (0.1 of their start).
      const now = model.parameters();
      let moved = 0;
      for (const [n, b] of Object.entries(before)) {
        const a = now[n]!.toTypedArray();
        for (let i = 0; i < a.length; i++) {
          if (a[i] !== b[i]) moved++;
          expect(a[i]!).toBeGreaterThanOrEqual(Math.fround(b[i]! * Math.fround(0.1))); // the floor, as computed in f32
        }
      }
      expect(moved).toBeGreaterThan(0);
      // Replay: a fresh int4 model + the trajectory = the trained scales, bit for bit.
      using fresh = await loadModel(DEFAULT_MODEL);
      await fresh.quantize({ bits: 4, groupSize: 64 });
      await zeroth.optim.replay(fresh, opt.trajectory());
      const replayed = fresh.parameters();
      for (const n of Object.keys(before)) expect(replayed[n]!.toTypedArray()).toEqual(now[n]!.toTypedArray());
      for (const t of [...Object.values(now), ...Object.values(replayed)]) t.dispose();
      opt.dispose();
    } finally {
      model.dispose();
    }
  }, 120_000);

  it('LoRA over an int4 base trains the adapters and leaves codes and scales untouched', async () => {
    const { model, task, train: examples, heldOut } = await defaultSetup();
    try {
      await model.quantize({ bits: 4, groupSize: 64 });
      const codes = codesOf(model);
      const scaleNames = model.parameterNames().filter((n) => n.endsWith('.scales'));
      const p0 = model.parameters();
      const scalesBefore = scaleNames.map((n) => p0[n]!.toTypedArray().slice());
      for (const t of Object.values(p0)) t.dispose();
      const adapters = model.trainable({ mode: 'lora', rank: 4, alpha: 8, seed: 1 });
      expect(Object.keys(adapters).length).toBeGreaterThan(0);
      for (const t of Object.values(adapters)) t.dispose();
      const lossBefore = (await evaluate(model, task, heldOut)).loss;
      const opt = new zeroth.optim.ZOSGD(model, { lr: 2e-3, seed: 5 });
      await train(model, task, examples, opt, 30);
      expect((await evaluate(model, task, heldOut)).loss).toBeLessThan(lossBefore);
      expect(codesOf(model)).toEqual(codes);
      const p1 = model.parameters();
      scaleNames.forEach((n, i) => expect(p1[n]!.toTypedArray()).toEqual(scalesBefore[i]));
      opt.dispose();

      // save(): the GPTQ base plus the adapters in PEFT's layout, which loadModel reads back.
      const dir = join(scratch, 'lora-int4');
      await model.save(dir);
      const peft = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      expect(peft).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['c_attn'] });
      const adapterNames = Object.keys(p1).filter((n) => n.includes('.lora_'));
      expect(adapterNames.length).toBeGreaterThan(0);
      const file = await zeroth.readSafetensors(join(dir, 'adapter_model.safetensors'));
      expect([...file.names].sort()).toEqual(adapterNames.map((n) => `base_model.model.${n}`).sort());
      file.close();
      const base = await zeroth.readSafetensors(join(dir, 'model.safetensors'));
      expect(base.names.some((n) => n.includes('lora_'))).toBe(false);
      base.close();
      const loaded = await loadModel(dir);
      try {
        expect(loaded.loraSpec()).toMatchObject({ rank: 4, alpha: 8 });
        expect(codesOf(loaded)).toEqual(codes);
        const p2 = loaded.parameters();
        for (const n of adapterNames) expect(p2[n]!.toTypedArray(), n).toEqual(p1[n]!.toTypedArray());
        for (const t of Object.values(p2)) t.dispose();
        // The same model up to the f16 rounding of the scales GPTQ stores.
        expect(Math.abs((await evaluate(loaded, task, heldOut)).loss - (await evaluate(model, task, heldOut)).loss)).toBeLessThan(2e-3);
        // The loaded adapters train as they are; new settings are refused.
        const again = loaded.trainable({ mode: 'lora' });
        expect(Object.keys(again).sort()).toEqual([...adapterNames].sort());
        for (const t of Object.values(again)) t.dispose();
        expect(() => loaded.trainable({ mode: 'lora', rank: 8 })).toThrow(/loaded from adapter_model/);
      } finally {
        loaded.dispose();
      }
      for (const t of Object.values(p1)) t.dispose();

      // Adapter folders zeroth cannot read: one clear error each, nothing loaded.
      const { writeFileSync } = await import('node:fs');
      writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ ...peft, use_dora: true }));
      await expectCode(loadModel(dir), 'E_UNSUPPORTED');
      writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ ...peft, r: 0 }));
      await expectCode(loadModel(dir), 'E_FORMAT');
      writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(peft));
      const ad = await zeroth.readSafetensors(join(dir, 'adapter_model.safetensors'));
      const tensors: Record<string, zeroth.Tensor> = {};
      for (const n of ad.names) tensors[n.replace('base_model.model.', 'base_model.model.nowhere.')] = new zeroth.Tensor(await ad.load(n));
      ad.close();
      await zeroth.writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors);
      for (const t of Object.values(tensors)) t.dispose();
      await expectCode(loadModel(dir), 'E_FORMAT');
    } finally {
      model.dispose();
    }
  }, 120_000);
});

describe('Hessian-aware precision plan', () => {
  it('keeps blocks at int8 within the budget, ranks by trace × error, and refuses a budget below all-int4', async () => {
    const dir = join(FIXTURES, 'gpt2-tiny');
    const batch = await fixtureBatch(dir);
    const calibration = { inputIds: batch.inputIds, attentionMask: batch.attentionMask };
    // Sizes: all-int4 and all-int8 of the same model, from quantize's own report.
    let all4: number, all8: number;
    {
      using m = await loadModel(dir);
      all4 = (await m.quantize({ bits: 4, groupSize: 32 })).bytesAfter;
    }
    {
      using m = await loadModel(dir);
      all8 = (await m.quantize({ bits: 8 })).bytesAfter;
    }
    expect(all8).toBeGreaterThan(all4);
    {
      using m = await loadModel(dir);
      const budget = Math.floor((all4 + all8) / 2);
      const r = await m.quantize({ plan: 'hessian', budgetBytes: budget, groupSize: 32, calibration, probes: 8 });
      expect(r.bytesAfter).toBeLessThanOrEqual(budget);
      expect(r.blocks!.length).toBe(2);
      const int8 = r.blocks!.filter((b) => b.bits === 8);
      expect(int8.length).toBe(1); // two equal-size blocks; one fits
      for (const b of r.blocks!) expect(b.error8).toBeLessThan(b.error4);
      // The chosen block has the larger (trace⁺ × error gain).
      const gain = (b: zeroth.PlanBlock): number => Math.max(b.trace, 0) * (b.error4 - b.error8);
      const other = r.blocks!.find((b) => b.bits === 4)!;
      expect(gain(int8[0]!)).toBeGreaterThanOrEqual(gain(other));
      expect(m.quantizedNames().length).toBe(8);
    }
    {
      using m = await loadModel(dir);
      const r = await m.quantize({ plan: 'hessian', budgetBytes: all8 + 1, groupSize: 32, calibration, probes: 4 });
      expect(r.layers.every((l) => l.bits === 8)).toBe(true);
    }
    {
      using m = await loadModel(dir);
      await expectCode(m.quantize({ plan: 'hessian', budgetBytes: all4 - 1, groupSize: 32, calibration, probes: 4 }), 'E_INVALID_ARG');
      expect(m.quantizedNames()).toEqual([]); // nothing changed
    }
    batch.inputIds.dispose();
    batch.attentionMask?.dispose();
  }, 60_000);
});

describe('GPTQ save -> load', () => {
  for (const symmetric of [false, true]) {
    it(`a quantized model (symmetric ${symmetric}) round-trips with identical codes and f16-rounded scales`, async () => {
      const dir = join(FIXTURES, 'llama-tiny');
      using model = await loadModel(dir);
      await model.quantize({ bits: 4, groupSize: 16, symmetric, scaleDtype: 'f16' });
      const out = join(scratch, `llama-gptq-${symmetric}`);
      await model.save(out);
      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { quantization_config: Record<string, unknown> };
      expect(config.quantization_config).toMatchObject({ quant_method: 'gptq', bits: 4, group_size: 16, desc_act: false });
      using back = await loadModel(out);
      expect(codesOf(back)).toEqual(codesOf(model));
      // f16 scales were exact in f16 already, so the whole weight round-trips.
      const a = model.quantizedWeights();
      const b = back.quantizedWeights();
      for (const n of Object.keys(a)) {
        using da = dequantize(a[n]!);
        using db = dequantize(b[n]!);
        expect(db.toTypedArray()).toEqual(da.toTypedArray());
        const ia = quantInfo(a[n]!);
        const ib = quantInfo(b[n]!);
        for (const t of [ia.scales, ia.zeros, ib.scales, ib.zeros]) t?.dispose();
      }
      for (const t of [...Object.values(a), ...Object.values(b)]) t.dispose();
      const batch = await fixtureBatch(dir);
      using la = await model.loss(batch.inputIds, { attentionMask: batch.attentionMask });
      using lb = await back.loss(batch.inputIds, { attentionMask: batch.attentionMask });
      expect(lb.toTypedArray()).toEqual(la.toTypedArray());
      batch.inputIds.dispose();
      batch.attentionMask?.dispose();
    });
  }

  it('quantized embeddings are refused with E_UNSUPPORTED before anything is written', async () => {
    using model = await loadModel(join(FIXTURES, 'gpt2-tiny'));
    await model.quantize({ bits: 8, embeddings: 8 });
    await expectCode(model.save(join(scratch, 'never')), 'E_UNSUPPORTED');
    expect(() => readFileSync(join(scratch, 'never', 'config.json'))).toThrow();
  });
});
