// quant.test.ts — zeroth.quantize / dequantize / quantizedMatmul through the TypeScript API, against
// references computed here in float64. (test/native/test_int4.cpp covers the kernels in depth on
// every SIMD path.)
//
// Tolerances:
//   quantize -> dequantize: |deq - w| <= scale/2 of the element's group + 2^-20·(|w| + scale)
//     (the f32 rounding of w/scale and of (code - zero)·scale), unless clip is on.
//   fused matmul: |y - y_ref| <= 1e-5·Σ_k |x_k·w_k| with y_ref the float64 product of the
//     de-quantized weights (and against zeroth.ops.matmul of them, the same bound).
import { describe, expect, it } from 'vitest';
import { ZerothError } from '../src/errors.js';
import * as ops from '../src/ops.js';
import { dequantize, quantCodes, quantInfo, quantize, quantizedMatmul, quantizedMatmulAsync } from '../src/quant.js';
import { Tensor, tensor } from '../src/tensor.js';

function rand(n: number, seed: number, offset = 0): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 8) / 2 ** 24 - 0.5 + offset;
  }
  return out;
}

function floats(t: Tensor): Float32Array {
  if (t.dtype === 'f32') return t.toTypedArray() as Float32Array;
  using f = t.to('f32');
  return f.toTypedArray() as Float32Array;
}

const cases: Array<{ bits: 4 | 8; rows: number; cols: number; groupSize?: number; symmetric?: boolean; scaleDtype?: 'f32' | 'f16'; offset: number }> = [
  { bits: 4, rows: 5, cols: 37, groupSize: 8, offset: 0 },
  { bits: 4, rows: 3, cols: 129, groupSize: 128, offset: 1.5 },
  { bits: 4, rows: 4, cols: 50, groupSize: 16, symmetric: true, offset: -0.2 },
  { bits: 4, rows: 6, cols: 77, groupSize: 32, scaleDtype: 'f16', offset: 0 },
  { bits: 8, rows: 5, cols: 41, offset: 0.1 },
  { bits: 8, rows: 2, cols: 300, scaleDtype: 'f16', offset: 0 },
];

describe('quantize / dequantize', () => {
  for (const c of cases) {
    const label = `int${c.bits} [${c.rows}x${c.cols}] gs ${c.groupSize ?? 'row'} ${c.symmetric ? 'sym' : ''} ${c.scaleDtype ?? 'f32'}`;
    it(`${label}: every element within half a step of its group`, () => {
      const v = rand(c.rows * c.cols, c.rows * 31 + c.cols, c.offset);
      using w = tensor(v, { shape: [c.rows, c.cols] });
      using q = quantize(w, c);
      expect(q.dtype).toBe(c.bits === 4 ? 'int4' : 'int8');
      expect(q.shape).toEqual([c.rows, c.cols]);
      const info = quantInfo(q);
      const gs = info.groupSize;
      expect(gs).toBe(c.bits === 8 ? c.cols : Math.min(c.groupSize!, c.cols));
      expect(info.symmetric).toBe(c.bits === 8 || c.symmetric === true);
      const groups = Math.ceil(c.cols / gs);
      expect(info.scales.shape).toEqual([c.rows, groups]);
      expect(info.scales.dtype).toBe(c.scaleDtype ?? 'f32');
      expect(info.zeros === undefined).toBe(info.symmetric);
      const scales = floats(info.scales);
      const zeros = info.zeros ? floats(info.zeros) : undefined;
      const codes = quantCodes(q);
      using d = dequantize(q);
      const deq = d.toTypedArray() as Float32Array;
      for (let r = 0; r < c.rows; r++) {
        for (let col = 0; col < c.cols; col++) {
          const i = r * c.cols + col, g = r * groups + Math.floor(col / gs);
          const s = scales[g]!, z = zeros ? zeros[g]! : c.bits === 4 ? 8 : 0;
          const code = codes[i]!;
          if (c.bits === 4) expect(code >= 0 && code <= 15).toBe(true);
          else expect(code >= -127 && code <= 127).toBe(true);
          // dequantize is (code - zero)·scale in f32
          expect(deq[i]).toBe(Math.fround(Math.fround(code - z) * s));
          const err = Math.abs(deq[i]! - v[i]!);
          expect(err).toBeLessThanOrEqual(s / 2 + 2 ** -20 * (Math.abs(v[i]!) + s));
        }
      }
      info.scales.dispose();
      info.zeros?.dispose();
    });
  }

  it('int4 pack/unpack roundtrip: quantizing exactly representable weights gives them back bit for bit', () => {
    // Weights (code - 3)·0.25 with codes 0..15 in each group, and the full 0..15 range present.
    const rows = 3, cols = 33, codes = new Uint8Array(rows * cols);
    const v = new Float32Array(rows * cols);
    for (let i = 0; i < v.length; i++) {
      codes[i] = (i * 7 + 3) % 16;
      if (i % cols === 0) codes[i] = 0;
      if (i % cols === 1) codes[i] = 15;
      v[i] = (codes[i]! - 3) * 0.25;
    }
    using w = tensor(v, { shape: [rows, cols] });
    using q = quantize(w, { bits: 4, groupSize: cols });
    expect(Array.from(quantCodes(q))).toEqual(Array.from(codes));
    using d = dequantize(q);
    expect(Array.from(d.toTypedArray() as Float32Array)).toEqual(Array.from(v));
  });

  it('int8 roundtrip: multiples of the row scale come back exactly', () => {
    const rows = 2, cols = 9, v = new Float32Array(rows * cols);
    for (let i = 0; i < v.length; i++) v[i] = ((i * 37) % 255 - 127) * 0.5;
    v[0] = 127 * 0.5; // the row maximum fixes the scale at 0.5
    v[cols] = -127 * 0.5;
    using w = tensor(v, { shape: [rows, cols] });
    using q = quantize(w, { bits: 8 });
    expect(Array.from(quantCodes(q))).toEqual(Array.from(v, (x) => x / 0.5));
    using d = dequantize(q);
    expect(Array.from(d.toTypedArray() as Float32Array)).toEqual(Array.from(v));
  });

  it('clip never increases the squared error', () => {
    const v = rand(4 * 256, 5);
    for (let i = 0; i < v.length; i += 41) v[i]! *= 10;
    using w = tensor(v, { shape: [4, 256] });
    const sq = (q: Tensor): number => {
      using d = dequantize(q);
      const a = d.toTypedArray() as Float32Array;
      return a.reduce((s, x, i) => s + (x - v[i]!) ** 2, 0);
    };
    using plain = quantize(w, { bits: 4, groupSize: 64 });
    using clipped = quantize(w, { bits: 4, groupSize: 64, clip: true });
    expect(sq(clipped)).toBeLessThan(sq(plain));
  });

  it('rejects bad options and inputs with ZerothError codes', () => {
    using w = tensor(rand(20, 1), { shape: [4, 5] });
    const code = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(ZerothError);
        return (e as ZerothError).code;
      }
      return 'none';
    };
    expect(code(() => quantize(w, { bits: 3 as 4 }))).toBe('E_INVALID_ARG');
    expect(code(() => quantize(w, { bits: 4, groupSize: 0 }))).toBe('E_INVALID_ARG');
    expect(code(() => quantize(w, { bits: 8, symmetric: false }))).toBe('E_INVALID_ARG');
    expect(code(() => quantize(w, { bits: 4, scaleDtype: 'bf16' as 'f16' }))).toBe('E_INVALID_ARG');
    using v = tensor(rand(20, 1));
    expect(code(() => quantize(v, { bits: 4 }))).toBe('E_SHAPE');
    using f64 = w.to('f64');
    expect(code(() => quantize(f64, { bits: 4 }))).toBe('E_DTYPE');
    expect(code(() => dequantize(w))).toBe('E_DTYPE');
    using nan = tensor(new Float32Array([1, NaN, 2, 3]), { shape: [2, 2] });
    expect(code(() => quantize(nan, { bits: 4 }))).toBe('E_NAN');
    using q = quantize(w, { bits: 4, groupSize: 2 });
    using x = tensor(rand(6, 2), { shape: [1, 6] });
    expect(code(() => quantizedMatmul(x, q))).toBe('E_SHAPE');
  });
});

describe('fused quantized matmul', () => {
  const shapes = [
    { bits: 4 as const, M: 1, out: 37, inn: 32 * 5 + 18, groupSize: 32 },
    { bits: 4 as const, M: 5, out: 19, inn: 326, groupSize: 128, scaleDtype: 'f16' as const },
    { bits: 4 as const, M: 1, out: 13, inn: 101, groupSize: 7 },
    { bits: 4 as const, M: 3, out: 23, inn: 144, groupSize: 16, symmetric: true },
    { bits: 8 as const, M: 1, out: 21, inn: 301 },
    { bits: 8 as const, M: 4, out: 9, inn: 47 },
  ];
  for (const s of shapes) {
    it(`int${s.bits} M=${s.M} [${s.out}x${s.inn}] equals dequantize + f32 matmul within 1e-5 relative`, async () => {
      using w = tensor(rand(s.out * s.inn, s.out + s.inn, 0.1), { shape: [s.out, s.inn] });
      using q = quantize(w, s);
      const xv = rand(s.M * s.inn, 99 + s.M);
      using x = tensor(xv, { shape: [s.M, s.inn] });
      using y = quantizedMatmul(x, q);
      using ya = await quantizedMatmulAsync(x, q);
      expect(y.shape).toEqual([s.M, s.out]);
      using d = dequantize(q);
      using dt = ops.transpose(d, [1, 0]);
      using yRef32 = ops.matmul(x, dt);
      const deq = d.toTypedArray() as Float32Array;
      const got = y.toTypedArray() as Float32Array, gotAsync = ya.toTypedArray() as Float32Array;
      const viaOps = yRef32.toTypedArray() as Float32Array;
      for (let m = 0; m < s.M; m++) {
        for (let o = 0; o < s.out; o++) {
          let ref = 0, mag = 0;
          for (let k = 0; k < s.inn; k++) {
            const p = xv[m * s.inn + k]! * deq[o * s.inn + k]!;
            ref += p;
            mag += Math.abs(p);
          }
          const i = m * s.out + o;
          expect(Math.abs(got[i]! - ref)).toBeLessThanOrEqual(1e-5 * mag);
          expect(Math.abs(got[i]! - viaOps[i]!)).toBeLessThanOrEqual(1e-5 * mag);
          expect(gotAsync[i]).toBe(got[i]);
        }
      }
    });
  }

  it('accepts a 1-D x and returns [out]', () => {
    using w = tensor(rand(6 * 64, 3), { shape: [6, 64] });
    using q = quantize(w, { bits: 4, groupSize: 32 });
    using x = tensor(rand(64, 4));
    using y = quantizedMatmul(x, q);
    expect(y.shape).toEqual([6]);
  });
});
