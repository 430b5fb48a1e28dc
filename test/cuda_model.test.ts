// cuda_model.test.ts — the device path of the transformer forward (native/model/
// transformer_cuda.cpp): loadModel(dir, {device: 'cuda'}) against the same checkpoint on the CPU.
//
// Runs everywhere: without a GPU (or in a build without the CUDA backend) loadModel with a cuda
// device gives one E_DEVICE naming what is missing, before reading any weight. The GPU checks
// skip with the reason printed; on a GPU, for each reference fixture (../shared/fixtures:
// gpt2-tiny, opt-tiny, llama-tiny — GQA, untied head, OPT's position offset):
//  - logits within 1e-4·max(1, |cpu|) where the mask is 1, per-row losses within 1e-5 of the CPU
//    (and of the fixture's reference), clean and perturbed (normal and Rademacher, every weight
//    trainable), a left-padded batch included (positions from the mask);
//  - one ZOSGD step (Rademacher z, so |z| = 1): lossPlus / lossMinus within 1e-5, projectedGrad
//    within 1e-5/eps (what two losses 1e-5 apart allow), and every updated weight within
//    lr·|Δg| + 2^-22·(|w| + lr·|g|) of the CPU's (the update kernels are bit-exact twins; only g
//    differs);
//  - hessianTrace (same probes, ε = 1e-2) within 4·1e-5/ε² per probe of the CPU's (second
//    differences of losses 1e-5 apart);
//  - an int4-quantized model (quantized after loading on each device) within 1e-5, also with
//    its scales perturbed (QZO), and LoRA adapters read through their perturbation.
// test/native/test_cuda_model.cpp checks the same twin from C++ (run by native.test.ts).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as zeroth from '../src/index.js';
import { fixtureBatch, FIXTURES } from './helpers.js';

const build = zeroth.buildInfo();
const gpus = zeroth.devices().filter((d) => d.type === 'cuda');
const hasGpu = build.cuda && gpus.length > 0;
const haveFixtures = existsSync(FIXTURES);
const skipReason = !build.cuda
  ? 'this build of zeroth has no CUDA backend (built without nvcc)'
  : 'no usable CUDA device or driver on this machine';
if (!hasGpu) console.log(`SKIP cuda model tests (CPU vs GPU forward, loss, ZO step, trace): ${skipReason}`);
else console.log(`cuda model tests on ${gpus.map((g) => `cuda:${g.index} ${g.name}`).join(', ')}`);

const NAMES = ['gpt2-tiny', 'opt-tiny', 'llama-tiny'] as const;

async function expectCode(p: Promise<unknown>, code: string, ...texts: string[]): Promise<void> {
  const e = await p.then(() => null, (err: unknown) => err);
  expect(e).toBeInstanceOf(zeroth.ZerothError);
  expect((e as zeroth.ZerothError).code).toBe(code);
  for (const t of texts) expect((e as zeroth.ZerothError).message).toContain(t);
}

describe('loadModel device errors', () => {
  it.skipIf(!haveFixtures)('a cuda device that is not there gives E_DEVICE naming what is missing', async () => {
    const dir = join(FIXTURES, 'gpt2-tiny');
    await expectCode(zeroth.loadModel(dir, { device: 'cuda:abc' as 'cuda' }), 'E_DEVICE', 'unknown device');
    if (!hasGpu) {
      const why = build.cuda ? 'no usable CUDA device or driver' : 'no CUDA backend';
      await expectCode(zeroth.loadModel(dir, { device: 'cuda' }), 'E_DEVICE', "device 'cuda'", why);
      await expectCode(zeroth.loadModel(dir, { device: 'cuda:1' }), 'E_DEVICE', "device 'cuda:1'", why);
      await expectCode(zeroth.modelFromWeights({}, {}, { device: 'cuda' }), 'E_DEVICE', why);
    } else {
      await expectCode(zeroth.loadModel(dir, { device: `cuda:${gpus.length}` }), 'E_DEVICE', 'does not exist');
    }
  });
});

describe.skipIf(!hasGpu || !haveFixtures)('CPU vs CUDA on the reference fixtures', () => {
  type Pair = { cpu: zeroth.Model; gpu: zeroth.Model; batch: { inputIds: zeroth.Tensor; attentionMask: zeroth.Tensor } };
  const pairs = new Map<string, Pair>();
  const load = async (name: string): Promise<Pair> => {
    const dir = join(FIXTURES, name);
    return { cpu: await zeroth.loadModel(dir), gpu: await zeroth.loadModel(dir, { device: 'cuda' }), batch: await fixtureBatch(dir) };
  };
  beforeAll(async () => {
    for (const n of NAMES) pairs.set(n, await load(n));
  });
  afterAll(() => {
    for (const p of pairs.values()) {
      p.cpu.dispose();
      p.gpu.dispose();
      p.batch.inputIds.dispose();
      p.batch.attentionMask.dispose();
    }
  });

  const losses = async (m: zeroth.Model, b: Pair['batch'], perturbation?: zeroth.Perturbation): Promise<Float64Array> => {
    using l = await m.loss(b.inputIds, { attentionMask: b.attentionMask, perturbation });
    expect(l.device).toBe('cpu');
    return l.toTypedArray() as Float64Array;
  };
  const expectClose = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) => {
    expect(a.length).toBe(b.length);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    expect(worst, `${what}: max |cpu - cuda| = ${worst}`).toBeLessThanOrEqual(tol);
  };

  for (const name of NAMES) {
    it(`${name}: the weights live on the GPU; logits and losses agree with the CPU`, async () => {
      const { cpu, gpu, batch } = pairs.get(name)!;
      expect(gpu.device).toBe('cuda:0');
      expect(cpu.device).toBe('cpu');
      for (const t of Object.values(gpu.parameters())) {
        expect(t.device).toBe('cuda:0');
        t.dispose();
      }
      using lc = await cpu.forward(batch.inputIds, { attentionMask: batch.attentionMask });
      using lg = await gpu.forward(batch.inputIds, { attentionMask: batch.attentionMask });
      expect(lg.device).toBe('cpu');
      expect(lg.shape).toEqual(lc.shape);
      const [B, T, V] = lc.shape as [number, number, number];
      const a = lc.toTypedArray(), g = lg.toTypedArray();
      const mask = batch.attentionMask.toTypedArray();
      let worst = 0;
      for (let r = 0; r < B * T; r++) {
        if (!mask[r]) continue;
        for (let j = r * V; j < (r + 1) * V; j++) worst = Math.max(worst, Math.abs(a[j]! - g[j]!) / Math.max(1, Math.abs(a[j]!)));
      }
      expect(worst, `logits: max relative difference ${worst}`).toBeLessThanOrEqual(1e-4);
      const ref = await zeroth.readSafetensors(join(FIXTURES, name, 'reference.safetensors'));
      using refLoss = new zeroth.Tensor(await ref.load('loss', { dtype: 'f64' }));
      ref.close();
      const lcpu = await losses(cpu, batch), lgpu = await losses(gpu, batch);
      expectClose(lgpu, lcpu, 1e-5, `${name} loss`);
      expectClose(lgpu, refLoss.toTypedArray(), 1e-5, `${name} loss vs reference`);
    });

    it(`${name}: perturbed and left-padded losses agree with the CPU`, async () => {
      const { cpu, gpu, batch } = pairs.get(name)!;
      for (const dist of ['normal', 'rademacher'] as const) {
        const p = { seed: 11n, scale: 1e-3, dist };
        const lcpu = await losses(cpu, batch, p), lgpu = await losses(gpu, batch, p);
        expectClose(lgpu, lcpu, 1e-5, `${name} perturbed (${dist})`);
        const clean = await losses(gpu, batch);
        expect(lgpu.some((v, i) => v !== clean[i]), 'a perturbation moves the GPU loss').toBe(true);
      }
      // Left padding: each row's real tokens moved to its end (positions come from the mask).
      const ids = batch.inputIds.toTypedArray() as Int32Array, mask = batch.attentionMask.toTypedArray() as Int32Array;
      const [B, T] = batch.inputIds.shape as [number, number];
      const lid = new Int32Array(B * T), lmask = new Int32Array(B * T);
      for (let b = 0; b < B; b++) {
        const real = [...Array(T).keys()].filter((t) => mask[b * T + t]).map((t) => ids[b * T + t]!);
        real.forEach((v, i) => {
          lid[b * T + T - real.length + i] = v;
          lmask[b * T + T - real.length + i] = 1;
        });
      }
      using li = zeroth.tensor(lid, { shape: [B, T], dtype: 'i32' });
      using lm = zeroth.tensor(lmask, { shape: [B, T], dtype: 'i32' });
      const left = { inputIds: li, attentionMask: lm };
      expectClose(await losses(gpu, left), await losses(cpu, left), 1e-5, `${name} left-padded`);
    });
  }

  it('one ZOSGD step gives the same losses, projected gradient and updated weights on both devices', async () => {
    for (const name of NAMES) {
      // Fresh models: the step writes the weights.
      const { cpu, gpu, batch } = await load(name);
      try {
        const opts = { lr: 1e-3, eps: 1e-3, seed: 5, distribution: 'rademacher' as const };
        const oc = new zeroth.optim.ZOSGD(cpu, opts), og = new zeroth.optim.ZOSGD(gpu, opts);
        const rc = await oc.step(batch), rg = await og.step(batch);
        expect(rg.accepted).toBe(true);
        expect(Math.abs(rg.lossPlus - rc.lossPlus)).toBeLessThanOrEqual(1e-5);
        expect(Math.abs(rg.lossMinus - rc.lossMinus)).toBeLessThanOrEqual(1e-5);
        const dg = Math.abs(rg.projectedGrad - rc.projectedGrad);
        expect(dg, `${name}: projected gradients ${rc.projectedGrad} vs ${rg.projectedGrad}`).toBeLessThanOrEqual(1e-5 / opts.eps);
        const stepSize = Math.abs(opts.lr * rc.projectedGrad);
        const pc = cpu.parameters(), pg = gpu.parameters();
        try {
          for (const [n, t] of Object.entries(pc)) {
            using host = pg[n]!.to('cpu');
            const a = t.toTypedArray(), b = host.toTypedArray();
            let bad = 0;
            for (let i = 0; i < a.length; i++) {
              // lr·|Δg| from the two gradients, plus the roundings of lr·g and of w − lr·g·z.
              if (Math.abs(a[i]! - b[i]!) > opts.lr * dg * (1 + 1e-6) + 2 ** -22 * (Math.abs(a[i]!) + stepSize)) bad++;
            }
            expect(bad, `${name} ${n}: ${bad} weights differ beyond lr·|Δg|`).toBe(0);
          }
        } finally {
          for (const t of [...Object.values(pc), ...Object.values(pg)]) t.dispose();
        }
        oc.dispose();
        og.dispose();
      } finally {
        cpu.dispose();
        gpu.dispose();
        batch.inputIds.dispose();
        batch.attentionMask.dispose();
      }
    }
  });

  it('hessianTrace agrees on both devices', async () => {
    for (const name of NAMES) {
      const { cpu, gpu, batch } = pairs.get(name)!;
      // A fixed eps of 1e-2 (beyond the default step length) keeps the tolerance, second
      // differences of losses 1e-5 apart, small next to the trace: 4·1e-5/ε² = 0.4 per probe.
      const opts = { batch, probes: 6, seed: 9, eps: 1e-2, distribution: 'rademacher' as const };
      const tc = await zeroth.hessianTrace(cpu, opts), tg = await zeroth.hessianTrace(gpu, opts);
      expect(tg.eps).toBe(tc.eps);
      expect(tg.probes).toBe(tc.probes);
      const tol = (4 * 1e-5) / tc.eps ** 2;
      expectClose(tg.samples, tc.samples, tol, `${name} trace samples (eps ${tc.eps})`);
      expect(Math.abs(tg.trace - tc.trace)).toBeLessThanOrEqual(tol);
    }
  });

  it('an int4-quantized model agrees, clean and with its scales perturbed (QZO)', async () => {
    for (const name of NAMES) {
      const { cpu, gpu, batch } = await load(name);
      try {
        await cpu.quantize({ bits: 4, groupSize: 32 });
        await gpu.quantize({ bits: 4, groupSize: 32 });
        expect(gpu.quantizedNames()).toEqual(cpu.quantizedNames());
        const scales = gpu.trainable({ mode: 'scales' });
        for (const t of Object.values(scales)) {
          expect(t.device).toBe('cuda:0');
          t.dispose();
        }
        const names = cpu.trainable({ mode: 'scales' });
        for (const t of Object.values(names)) t.dispose();
        expectClose(await losses(gpu, batch), await losses(cpu, batch), 1e-5, `${name} int4`);
        const p = { seed: 3n, scale: 1e-3, trainable: gpu.trainableNames() };
        expectClose(await losses(gpu, batch, p), await losses(cpu, batch, p), 1e-5, `${name} int4, scales perturbed`);
      } finally {
        cpu.dispose();
        gpu.dispose();
        batch.inputIds.dispose();
        batch.attentionMask.dispose();
      }
    }
  });

  it('LoRA adapters are read through their perturbation on the GPU too', async () => {
    const { cpu, gpu, batch } = await load('llama-tiny');
    try {
      for (const m of [cpu, gpu]) for (const t of Object.values(m.trainable({ mode: 'lora', rank: 4, seed: 2 }))) t.dispose();
      const p = { seed: 4n, scale: 1e-2, trainable: gpu.trainableNames() };
      expectClose(await losses(gpu, batch, p), await losses(cpu, batch, p), 1e-5, 'LoRA perturbed');
      expectClose(await losses(gpu, batch), await losses(cpu, batch), 1e-5, 'LoRA clean');
    } finally {
      cpu.dispose();
      gpu.dispose();
      batch.inputIds.dispose();
      batch.attentionMask.dispose();
    }
  });

  it('generate is CPU-only: E_UNSUPPORTED on a device model', async () => {
    const { gpu, batch } = pairs.get('gpt2-tiny')!;
    await expectCode(gpu.generate(batch.inputIds, { attentionMask: batch.attentionMask, maxNewTokens: 2 }), 'E_UNSUPPORTED', 'cuda:0');
  });
});
