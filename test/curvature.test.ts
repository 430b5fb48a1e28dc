// curvature.test.ts — Hessian trace, per-block traces and the Hessian diagonal from forward
// passes (src/curvature), against exact Hessians computed here in float64.
//
// References: quadratics ½·θᵀAθ + bᵀθ with a known A (diagonal, dense, ill-conditioned), and a
// 67-parameter tanh MLP whose Hessian test/curvature_mlp.ts forms from an analytic gradient.
// Because the probes are reproducible (z_k = fillZ(seed_k, streamId(name))), each returned
// sample is also compared with the exact zᵀHz of its own z: that isolates the finite-difference
// error from the sampling error.
import { describe, expect, it } from 'vitest';
import * as zeroth from '../src/index.js';
import { hessianTrace, hessianDiagonal, rankBlocksByTrace, defaultBlocks } from '../src/curvature/index.js';
import { native } from '../src/native.js';
import { SeedSequence, streamId } from '../src/optim/index.js';
import { hessianFacts, makeMlp, mlpHessian, mlpLoss, split, type Mlp } from './curvature_mlp.js';

const { ops } = zeroth;
type Dist = 'rademacher' | 'normal';

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

// ---- quadratics with a known Hessian ---------------------------------------------------------

/** A symmetric n×n matrix: 'diagonal', 'dense' (random, diagonally dominant-ish) or 'ill' (condition 1e4). */
function matrix(kind: 'diagonal' | 'dense' | 'ill', n: number, seed = 3): Float64Array {
  const r = lcg(seed);
  const A = new Float64Array(n * n);
  if (kind === 'diagonal') {
    for (let i = 0; i < n; i++) A[i * n + i] = 0.5 + 2 * Math.abs(r());
    return A;
  }
  // Q·diag(λ)·Qᵀ with Q from Gram–Schmidt of a random matrix.
  const Q = Float64Array.from({ length: n * n }, () => r());
  for (let j = 0; j < n; j++) {
    for (let k = 0; k < j; k++) {
      let d = 0;
      for (let i = 0; i < n; i++) d += Q[i * n + j]! * Q[i * n + k]!;
      for (let i = 0; i < n; i++) Q[i * n + j]! -= d * Q[i * n + k]!;
    }
    let norm = 0;
    for (let i = 0; i < n; i++) norm += Q[i * n + j]! ** 2;
    for (let i = 0; i < n; i++) Q[i * n + j]! /= Math.sqrt(norm);
  }
  const lambda = Float64Array.from({ length: n }, (_, i) => (kind === 'ill' ? 1e4 ** (i / (n - 1)) : 0.5 + 2 * Math.abs(r())));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += Q[i * n + k]! * lambda[k]! * Q[j * n + k]!;
      A[i * n + j] = s;
    }
  }
  return A;
}

function quadLoss(A: Float64Array, b: Float64Array, theta: ArrayLike<number>): number {
  const n = b.length;
  let s = 0;
  for (let i = 0; i < n; i++) {
    let row = 0;
    for (let j = 0; j < n; j++) row += A[i * n + j]! * theta[j]!;
    s += 0.5 * theta[i]! * row + b[i]! * theta[i]!;
  }
  return s;
}

/** The z of probe k for the named parameters, as the library draws it. */
function probeZ(seed: number, k: number, names: { name: string; numel: number }[], dist: Dist): Float64Array {
  const seq = new SeedSequence(seed);
  let s = 0n;
  for (let i = 0; i <= k; i++) s = seq.next();
  const parts = names.map(({ name, numel }) => Float64Array.from(native.fillZ(s, streamId(name), dist, 0, numel) as Float32Array));
  const out = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function quadForm(H: Float64Array, z: Float64Array): number {
  const n = z.length;
  let s = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) s += z[i]! * H[i * n + j]! * z[j]!;
  return s;
}

function variance(xs: readonly number[]): number {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1);
}

describe('hessianTrace on quadratics with a known Hessian', () => {
  const n = 12;
  const probes = 3000;
  for (const kind of ['diagonal', 'dense', 'ill'] as const) {
    for (const dist of ['rademacher', 'normal'] as const) {
      it(`${kind} H, ${dist} z: within 3 standard errors of tr(H); sample variance matches theory`, async () => {
        const A = matrix(kind, n);
        const b = Float64Array.from({ length: n }, (_, i) => Math.sin(i));
        const theta = Float64Array.from({ length: n }, (_, i) => Math.cos(3 * i));
        const before = theta.slice();
        const facts = hessianFacts(A, n);
        const r = await hessianTrace(() => quadLoss(A, b, theta), { params: { theta }, probes, distribution: dist, seed: 11 });
        expect(r.probes).toBe(probes);
        expect(r.forwards).toBe(1 + 2 * probes);
        expect(theta).toEqual(before);
        const theory = dist === 'rademacher' ? facts.varRademacher : facts.varNormal;
        const observed = variance(r.samples);
        if (theory === 0) {
          // Diagonal H with Rademacher z: zᵀHz = tr(H) for every z.
          expect(observed).toBeLessThan(1e-12 * facts.trace ** 2);
          expect(Math.abs(r.trace - facts.trace)).toBeLessThan(1e-6 * facts.trace);
        } else {
          expect(Math.abs(r.trace - facts.trace)).toBeLessThan(3 * Math.sqrt(theory / probes));
          // Sample variance of 3000 quadratic forms: its relative standard deviation is below
          // sqrt((kurtosis − 1)/P) ≲ 7% here; 25% is over 3 of those.
          expect(observed / theory).toBeGreaterThan(0.75);
          expect(observed / theory).toBeLessThan(1.25);
        }
      });
    }
  }

  it('f32 tensor parameters through the native journaled path give the same estimate as f64 host arrays', async () => {
    const A = matrix('dense', n, 5);
    const b = new Float64Array(n);
    const init = Float32Array.from({ length: n }, (_, i) => 0.5 + 0.25 * Math.sin(i));
    const w = zeroth.tensor(init.slice(), { shape: [n] });
    const h = Float64Array.from(init);
    const bytes = Buffer.from(w.toTypedArray().buffer).toString('hex');
    const rt = await hessianTrace(() => quadLoss(A, b, w.toTypedArray()), { params: { theta: w }, probes: 64, seed: 2 });
    const rh = await hessianTrace(() => quadLoss(A, b, h), { params: { theta: h }, probes: 64, seed: 2 });
    expect(Buffer.from(w.toTypedArray().buffer).toString('hex')).toBe(bytes);
    // Same z on both paths; the f32 path rounds θ ± εz to f32 (a relative 1e-4 of the ε step here).
    rt.samples.forEach((s, k) => expect(Math.abs(s - rh.samples[k]!)).toBeLessThan(1e-3 * Math.abs(rh.samples[k]!)));
    w.dispose();
  });
});

// ---- the MLP with an exact Hessian -----------------------------------------------------------

interface MlpCase {
  m: Mlp;
  H: Float64Array;
  n: number;
  layout: { name: string; numel: number }[];
}
function mlpCase(): MlpCase {
  const m = makeMlp();
  const H = mlpHessian(m, m.init);
  return { m, H, n: m.init.length, layout: m.layout.map(({ name, shape }) => ({ name, numel: shape.reduce((a, b) => a * b, 1) })) };
}

/** f32 zeroth tensors and a closure through zeroth.ops (mse reduces in float64). */
function f32Mlp(m: Mlp, init: Float64Array = m.init) {
  const views = split(m, init);
  const params: Record<string, zeroth.Tensor> = {};
  for (const { name, shape } of m.layout) params[name] = zeroth.tensor(Float32Array.from(views[name]!), { shape });
  const x = zeroth.tensor(Float32Array.from(m.x), { shape: [m.batch, m.din] });
  const t = zeroth.tensor(Float32Array.from(m.t), { shape: [m.batch, m.dout] });
  const closure = () => {
    using a = ops.matmul(x, params['l1.weight']!);
    using b = ops.add(a, params['l1.bias']!);
    using s = ops.tanh(b);
    using c = ops.matmul(s, params['l2.weight']!);
    using y = ops.add(c, params['l2.bias']!);
    return ops.mse(y, t);
  };
  const snapshot = () => Object.values(params).map((p) => Buffer.from(p.toTypedArray().buffer).toString('hex')).join('|');
  const dispose = () => [...Object.values(params), x, t].forEach((p) => p.dispose());
  return { params, closure, snapshot, dispose };
}

/** Float64Array host parameters and a float64 JS closure. */
function f64Mlp(m: Mlp) {
  const flat = Float64Array.from(m.init);
  const params = split(m, flat) as Record<string, Float64Array>;
  return { params, flat, closure: () => mlpLoss(m, params) };
}

describe('hessianTrace on a tanh MLP with an exact Hessian', () => {
  const c = mlpCase();
  const facts = hessianFacts(c.H, c.n);

  for (const precision of ['f32', 'f64'] as const) {
    it(`${precision} parameters: each probe within 1% of its exact zᵀHz; 256 probes within 15% of tr(H)`, async () => {
      const probes = 256;
      const target = precision === 'f32' ? f32Mlp(c.m) : f64Mlp(c.m);
      const before = precision === 'f32' ? (target as ReturnType<typeof f32Mlp>).snapshot() : (target as ReturnType<typeof f64Mlp>).flat.slice();
      const r = await hessianTrace(target.closure, { params: target.params, probes, seed: 5 });
      expect(r.eps).toBeCloseTo(0.05 / Math.sqrt(c.n), 12);
      expect(r.forwards).toBe(1 + 2 * probes);
      expect(r.forwards / r.probes).toBeLessThanOrEqual(2 + 1 / probes);
      for (let k = 0; k < probes; k++) {
        const exact = quadForm(c.H, probeZ(5, k, c.layout, 'rademacher'));
        expect(Math.abs(r.samples[k]! - exact)).toBeLessThan(0.01 * Math.max(1, Math.abs(exact)));
      }
      // Sampling error: theory says SE = sqrt(2·Σ_{i≠j}H_ij² / 256) ≈ 0.31 (4.6% of tr(H) ≈ 6.66).
      expect(Math.abs(r.trace - facts.trace) / facts.trace).toBeLessThan(0.15);
      expect(Math.abs(r.trace - facts.trace)).toBeLessThan(3 * Math.sqrt(facts.varRademacher / probes));
      expect(r.stdErr / Math.sqrt(facts.varRademacher / probes)).toBeGreaterThan(0.8);
      expect(r.stdErr / Math.sqrt(facts.varRademacher / probes)).toBeLessThan(1.2);
      if (precision === 'f32') {
        const t = target as ReturnType<typeof f32Mlp>;
        expect(t.snapshot()).toBe(before);
        t.dispose();
      } else {
        expect((target as ReturnType<typeof f64Mlp>).flat).toEqual(before);
      }
    });
  }

  it('ε by step length avoids cancellation: a naive tiny ε gives 0 or noise, ours the curvature', async () => {
    // Weights of magnitude in [0.25, 1): half an f32 ulp is ≥ 1.5e-8, so ε = 1e-8 leaves every
    // weight unchanged: L+ = L− = L0 and the estimate is exactly 0.
    const init = c.m.init.map((v, i) => Math.fround((0.25 + 0.7 * Math.abs(Math.sin(i + 1))) * (v < 0 ? -1 : 1)));
    const H = mlpHessian(c.m, init);
    const exact = hessianFacts(H, c.n).trace;
    const probes = 16;
    const zs = Array.from({ length: probes }, (_, k) => quadForm(H, probeZ(9, k, c.layout, 'rademacher')));
    const run = async (eps?: number) => {
      const t = f32Mlp(c.m, init);
      const r = await hessianTrace(t.closure, { params: t.params, probes, seed: 9, eps });
      t.dispose();
      return r;
    };
    const tiny = await run(1e-8);
    expect(tiny.trace).toBe(0);
    expect(tiny.samples.every((s) => s === 0)).toBe(true);
    // ε = 1e-6: the weights move, but the f32 rounding of θ ± εz (≈ 6e-8 per element) leaks the
    // first-order term g·(δ+ + δ−)/ε² into the estimate: off by more than 100%.
    const small = await run(1e-6);
    expect(Math.abs(small.trace - exact) / Math.abs(exact)).toBeGreaterThan(1);
    const ours = await run();
    ours.samples.forEach((s, k) => expect(Math.abs(s - zs[k]!)).toBeLessThan(0.01 * Math.max(1, Math.abs(zs[k]!))));
  });

  it('Richardson extrapolation removes the ε² truncation error at a large step', async () => {
    const { params, closure } = f64Mlp(c.m);
    const probes = 16;
    const plain = await hessianTrace(closure, { params, probes, seed: 3, stepLength: 1 });
    const rich = await hessianTrace(closure, { params, probes, seed: 3, stepLength: 1, richardson: true });
    expect(rich.forwards).toBe(1 + 4 * probes);
    let errPlain = 0, errRich = 0;
    for (let k = 0; k < probes; k++) {
      const exact = quadForm(c.H, probeZ(3, k, c.layout, 'rademacher'));
      errPlain += Math.abs(plain.samples[k]! - exact);
      errRich += Math.abs(rich.samples[k]! - exact);
    }
    expect(errPlain / probes).toBeGreaterThan(0.05); // ‖εz‖ = 1 is far outside the quadratic regime
    expect(errRich).toBeLessThan(errPlain / 5);
  });

  it('stops at the requested relative standard error, else at the probe budget', async () => {
    const { params, closure } = f64Mlp(c.m);
    const progress: number[] = [];
    const r = await hessianTrace(closure, { params, relStdErr: 0.1, seed: 1, onProgress: (p) => progress.push(p.probes) });
    expect(r.stdErr).toBeLessThanOrEqual(0.1 * Math.abs(r.trace));
    expect(r.probes).toBeGreaterThanOrEqual(8);
    // SE ≈ 4.9/√P ≤ 0.67 needs about 54 probes; one probe fewer must not have sufficed.
    expect(r.probes).toBeLessThan(200);
    const fewer = await hessianTrace(closure, { params, probes: r.probes - 1, seed: 1 });
    expect(fewer.stdErr).toBeGreaterThan(0.1 * Math.abs(fewer.trace));
    expect(progress).toEqual(Array.from({ length: r.probes }, (_, i) => i + 1));
    const capped = await hessianTrace(closure, { params, relStdErr: 1e-6, probes: 20, seed: 1 });
    expect(capped.probes).toBe(20);
    expect(capped.forwards).toBe(41);
  });

  it('per-block traces: each within 3 SE of its exact block trace, and they sum to tr(H)', async () => {
    const { params, closure } = f64Mlp(c.m);
    const probes = 400;
    const r = await hessianTrace(closure, { params, probes, seed: 4, perBlock: true });
    expect(Object.keys(r.blocks!)).toEqual(['l1', 'l2']);
    expect(defaultBlocks(Object.keys(params))).toEqual({ l1: ['l1.weight', 'l1.bias'], l2: ['l2.weight', 'l2.bias'] });
    expect(r.forwards).toBe(1 + 2 * 2 * probes);
    // Exact block traces and their Rademacher variances from H's diagonal blocks.
    const n1 = 4 * 8 + 8;
    const blockFacts = (lo: number, hi: number) => {
      const m = hi - lo;
      const B = new Float64Array(m * m);
      for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) B[i * m + j] = c.H[(lo + i) * c.n + lo + j]!;
      return hessianFacts(B, m);
    };
    const exact = { l1: blockFacts(0, n1), l2: blockFacts(n1, c.n) };
    for (const name of ['l1', 'l2'] as const) {
      const b = r.blocks![name]!;
      expect(b.probes).toBe(probes);
      expect(b.eps).toBeCloseTo(0.05 / Math.sqrt(b.numel), 12);
      expect(Math.abs(b.trace - exact[name].trace)).toBeLessThan(3 * Math.sqrt(exact[name].varRademacher / probes) + 1e-9);
    }
    expect(exact.l1.trace + exact.l2.trace).toBeCloseTo(facts.trace, 6);
    expect(r.trace).toBeCloseTo(r.blocks!.l1!.trace + r.blocks!.l2!.trace, 9);
    // The block sum is an unbiased estimate of tr(H): within 3 of its own SE.
    const seSum = Math.sqrt((exact.l1.varRademacher + exact.l2.varRademacher) / probes);
    expect(Math.abs(r.trace - facts.trace)).toBeLessThan(3 * seSum);
    // A full (not per-block) estimate from other probes agrees within the combined error.
    const full = await hessianTrace(closure, { params, probes, seed: 40 });
    expect(Math.abs(full.trace - r.trace)).toBeLessThan(3 * Math.hypot(full.stdErr, r.stdErr));

    const ranked = rankBlocksByTrace(r.blocks!);
    expect(ranked.map((x) => x.name)).toEqual(exact.l1.trace > exact.l2.trace ? ['l1', 'l2'] : ['l2', 'l1']);
    expect(ranked[0]!.trace).toBeGreaterThanOrEqual(ranked[1]!.trace);
    const byMean = rankBlocksByTrace(r.blocks!, { by: 'mean' });
    expect(byMean[0]!.meanTrace).toBeGreaterThanOrEqual(byMean[1]!.meanTrace!);

    const custom = await hessianTrace(closure, { params, probes: 4, seed: 4, perBlock: { weights: ['l1.weight', 'l2.weight'], biases: ['l1.bias', 'l2.bias'] } });
    expect(Object.keys(custom.blocks!)).toEqual(['weights', 'biases']);
    await expect(hessianTrace(closure, { params, perBlock: { a: ['nope'] } })).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
    await expect(hessianTrace(closure, { params, perBlock: { a: ['l1.bias'], b: ['l1.bias'] } })).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
  });

  it('abort, a throwing closure and a NaN loss leave the weights bit-identical', async () => {
    const t = f32Mlp(c.m);
    const before = t.snapshot();
    const ac = new AbortController();
    await expect(hessianTrace(t.closure, {
      params: t.params, probes: 50, signal: ac.signal, onProgress: (p) => { if (p.probes === 3) ac.abort(); },
    })).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect(t.snapshot()).toBe(before);
    let calls = 0;
    await expect(hessianTrace(() => {
      if (++calls === 4) throw new Error('boom');
      return t.closure();
    }, { params: t.params, probes: 5 })).rejects.toThrow('boom');
    expect(t.snapshot()).toBe(before);
    calls = 0;
    await expect(hessianTrace(() => (++calls === 3 ? NaN : t.closure()), { params: t.params, probes: 5 }))
      .rejects.toMatchObject({ code: 'E_NAN' });
    expect(t.snapshot()).toBe(before);
    // Per-example losses [B] are summed in float64 and divided once.
    const perExample = await hessianTrace(() => zeroth.tensor(new Float64Array([1, 2, 3, 6])), { params: t.params, probes: 2 });
    expect(perExample.trace).toBe(0);
    await expect(hessianTrace(t.closure, { params: t.params, distribution: 'uniform' as Dist })).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
    await expect(hessianTrace(t.closure, { params: { w: zeroth.zeros([2], { dtype: 'f64' }) } })).rejects.toMatchObject({ code: 'E_DTYPE' });
    t.dispose();
  });
});

// ---- the diagonal ------------------------------------------------------------------------------

describe('hessianDiagonal', () => {
  it('the centred estimate converges to diag(H); the uncentred one is biased by tr(H)/2', async () => {
    const n = 6;
    const A = matrix('dense', n, 8);
    const b = new Float64Array(n);
    const theta = Float64Array.from({ length: n }, (_, i) => 0.3 * i);
    const closure = () => quadLoss(A, b, theta);
    const diag = Array.from({ length: n }, (_, i) => A[i * n + i]!);
    const tr = diag.reduce((a, x) => a + x, 0);
    const maxErr = (est: Float64Array, shift = 0) => Math.max(...diag.map((d, i) => Math.abs(est[i]! - shift - d)));
    const short = await hessianDiagonal(closure, { params: { theta }, probes: 200, seed: 1 });
    const long = await hessianDiagonal(closure, { params: { theta }, probes: 20000, seed: 1 });
    const uncentred = await hessianDiagonal(closure, { params: { theta }, probes: 20000, seed: 1, estimator: 'uncentred' });
    expect(long.forwards).toBe(1 + 2 * 20000);
    // Per entry, Var[c·(u_i² − 1)] ≈ 2·(tr(H)/2)² + … ≈ 60 here: SE over 20000 probes ≈ 0.055.
    expect(maxErr(long.diagonal.theta!)).toBeLessThan(0.25);
    expect(maxErr(long.diagonal.theta!)).toBeLessThan(maxErr(short.diagonal.theta!));
    // Same probes: uncentred − centred = mean of c exactly, which estimates tr(H)/2.
    const bias = uncentred.diagonal.theta!.map((u, i) => u - long.diagonal.theta![i]!);
    for (const x of bias) expect(Math.abs(x - tr / 2)).toBeLessThan(0.05 * tr);
    expect(maxErr(uncentred.diagonal.theta!)).toBeGreaterThan(0.4 * tr);
    expect(maxErr(uncentred.diagonal.theta!, tr / 2)).toBeLessThan(0.3);
    await expect(hessianDiagonal(closure, { params: { theta }, decay: 0 })).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
  });

  it('an EMA (decay) tracks the same diagonal on f32 tensors', async () => {
    const n = 4;
    const A = matrix('diagonal', n, 2);
    const w = zeroth.tensor(new Float32Array([0.5, -0.25, 0.75, 1]), { shape: [n] });
    const r = await hessianDiagonal(() => quadLoss(A, new Float64Array(n), w.toTypedArray()), { params: { w }, probes: 4000, decay: 0.002, seed: 3 });
    for (let i = 0; i < n; i++) expect(Math.abs(r.diagonal.w![i]! - A[i * n + i]!)).toBeLessThan(0.35 * (A[0]! + A[5]! + A[10]! + A[15]!) / 4);
    expect(Array.from(w.toTypedArray())).toEqual([0.5, -0.25, 0.75, 1]);
    w.dispose();
  });
});
