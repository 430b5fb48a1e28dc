import { describe, expect, it } from 'vitest';
import * as zeroth from '../src/index.js';
import { native } from '../src/native.js';

const { ops, optim } = zeroth;
type F32 = zeroth.Tensor<'f32'>;

// ---- test problems, with their losses computed independently in float64 JS ----------------

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
function gaussian(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/** f(θ) = ½ Σ a_i (θ_i − c_i)²: gradient a ⊙ (θ − c), minimum 0. */
function quadratic(d: number, cond: number, seed = 1) {
  const rand = lcg(seed);
  const a = Float64Array.from({ length: d }, (_, i) => cond ** (i / Math.max(1, d - 1)));
  const c = Float64Array.from({ length: d }, () => gaussian(rand));
  const loss = (theta: ArrayLike<number>) => {
    let s = 0;
    for (let i = 0; i < d; i++) s += 0.5 * a[i]! * (theta[i]! - c[i]!) ** 2;
    return s;
  };
  const grad = (theta: ArrayLike<number>) => Float64Array.from({ length: d }, (_, i) => a[i]! * (theta[i]! - c[i]!));
  return { a, c, loss, grad };
}

/** Logistic regression on a generated, linearly separable-ish data set, loss through zeroth.ops. */
function logistic(n: number, d: number, seed = 2) {
  const rand = lcg(seed);
  const wTrue = Float64Array.from({ length: d }, () => gaussian(rand));
  const x = new Float32Array(n * d);
  const y = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let j = 0; j < d; j++) {
      const v = gaussian(rand);
      x[r * d + j] = v;
      s += v * wTrue[j]!;
    }
    y[r] = s + 0.3 * gaussian(rand) > 0 ? 1 : 0;
  }
  const X = zeroth.tensor(x, { shape: [n, d] });
  const Y = zeroth.tensor(y);
  const zerosCol = zeroth.zeros([n, 1]);
  // Cross-entropy of [0, x·w + b] logits: the logistic loss, via the ops a user would write.
  const lossOps = (w: F32, b: F32) => {
    using xw = ops.matmul(X, w);
    using logit = ops.add(xw, b);
    using both = ops.concat([zerosCol, logit], 1);
    return ops.crossEntropy(both, Y);
  };
  // The same loss and its gradient in float64 JS (independent reference).
  const lossRef = (w: ArrayLike<number>, b: number) => {
    let s = 0;
    for (let r = 0; r < n; r++) {
      let t = b;
      for (let j = 0; j < d; j++) t += x[r * d + j]! * w[j]!;
      s += Math.log1p(Math.exp(-Math.abs(t))) + Math.max(t, 0) - (y[r] ? t : 0);
    }
    return s / n;
  };
  const gradRef = (w: ArrayLike<number>, b: number) => {
    const g = new Float64Array(d + 1);
    for (let r = 0; r < n; r++) {
      let t = b;
      for (let j = 0; j < d; j++) t += x[r * d + j]! * w[j]!;
      const e = 1 / (1 + Math.exp(-t)) - y[r]!;
      for (let j = 0; j < d; j++) g[j]! += (e * x[r * d + j]!) / n;
      g[d]! += e / n;
    }
    return g;
  };
  const dispose = () => { X.dispose(); Y.dispose(); zerosCol.dispose(); };
  return { lossOps, lossRef, gradRef, dispose };
}

function zOf(name: string, seed: bigint, n: number, dist = 'normal'): Float32Array {
  return native.fillZ(seed, optim.streamId(name), dist, 0, n) as Float32Array;
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) { ab += a[i]! * b[i]!; aa += a[i]! ** 2; bb += b[i]! ** 2; }
  return ab / Math.sqrt(aa * bb);
}

function bits(t: zeroth.Tensor): Uint8Array {
  const a = t.toTypedArray();
  return new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
}

// ---- E[g·z] is the gradient -------------------------------------------------------------

describe('the ZO estimate is unbiased', () => {
  it('E[g·z] matches the analytic gradient of a quadratic (cosine >= 0.9 over 400 seeds)', async () => {
    const d = 20;
    const q = quadratic(d, 10);
    const theta0 = Float32Array.from({ length: d }, (_, i) => Math.sin(i));
    using theta = zeroth.tensor(theta0);
    // lr = 0: the step probes and records, the weights never move.
    const opt = new optim.ZOSGD({ theta }, { lr: 0, eps: 1e-3, seed: 7 });
    const est = new Float64Array(d);
    const N = 400;
    for (let k = 0; k < N; k++) {
      const r = await opt.step(() => q.loss(theta.toTypedArray()));
      const z = zOf('theta', r.seed, d);
      for (let i = 0; i < d; i++) est[i]! += (r.projectedGrad * z[i]!) / N;
    }
    expect(bits(theta)).toEqual(new Uint8Array(theta0.buffer));
    expect(cosine(est, q.grad(theta0))).toBeGreaterThanOrEqual(0.9);
  });

  it('E[g·z] matches the analytic gradient of logistic regression (cosine >= 0.9 over 400 seeds)', async () => {
    const d = 8;
    const lr = logistic(256, d);
    const w0 = Float32Array.from({ length: d }, (_, i) => 0.1 * Math.cos(i));
    using w = zeroth.tensor(w0, { shape: [d, 1] });
    using b = zeroth.tensor([0.05]);
    const opt = new optim.ZOSGD({ w, b }, { lr: 0, eps: 1e-3, seed: 11 });
    const est = new Float64Array(d + 1);
    const N = 400;
    for (let k = 0; k < N; k++) {
      const r = await opt.step(() => lr.lossOps(w, b));
      const zw = zOf('w', r.seed, d);
      const zb = zOf('b', r.seed, 1);
      for (let i = 0; i < d; i++) est[i]! += (r.projectedGrad * zw[i]!) / N;
      est[d]! += (r.projectedGrad * zb[0]!) / N;
    }
    // The ops-based loss agrees with the float64 reference.
    using l = lr.lossOps(w, b);
    expect(ops.item(l)).toBeCloseTo(lr.lossRef(w0, Math.fround(0.05)), 5);
    expect(cosine(est, lr.gradRef(w0, Math.fround(0.05)))).toBeGreaterThanOrEqual(0.9);
    lr.dispose();
  });
});

// ---- optimizers reach a stated loss --------------------------------------------------------

describe('optimizers converge', () => {
  const cases: Array<[string, (p: zeroth.optim.Params) => zeroth.optim.ZOOptimizer, number]> = [
    ['ZOSGD', (p) => new optim.ZOSGD(p, { lr: 0.02, seed: 1 }), 400],
    ['ZOSGD q=4 momentum 0.5', (p) => new optim.ZOSGD(p, { lr: 0.02, momentum: 0.5, queries: 4, seed: 2 }), 200],
    ['ZOAdam', (p) => new optim.ZOAdam(p, { lr: 0.05, seed: 3 }), 400],
    ['ZOSignSGD', (p) => new optim.ZOSignSGD(p, { lr: 0.01, seed: 4, distribution: 'rademacher' }), 400],
  ];

  for (const [name, make, steps] of cases) {
    it(`${name} brings a 10-d quadratic from loss > 4 to < 0.05 in ${steps} steps`, async () => {
      const q = quadratic(10, 4, 3);
      using theta = zeroth.zeros([10]);
      const start = q.loss(theta.toTypedArray());
      expect(start).toBeGreaterThan(4);
      using opt = make({ theta });
      for (let s = 0; s < steps; s++) await opt.step(() => q.loss(theta.toTypedArray()));
      expect(q.loss(theta.toTypedArray())).toBeLessThan(0.05);
    });

    it(`${name} brings logistic regression below loss 0.35 (from 0.693) on a generated data set`, async () => {
      const d = 6;
      const prob = logistic(400, d, 5);
      using w = zeroth.zeros([d, 1]);
      using b = zeroth.zeros([1]);
      using opt = make({ w, b });
      for (let s = 0; s < steps; s++) await opt.step(() => prob.lossOps(w, b));
      expect(prob.lossRef(w.toTypedArray(), b.toTypedArray()[0]!)).toBeLessThan(0.35);
      prob.dispose();
    });
  }
});

// ---- variance reduction ----------------------------------------------------------------------

describe('variance of the gradient estimate', () => {
  // A linear loss f(θ) = c·θ has a constant gradient c, so every estimate can be scored exactly.
  const d = 32;
  const c = Float64Array.from({ length: d }, (_, i) => Math.cos(i + 1));
  const linear = (t: ArrayLike<number>) => { let s = 0; for (let i = 0; i < d; i++) s += c[i]! * t[i]!; return s; };
  const mse = (g: ArrayLike<number>) => { let s = 0; for (let i = 0; i < d; i++) s += (g[i]! - c[i]!) ** 2; return s; };

  // The per-step update direction, read off the weights: (θ_t − θ_{t+1}) / lr.
  async function directions(opts: zeroth.optim.ZOOptions, steps: number, scale = 1): Promise<number> {
    using theta = zeroth.zeros([d], { dtype: 'f64' }).to('f32');
    using opt = new optim.ZOSGD({ theta }, opts);
    let total = 0, counted = 0;
    for (let s = 0; s < steps; s++) {
      const before = Float64Array.from(theta.toTypedArray());
      await opt.step(() => linear(theta.toTypedArray()));
      const after = theta.toTypedArray();
      if (s < 40) continue; // momentum burn-in
      const g = before.map((b, i) => ((b - after[i]!) / (opts.lr as number)) * scale);
      total += mse(g);
      counted++;
    }
    return total / counted;
  }

  it('q = 4 queries cut the mean squared error of the estimate by more than 2x', async () => {
    const one = await directions({ lr: 1e-3, seed: 5, eps: 1e-2 }, 240);
    const four = await directions({ lr: 1e-3, seed: 5, eps: 1e-2, queries: 4 }, 240);
    expect(four).toBeLessThan(one / 2);
  });

  it('momentum 0.9 (its EMA, (1 − β)·m) cuts the mean squared error by more than 3x', async () => {
    const plain = await directions({ lr: 1e-3, seed: 6, eps: 1e-2 }, 240);
    const momentum = await directions({ lr: 1e-3, seed: 6, eps: 1e-2, momentum: 0.9 }, 240, 0.1);
    expect(momentum).toBeLessThan(plain / 3);
  });
});

// ---- failure leaves the weights exactly as they were ---------------------------------------

describe('rejected and failed steps', () => {
  it('a NaN loss rejects the step and leaves the weights bit-identical', async () => {
    using w = zeroth.tensor(Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 1e-3 * (i % 7)));
    const before = bits(w);
    using opt = new optim.ZOSGD({ w }, { lr: 0.1, eps: 1e-2, seed: 3 });
    let calls = 0;
    const r = await opt.step(() => (++calls === 2 ? NaN : 1));
    expect(r.accepted).toBe(false);
    expect(r.reason).toMatch(/non-finite/);
    expect(bits(w)).toEqual(before);
    expect(optim.decodeTrajectory(opt.trajectory()).steps).toHaveLength(0);
  });

  it("nonFinite: 'throw' raises E_NAN and leaves the weights bit-identical", async () => {
    using w = zeroth.tensor(Float32Array.from({ length: 300 }, (_, i) => i * 1e-4));
    const before = bits(w);
    using opt = new optim.ZOSGD({ w }, { lr: 0.1, seed: 3, nonFinite: 'throw', queries: 3 });
    let calls = 0;
    await expect(opt.step(() => (++calls === 5 ? Infinity : 1))).rejects.toMatchObject({ code: 'E_NAN' });
    expect(bits(w)).toEqual(before);
  });

  it('a throwing closure propagates its error and restores the weights exactly', async () => {
    using w = zeroth.tensor(new Float32Array([1e-30, -0, 3, 65504, 1e-3]));
    const before = bits(w);
    using opt = new optim.ZOAdam({ w }, { lr: 0.1, seed: 3, eps: 0.5 });
    await expect(opt.step(() => { throw new Error('boom'); })).rejects.toThrow('boom');
    expect(bits(w)).toEqual(before);
  });

  it('a failing lr schedule rejects the step without locking the optimizer or moving the weights', async () => {
    using w = zeroth.tensor([1, 2, 3]);
    const before = bits(w);
    using opt = new optim.ZOSGD({ w }, { lr: (s) => (s === 0 ? NaN : 0.01), seed: 1 });
    await expect(opt.step(() => 1)).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
    expect(bits(w)).toEqual(before);
    expect(opt.stepCount).toBe(0);
    expect(() => new optim.ZOSGD({ w }, { lr: 0.1, conservative: true, weightDecay: 0.1 })).toThrowError(
      expect.objectContaining({ code: 'E_UNSUPPORTED' }));
  });

  it('conservative steps never raise the batch loss', async () => {
    const q = quadratic(10, 100, 9);
    using theta = zeroth.zeros([10]);
    // A learning rate too large for the stiff coordinates: plain SGD would diverge.
    using opt = new optim.ZOSGD({ theta }, { lr: 0.05, seed: 2, conservative: true });
    let last = q.loss(theta.toTypedArray());
    let rejected = 0;
    for (let s = 0; s < 100; s++) {
      const r = await opt.step(() => q.loss(theta.toTypedArray()));
      const now = q.loss(theta.toTypedArray());
      if (!r.accepted) { rejected++; expect(now).toBe(last); }
      expect(now).toBeLessThanOrEqual(last + 1e-12);
      last = now;
    }
    expect(rejected).toBeGreaterThan(0);
    expect(() => new optim.ZOSGD({ theta }, { lr: 1, conservative: true, queries: 2 })).toThrowError(
      expect.objectContaining({ code: 'E_UNSUPPORTED' }));
  });
});

// ---- masks, trajectories, replay ----------------------------------------------------------

describe('masks', () => {
  it('masked elements are neither perturbed nor updated', async () => {
    const n = 200;
    using w = zeroth.tensor(Float32Array.from({ length: n }, (_, i) => Math.cos(i)));
    const before = w.toTypedArray();
    using mask = native.maskFromMagnitude(w.handle, { fraction: 0.25, keep: 'smallest' })
      ? new zeroth.Tensor<'u8'>(native.maskFromMagnitude(w.handle, { fraction: 0.25, keep: 'smallest' }))
      : zeroth.zeros([Math.ceil(n / 8)], { dtype: 'u8' });
    const m = mask.toTypedArray();
    const trains = (i: number) => ((m[i >> 3]! >> (i & 7)) & 1) === 1;
    let seen: Float32Array[] = [];
    using opt = new optim.ZOSGD({ w }, { lr: 0.01, seed: 1, masks: { w: mask } });
    for (let s = 0; s < 5; s++) {
      seen = [];
      await opt.step(() => { seen.push(w.toTypedArray()); return w.toTypedArray().reduce((a, x) => a + x * x, 0); });
      for (const probe of seen) for (let i = 0; i < n; i++) if (!trains(i)) expect(probe[i]).toBe(before[i]);
    }
    const after = w.toTypedArray();
    let changed = 0;
    for (let i = 0; i < n; i++) {
      if (!trains(i)) expect(after[i]).toBe(before[i]);
      else if (after[i] !== before[i]) changed++;
    }
    expect(changed).toBeGreaterThan(n / 8);
  });
});

describe('trajectories and replay', () => {
  const runs: Array<[string, (p: zeroth.optim.Params, masks?: zeroth.optim.Masks) => zeroth.optim.ZOOptimizer]> = [
    ['ZOSGD', (p) => new optim.ZOSGD(p, { lr: 0.01, weightDecay: 0.1, seed: 1 })],
    ['ZOSGD momentum, q = 3, lr schedule', (p) => new optim.ZOSGD(p, { lr: (s) => 0.01 / (1 + s), momentum: 0.9, queries: 3, seed: 2 })],
    ['ZOAdam', (p) => new optim.ZOAdam(p, { lr: 0.01, seed: 3, weightDecay: 0.01 })],
    ['ZOSignSGD rademacher', (p) => new optim.ZOSignSGD(p, { lr: 0.001, seed: 4, distribution: 'rademacher' })],
    ['ZOSGD with a mask', (p, masks) => new optim.ZOSGD(p, { lr: 0.01, seed: 5, masks })],
  ];

  for (const [name, make] of runs) {
    it(`${name}: replay rebuilds the trained weights bit-exactly from the base weights`, async () => {
      const base = {
        a: zeroth.tensor(Float32Array.from({ length: 300 }, (_, i) => Math.sin(i))),
        b: zeroth.tensor(Float32Array.from({ length: 17 }, (_, i) => i / 17)).to('bf16'),
      };
      const masks = name.includes('mask')
        ? { a: zeroth.tensor(Uint8Array.from({ length: 38 }, (_, i) => (i * 37) & 255), { dtype: 'u8' }) as zeroth.Tensor<'u8'> }
        : undefined;
      const trained = { a: base.a.clone(), b: base.b.clone() };
      const opt = make(trained, masks);
      const f = () => {
        const a = trained.a.toTypedArray();
        using bf = trained.b.to('f32');
        const b = bf.toTypedArray();
        return a.reduce((s, x, i) => s + (x - Math.cos(i)) ** 2, 0) + b.reduce((s, x) => s + x * x, 0);
      };
      let rejectedOnce = false;
      for (let s = 0; s < 12; s++) {
        // One step hits a NaN loss: rejected steps are not part of the trajectory.
        if (s === 5 && !rejectedOnce) { rejectedOnce = true; let k = 0; await opt.step(() => (k++ ? NaN : f())); continue; }
        await opt.step(f);
      }
      const traj = opt.trajectory();
      expect(traj.length).toBeLessThan(4096);
      const decoded = optim.decodeTrajectory(traj);
      expect(decoded.steps).toHaveLength(11);
      const replayed = { a: base.a.clone(), b: base.b.clone() };
      await optim.replay(replayed, traj, masks ? { masks } : {});
      expect(bits(replayed.a)).toEqual(bits(trained.a));
      expect(bits(replayed.b)).toEqual(bits(trained.b));
      expect(bits(replayed.a)).not.toEqual(bits(base.a));
      opt.dispose();
    });
  }

  it('replay refuses parameters that do not match the trajectory', async () => {
    using a = zeroth.zeros([4]);
    using opt = new optim.ZOSGD({ a }, { lr: 0.1 });
    await opt.step(() => 1);
    using wrong = zeroth.zeros([5]);
    await expect(optim.replay({ a: wrong }, opt.trajectory())).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
    await expect(optim.replay({ b: a }, opt.trajectory())).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
  });

  it('malformed trajectories give E_FORMAT', () => {
    using a = zeroth.zeros([4]);
    const opt = new optim.ZOSGD({ a }, { lr: 0.1 });
    const good = opt.trajectory();
    expect(optim.decodeTrajectory(good).header.optimizer).toBe('zosgd');
    for (const bad of [new Uint8Array(3), good.slice(0, good.length - 1), Uint8Array.from([...good, 0]),
      Uint8Array.from(good, (x, i) => (i === 0 ? 0 : x))]) {
      expect(() => optim.decodeTrajectory(bad)).toThrowError(expect.objectContaining({ code: 'E_FORMAT' }));
    }
  });

  it('the stream id of a parameter is FNV-1a 64 of its name, independent of the other parameters', async () => {
    expect(optim.streamId('a')).toBe(0xaf63dc4c8601ec8cn);
    // Training {x} alone or {x, y} together perturbs x identically.
    const run = async (withY: boolean) => {
      const x = zeroth.tensor(new Float32Array(8));
      const params: zeroth.optim.Params = withY ? { y: zeroth.zeros([3]), x } : { x };
      const probes: number[][] = [];
      const opt = new optim.ZOSGD(params, { lr: 0, seed: 9 });
      await opt.step(() => { probes.push(Array.from(x.toTypedArray())); return 0; });
      return probes;
    };
    expect(await run(true)).toEqual(await run(false));
  });
});
