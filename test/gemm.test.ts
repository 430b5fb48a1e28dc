// gemm.test.ts — the native gemm binding on tensor handles, against a float64 reference in JS.
// (test/native/test_gemm.cpp covers the kernel itself in depth: every SIMD path, edges, blocking.)
//
// Tolerance: |C - C_exact| <= (K + 3)·2^-23·(|alpha|·Σ|a||b| + |beta|·|c|), the f32 summation bound.
import { describe, expect, it } from 'vitest';
import { native } from '../src/native.js';
import { Tensor, tensor } from '../src/tensor.js';
import { ZerothError } from '../src/errors.js';

function rand(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 8) / 2 ** 24 - 0.5;
  }
  return out;
}

function mat(rows: number, cols: number, seed: number): { t: Tensor<'f32'>; v: Float32Array } {
  const v = rand(rows * cols, seed);
  return { t: tensor(v, { shape: [rows, cols] }), v };
}

interface Opts {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
  c?: object;
  perturb?: { seed: bigint; stream: bigint; scale: number; dist?: string };
}

function gemm(a: Tensor, b: Tensor, opts: Opts = {}): Tensor<'f32'> {
  return new Tensor<'f32'>(native.gemm(a.handle, b.handle, opts));
}

describe('gemm binding', () => {
  for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
    it(`matches a float64 reference (transA=${transA}, transB=${transB}, alpha, beta, c)`, () => {
      const M = 19, N = 37, K = 45, alpha = -1.25, beta = 0.5;
      const a = mat(transA ? K : M, transA ? M : K, 1);
      const b = mat(transB ? N : K, transB ? K : N, 2);
      const c = mat(M, N, 3);
      const out = gemm(a.t, b.t, { transA, transB, alpha, beta, c: c.t.handle });
      expect(out.shape).toEqual([M, N]);
      const got = out.toTypedArray();
      let worst = 0;
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let sum = 0, mag = 0;
          for (let k = 0; k < K; k++) {
            const x = transA ? a.v[k * M + i]! : a.v[i * K + k]!;
            const y = transB ? b.v[j * K + k]! : b.v[k * N + j]!;
            sum += x * y;
            mag += Math.abs(x * y);
          }
          const c0 = c.v[i * N + j]!;
          const ref = alpha * sum + beta * c0;
          const tol = (K + 3) * 2 ** -23 * (Math.abs(alpha) * mag + Math.abs(beta * c0));
          worst = Math.max(worst, Math.abs(got[i * N + j]! - ref) / tol);
        }
      }
      expect(worst).toBeLessThanOrEqual(1);
      // c is an input only: the result is a new tensor.
      expect(Array.from(c.t.toTypedArray())).toEqual(Array.from(c.v));
      for (const t of [a.t, b.t, c.t, out]) t.dispose();
    });
  }

  it('with a perturbation equals the product with B perturbed in place, to the bit', () => {
    const M = 23, N = 41, K = 67;
    const a = mat(M, K, 4);
    for (const [transB, dist] of [[false, 'normal'], [true, 'normal'], [false, 'rademacher'], [true, 'rademacher']] as const) {
      const b = mat(transB ? N : K, transB ? K : N, 5);
      const perturb = { seed: 0xfeedbeefcafen, stream: 0x1234567890abcdefn, scale: 0.01, dist };
      // I·(B + scale·z) reproduces the perturbed weight exactly (one non-zero product per sum),
      // laid out as B is stored, so z is indexed exactly as in the perturbed product.
      const rows = b.t.shape[0]!;
      const eye = new Float32Array(rows * rows);
      for (let i = 0; i < rows; i++) eye[i * rows + i] = 1;
      const I = tensor(eye, { shape: [rows, rows] });
      const bp = gemm(I, b.t, { perturb });
      const bpv = bp.toTypedArray();
      let changed = 0;
      for (let i = 0; i < bpv.length; i++) {
        const d = bpv[i]! - b.v[i]!;
        if (d !== 0) changed++;
        expect(Math.abs(d)).toBeLessThan(dist === 'normal' ? 0.01 * 6 + 1e-6 : 0.01 * 1.0001 + 1e-6);
      }
      expect(changed).toBeGreaterThan(bpv.length * 0.9);
      const viaDesc = gemm(a.t, b.t, { transB, perturb }).toTypedArray();
      const viaInPlace = gemm(a.t, bp, { transB }).toTypedArray();
      expect(Buffer.from(viaDesc.buffer).equals(Buffer.from(viaInPlace.buffer))).toBe(true);
      const clean = gemm(a.t, b.t, { transB }).toTypedArray();
      expect(Buffer.from(viaDesc.buffer).equals(Buffer.from(clean.buffer))).toBe(false);
      for (const t of [b.t, I, bp]) t.dispose();
    }
    a.t.dispose();
  });

  it('rejects mismatched shapes, wrong dtypes and bad options with ZerothError codes', () => {
    const a = mat(3, 4, 6).t;
    const b = mat(5, 6, 7).t;
    const code = (fn: () => unknown): string | undefined => {
      try {
        fn();
      } catch (e) {
        expect(e).toBeInstanceOf(ZerothError);
        return (e as ZerothError).code;
      }
      return undefined;
    };
    expect(code(() => gemm(a, b))).toBe('E_SHAPE');
    expect(code(() => gemm(a, tensor([1, 2, 3, 4], { dtype: 'i32' })))).toBe('E_DTYPE');
    expect(code(() => gemm(a, tensor([1, 2, 3, 4])))).toBe('E_SHAPE');
    const b2 = mat(4, 2, 8).t;
    expect(code(() => gemm(a, b2, { beta: 1 }))).toBe('E_INVALID_ARG');
    expect(code(() => gemm(a, b2, { c: mat(2, 3, 9).t.handle, beta: 1 }))).toBe('E_SHAPE');
    expect(code(() => gemm(a, b2, { perturb: { seed: 1n, stream: 2n, scale: 0.1, dist: 'uniform' } }))).toBe(
      'E_INVALID_ARG',
    );
    expect(code(() => gemm(a, b2, { perturb: { seed: -1n, stream: 2n, scale: 0.1 } }))).toBe('E_INVALID_ARG');
    const disposed = mat(4, 2, 10).t;
    const h = disposed.handle;
    disposed.dispose();
    expect(code(() => native.gemm(a.handle, h, {}))).toBe('E_DISPOSED');
  });
});
