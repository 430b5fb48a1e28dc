// ops.test.ts — every op in zeroth.ops against a float64 reference written here in plain TS.
//
// Tolerances (|got − want| <= atol + rtol·|want|, NaN must match NaN, ±inf must match):
//   add/sub/mul/div, neg, relu, shape ops: exact (one IEEE operation on f32 values is exact
//     after rounding the double result to f32).
//   f32 transcendentals (each SIMD path): exp/sigmoid/tanh/log rtol 2e-6; silu/gelu
//     atol 1e-6 + rtol 2e-6 (gelu erf SIMD uses a 1.5e-7 erfc approximation).
//   f64 transcendentals: rtol 1e-12 (gelu erf: 1e-10, our reference erf is a series / continued fraction).
//   matmul f32: atol = 1e-5·Σ_k |a_ik·b_kj| per element; f64: 1e-12 of the same.
//   sum/mean: f32 results rtol 1e-6 of Σ|x|; f64-accumulated results 1e-12 of Σ|x|.
//   softmax atol 1e-7 + rtol 1e-5; logSoftmax atol 2e-6 + rtol 1e-6.
//   crossEntropy f32 logits: 1e-6 absolute; f64 logits 1e-12; mse: rtol 1e-12.
import { availableParallelism } from 'node:os';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ZerothError } from '../src/errors.js';
import { native } from '../src/native.js';
import * as ops from '../src/ops.js';
import { Tensor, tensor, zeros } from '../src/tensor.js';
import { mulberry32 as rng } from './helpers.js';

// The SIMD level and thread count this process started with, to restore after tests that
// change them (setSimd clamps 'avx512' to the best level the CPU has).
const DEFAULT_SIMD = native.setSimd(process.env.ZEROTH_SIMD ?? 'avx512') as string;
const DEFAULT_THREADS = Number(process.env.ZEROTH_NUM_THREADS) || availableParallelism();
const HAS_CUDA = (native.devices() as { type: string }[]).some((d) => d.type === 'cuda');

// ---- helpers --------------------------------------------------------------------------------

const live: Tensor[] = [];
function keep<T extends Tensor>(t: T): T {
  live.push(t);
  return t;
}
afterEach(() => {
  for (const t of live.splice(0)) t.dispose();
});

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** A tensor of uniform values in [lo, hi) and the float64 copy of what it holds. */
function rand(shape: number[], seed: number, dtype: 'f32' | 'f64' = 'f32', lo = -2, hi = 2) {
  const r = rng(seed);
  const n = numel(shape);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = dtype === 'f32' ? Math.fround(lo + (hi - lo) * r()) : lo + (hi - lo) * r();
  const t = keep(tensor(dtype === 'f32' ? Float32Array.from(v) : v, { shape, dtype }));
  return { t, v };
}

function flat(t: Tensor): Float64Array {
  return Float64Array.from(t.toTypedArray() as ArrayLike<number>);
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number, what = '') {
  expect(got.length, `${what} length`).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (Number.isNaN(w)) {
      expect(Number.isNaN(g), `${what}[${i}]: got ${g}, want NaN`).toBe(true);
    } else if (!Number.isFinite(w) || !Number.isFinite(g)) {
      expect(g, `${what}[${i}]`).toBe(w);
    } else if (!(Math.abs(g - w) <= atol + rtol * Math.abs(w))) {
      throw new Error(`${what}[${i}]: got ${g}, want ${w} (|diff| ${Math.abs(g - w)} > ${atol} + ${rtol}·|want|)`);
    }
  }
}

function expectCode(fn: () => unknown, code: string, ...fragments: string[]) {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(ZerothError);
  const err = caught as ZerothError;
  expect(err.code, err.message).toBe(code);
  for (const f of fragments) expect(err.message).toContain(f);
}

function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

/** numpy broadcasting reference for a binary function. */
function refBinary(as: number[], av: Float64Array, bs: number[], bv: Float64Array, f: (a: number, b: number) => number) {
  const nd = Math.max(as.length, bs.length);
  const pa = [...new Array(nd - as.length).fill(1), ...as];
  const pb = [...new Array(nd - bs.length).fill(1), ...bs];
  const out = pa.map((d, i) => (d === 1 ? pb[i]! : d));
  const sa = strides(pa);
  const sb = strides(pb);
  const n = numel(out);
  const res = new Float64Array(n);
  for (let lin = 0; lin < n; lin++) {
    let rest = lin;
    let ia = 0;
    let ib = 0;
    for (let d = nd - 1; d >= 0; d--) {
      const idx = rest % out[d]!;
      rest = Math.floor(rest / out[d]!);
      if (pa[d] !== 1) ia += idx * sa[d]!;
      if (pb[d] !== 1) ib += idx * sb[d]!;
    }
    res[lin] = f(av[ia]!, bv[ib]!);
  }
  return { shape: out, values: res };
}

// erf reference: Maclaurin series for |z| < 2, continued fraction of erfc beyond.
function erf(z: number): number {
  if (Number.isNaN(z)) return NaN;
  const a = Math.abs(z);
  let r: number;
  if (a < 2) {
    let term = a;
    let s = a;
    for (let n = 1; n < 80; n++) {
      term *= (-a * a) / n;
      s += term / (2 * n + 1);
    }
    r = (2 / Math.sqrt(Math.PI)) * s;
  } else if (a > 27) {
    r = 1;
  } else {
    let t = a;
    for (let n = 300; n >= 1; n--) t = a + n / 2 / t;
    r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / t;
  }
  return z < 0 ? -r : r;
}
// 1 + erf(z) for z < 0 without cancellation (erfc(|z|) via the same continued fraction).
function onePlusErf(z: number): number {
  const a = -z;
  if (z >= 0 || a < 2) return 1 + erf(z);
  let t = a;
  for (let n = 300; n >= 1; n--) t = a + n / 2 / t;
  return Math.exp(-a * a) / Math.sqrt(Math.PI) / t;
}

const sigmoidRef = (x: number) => 1 / (1 + Math.exp(-x));
const UNARY: Record<string, { run: (t: Tensor) => Tensor; ref: (x: number) => number; atol: number; rtol: number; exact?: boolean }> = {
  neg: { run: ops.neg, ref: (x) => -x, atol: 0, rtol: 0, exact: true },
  relu: { run: ops.relu, ref: (x) => (x < 0 ? 0 : x), atol: 0, rtol: 0, exact: true },
  exp: { run: ops.exp, ref: Math.exp, atol: 1e-44, rtol: 2e-6 },
  log: { run: ops.log, ref: Math.log, atol: 0, rtol: 2e-6 },
  tanh: { run: ops.tanh, ref: Math.tanh, atol: 1e-30, rtol: 2e-6 },
  sigmoid: { run: ops.sigmoid, ref: sigmoidRef, atol: 1e-44, rtol: 2e-6 },
  silu: { run: ops.silu, ref: (x) => x * sigmoidRef(x), atol: 1e-6, rtol: 2e-6 },
  geluTanh: {
    run: (t) => ops.gelu(t, { approximate: 'tanh' }),
    ref: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
    atol: 1e-6,
    rtol: 2e-6,
  },
  geluErf: { run: (t) => ops.gelu(t), ref: (x) => 0.5 * x * onePlusErf(x / Math.SQRT2), atol: 1e-6, rtol: 2e-6 },
};

function unaryInputs(seed: number, forLog: boolean): number[] {
  const r = rng(seed);
  const xs: number[] = [];
  for (let i = 0; i < 997; i++) xs.push(forLog ? 30 * r() : -20 + 40 * r());
  for (let i = 0; i < 200; i++) xs.push(forLog ? 1e-3 * r() : -1 + 2 * r() * r());  // near 0: polynomial branches
  xs.push(0, -0, 1e-30, 88.5, 89, 100, Infinity, NaN);
  if (!forLog) xs.push(-1e-30, -88, -100, -104, -110, -Infinity, 0.62, -0.63, 4.5, -4.5);
  else xs.push(-1, 3.4e38);
  return xs.map(Math.fround);
}

// ---- elementwise ------------------------------------------------------------------------------

describe('binary ops with broadcasting', () => {
  const fns = {
    add: [ops.add, (a: number, b: number) => a + b],
    sub: [ops.sub, (a: number, b: number) => a - b],
    mul: [ops.mul, (a: number, b: number) => a * b],
    div: [ops.div, (a: number, b: number) => a / b],
  } as const;
  const cases: [number[], number[]][] = [
    [[2, 3], [2, 3]],
    [[2, 3], [3]],
    [[4, 1], [1, 5]],
    [[2, 1, 3], [4, 1]],
    [[3, 2], []],
    [[1], [3, 1, 2]],
    [[5, 1, 7], [5, 3, 1]],
    [[300, 500], [500]], // 150k outputs: several threads, row bias
    [[257, 1], [257, 400]], // column broadcast, multithreaded
    [[0, 3], [3]],
  ];
  for (const [name, [op, f]] of Object.entries(fns)) {
    for (const dtype of ['f32', 'f64'] as const) {
      it(`${name} ${dtype} matches the reference on ${cases.length} shape pairs`, () => {
        cases.forEach(([as, bs], k) => {
          const a = rand(as, 11 + k, dtype);
          const b = rand(bs, 97 + k, dtype, 0.5, 3);
          const want = refBinary(as, a.v, bs, b.v, f);
          const got = keep(op(a.t, b.t));
          expect(got.shape).toEqual(want.shape);
          expect(got.dtype).toBe(dtype);
          const exp = dtype === 'f32' ? want.values.map(Math.fround) : want.values;
          expectClose(flat(got), exp, 0, 0, `${name} ${as} ${bs}`);
        });
      });
    }
    it(`${name} with a number on either side`, () => {
      const a = rand([3, 4], 5);
      const left = keep(op(2.5, a.t));
      const right = keep(op(a.t, 2.5));
      expectClose(flat(left), a.v.map((x) => Math.fround(f(2.5, x))), 0, 0, 'left');
      expectClose(flat(right), a.v.map((x) => Math.fround(f(x, 2.5))), 0, 0, 'right');
    });
  }

  it('names both shapes when they do not broadcast', () => {
    const a = rand([2, 3], 1);
    const b = rand([4, 2], 2);
    expectCode(() => ops.add(a.t, b.t), 'E_SHAPE', '[2, 3]', '[4, 2]');
    expectCode(() => ops.mul(rand([3], 3).t, rand([4], 4).t), 'E_SHAPE', '[3]', '[4]');
  });

  it('rejects mixed, integer and half dtypes, two numbers and non-tensors', () => {
    const a = rand([3], 1, 'f32');
    const b = rand([3], 2, 'f64');
    expectCode(() => ops.add(a.t, b.t), 'E_DTYPE', 'f32', 'f64');
    const i = keep(tensor([1, 2, 3], { dtype: 'i32' }));
    expectCode(() => ops.sub(i, 1), 'E_DTYPE', 'i32', 'f32', 'f64');
    const h = keep(tensor([1, 2, 3], { dtype: 'f16' }));
    expectCode(() => ops.relu(h), 'E_DTYPE', 'f16', 'f32, f64');
    expectCode(() => ops.add(1, 2), 'E_INVALID_ARG');
    expectCode(() => ops.add({} as Tensor, a.t), 'E_INVALID_ARG');
  });
});

describe('unary ops', () => {
  const levels = ['scalar', 'avx2', 'avx512'] as const;
  const original = DEFAULT_SIMD;
  afterAll(() => {
    native.setSimd(original);
  });
  for (const level of levels) {
    for (const [name, spec] of Object.entries(UNARY)) {
      it(`${name} f32 (${level} path) is within its tolerance`, () => {
        const got = native.setSimd(level) as string;
        expect(levels).toContain(got);
        const xs = unaryInputs(7, name === 'log');
        const t = keep(tensor(Float32Array.from(xs)));
        const y = flat(keep(spec.run(t)));
        const want = xs.map((x) => Math.fround(spec.ref(x)));
        expectClose(y, want, spec.atol, spec.rtol, `${name}/${got}`);
        native.setSimd(original);
      });
    }
  }
  for (const [name, spec] of Object.entries(UNARY)) {
    it(`${name} f64 matches Math to ~1e-12`, () => {
      const xs = unaryInputs(9, name === 'log');
      const t = keep(tensor(Float64Array.from(xs)));
      const y = flat(keep(spec.run(t)));
      const tol = name === 'geluErf' ? 1e-10 : 1e-12;
      expectClose(y, xs.map(spec.ref), spec.exact ? 0 : 1e-300, spec.exact ? 0 : tol, `${name} f64`);
    });
  }
  it('a large input (2^20 elements, all threads) equals the same op on the pieces', () => {
    const a = rand([1 << 20], 3, 'f32', -10, 10);
    const y = flat(keep(ops.gelu(a.t, { approximate: 'tanh' })));
    const head = keep(tensor(Float32Array.from(a.v.subarray(0, 1000))));
    const tail = keep(tensor(Float32Array.from(a.v.subarray((1 << 20) - 1000))));
    expectClose(y.subarray(0, 1000), flat(keep(ops.gelu(head, { approximate: 'tanh' }))), 0, 0, 'head');
    expectClose(y.subarray((1 << 20) - 1000), flat(keep(ops.gelu(tail, { approximate: 'tanh' }))), 0, 0, 'tail');
    expectClose(y, Array.from(a.v, (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))), 1e-6, 2e-6, 'all');
  });
  it('gelu rejects an unknown approximation', () => {
    expectCode(() => ops.gelu(rand([2], 1).t, { approximate: 'fast' as 'tanh' }), 'E_INVALID_ARG', 'approximate');
  });
});

// ---- matmul ---------------------------------------------------------------------------------

function refMatmul(as: number[], av: Float64Array, bs: number[], bv: Float64Array) {
  const aVec = as.length === 1;
  const bVec = bs.length === 1;
  const A = aVec ? [1, as[0]!] : as;
  const B = bVec ? [bs[0]!, 1] : bs;
  const M = A[A.length - 2]!;
  const K = A[A.length - 1]!;
  const N = B[B.length - 1]!;
  const ab = A.slice(0, -2);
  const bb = B.slice(0, -2);
  // Batch reference: broadcast batch index -> (a batch, b batch) via refBinary on index arrays.
  const ai = Float64Array.from({ length: numel(ab) }, (_, i) => i);
  const bi = Float64Array.from({ length: numel(bb) }, (_, i) => i);
  const pairs: [number, number][] = [];
  const batch = refBinary(ab, ai, bb, bi, (x, y) => {
    pairs.push([x, y]);
    return 0;
  }).shape;
  const out = new Float64Array(pairs.length * M * N);
  const bound = new Float64Array(out.length);
  pairs.forEach(([pa, pb], bIdx) => {
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        let m = 0;
        for (let k = 0; k < K; k++) {
          const p = av[pa * M * K + i * K + k]! * bv[pb * K * N + k * N + j]!;
          s += p;
          m += Math.abs(p);
        }
        out[bIdx * M * N + i * N + j] = s;
        bound[bIdx * M * N + i * N + j] = m;
      }
  });
  const shape = [...batch, ...(aVec ? [] : [M]), ...(bVec ? [] : [N])];
  return { shape, values: out, bound };
}

describe('matmul', () => {
  const cases: [number[], number[]][] = [
    [[7, 13], [13, 5]],
    [[64, 300], [300, 96]], // threaded GEMM
    [[3, 4, 5], [3, 5, 6]],
    [[2, 1, 4, 5], [3, 5, 6]], // batch broadcast both ways
    [[2, 3, 4, 5], [5, 6]], // shared weight: batch folded into M
    [[4, 5], [2, 5, 3]], // shared left operand
    [[5], [5, 3]],
    [[2, 5], [5]],
    [[6], [6]],
    [[3, 0], [0, 4]], // K = 0: zeros
  ];
  for (const dtype of ['f32', 'f64'] as const) {
    it(`${dtype} matches the float64 reference (batched, broadcast, 1-D)`, () => {
      cases.forEach(([as, bs], k) => {
        const a = rand(as, 100 + k, dtype);
        const b = rand(bs, 200 + k, dtype);
        const want = refMatmul(as, a.v, bs, b.v);
        const got = keep(ops.matmul(a.t, b.t));
        expect(got.shape, `${as} x ${bs}`).toEqual(want.shape);
        const y = flat(got);
        const scale = dtype === 'f32' ? 1e-5 : 1e-12;
        for (let i = 0; i < y.length; i++) {
          const err = Math.abs(y[i]! - want.values[i]!);
          if (err > scale * want.bound[i]! + 1e-300) throw new Error(`${as} x ${bs} [${i}]: got ${y[i]}, want ${want.values[i]}`);
        }
      });
    });
  }
  it('errors name both shapes', () => {
    expectCode(() => ops.matmul(rand([2, 3], 1).t, rand([4, 5], 2).t), 'E_SHAPE', '[2, 3]', '[4, 5]');
    expectCode(() => ops.matmul(rand([2, 2, 3], 1).t, rand([3, 3, 5], 2).t), 'E_SHAPE', '[2, 2, 3]', '[3, 3, 5]');
    expectCode(() => ops.matmul(rand([2, 3], 1).t, rand([3, 4], 2, 'f64').t), 'E_DTYPE');
    expectCode(() => ops.matmul(keep(tensor(1)), rand([3, 4], 2).t), 'E_SHAPE');
  });
});

// ---- reductions ----------------------------------------------------------------------------------

function refReduce(shape: number[], v: Float64Array, axes: number[], keepDims: boolean, isMean: boolean) {
  const nd = shape.length;
  const red = new Set(axes.length ? axes.map((a) => (a < 0 ? a + nd : a)) : shape.map((_, i) => i));
  const outShapeKeep = shape.map((d, i) => (red.has(i) ? 1 : d));
  const outShape = keepDims ? outShapeKeep : shape.filter((_, i) => !red.has(i));
  const st = strides(outShapeKeep);
  const sums = new Float64Array(numel(outShapeKeep));
  const abs = new Float64Array(sums.length);
  const inSt = strides(shape);
  for (let lin = 0; lin < v.length; lin++) {
    let o = 0;
    for (let d = 0; d < nd; d++) {
      const idx = Math.floor(lin / inSt[d]!) % shape[d]!;
      if (!red.has(d)) o += idx * st[d]!;
    }
    sums[o] = sums[o]! + v[lin]!;
    abs[o] = abs[o]! + Math.abs(v[lin]!);
  }
  const count = [...red].reduce((p, a) => p * shape[a]!, 1);
  if (isMean) {
    for (let i = 0; i < sums.length; i++) {
      sums[i] = sums[i]! / count;
      abs[i] = abs[i]! / count;
    }
  }
  return { shape: outShape, values: sums, abs };
}

describe('sum and mean', () => {
  const shape = [3, 4, 5];
  const axesCases: number[][] = [[], [0], [1], [2], [-1], [0, 2], [1, 2], [0, 1], [0, 1, 2]];
  for (const kind of ['sum', 'mean'] as const) {
    for (const keepDims of [false, true]) {
      it(`${kind} over every axes set (keepDims ${keepDims}), f32 and f64 results`, () => {
        const x = rand(shape, 42);
        for (const axes of axesCases) {
          const want = refReduce(shape, x.v, axes, keepDims, kind === 'mean');
          const arg = axes.length ? axes : undefined;
          const got = keep(ops[kind](x.t, arg, { keepDims }));
          expect(got.shape, `axes ${axes}`).toEqual(want.shape);
          expect(got.dtype).toBe('f32');
          const tol = want.abs.map((a) => 1e-6 * a);
          const y = flat(got);
          y.forEach((g, i) => expect(Math.abs(g - want.values[i]!), `axes ${axes} [${i}]`).toBeLessThanOrEqual(tol[i]! + 1e-30));
          const g64 = keep(ops[kind](x.t, arg, { keepDims, dtype: 'f64' }));
          expect(g64.dtype).toBe('f64');
          flat(g64).forEach((g, i) => expect(Math.abs(g - want.values[i]!)).toBeLessThanOrEqual(1e-12 * want.abs[i]! + 1e-300));
        }
      });
    }
  }
  it('reduces large tensors on every path (full, inner, outer with one output row, strided middle)', () => {
    const x = rand([300, 1000], 8, 'f32', -1, 3);
    for (const axes of [[], [0], [1]]) {
      const want = refReduce([300, 1000], x.v, axes, false, false);
      const y = flat(keep(ops.sum(x.t, axes.length ? axes : undefined, { dtype: 'f64' })));
      y.forEach((g, i) => expect(Math.abs(g - want.values[i]!)).toBeLessThanOrEqual(1e-12 * want.abs[i]!));
    }
    const z = rand([6, 50, 7], 9, 'f64');
    const want = refReduce([6, 50, 7], z.v, [1], false, true);
    expectClose(flat(keep(ops.mean(z.t, 1))), want.values, 1e-14, 1e-12, 'middle axis');
  });
  it('a full f32 sum accumulates in float64 (a sum f32 accumulation would get wrong)', () => {
    // 2^24 + 1 + 1 + ... : in f32 each +1 is lost; in f64 all survive.
    const v = new Float32Array(1001).fill(1);
    v[0] = 2 ** 24;
    const t = keep(tensor(v));
    expect(ops.item(keep(ops.sum(t, undefined, { dtype: 'f64' })))).toBe(2 ** 24 + 1000);
    expect(ops.item(keep(ops.sum(t)))).toBe(Math.fround(2 ** 24 + 1000));
  });
  it('empty and size-1 reductions', () => {
    const e = keep(zeros([0, 3]));
    expect(flat(keep(ops.sum(e, 0)))).toEqual(Float64Array.from([0, 0, 0]));
    expect(Number.isNaN(ops.item(keep(ops.mean(e))))).toBe(true);
    const x = rand([3, 1, 4], 3);
    expectClose(flat(keep(ops.sum(x.t, 1))), x.v, 0, 0, 'size-1 axis');
  });
  it('rejects bad axes and dtypes', () => {
    const x = rand([3, 4], 1);
    expectCode(() => ops.sum(x.t, 2), 'E_INVALID_ARG', 'axis 2');
    expectCode(() => ops.sum(x.t, [0, -2]), 'E_INVALID_ARG', 'twice');
    expectCode(() => ops.mean(x.t, 0.5), 'E_INVALID_ARG');
    expectCode(() => ops.sum(keep(tensor([1, 2], { dtype: 'i32' }))), 'E_DTYPE', 'f32, f64');
  });
});

// ---- softmax and losses ---------------------------------------------------------------------------

function refSoftmax(shape: number[], v: Float64Array, axis: number, log: boolean): Float64Array {
  const ax = axis < 0 ? axis + shape.length : axis;
  const outer = numel(shape.slice(0, ax));
  const C = shape[ax]!;
  const inner = numel(shape.slice(ax + 1));
  const out = new Float64Array(v.length);
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      const at = (c: number) => o * C * inner + c * inner + i;
      let m = -Infinity;
      for (let c = 0; c < C; c++) m = Math.max(m, v[at(c)]!);
      let s = 0;
      for (let c = 0; c < C; c++) s += Math.exp(v[at(c)]! - m);
      for (let c = 0; c < C; c++) out[at(c)] = log ? v[at(c)]! - m - Math.log(s) : Math.exp(v[at(c)]! - m) / s;
    }
  return out;
}

describe('softmax and logSoftmax', () => {
  const cases: [number[], number][] = [
    [[4, 7], -1],
    [[4, 7], 0],
    [[2, 3, 4], 1],
    [[3, 1000], 1],
    [[5], 0],
  ];
  for (const level of ['scalar', 'avx2', 'avx512'] as const) {
    it(`f32 (${level} path) matches the reference, including huge logits`, () => {
      const original = DEFAULT_SIMD;
      native.setSimd(level);
      try {
        cases.forEach(([shape, axis], k) => {
          for (const scale of [3, 1000]) {
            const x = rand(shape, 300 + k, 'f32', -scale, scale);
            expectClose(flat(keep(ops.softmax(x.t, axis))), refSoftmax(shape, x.v, axis, false), 1e-7, 1e-5, `softmax ${shape}`);
            expectClose(flat(keep(ops.logSoftmax(x.t, axis))), refSoftmax(shape, x.v, axis, true), 2e-6, 1e-6, `logSoftmax ${shape}`);
          }
        });
      } finally {
        native.setSimd(original);
      }
    });
  }
  it('f64 matches to 1e-12; -inf entries get probability 0; a NaN row is NaN', () => {
    const x = rand([6, 9], 5, 'f64', -50, 50);
    expectClose(flat(keep(ops.softmax(x.t))), refSoftmax([6, 9], x.v, -1, false), 1e-15, 1e-12, 'f64 softmax');
    expectClose(flat(keep(ops.logSoftmax(x.t, 0))), refSoftmax([6, 9], x.v, 0, true), 1e-12, 1e-12, 'f64 logSoftmax');
    const special = keep(tensor([[0, -Infinity, 1], [NaN, 1, 2]]));
    const y = flat(keep(ops.softmax(special)));
    expect(y[1]).toBe(0);
    expect(Math.abs(y[0]! + y[2]! - 1)).toBeLessThan(1e-6);
    expect([...y.subarray(3)].every(Number.isNaN)).toBe(true);
  });
  it('rejects a scalar and a bad axis', () => {
    expectCode(() => ops.softmax(keep(tensor(1))), 'E_SHAPE');
    expectCode(() => ops.logSoftmax(rand([2, 3], 1).t, 2), 'E_INVALID_ARG', 'axis 2');
  });
});

function refCrossEntropy(v: Float64Array, C: number, targets: number[], ignore?: number): number {
  let total = 0;
  let n = 0;
  targets.forEach((t, r) => {
    if (t === ignore) return;
    let m = -Infinity;
    for (let c = 0; c < C; c++) m = Math.max(m, v[r * C + c]!);
    let s = 0;
    for (let c = 0; c < C; c++) s += Math.exp(v[r * C + c]! - m);
    total += m + Math.log(s) - v[r * C + t]!;
    n++;
  });
  return total / n;
}

describe('crossEntropy', () => {
  for (const dtype of ['f32', 'f64'] as const) {
    it(`${dtype} logits: the mean over rows against naive float64`, () => {
      const tol = dtype === 'f32' ? 1e-6 : 1e-12;
      for (const [N, C, scale] of [[6, 5, 3], [2000, 50, 10], [4, 3, 500]] as const) {
        const x = rand([N, C], N + C, dtype, -scale, scale);
        const r = rng(N);
        const tg = Array.from({ length: N }, () => Math.floor(r() * C));
        const targets = keep(tensor(tg, { dtype: 'i32' }));
        const loss = keep(ops.crossEntropy(x.t, targets));
        expect(loss.dtype).toBe('f64');
        expect(loss.shape).toEqual([]);
        expect(Math.abs(ops.item(loss) - refCrossEntropy(x.v, C, tg))).toBeLessThanOrEqual(tol);
      }
    });
  }
  it('[..., C] logits with targets [...], and ignoreIndex', () => {
    const x = rand([2, 3, 4], 17);
    const tg = [0, 3, -100, 2, -100, 1];
    const targets = keep(tensor([[0, 3, -100], [2, -100, 1]], { dtype: 'i32' }));
    const got = ops.item(keep(ops.crossEntropy(x.t, targets, { ignoreIndex: -100 })));
    expect(Math.abs(got - refCrossEntropy(x.v, 4, tg, -100))).toBeLessThan(1e-6);
    const all = keep(tensor([[-1, -1, -1], [-1, -1, -1]], { dtype: 'i32' }));
    expect(Number.isNaN(ops.item(keep(ops.crossEntropy(x.t, all, { ignoreIndex: -1 }))))).toBe(true);
  });
  it('is bit-identical with 1 and 2 threads', () => {
    const x = rand([3000, 40], 4);
    const r = rng(2);
    const targets = keep(tensor(Array.from({ length: 3000 }, () => Math.floor(r() * 40)), { dtype: 'i32' }));
    const before = DEFAULT_THREADS;
    native.setThreads(1);
    const one = ops.item(keep(ops.crossEntropy(x.t, targets)));
    native.setThreads(2);
    const two = ops.item(keep(ops.crossEntropy(x.t, targets)));
    native.setThreads(before);
    expect(two).toBe(one);
  });
  it('errors: bad target names the id, wrong shapes name both, wrong dtypes', () => {
    const x = rand([3, 4], 1);
    expectCode(() => ops.crossEntropy(x.t, keep(tensor([0, 7, 1], { dtype: 'i32' }))), 'E_INVALID_ARG', 'target 7', 'row 1');
    expectCode(() => ops.crossEntropy(x.t, keep(tensor([0, -100, 1], { dtype: 'i32' }))), 'E_INVALID_ARG', '-100');
    expectCode(() => ops.crossEntropy(x.t, keep(tensor([0, 1], { dtype: 'i32' }))), 'E_SHAPE', '[3, 4]', '[2]');
    expectCode(() => ops.crossEntropy(x.t, keep(tensor([0, 1, 2]))), 'E_DTYPE', 'i32');
    expectCode(() => ops.crossEntropy(keep(tensor([[1, 2]], { dtype: 'i32' })), keep(tensor([0], { dtype: 'i32' }))), 'E_DTYPE');
  });
});

describe('mse', () => {
  it('matches naive float64 for f32 and f64', () => {
    for (const dtype of ['f32', 'f64'] as const) {
      const a = rand([1000, 37], 1, dtype);
      const b = rand([1000, 37], 2, dtype);
      let s = 0;
      for (let i = 0; i < a.v.length; i++) s += (a.v[i]! - b.v[i]!) ** 2;
      const got = keep(ops.mse(a.t, b.t));
      expect(got.dtype).toBe('f64');
      expect(Math.abs(ops.item(got) - s / a.v.length)).toBeLessThanOrEqual(1e-12 * (s / a.v.length));
    }
  });
  it('rejects different shapes (naming both) and dtypes', () => {
    expectCode(() => ops.mse(rand([3, 4], 1).t, rand([4, 3], 2).t), 'E_SHAPE', '[3, 4]', '[4, 3]');
    expectCode(() => ops.mse(rand([3], 1).t, rand([3], 2, 'f64').t), 'E_DTYPE');
  });
});

// ---- shape ops ------------------------------------------------------------------------------------

describe('gather / embedding', () => {
  it('picks rows for ids of any shape, any dtype', () => {
    const table = rand([10, 4], 3);
    const ids = [[3, 0, 9], [9, 1, 3]];
    const idT = keep(tensor(ids, { dtype: 'i32' }));
    for (const fn of [ops.gather, ops.embedding]) {
      const got = keep(fn(table.t, idT));
      expect(got.shape).toEqual([2, 3, 4]);
      const want = ids.flat().flatMap((i) => [...table.v.subarray(i * 4, i * 4 + 4)]);
      expectClose(flat(got), want, 0, 0, 'gather');
    }
    const half = keep(tensor([[1, 2], [3, 4], [5, 6]], { dtype: 'bf16' }));
    const g = keep(ops.gather(half, keep(tensor([2, 0], { dtype: 'i32' }))));
    expect(g.toArray()).toEqual([[5, 6], [1, 2]]);
    const scalarId = keep(ops.gather(table.t, keep(tensor(7, { dtype: 'i32' }))));
    expect(scalarId.shape).toEqual([4]);
  });
  it('names an out-of-range id; rejects non-i32 ids and non-2-D tables', () => {
    const table = rand([10, 4], 3);
    expectCode(() => ops.gather(table.t, keep(tensor([1, 10], { dtype: 'i32' }))), 'E_INVALID_ARG', 'id 10', '10 rows');
    expectCode(() => ops.gather(table.t, keep(tensor([[0], [-1]], { dtype: 'i32' }))), 'E_INVALID_ARG', 'id -1');
    expectCode(() => ops.gather(table.t, keep(tensor([1, 2]))), 'E_DTYPE', 'i32');
    expectCode(() => ops.gather(rand([10], 1).t, keep(tensor([1], { dtype: 'i32' }))), 'E_SHAPE', '[10]');
  });
});

describe('concat, slice, transpose', () => {
  // Reference element access on nested arrays.
  const nested = (shape: number[], v: ArrayLike<number>) => {
    const st = strides(shape);
    return (idx: number[]) => v[idx.reduce((s, i, d) => s + i * st[d]!, 0)]!;
  };
  const forEachIndex = (shape: number[], fn: (idx: number[], lin: number) => void) => {
    const n = numel(shape);
    for (let lin = 0; lin < n; lin++) {
      const idx: number[] = [];
      let rest = lin;
      for (let d = shape.length - 1; d >= 0; d--) {
        idx[d] = rest % shape[d]!;
        rest = Math.floor(rest / shape[d]!);
      }
      fn(idx, lin);
    }
  };

  it('concat along every axis, several tensors', () => {
    const a = rand([2, 3, 4], 1);
    const b = rand([2, 3, 4], 2);
    const c = rand([2, 3, 4], 3);
    for (const axis of [0, 1, 2, -1]) {
      const ax = axis < 0 ? 3 + axis : axis;
      const got = keep(ops.concat([a.t, b.t, c.t], axis));
      const shape = [2, 3, 4];
      shape[ax] = shape[ax]! * 3;
      expect(got.shape).toEqual(shape);
      const parts = [a, b, c].map((p) => nested([2, 3, 4], p.v));
      const y = flat(got);
      forEachIndex(shape, (idx, lin) => {
        const k = Math.floor(idx[ax]! / [2, 3, 4][ax]!);
        const local = [...idx];
        local[ax] = idx[ax]! % [2, 3, 4][ax]!;
        expect(y[lin]).toBe(parts[k]!(local));
      });
    }
    const i = keep(ops.concat([keep(tensor([[1, 2]], { dtype: 'i32' })), keep(tensor([[3, 4], [5, 6]], { dtype: 'i32' }))]));
    expect(i.toArray()).toEqual([[1, 2], [3, 4], [5, 6]]);
  });
  it('concat errors', () => {
    expectCode(() => ops.concat([rand([2, 3], 1).t, rand([2, 4], 2).t], 0), 'E_SHAPE', '[2, 4]', '[2, 3]');
    expectCode(() => ops.concat([rand([2, 3], 1).t, rand([2, 3], 2, 'f64').t]), 'E_DTYPE');
    expectCode(() => ops.concat([]), 'E_INVALID_ARG');
    expectCode(() => ops.concat([rand([2], 1).t], 1), 'E_INVALID_ARG', 'axis 1');
  });
  it('slice with positive, negative, partial and empty ranges', () => {
    const x = rand([4, 5, 6], 4);
    const at = nested([4, 5, 6], x.v);
    const cases: [number[], number[]][] = [
      [[1, 0, 2], [3, 5, -1]],
      [[-2], [4]],
      [[0, 2], [4, 3]],
      [[1, 1, 1], [1, 4, 5]], // empty
      [[0, 0, 0], [4, 5, 6]],
    ];
    for (const [s, e] of cases) {
      const lo = [0, 1, 2].map((d) => (d < s.length ? (s[d]! < 0 ? s[d]! + [4, 5, 6][d]! : s[d]!) : 0));
      const hi = [0, 1, 2].map((d) => (d < e.length ? (e[d]! < 0 ? e[d]! + [4, 5, 6][d]! : e[d]!) : [4, 5, 6][d]!));
      const shape = hi.map((h, d) => h - lo[d]!);
      const got = keep(ops.slice(x.t, s, e));
      expect(got.shape).toEqual(shape);
      const y = flat(got);
      forEachIndex(shape, (idx, lin) => expect(y[lin]).toBe(at(idx.map((i, d) => i + lo[d]!))));
    }
    expectCode(() => ops.slice(x.t, [0, 4], [4, 6]), 'E_INVALID_ARG', 'axis 1', '[4, 5, 6]');
    expectCode(() => ops.slice(x.t, [3], [2]), 'E_INVALID_ARG');
    expectCode(() => ops.slice(x.t, [0, 0, 0, 0], [1, 1, 1, 1]), 'E_INVALID_ARG');
  });
  it('transpose: default swaps the last two axes; any permutation; any dtype', () => {
    for (const dtype of ['f32', 'f64'] as const) {
      const x = rand([2, 3, 4], 5, dtype);
      const at = nested([2, 3, 4], x.v);
      for (const perm of [undefined, [2, 0, 1], [1, 0, 2], [0, 1, 2], [-1, 0, 1]]) {
        const p = (perm ?? [0, 2, 1]).map((a) => (a < 0 ? a + 3 : a));
        const got = keep(ops.transpose(x.t, perm));
        const shape = p.map((a) => [2, 3, 4][a]!);
        expect(got.shape).toEqual(shape);
        const y = flat(got);
        forEachIndex(shape, (idx, lin) => {
          const src = [0, 0, 0];
          p.forEach((a, i) => (src[a] = idx[i]!));
          expect(y[lin]).toBe(at(src));
        });
      }
    }
    const big = rand([300, 200], 6);
    const t = flat(keep(ops.transpose(big.t)));
    for (let i = 0; i < 300; i += 37) for (let j = 0; j < 200; j += 13) expect(t[j * 300 + i]).toBe(big.v[i * 200 + j]);
    const u8 = keep(tensor([[1, 2, 3], [4, 5, 6]], { dtype: 'u8' }));
    expect(keep(ops.transpose(u8)).toArray()).toEqual([[1, 4], [2, 5], [3, 6]]);
  });
  it('transpose errors', () => {
    expectCode(() => ops.transpose(rand([3], 1).t), 'E_SHAPE', '[3]');
    expectCode(() => ops.transpose(rand([2, 3], 1).t, [0, 0]), 'E_INVALID_ARG');
    expectCode(() => ops.transpose(rand([2, 3], 1).t, [0]), 'E_INVALID_ARG');
    const int4 = keep(tensor([1, 2, 3, 4], { dtype: 'int4', shape: [2, 2] }));
    expectCode(() => ops.transpose(int4), 'E_DTYPE', 'int4');
  });
});

// ---- item, disposal, devices ------------------------------------------------------------------

describe('item and lifetimes', () => {
  it('item reads one-element tensors of any shape and dtype', () => {
    expect(ops.item(keep(tensor(2.5)))).toBe(2.5);
    expect(ops.item(keep(tensor([[7]], { dtype: 'i32' })))).toBe(7);
    expect(ops.item(keep(tensor([1.5], { dtype: 'bf16' })))).toBe(1.5);
    expectCode(() => ops.item(rand([2], 1).t), 'E_SHAPE', '[2]');
  });
  it('every op refuses a disposed input with E_DISPOSED', () => {
    const d = tensor([[1, 2], [3, 4]]);
    d.dispose();
    const ok = rand([2, 2], 1).t;
    const ids = keep(tensor([0], { dtype: 'i32' }));
    const calls: (() => unknown)[] = [
      () => ops.add(d, ok), () => ops.mul(ok, d), () => ops.sub(1, d), () => ops.exp(d), () => ops.matmul(ok, d),
      () => ops.sum(d), () => ops.softmax(d), () => ops.crossEntropy(d, ids), () => ops.mse(d, ok),
      () => ops.gather(d, ids), () => ops.concat([ok, d]), () => ops.slice(d, [0], [1]), () => ops.transpose(d),
      () => ops.item(d),
    ];
    for (const c of calls) expectCode(c, 'E_DISPOSED');
  });
  it.skipIf(!HAS_CUDA)('a CUDA tensor is refused with E_DEVICE (skipped: no CUDA device here)', () => {
    const g = keep(tensor([1, 2, 3], { device: 'cuda' }));
    expectCode(() => ops.exp(g), 'E_DEVICE', 'cuda');
    expectCode(() => ops.add(g, 1), 'E_DEVICE');
    const g2 = keep(tensor([[1, 2, 3]], { device: 'cuda' }));
    expectCode(() => ops.matmul(g2, keep(tensor([[1], [2], [3]]))), 'E_DEVICE');
  });
});
