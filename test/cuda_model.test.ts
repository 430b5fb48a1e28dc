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
//
// bf16 device models (loadModel(dir, {device: 'cuda', dtype: 'bf16'}): matrices held in bf16 and
// multiplied on tensor cores, activations rounded to bf16, f32 accumulation). Runs everywhere:
// dtype 'bf16' without a GPU is the same E_DEVICE, on a CPU model E_UNSUPPORTED. On a GPU:
//  - the matrices are bf16 device tensors, the rest f32;
//  - logits and losses against the f32 CPU model within the bf16 tolerances below (derived
//    there), clean and perturbed;
//  - a perturbed forward equals a forward on weights perturbed in place (native perturb, which
//    rounds a bf16 weight once to nearest even): the bf16 GEMM's B-tile load and the bf16
//    embedding read (the tied GPT-2 wte is both) form the very same perturbed values;
//  - one ZOSGD step (stochastic rounding) runs, scores losses close to the CPU's and changes
//    the bf16 weights.
// test/native/test_cuda_model.cpp checks the same twin from C++ (run by native.test.ts).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as zeroth from '../src/index.js';
import { native } from '../src/native.js';
import { type DevicePair, FIXTURES, loadDevicePair } from './helpers.js';

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

describe('dtype bf16 errors', () => {
  it.skipIf(!haveFixtures)("dtype 'bf16' is E_UNSUPPORTED on a CPU model and E_DEVICE without a GPU", async () => {
    const dir = join(FIXTURES, 'gpt2-tiny');
    await expectCode(zeroth.loadModel(dir, { dtype: 'bf16' }), 'E_UNSUPPORTED', "dtype 'bf16' needs a CUDA device");
    await expectCode(zeroth.loadModel(dir, { device: 'cpu', dtype: 'bf16' }), 'E_UNSUPPORTED', "dtype 'bf16'");
    await expectCode(zeroth.modelFromWeights({}, {}, { dtype: 'bf16' }), 'E_UNSUPPORTED', "dtype 'bf16' needs a CUDA device");
    await expectCode(zeroth.loadModel(dir, { dtype: 'f16' as 'bf16' }), 'E_UNSUPPORTED', '"f16" is not supported');
    if (!hasGpu) {
      const why = build.cuda ? 'no usable CUDA device or driver' : 'no CUDA backend';
      await expectCode(zeroth.loadModel(dir, { device: 'cuda', dtype: 'bf16' }), 'E_DEVICE', "device 'cuda'", why);
      await expectCode(zeroth.modelFromWeights({}, {}, { device: 'cuda', dtype: 'bf16' }), 'E_DEVICE', why);
    }
  });
});

describe.skipIf(!hasGpu || !haveFixtures)('CPU vs CUDA on the reference fixtures', () => {
  const pairs = new Map<string, DevicePair>();
  beforeAll(async () => {
    for (const n of NAMES) pairs.set(n, await loadDevicePair(join(FIXTURES, n)));
  });
  afterAll(() => {
    for (const p of pairs.values()) p[Symbol.dispose]();
  });

  const losses = async (m: zeroth.Model, b: DevicePair['batch'], perturbation?: zeroth.Perturbation): Promise<Float64Array> => {
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
      using pair = await loadDevicePair(join(FIXTURES, name));
      const { cpu, gpu, batch } = pair;
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
      using pair = await loadDevicePair(join(FIXTURES, name));
      const { cpu, gpu, batch } = pair;
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
    }
  });

  it('LoRA adapters are read through their perturbation on the GPU too', async () => {
    using pair = await loadDevicePair(join(FIXTURES, 'llama-tiny'));
    const { cpu, gpu, batch } = pair;
    for (const m of [cpu, gpu]) for (const t of Object.values(m.trainable({ mode: 'lora', rank: 4, seed: 2 }))) t.dispose();
    const p = { seed: 4n, scale: 1e-2, trainable: gpu.trainableNames() };
    expectClose(await losses(gpu, batch, p), await losses(cpu, batch, p), 1e-5, 'LoRA perturbed');
    expectClose(await losses(gpu, batch), await losses(cpu, batch), 1e-5, 'LoRA clean');
  });

  it('generate is CPU-only: E_UNSUPPORTED on a device model', async () => {
    const { gpu, batch } = pairs.get('gpt2-tiny')!;
    await expectCode(gpu.generate(batch.inputIds, { attentionMask: batch.attentionMask, maxNewTokens: 2 }), 'E_UNSUPPORTED', 'cuda:0');
  });
});

// bf16 tolerances against the f32 CPU model. bf16 keeps 8 significant bits: rounding the matrices
// and each product's input x moves every term x·w by at most 2^-8 relative (2^-9 each), so a
// product's error is a random-signed sum bounded by 2^-8·Σ|x·w|. Measured on the CPU (a model
// built from the fixtures with only the matrices rounded to bf16, the same rounding to_device
// does): logits move by at most 0.017 (|logits| <= 2.4) and losses by at most 3.6e-4 relative on
// the three fixtures. Rounding the activations as well adds errors of the same size, so about
// twice that is expected; the tolerances leave a further factor of ~2 (logits) and ~7 (losses of
// ~6). They catch wrong layouts, transposes or missing terms (O(1) changes) but not the fine
// semantics of the perturbation (a 1e-3 perturbation moves a loss by less than the tolerance):
// those are checked exactly, against weights perturbed in place.
const BF16_LOGIT_TOL = 6e-2; // × max(1, |cpu logit|)
const BF16_LOSS_TOL = 5e-3; // × |cpu loss|

describe.skipIf(!hasGpu || !haveFixtures)('bf16 device models against the f32 CPU model', () => {
  type Batch = { inputIds: zeroth.Tensor; attentionMask: zeroth.Tensor };
  const losses = async (m: zeroth.Model, b: Batch, perturbation?: zeroth.Perturbation): Promise<Float64Array> => {
    using l = await m.loss(b.inputIds, { attentionMask: b.attentionMask, perturbation });
    return l.toTypedArray() as Float64Array;
  };
  const expectRel = (got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string) => {
    expect(got.length).toBe(want.length);
    let worst = 0;
    for (let i = 0; i < got.length; i++) {
      expect(Number.isFinite(got[i]!), `${what}: loss ${i} is ${got[i]}`).toBe(true);
      worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / Math.abs(want[i]!));
    }
    expect(worst, `${what}: max relative |cpu − bf16| = ${worst}`).toBeLessThanOrEqual(tol);
  };
  const loadBf16 = (name: string) => loadDevicePair(join(FIXTURES, name), { device: 'cuda', dtype: 'bf16' });
  // The matrices to_device holds in bf16: 2-D weights but the position tables.
  const isMatrix = (name: string, t: zeroth.Tensor) => t.shape.length === 2 && !/(wpe|embed_positions)\.weight$/.test(name);

  for (const name of NAMES) {
    it(`${name}: bf16 matrices on the GPU; logits and losses within bf16 rounding of the f32 CPU model`, async () => {
      using m = await loadBf16(name);
      const { cpu, gpu, batch } = m;
      expect(gpu.device).toBe('cuda:0');
      let bf16 = 0;
      for (const [n, t] of Object.entries(gpu.parameters())) {
        expect(t.device).toBe('cuda:0');
        expect(t.dtype, n).toBe(isMatrix(n, t) ? 'bf16' : 'f32');
        if (t.dtype === 'bf16') bf16++;
        t.dispose();
      }
      expect(bf16).toBeGreaterThan(0);
      using lc = await cpu.forward(batch.inputIds, { attentionMask: batch.attentionMask });
      using lg = await gpu.forward(batch.inputIds, { attentionMask: batch.attentionMask });
      expect(lg.shape).toEqual(lc.shape);
      const V = lc.shape[2]!;
      const a = lc.toTypedArray(), g = lg.toTypedArray(), mask = batch.attentionMask.toTypedArray();
      let worst = 0;
      for (let r = 0; r < mask.length; r++) {
        if (!mask[r]) continue;
        for (let j = r * V; j < (r + 1) * V; j++) worst = Math.max(worst, Math.abs(a[j]! - g[j]!) / Math.max(1, Math.abs(a[j]!)));
      }
      expect(worst, `${name} bf16 logits: max relative difference ${worst}`).toBeLessThanOrEqual(BF16_LOGIT_TOL);
      expectRel(await losses(gpu, batch), await losses(cpu, batch), BF16_LOSS_TOL, `${name} bf16 loss`);
    });

    it(`${name}: a perturbed bf16 forward equals one on weights perturbed in place, and stays near the CPU`, async () => {
      using m = await loadBf16(name);
      const { cpu, gpu, batch } = m;
      const clean = await losses(gpu, batch);
      for (const dist of ['normal', 'rademacher'] as const) {
        const p = { seed: 11n, scale: 1e-3, dist };
        const lgpu = await losses(gpu, batch, p);
        expectRel(lgpu, await losses(cpu, batch, p), BF16_LOSS_TOL, `${name} bf16 perturbed (${dist})`);
        expect(lgpu.some((v, i) => v !== clean[i]), 'a perturbation moves the bf16 loss').toBe(true);
        // In place, on a fresh bf16 model: every weight (stream = stream_id(name), the
        // forward's default) written as w + fl(scale·z) rounded to its dtype — bf16 matrices
        // once to nearest even, the rest f32 — by the optimizers' native perturb.
        const placed = await zeroth.loadModel(join(FIXTURES, name), { device: 'cuda', dtype: 'bf16' });
        try {
          const params = placed.parameters();
          const targets = Object.entries(params).map(([n, t]) => ({ tensor: t.handle, stream: native.streamId(n) as bigint }));
          await native.perturb(targets, p.seed, p.scale, dist);
          for (const t of Object.values(params)) t.dispose();
          // The same kernels in the same order over the same values: equal. A value formed
          // differently (say an embedding row perturbed but not rounded to bf16, or z read at
          // another index) moves these losses by orders of magnitude more than 1e-9.
          const inPlace = await losses(placed, batch);
          for (let i = 0; i < lgpu.length; i++) {
            expect(Math.abs(inPlace[i]! - lgpu[i]!), `${name} (${dist}) row ${i}: in place ${inPlace[i]} vs on the fly ${lgpu[i]}`)
              .toBeLessThanOrEqual(1e-9);
          }
        } finally {
          placed.dispose();
        }
      }
    });
  }

  it('one ZOSGD step on a bf16 model scores losses near the CPU and changes the bf16 weights', async () => {
    for (const name of NAMES) {
      using m = await loadBf16(name);
      const { cpu, gpu, batch } = m;
      const before: Record<string, Uint16Array> = {};
      for (const [n, t] of Object.entries(gpu.parameters())) {
        if (t.dtype === 'bf16') {
          using h = t.to('cpu');
          before[n] = (h.toTypedArray() as Uint16Array).slice();
        }
        t.dispose();
      }
      const opts = { lr: 1e-2, eps: 1e-3, seed: 5, distribution: 'rademacher' as const };
      const oc = new zeroth.optim.ZOSGD(cpu, opts);
      const og = new zeroth.optim.ZOSGD(gpu, { ...opts, stochasticRounding: true });
      const rc = await oc.step(batch), rg = await og.step(batch);
      expect(rg.accepted).toBe(true);
      expectRel([rg.lossPlus, rg.lossMinus], [rc.lossPlus, rc.lossMinus], BF16_LOSS_TOL, `${name} ZOSGD losses`);
      expect(Number.isFinite(rg.projectedGrad)).toBe(true);
      let changed = 0;
      for (const [n, t] of Object.entries(gpu.parameters())) {
        expect(t.dtype, n).toBe(n in before ? 'bf16' : 'f32');
        if (t.dtype === 'bf16') {
          using h = t.to('cpu');
          const now = h.toTypedArray() as Uint16Array, old = before[n]!;
          for (let i = 0; i < now.length; i++) if (now[i] !== old[i]) changed++;
        }
        t.dispose();
      }
      expect(changed, `${name}: bf16 weights changed by the step`).toBeGreaterThan(0);
      oc.dispose();
      og.dispose();
    }
  });
});
