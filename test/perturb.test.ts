// perturb.test.ts — the fused perturbation kernels through the addon.
//
// The guarantee under test (native/cpu/perturb.h): after any sequence of perturbTo calls,
// restoreAndUpdate with step 0 and decay 0 returns every element's original bits — for f32,
// f16 and bf16, including -0, subnormals, NaN payloads, infinities and |w| much smaller than
// the perturbation. Values are checked against references computed here with Math.fround
// (each f32 operation of the kernel is one fround of the exact double result, which is the
// correctly rounded f32 result for +, -, ×):
//   perturbTo(s):      p = fround(w + fround(s·z))
//   restoreAndUpdate:  w' = fround(fround(w·fround(1 - decay)) - fround(step·z))
// with z from native.fillZ of the same seed and stream.
import { describe, expect, it } from 'vitest';
import { native } from '../src/native.js';

const cpu = { type: 'cpu', index: 0 };
const f = Math.fround;

function adversarial(n: number, seed: number): Float32Array {
  const specials = [0, -0, 1e-45, -1e-45, 1.1754943508222875e-38, 3e-39, 1e-30, -1e-20, 1e-9,
    f(1 - 2 ** -24), f(2 - 2 ** -23), -f(4 - 2 ** -22), 1, -1, 3e38, -3.4e38, Infinity, -Infinity];
  const out = new Float32Array(n);
  out.set(specials.slice(0, n));
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
  for (let i = specials.length; i < n; i++) {
    const kind = i % 4;
    out[i] = kind === 1 ? rnd() * 1e-4 : kind === 2 ? f(2 ** ((i % 20) - 10) * (1 - 2 ** -24)) : rnd() * 4;
  }
  // A NaN with a payload (bits 0x7fc00001), set through the bytes.
  if (n > 20) new Uint32Array(out.buffer)[20] = 0x7fc00001;
  return out;
}

function tensorF32(values: Float32Array) {
  return native.tensorFromData(new Uint8Array(values.buffer.slice(0)), 'f32', [values.length], cpu);
}
const bytes = (t: unknown) => Buffer.from(native.tensorRead(t) as ArrayBuffer);
const readF32 = (t: unknown) => new Float32Array(native.tensorRead(t) as ArrayBuffer);
const bitsOf = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0];
// Elements whose bits differ (any NaN matches any NaN: JS does not preserve NaN payloads).
function mismatchCount(got: Float32Array, want: Float32Array): number {
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) n++;
  return n;
}

describe('perturbTo / restoreAndUpdate', () => {
  for (const dist of ['normal', 'rademacher'] as const) {
    it(`restores f32 bits exactly after a sequence of perturbations (${dist})`, async () => {
      const n = 300_000;
      const w = adversarial(n, 1);
      const t = tensorF32(w);
      const original = bytes(t);
      const stream = native.streamId('layer.weight');
      const targets = [{ tensor: t, stream }];
      const journal = native.journalCreate();
      const seed = 123n;
      const z: Float32Array = native.fillZ(seed, stream, dist, 0n, n);
      for (const s of [1e-3, -1e-3, 0.5, -2]) {
        await native.perturbTo(targets, journal, seed, s, dist);
        const p = readF32(t);
        const want = new Float32Array(n);
        for (let i = 0; i < n; i++) want[i] = f(w[i]! + f(f(s) * z[i]!));
        expect(mismatchCount(p, want)).toBe(0);
      }
      const entries = native.journalEntryCount(journal);
      expect(entries).toBeGreaterThan(0); // the adversarial values need the journal
      await native.restoreAndUpdate(targets, journal, {});
      expect(bytes(t).equals(original)).toBe(true);
      expect(native.journalEntryCount(journal)).toBe(0);
    });
  }

  it('journals a small fraction of realistic weights (N(0, 0.02²), eps 1e-3)', async () => {
    const n = 1_000_000;
    const z: Float32Array = native.fillZ(77n, 1n, 'normal', 0n, n);
    const w = z.map((x) => x * 0.02);
    const t = tensorF32(w);
    const journal = native.journalCreate();
    await native.perturbTo([{ tensor: t, stream: 2n }], journal, 3n, 1e-3, 'normal');
    const entries = native.journalEntryCount(journal);
    console.log(`journal: ${entries} of ${n} elements (${((100 * entries) / n).toFixed(2)} %)`);
    // Measured 7.3 %: mostly elements with |w| near or below eps·|z|, plus binade crossings.
    expect(entries).toBeGreaterThan(0);
    expect(entries).toBeLessThan(0.15 * n);
    await native.restoreAndUpdate([{ tensor: t, stream: 2n }], journal, {});
    expect(bytes(t).equals(Buffer.from(w.buffer))).toBe(true);
  });

  for (const dtype of ['f16', 'bf16'] as const) {
    it(`restores ${dtype} bits exactly`, async () => {
      const n = 70_000;
      const raw = new Uint16Array(n);
      for (let i = 0; i < n; i++) raw[i] = (i * 40503) & 0xffff; // every kind of half: ±0, subnormal, NaN, inf
      const t = native.tensorFromData(new Uint8Array(raw.buffer), dtype, [n], cpu);
      const original = bytes(t);
      const targets = [{ tensor: t, stream: 17n }];
      const journal = native.journalCreate();
      await native.perturbTo(targets, journal, 5n, 0.01, 'normal');
      await native.perturbTo(targets, journal, 5n, -0.01, 'normal');
      expect(bytes(t).equals(original)).toBe(false);
      await native.restoreAndUpdate(targets, journal, {});
      expect(bytes(t).equals(original)).toBe(true);
    });
  }

  it('applies w = fl(fl(w(1-decay)) - fl(step z)) in the restoring pass, and applyUpdate replays it', async () => {
    const n = 100_000;
    const w = adversarial(n, 2);
    const t = tensorF32(w);
    const stream = 4242n;
    const targets = [{ tensor: t, stream }];
    const journal = native.journalCreate();
    const seed = 9n;
    await native.perturbTo(targets, journal, seed, 1e-3, 'normal');
    await native.perturbTo(targets, journal, seed, -1e-3, 'normal');
    const step = 0.0123, decay = 1e-3;
    await native.restoreAndUpdate(targets, journal, { stepScale: step, decay });
    const z: Float32Array = native.fillZ(seed, stream, 'normal', 0n, n);
    const keep = f(1 - f(decay));
    const want = new Float32Array(n);
    for (let i = 0; i < n; i++) want[i] = f(f(w[i]! * keep) - f(f(step) * z[i]!));
    expect(mismatchCount(readF32(t), want)).toBe(0);
    // Replay from the base weights gives the same bits.
    const replay = tensorF32(w);
    await native.applyUpdate([{ tensor: replay, stream }], seed, 'normal', { stepScale: step, decay });
    expect(bytes(replay).equals(bytes(t))).toBe(true);
  });

  it('never writes masked elements (bitmask from a magnitude rule)', async () => {
    const n = 10_000;
    const w = new Float32Array(n);
    for (let i = 0; i < n; i++) w[i] = ((i * 7919) % 2001) / 1000 - 1; // in [-1, 1]
    const t = tensorF32(w);
    const mask = native.maskFromMagnitude(t, { threshold: 0.25 });
    const bits = new Uint8Array(native.tensorRead(mask) as ArrayBuffer);
    expect(bits.length).toBe(Math.ceil(n / 8));
    let wrongBits = 0;
    for (let i = 0; i < n; i++) if ((((bits[i >> 3]! >> (i & 7)) & 1) === 1) !== Math.abs(w[i]!) <= 0.25) wrongBits++;
    expect(wrongBits).toBe(0);
    const targets = [{ tensor: t, stream: 1n, mask }];
    const journal = native.journalCreate();
    await native.perturbTo(targets, journal, 3n, 0.1, 'rademacher');
    await native.restoreAndUpdate(targets, journal, { stepScale: 0.01 });
    const got = readF32(t);
    let changedTrainable = 0, changedMasked = 0;
    for (let i = 0; i < n; i++) {
      const trainable = Math.abs(w[i]!) <= 0.25;
      if (!trainable && bitsOf(got[i]!) !== bitsOf(w[i]!)) changedMasked++;
      else if (trainable && got[i] !== w[i]) changedTrainable++;
    }
    expect(changedMasked).toBe(0);
    expect(changedTrainable).toBeGreaterThan(0);
    // The fraction rule keeps exactly round(fraction · n) elements.
    const top = new Uint8Array(native.tensorRead(native.maskFromMagnitude(t, { fraction: 0.1, keep: 'largest' })));
    let count = 0;
    for (const b of top) for (let k = 0; k < 8; k++) count += (b >> k) & 1;
    expect(count).toBe(1000);
  });

  it('rejects misuse with ZerothError codes', async () => {
    const t = tensorF32(new Float32Array([1, 2, 3]));
    const targets = [{ tensor: t, stream: 1n }];
    const journal = native.journalCreate();
    expect(() => native.perturbTo(targets, journal, 1n, 0.1, 'cauchy')).toThrow(/'normal' or 'rademacher'/);
    const pending = native.perturbTo(targets, journal, 1n, 0.1, 'normal');
    expect(() => native.perturbTo(targets, journal, 1n, 0.2, 'normal')).toThrow(/in use/);
    await pending;
    await expect(native.perturbTo(targets, journal, 2n, 0.1, 'normal')).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
    await native.restoreAndUpdate(targets, journal, {});
    const i32 = native.tensorZeros('i32', [2], cpu);
    await expect(native.perturb([{ tensor: i32, stream: 1n }], 1n, 0.1, 'normal')).rejects.toMatchObject({
      code: 'E_DTYPE',
    });
  });
});
