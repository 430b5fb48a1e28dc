// rng.test.ts — the Philox streams as JavaScript sees them (native.fillZ / native.streamId).
//
// Moments of N = 10^6 standard normals, each within 4 standard errors. Because the true mean
// (0) and variance (1) are known, we test raw moments about 0, whose standard errors follow
// from the normal's moments E z^2 = 1, E z^4 = 3, E z^6 = 15, E z^8 = 105:
//   mean      m1 = Σz/N              SE = sqrt(1/N)
//   variance  m2 = Σz²/N             SE = sqrt((E z^4 - 1)/N)       = sqrt(2/N)
//   skewness  m3 = Σz³/N             SE = sqrt(E z^6 / N)           = sqrt(15/N)
//   ex. kurt. m4 - 3 = Σz⁴/N - 3     SE = sqrt((E z^8 - 9)/N)       = sqrt(96/N)
// Rademacher: the fraction of +1 within 4·sqrt(1/(4N)) of 1/2, and the lag-1 product mean
// within 4·sqrt(1/N) of 0.
import { describe, expect, it } from 'vitest';
import { native } from '../src/native.js';

const N = 1_000_000;

// FNV-1a 64 written here from the published definition (not the native code).
function fnv1a64(name: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(name)) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}

describe('rng', () => {
  it('stream ids are FNV-1a 64 of the UTF-8 name', () => {
    for (const name of ['', 'a', 'layers.0.attn.q_proj.weight', 'poids_é'])
      expect(native.streamId(name)).toBe(fnv1a64(name));
  });

  it('normal samples have the moments of N(0, 1) within 4 standard errors', () => {
    const z: Float32Array = native.fillZ(2024n, native.streamId('w'), 'normal', 0n, N);
    let s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    for (let i = 0; i < N; i++) {
      const x = z[i]!;
      const x2 = x * x;
      s1 += x;
      s2 += x2;
      s3 += x2 * x;
      s4 += x2 * x2;
    }
    expect(Math.abs(s1 / N)).toBeLessThan(4 * Math.sqrt(1 / N));
    expect(Math.abs(s2 / N - 1)).toBeLessThan(4 * Math.sqrt(2 / N));
    expect(Math.abs(s3 / N)).toBeLessThan(4 * Math.sqrt(15 / N));
    expect(Math.abs(s4 / N - 3)).toBeLessThan(4 * Math.sqrt(96 / N));
  });

  it('rademacher samples are balanced ±1 and uncorrelated with their neighbour', () => {
    const z: Float32Array = native.fillZ(7n, 3n, 'rademacher', 0n, N);
    let plus = 0, lag = 0, other = 0;
    for (let i = 0; i < N; i++) {
      if (z[i] !== 1 && z[i] !== -1) other++;
      if (z[i] === 1) plus++;
      if (i > 0) lag += z[i]! * z[i - 1]!;
    }
    expect(other).toBe(0);
    expect(Math.abs(plus / N - 0.5)).toBeLessThan(4 * Math.sqrt(0.25 / N));
    expect(Math.abs(lag / (N - 1))).toBeLessThan(4 * Math.sqrt(1 / (N - 1)));
  });

  it('z of an element depends only on (seed, stream, index), on every SIMD level', () => {
    const saved = native.setSimd('avx512');
    try {
      for (const dist of ['normal', 'rademacher']) {
        const whole: Float32Array = native.fillZ(5n, 99n, dist, 0n, 5000);
        for (const level of ['scalar', 'avx2', 'avx512']) {
          native.setSimd(level);
          const again: Float32Array = native.fillZ(5n, 99n, dist, 0n, 5000);
          expect(Buffer.from(again.buffer).equals(Buffer.from(whole.buffer))).toBe(true);
          const part: Float32Array = native.fillZ(5n, 99n, dist, 1234n, 777);
          expect(Buffer.from(part.buffer).equals(Buffer.from(whole.buffer, 1234 * 4, 777 * 4))).toBe(true);
        }
      }
      const other: Float32Array = native.fillZ(5n, 100n, 'normal', 0n, 64);
      const mine: Float32Array = native.fillZ(5n, 99n, 'normal', 0n, 64);
      expect(Buffer.from(other.buffer).equals(Buffer.from(mine.buffer))).toBe(false);
    } finally {
      native.setSimd(saved);
    }
  });

  it('rejects a bad distribution name', () => {
    expect(() => native.fillZ(1n, 1n, 'uniform', 0n, 4)).toThrow(/normal' or 'rademacher/);
  });
});
