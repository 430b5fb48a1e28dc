// cuda.test.ts — the CUDA backend against the CPU backend, through the addon.
//
// Runs everywhere; the GPU checks skip with the reason printed when this build has no CUDA
// backend or this machine no usable GPU. With a GPU:
//  - host -> cuda -> host round trips are bit-exact for every dtype and for sizes that cross
//    the 8 MiB pinned staging chunks; cuda -> cuda and cuda -> cpu copies too;
//  - z on the GPU has the same bits as the CPU's fillZ for many (seed, stream), read through
//    applyUpdate on zeros with step -1 (w' = fround(0 - fround(-1·z)), computed here);
//  - perturb / perturbTo / restoreAndUpdate / applyUpdate give the CPU's bits for f32, f16 and
//    bf16 (stochastic rounding included), and restore exactly;
//  - the native program test_cuda_parity (C++, no Node) passes: it adds large and unaligned z
//    indices, the journal's growth path and the allocator's errors.
// Without a GPU, asking for a cuda tensor must give E_DEVICE while CPU tensors keep working.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { native } from '../src/native.js';

type Dev = { type: 'cpu' | 'cuda'; index: number };
const cpu: Dev = { type: 'cpu', index: 0 };
const gpu: Dev = { type: 'cuda', index: 0 };
const f = Math.fround;

const build = native.buildInfo() as { cuda: boolean };
const gpus = (native.devices() as { type: string; index: number; name: string; totalMemory: number }[]).filter(
  (d) => d.type === 'cuda',
);
const hasGpu = build.cuda && gpus.length > 0;
const skipReason = !build.cuda
  ? 'this build of zeroth has no CUDA backend (built without nvcc)'
  : 'no usable CUDA device or driver on this machine';
if (!hasGpu) console.log(`SKIP cuda parity tests: ${skipReason}`);
else console.log(`cuda parity tests on ${gpus.map((g) => `cuda:${g.index} ${g.name}`).join(', ')}`);

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

const bytesOf = (t: unknown) => Buffer.from(native.tensorRead(t) as ArrayBuffer);
const bitsOf = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0];

// Weights with the hard cases of perturb.h (-0, NaN payload, infinities, subnormals, values
// far below the perturbation), as f32 values; f16/bf16 tensors are made from them by the addon.
function weights(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  const specials = [0, -0, 1e-45, -1e-30, 1e-9, 1, -1, f(1 - 2 ** -24), 3e38, Infinity, -Infinity, NaN];
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = i % 53 < specials.length ? specials[i % 53]! : ((s / 2 ** 32) * 2 - 1) * 0.05;
  }
  return out;
}

function tensorOn(values: Float32Array, dtype: string, device: Dev): unknown {
  const f32 = native.tensorFromData(new Uint8Array(values.buffer.slice(0)), 'f32', [values.length], cpu);
  return native.tensorCopy(f32, dtype, device);
}

describe('CUDA backend', () => {
  it('keeps CPU tensors working in any build', () => {
    const t = native.tensorFromData(new Uint8Array(new Float32Array([1, -0, 2.5]).buffer), 'f32', [3], cpu);
    expect(Array.from(new Float32Array(native.tensorRead(t)))).toEqual([1, -0, 2.5]);
    expect(native.devices()[0].type).toBe('cpu');
  });

  it.skipIf(hasGpu)('answers E_DEVICE for a cuda tensor where no GPU is usable', () => {
    for (const index of [0, 1]) {
      expect(() => native.tensorZeros('f32', [4], { type: 'cuda', index })).toThrow(
        expect.objectContaining({ code: 'E_DEVICE', message: expect.stringMatching(/cuda:\d.*use 'cpu'/) }),
      );
    }
  });

  it.skipIf(!hasGpu)('lists each GPU with its name and memory', () => {
    for (const g of gpus) {
      expect(g.name.length).toBeGreaterThan(0);
      expect(g.totalMemory).toBeGreaterThan(1 << 30);
    }
    expect(() => native.tensorZeros('f32', [4], { type: 'cuda', index: gpus.length })).toThrow(
      expect.objectContaining({ code: 'E_DEVICE' }),
    );
  });

  it.skipIf(!hasGpu)('round-trips host -> cuda -> host bit-exactly', () => {
    const sizes: [string, number, number][] = [
      ['u8', 1, 1], ['u8', 4097, 1], ['f32', 3, 4], ['f64', 1000, 8], ['f16', 12345, 2], ['bf16', 777, 2],
      ['i32', 2 ** 21 + 3, 4], ['f32', (9 << 20) / 4 + 5, 4], // crosses the 8 MiB staging chunk
    ];
    let seed = 1;
    for (const [dtype, n, size] of sizes) {
      const data = randomBytes(n * size, seed++);
      const g = native.tensorFromData(data, dtype, [n], gpu);
      expect(bytesOf(g).equals(Buffer.from(data)), `${dtype} x ${n}`).toBe(true);
      const g2 = native.tensorCopy(g, dtype, gpu);
      expect(bytesOf(g2).equals(Buffer.from(data)), `cuda copy ${dtype} x ${n}`).toBe(true);
      const c = native.tensorCopy(g2, dtype, cpu);
      expect(bytesOf(c).equals(Buffer.from(data)), `to cpu ${dtype} x ${n}`).toBe(true);
    }
    const zeros = bytesOf(native.tensorZeros('f32', [3, 1000], gpu));
    expect(zeros.every((b) => b === 0)).toBe(true);
  });

  it.skipIf(!hasGpu)('draws the same z bits as the CPU fillZ', async () => {
    const n = (1 << 18) + 3;
    const streams = [0n, native.streamId('h.0.attn.c_attn.weight'), 0xffffffffffffffffn];
    for (const dist of ['normal', 'rademacher'] as const) {
      for (const seed of [0n, 42n, 0xfedcba9876543210n]) {
        for (const stream of streams) {
          const t = native.tensorZeros('f32', [n], gpu);
          await native.applyUpdate([{ tensor: t, stream }], seed, dist, { stepScale: -1, decay: 0 });
          const got = new Float32Array(native.tensorRead(t));
          const z: Float32Array = native.fillZ(seed, stream, dist, 0n, n);
          let bad = 0;
          for (let i = 0; i < n; i++) if (bitsOf(got[i]!) !== bitsOf(f(0 - f(-1 * z[i]!)))) bad++;
          expect(bad, `${dist} seed ${seed} stream ${stream}`).toBe(0);
        }
      }
    }
  });

  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    it.skipIf(!hasGpu)(`perturbs, restores and updates ${dtype} with the CPU's bits`, async () => {
      const n = 100_003;
      const w = weights(n, 7);
      for (const dist of ['normal', 'rademacher'] as const) {
        const g = tensorOn(w, dtype, gpu);
        const c = tensorOn(w, dtype, cpu);
        const original = bytesOf(c);
        const stream = native.streamId(`layer.${dtype}.weight`);
        const gt = [{ tensor: g, stream }];
        const ct = [{ tensor: c, stream }];
        const gj = native.journalCreate();
        const cj = native.journalCreate();
        const same = (what: string) => expect(bytesOf(g).equals(bytesOf(c)), `${what} ${dtype} ${dist}`).toBe(true);
        for (const s of [1e-3, -1e-3, 0.5]) {
          await native.perturbTo(gt, gj, 11n, s, dist);
          await native.perturbTo(ct, cj, 11n, s, dist);
          same(`perturbTo ${s}`);
        }
        await native.restoreAndUpdate(gt, gj, {});
        await native.restoreAndUpdate(ct, cj, {});
        expect(bytesOf(g).equals(original), `exact restore ${dtype} ${dist}`).toBe(true);
        const opts = { stepScale: 1e-3, decay: 1e-2, stochasticRounding: dtype !== 'f32', roundingSeed: 5n };
        await native.perturbTo(gt, gj, 12n, 1e-3, dist);
        await native.perturbTo(ct, cj, 12n, 1e-3, dist);
        await native.restoreAndUpdate(gt, gj, opts);
        await native.restoreAndUpdate(ct, cj, opts);
        same('restoreAndUpdate');
        await native.applyUpdate(gt, 13n, dist, opts);
        await native.applyUpdate(ct, 13n, dist, opts);
        same('applyUpdate');
        await native.perturb(gt, 14n, 0.01, dist);
        await native.perturb(ct, 14n, 0.01, dist);
        same('perturb');
      }
    });
  }

  // The C++ parity program sits next to the addon in the build folder.
  const addonDir = process.env.ZEROTH_ADDON_PATH
    ? dirname(process.env.ZEROTH_ADDON_PATH)
    : join(dirname(fileURLToPath(import.meta.url)), '..', 'build', 'Release');
  const parityProgram = join(addonDir, 'test_cuda_parity');
  it.skipIf(!existsSync(parityProgram))('passes the native parity program (test_cuda_parity)', () => {
    const r = spawnSync(parityProgram, { encoding: 'utf8', timeout: 120_000 });
    console.log(r.stdout.trim().split('\n').slice(-3).join('\n'));
    expect(r.status, r.stdout + r.stderr).toBe(0);
    if (hasGpu) expect(r.stdout).toMatch(/[1-9]\d* passed, 0 failed/);
    else expect(r.stdout).toMatch(/^SKIP /m);
  });
});
