// curvature_mlp.ts — a small tanh MLP and its exact Hessian in float64, the reference of
// test/curvature.test.ts (not a spec itself).
//
//   y = tanh(x·W1 + b1)·W2 + b2,   L = mean over all B·dout outputs of (y − t)²   (as ops.mse)
// The gradient is analytic (backpropagation written out below); the Hessian is the central
// difference of that gradient with step 1e-5 in float64 (error ~1e-9 relative), symmetrized.
export interface Mlp {
  din: number;
  hidden: number;
  dout: number;
  batch: number;
  x: Float64Array; // [B, din]
  t: Float64Array; // [B, dout]
  /** Parameter names and shapes, in flat order. */
  layout: { name: string; shape: number[] }[];
  init: Float64Array; // flat initial parameters
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

export function makeMlp(din = 4, hidden = 8, dout = 3, batch = 16, seed = 7): Mlp {
  const r = lcg(seed);
  const x = Float64Array.from({ length: batch * din }, () => r());
  const t = Float64Array.from({ length: batch * dout }, () => r());
  const layout = [
    { name: 'l1.weight', shape: [din, hidden] }, { name: 'l1.bias', shape: [hidden] },
    { name: 'l2.weight', shape: [hidden, dout] }, { name: 'l2.bias', shape: [dout] },
  ];
  const n = din * hidden + hidden + hidden * dout + dout;
  // Weights of size ~1/sqrt(fan-in), rounded to f32 so the f32 and f64 runs share a point.
  const init = new Float64Array(n);
  let o = 0;
  for (const { shape } of layout) {
    const size = shape.reduce((a, b) => a * b, 1);
    const scale = 1.5 / Math.sqrt(shape[0]!);
    for (let i = 0; i < size; i++) init[o++] = Math.fround(scale * r());
  }
  return { din, hidden, dout, batch, x, t, layout, init };
}

export function numelOf(m: Mlp): number {
  return m.init.length;
}

/** Views of the flat parameters by name. */
export function split(m: Mlp, flat: Float64Array | Float32Array): Record<string, Float64Array | Float32Array> {
  const out: Record<string, Float64Array | Float32Array> = {};
  let o = 0;
  for (const { name, shape } of m.layout) {
    const size = shape.reduce((a, b) => a * b, 1);
    out[name] = flat.subarray(o, o + size);
    o += size;
  }
  return out;
}

type P = Record<string, ArrayLike<number>>;

/** The loss in float64 for parameters by name. */
export function mlpLoss(m: Mlp, p: P): number {
  const { din, hidden, dout, batch, x, t } = m;
  const W1 = p['l1.weight']!, b1 = p['l1.bias']!, W2 = p['l2.weight']!, b2 = p['l2.bias']!;
  let sum = 0;
  const s = new Float64Array(hidden);
  for (let b = 0; b < batch; b++) {
    for (let j = 0; j < hidden; j++) {
      let a = b1[j]!;
      for (let i = 0; i < din; i++) a += x[b * din + i]! * W1[i * hidden + j]!;
      s[j] = Math.tanh(a);
    }
    for (let k = 0; k < dout; k++) {
      let y = b2[k]!;
      for (let j = 0; j < hidden; j++) y += s[j]! * W2[j * dout + k]!;
      const r = y - t[b * dout + k]!;
      sum += r * r;
    }
  }
  return sum / (batch * dout);
}

/** The analytic gradient in float64, flat. */
export function mlpGrad(m: Mlp, flat: Float64Array): Float64Array {
  const { din, hidden, dout, batch, x, t } = m;
  const p = split(m, flat);
  const W1 = p['l1.weight']!, b1 = p['l1.bias']!, W2 = p['l2.weight']!, b2 = p['l2.bias']!;
  const g = new Float64Array(flat.length);
  const gp = split(m, g);
  const gW1 = gp['l1.weight']!, gb1 = gp['l1.bias']!, gW2 = gp['l2.weight']!, gb2 = gp['l2.bias']!;
  const s = new Float64Array(hidden);
  const dS = new Float64Array(hidden);
  const norm = 2 / (batch * dout);
  for (let b = 0; b < batch; b++) {
    for (let j = 0; j < hidden; j++) {
      let a = b1[j]!;
      for (let i = 0; i < din; i++) a += x[b * din + i]! * W1[i * hidden + j]!;
      s[j] = Math.tanh(a);
    }
    dS.fill(0);
    for (let k = 0; k < dout; k++) {
      let y = b2[k]!;
      for (let j = 0; j < hidden; j++) y += s[j]! * W2[j * dout + k]!;
      const G = norm * (y - t[b * dout + k]!);
      gb2[k]! += G;
      for (let j = 0; j < hidden; j++) {
        gW2[j * dout + k]! += s[j]! * G;
        dS[j]! += G * W2[j * dout + k]!;
      }
    }
    for (let j = 0; j < hidden; j++) {
      const dA = dS[j]! * (1 - s[j]! * s[j]!);
      gb1[j]! += dA;
      for (let i = 0; i < din; i++) gW1[i * hidden + j]! += x[b * din + i]! * dA;
    }
  }
  return g;
}

/** The exact Hessian (n × n, row-major) at `flat`. */
export function mlpHessian(m: Mlp, flat: Float64Array): Float64Array {
  const n = flat.length;
  const H = new Float64Array(n * n);
  const h = 1e-5;
  const q = Float64Array.from(flat);
  for (let j = 0; j < n; j++) {
    q[j] = flat[j]! + h;
    const gp = mlpGrad(m, q);
    q[j] = flat[j]! - h;
    const gm = mlpGrad(m, q);
    q[j] = flat[j]!;
    for (let i = 0; i < n; i++) H[i * n + j] = (gp[i]! - gm[i]!) / (2 * h);
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const v = (H[i * n + j]! + H[j * n + i]!) / 2;
      H[i * n + j] = v;
      H[j * n + i] = v;
    }
  }
  return H;
}

/** tr(H), Rademacher variance 2·Σ_{i≠j} H_ij² and Gaussian variance 2·‖H‖_F². */
export function hessianFacts(H: Float64Array, n: number): { trace: number; varRademacher: number; varNormal: number } {
  let trace = 0, off = 0, fro = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const v = H[i * n + j]!;
      fro += v * v;
      if (i === j) trace += v;
      else off += v * v;
    }
  }
  return { trace, varRademacher: 2 * off, varNormal: 2 * fro };
}
