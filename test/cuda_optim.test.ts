// cuda_optim.test.ts — the stateful ZO optimizers on a device model (cuda/zo_update.cu through
// src/optim): the same run on the CPU and on CUDA.
//
// Without a GPU (or in a build without the CUDA backend) the GPU checks skip with the reason
// printed; what runs everywhere: the state of an optimizer over CPU parameters stays on the CPU,
// and the --device refusals that remain are one clear error.
// On a GPU, on the gpt2-tiny fixture (../shared/fixtures or $ZEROTH_FIXTURES), 3 steps of each
// optimizer from the same weights, batch and seed on both devices:
//   ZOSGD with momentum (2 queries: the accumulate_z path), ZOAdam, ZOSignSGD, QZO (ZOSGD on
//   the scales of an int4 model, with its scale floor), LoRA (rank 4, ZOAdam);
// checks: the per-step losses within 1e-4 (forwards agree to ~1e-5, and the weights they see
// differ only by the updates below), and per parameter the update w_end - w_start within 5% of
// its L2 norm (+ 1e-6): the update rules are bit-exact twins (test_cuda_zo_update.cpp), so the
// only source of difference is the projected gradient, formed from losses ~1e-5 apart.
// Also: the optimizer state lives on the device; model.save() of a LoRA device model merges on
// host copies and writes the CPU model's weights (within the same 5% of the LoRA delta), and of
// a QZO-trained int4 device model writes a GPTQ checkpoint whose loss is the CPU one's (1e-3);
// hessianDiagUpdate (HiZOO's H) on device tensors gives the CPU's bits; 3 HiZOO steps on the
// biases agree on both devices like the optimizers above.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as zeroth from '../src/index.js';
import { native } from '../src/native.js';
import { fixtureBatch, FIXTURES, loadDevicePair } from './helpers.js';

const build = zeroth.buildInfo();
const gpus = zeroth.devices().filter((d) => d.type === 'cuda');
const hasGpu = build.cuda && gpus.length > 0;
const haveFixtures = existsSync(FIXTURES);
const skipReason = !build.cuda
  ? 'this build of zeroth has no CUDA backend (built without nvcc)'
  : 'no usable CUDA device or driver on this machine';
if (!hasGpu) console.log(`SKIP cuda optimizer tests (momentum, Adam, sign, QZO, LoRA, HiZOO's H on a GPU): ${skipReason}`);

const DIR = join(FIXTURES, 'gpt2-tiny');
const scratch = mkdtempSync(join(tmpdir(), 'zeroth-cuda-optim-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

type Batch = { inputIds: zeroth.Tensor; attentionMask: zeroth.Tensor };

function hostCopy(t: zeroth.Tensor): Float32Array {
  if (t.device === 'cpu') return t.toTypedArray() as Float32Array;
  using h = t.to('cpu');
  return h.toTypedArray() as Float32Array;
}

/** Snapshot of the trainable set (host copies), by name. */
function snapshot(params: Record<string, zeroth.Tensor>): Map<string, Float32Array> {
  return new Map(Object.entries(params).map(([n, t]) => [n, hostCopy(t)]));
}

function l2(a: Float32Array, b?: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - (b ? b[i]! : 0);
    s += d * d;
  }
  return Math.sqrt(s);
}

/** Per parameter, ‖Δgpu − Δcpu‖ ≤ 5%·‖Δcpu‖ + 1e-6, Δ = w_end − w_start. */
function expectSameUpdates(start: Map<string, Float32Array>, cpu: Map<string, Float32Array>, gpu: Map<string, Float32Array>, what: string): void {
  let moved = 0;
  for (const [n, w0] of start) {
    const a = cpu.get(n)!, b = gpu.get(n)!;
    const dc = a.map((x, i) => x - w0[i]!), dg = b.map((x, i) => x - w0[i]!);
    const norm = l2(dc);
    if (norm > 0) moved++;
    expect(l2(dg, dc), `${what} ${n}: update differs (‖Δcpu‖ = ${norm})`).toBeLessThanOrEqual(0.05 * norm + 1e-6);
  }
  expect(moved, `${what}: no parameter moved`).toBeGreaterThan(0);
}

interface Case {
  name: string;
  prepare: (m: zeroth.Model) => Promise<Record<string, zeroth.Tensor>>;
  make: (m: zeroth.Model) => zeroth.optim.ZOOptimizer;
}

const base = { lr: 1e-3, eps: 1e-2, seed: 5 };
const CASES: Case[] = [
  { name: 'ZOSGD momentum 0.9, 2 queries, decay', prepare: async (m) => m.trainable({ mode: 'full' }),
    make: (m) => new zeroth.optim.ZOSGD(m, { ...base, momentum: 0.9, queries: 2, weightDecay: 0.01 }) },
  { name: 'ZOAdam', prepare: async (m) => m.trainable({ mode: 'full' }),
    make: (m) => new zeroth.optim.ZOAdam(m, { ...base, lr: 1e-4 }) },
  { name: 'ZOSignSGD (rademacher)', prepare: async (m) => m.trainable({ mode: 'bias' }),
    make: (m) => new zeroth.optim.ZOSignSGD(m, { ...base, lr: 1e-4, distribution: 'rademacher' }) },
  { name: 'QZO scales of an int4 model (scale floor 0.5)', prepare: async (m) => {
    await m.quantize({ bits: 4, groupSize: 32 });
    return m.trainable({ mode: 'scales' });
  }, make: (m) => new zeroth.optim.ZOSGD(m, { ...base, lr: 1e-2, scaleFloor: 0.5 }) },
  { name: 'LoRA rank 4 with ZOAdam', prepare: async (m) => m.trainable({ mode: 'lora', rank: 4, alpha: 8, seed: 3 }),
    make: (m) => new zeroth.optim.ZOAdam(m, { ...base, lr: 1e-3 }) },
];

describe('optimizer state placement (every machine)', () => {
  it('an optimizer over CPU parameters keeps its state on the CPU', async () => {
    using w = zeroth.tensor([0.5, -1, 2, 0.25]);
    const opt = new zeroth.optim.ZOAdam({ w }, { lr: 1e-2, seed: 1 });
    await opt.step(() => {
      const a = w.toTypedArray() as Float32Array;
      return a.reduce((s, x) => s + x * x, 0);
    });
    expect(w.device).toBe('cpu');
    opt.dispose();
  });
});

describe.skipIf(!hasGpu || !haveFixtures)('CPU vs CUDA: 3 steps of each stateful optimizer', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      using pair = await loadDevicePair(DIR);
      const { cpu, gpu, batch } = pair;
      const pc = await c.prepare(cpu), pg = await c.prepare(gpu);
      expect(Object.keys(pg).sort()).toEqual(Object.keys(pc).sort());
      for (const t of Object.values(pg)) expect(t.device).toBe('cuda:0');
      const start = snapshot(pc);
      const oc = c.make(cpu), og = c.make(gpu);
      try {
        for (let s = 0; s < 3; s++) {
          const rc = await oc.step(batch), rg = await og.step(batch);
          expect(rg.accepted && rc.accepted, `${c.name} step ${s} accepted`).toBe(true);
          expect(Math.abs(rg.lossPlus - rc.lossPlus), `${c.name} step ${s} L+`).toBeLessThanOrEqual(1e-4);
          expect(Math.abs(rg.lossMinus - rc.lossMinus), `${c.name} step ${s} L-`).toBeLessThanOrEqual(1e-4);
        }
        expectSameUpdates(start, snapshot(pc), snapshot(pg), c.name);
      } finally {
        oc.dispose();
        og.dispose();
        for (const t of [...Object.values(pc), ...Object.values(pg)]) t.dispose();
      }
    });
  }

  it('save() of a QZO-trained int4 device model writes the GPTQ checkpoint the CPU model writes', async () => {
    const batch: Batch = await fixtureBatch(DIR);
    const losses: number[] = [];
    try {
      for (const device of ['cpu', 'cuda'] as const) {
        const m = await zeroth.loadModel(DIR, { device });
        try {
          await m.quantize({ bits: 4, groupSize: 32 });
          const p = m.trainable({ mode: 'scales' });
          for (const t of Object.values(p)) t.dispose();
          const opt = new zeroth.optim.ZOSGD(m, { ...base, lr: 1e-2 });
          for (let s = 0; s < 3; s++) await opt.step(batch);
          opt.dispose();
          await m.save(join(scratch, `qzo-${device}`));
        } finally {
          m.dispose();
        }
        // Both checkpoints load on the CPU; f16 scales and the ~1e-5 loss differences of the
        // two devices' probes leave the losses within 1e-3.
        using saved = await zeroth.loadModel(join(scratch, `qzo-${device}`));
        expect(saved.quantizedNames().length).toBeGreaterThan(0);
        using rows = await saved.loss(batch.inputIds, { attentionMask: batch.attentionMask });
        const v = rows.toTypedArray() as Float64Array;
        losses.push(v.reduce((a, x) => a + x, 0) / v.length);
      }
      expect(Math.abs(losses[1]! - losses[0]!)).toBeLessThanOrEqual(1e-3);
    } finally {
      batch.inputIds.dispose();
      batch.attentionMask.dispose();
    }
  });

  it('save() of a LoRA device model merges on host copies and matches the CPU model', async () => {
    using pair = await loadDevicePair(DIR);
    const { cpu, gpu, batch } = pair;
    const start = snapshot(cpu.parameters());
    for (const m of [cpu, gpu]) {
      const p = m.trainable({ mode: 'lora', rank: 4, alpha: 8, seed: 3 });
      for (const t of Object.values(p)) t.dispose();
      const opt = new zeroth.optim.ZOAdam(m, { ...base, lr: 1e-3 });
      for (let s = 0; s < 3; s++) await opt.step(batch);
      opt.dispose();
      await m.save(join(scratch, m === cpu ? 'cpu' : 'gpu'));
    }
    const read = async (dir: string): Promise<Map<string, Float32Array>> => {
      const f = await zeroth.readSafetensors(join(scratch, dir, 'model.safetensors'));
      try {
        const out = new Map<string, Float32Array>();
        for (const n of start.keys()) {
          using t = new zeroth.Tensor(await f.load(n, { dtype: 'f32' }));
          out.set(n, t.toTypedArray() as Float32Array);
        }
        return out;
      } finally {
        f.close();
      }
    };
    const [wc, wg] = [await read('cpu'), await read('gpu')];
    for (const n of start.keys()) expect(wg.get(n)!.length, n).toBe(wc.get(n)!.length);
    // Merged weights: W + (α/r)·B·A; the deltas agree within the updates' 5%.
    const changed = new Map([...start].filter(([n, w0]) => l2(wc.get(n)!, w0) > 0));
    expect(changed.size, 'LoRA merged into some base weights').toBeGreaterThan(0);
    expectSameUpdates(changed, wc, wg, 'merged LoRA');
  });

  it("hessianDiagUpdate (HiZOO's H) on device tensors gives the CPU's bits; HiZOO steps agree on both devices", async () => {
    const n = 10_001;
    const init = (f: (i: number) => number): Float32Array => Float32Array.from({ length: n }, (_, i) => f(i));
    const w0 = init((i) => Math.sin(i)), h0 = init((i) => 0.5 + (i % 7) * 0.3), p0 = init(() => 1);
    const run = async (device: 'cpu' | 'cuda'): Promise<[Float32Array, Float32Array]> => {
      using w = zeroth.tensor(w0, { device }), h = zeroth.tensor(h0, { device }), p = zeroth.tensor(p0, { device });
      const targets = [{ tensor: w.handle, stream: zeroth.optim.streamId('w'), precond: p.handle }];
      await native.hessianDiagUpdate(targets, [h.handle], 9n, 'normal', { coeff: 0.8, alpha: 0.3, hMin: 0.1, hMax: 5 });
      return [hostCopy(h), hostCopy(p)];
    };
    const [hCpu, pCpu] = await run('cpu');
    const [hGpu, pGpu] = await run('cuda');
    expect(Buffer.from(hGpu.buffer).equals(Buffer.from(hCpu.buffer)), 'H bits').toBe(true);
    expect(Buffer.from(pGpu.buffer).equals(Buffer.from(pCpu.buffer)), 'p bits').toBe(true);

    // HiZOO itself (preconditioned, journaled perturbations in cuda/perturb.cu): 3 steps on the
    // biases of the model on each device, through a loss closure, agree like the optimizers above.
    using pair = await loadDevicePair(DIR);
    const { cpu, gpu, batch } = pair;
    const pc = cpu.trainable({ mode: 'bias' }), pg = gpu.trainable({ mode: 'bias' });
    const start = snapshot(pc);
    const loss = (m: zeroth.Model) => async (): Promise<number> => {
      using rows = await m.loss(batch.inputIds, { attentionMask: batch.attentionMask });
      const v = rows.toTypedArray() as Float64Array;
      return v.reduce((a, x) => a + x, 0) / v.length;
    };
    const oc = new zeroth.optim.HiZOO(pc, { lr: 1e-3, eps: 1e-2, seed: 5 });
    const og = new zeroth.optim.HiZOO(pg, { lr: 1e-3, eps: 1e-2, seed: 5 });
    for (let s = 0; s < 3; s++) {
      const rc = await oc.step(loss(cpu)), rg = await og.step(loss(gpu));
      expect(Math.abs(rg.lossPlus - rc.lossPlus), `HiZOO step ${s} L+`).toBeLessThanOrEqual(1e-4);
      expect(Math.abs(rg.lossMinus - rc.lossMinus), `HiZOO step ${s} L-`).toBeLessThanOrEqual(1e-4);
    }
    expectSameUpdates(start, snapshot(pc), snapshot(pg), 'HiZOO');
    oc.dispose();
    og.dispose();
    for (const t of [...Object.values(pc), ...Object.values(pg)]) t.dispose();
  });
});
