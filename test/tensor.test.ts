import { describe, expect, it } from 'vitest';
import * as zeroth from '../src/index.js';
import { ZerothError } from '../src/index.js';

// An independent float -> f16 reference: exact rational arithmetic on the double value,
// round to nearest, ties to even (written for this test; not the native code's algorithm).
function f16Ref(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  let a = Math.abs(x);
  if (a === Infinity) return sign | 0x7c00;
  // Quantum of the binade holding a (subnormals share the quantum 2^-24).
  const e = a === 0 ? -25 : Math.max(Math.floor(Math.log2(a)), -14);
  // log2 may be off by one at exact powers; fix it.
  let exp = e;
  if (a !== 0 && exp > -14 && 2 ** exp > a) exp -= 1;
  if (a !== 0 && 2 ** (exp + 1) <= a) exp += 1;
  exp = Math.max(exp, -14);
  const q = 2 ** (exp - 10);
  let m = a / q; // exact in double for the f32/f64 inputs used here
  const fl = Math.floor(m);
  const frac = m - fl;
  m = frac > 0.5 || (frac === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  a = m * q;
  if (a >= 65520 || a > 65504) return sign | 0x7c00;
  if (a === 0) return sign;
  if (a < 2 ** -14) return sign | Math.round(a / 2 ** -24);
  let ex = Math.floor(Math.log2(a));
  if (2 ** ex > a) ex -= 1;
  if (2 ** (ex + 1) <= a) ex += 1;
  const mant = a / 2 ** ex - 1;
  return sign | ((ex + 15) << 10) | Math.round(mant * 1024);
}

// bf16 reference: round the f32 value to 8 significant bits, ties to even, via integer math on the bits.
function bf16Ref(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40;
  const hi = u >>> 16;
  const lo = u & 0xffff;
  if (lo > 0x8000 || (lo === 0x8000 && (hi & 1) === 1)) return (hi + 1) & 0xffff;
  return hi;
}

function f16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 31) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

describe('tensors: creation and roundtrips', () => {
  it('roundtrips every dtype through its typed array', () => {
    const cases: Array<[zeroth.DType, zeroth.TensorData]> = [
      ['f64', new Float64Array([1.5, -2.25, Math.PI, 1e300, -0])],
      ['f32', new Float32Array([1.5, -2.25, Math.fround(Math.PI), 3e38, -0])],
      ['f16', new Uint16Array([0x3c00, 0xc100, 0x7c00, 0x0001, 0x8000])],
      ['bf16', new Uint16Array([0x3f80, 0xc010, 0x7f80, 0x0001, 0x8000])],
      ['i32', new Int32Array([1, -2, 2147483647, -2147483648, 0])],
      ['i8', new Int8Array([1, -2, 127, -128, 0])],
      ['u8', new Uint8Array([1, 2, 255, 128, 0])],
      ['int4', new Uint8Array([0, 15, 7, 8, 1])],
    ];
    for (const [dtype, data] of cases) {
      using t = zeroth.tensor(data, { dtype });
      expect(t.dtype).toBe(dtype);
      expect(t.shape).toEqual([5]);
      expect(t.numel).toBe(5);
      expect(Array.from(t.toTypedArray())).toEqual(Array.from(data));
      using c = t.clone();
      expect(Array.from(c.toTypedArray())).toEqual(Array.from(data));
    }
  });

  it('infers shapes from nested arrays and reads them back', () => {
    using t = zeroth.tensor([[1, 2, 3], [4, 5, 6]]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('f32');
    expect(t.toArray()).toEqual([[1, 2, 3], [4, 5, 6]]);
    using r = t.reshape(3, -1);
    expect(r.shape).toEqual([3, 2]);
    expect(r.toArray()).toEqual([[1, 2], [3, 4], [5, 6]]);
    using s = zeroth.tensor(7.5, { dtype: 'f64' });
    expect(s.shape).toEqual([]);
    expect(s.toArray()).toBe(7.5);
  });

  it('zeros, ones, full and arange', () => {
    using z = zeroth.zeros([2, 2], { dtype: 'i32' });
    expect(Array.from(z.toTypedArray())).toEqual([0, 0, 0, 0]);
    using o = zeroth.ones([3]);
    expect(Array.from(o.toTypedArray())).toEqual([1, 1, 1]);
    using f = zeroth.full([2], 2.5, { dtype: 'f64' });
    expect(Array.from(f.toTypedArray())).toEqual([2.5, 2.5]);
    using a = zeroth.arange(0, 5, 2);
    expect(Array.from(a.toTypedArray())).toEqual([0, 2, 4]);
    using b = zeroth.arange(4, undefined, 1, { dtype: 'i32' });
    expect(Array.from(b.toTypedArray())).toEqual([0, 1, 2, 3]);
  });

  it('int4 pack/unpack roundtrips every code at odd and even lengths', () => {
    for (const n of [1, 2, 15, 16, 33, 1001]) {
      const codes = Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 3)) % 16);
      using t = zeroth.tensor(codes, { dtype: 'int4' });
      expect(Array.from(t.toTypedArray())).toEqual(Array.from(codes));
    }
    expect(() => zeroth.tensor(new Uint8Array([16]), { dtype: 'int4' })).toThrowError(/codes are 0..15/);
  });
});

describe('f16 / bf16 conversion (round to nearest even)', () => {
  // Inputs chosen to hit ties, subnormals, overflow, infinities, NaN and signed zeros.
  const specials = [
    0, -0, 1, -1, 65504, 65519.99, 65520, -65520, 1e6, Infinity, -Infinity, 2 ** -14, 2 ** -24, 2 ** -25,
    3 * 2 ** -26, 2 ** -25 * 1.0000001, 5.960464477539063e-8, 6.1e-5, 1 + 2 ** -11, 1 + 3 * 2 ** -11,
    1 + 2 ** -11 + 2 ** -20, 0.1, 1 / 3, 2049, 2051, 4097, -4099, 1e-10, 3.4028234663852886e38,
  ];
  const rand: number[] = [];
  let s = 12345;
  for (let i = 0; i < 4000; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const mant = (s >>> 8) / 2 ** 24;
    rand.push((s & 1 ? -1 : 1) * (1 + mant) * 2 ** (((s >>> 1) % 60) - 30));
  }
  const values = Float32Array.from([...specials, ...rand]);

  it('f32 -> f16 matches the reference bit for bit, NaN included', () => {
    using t = zeroth.tensor(values);
    using h = t.to('f16');
    const got = h.toTypedArray();
    for (let i = 0; i < values.length; i++) expect(got[i], `f16(${values[i]})`).toBe(f16Ref(values[i]!));
    using n = zeroth.tensor(new Float32Array([NaN])).to('f16');
    const bits = n.toTypedArray()[0]!;
    expect((bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0).toBe(true);
  });

  it('f32 -> bf16 matches the reference bit for bit', () => {
    using t = zeroth.tensor(values);
    using b = t.to('bf16');
    const got = b.toTypedArray();
    for (let i = 0; i < values.length; i++) expect(got[i], `bf16(${values[i]})`).toBe(bf16Ref(values[i]!));
  });

  it('f16 -> f32 is exact for all 65536 bit patterns', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    using h = zeroth.tensor(all, { dtype: 'f16' });
    using f = h.to('f32');
    const got = f.toTypedArray();
    for (let i = 0; i < 65536; i++) {
      const want = f16ToNumber(i);
      if (Number.isNaN(want)) expect(Number.isNaN(got[i]!)).toBe(true);
      else expect(Object.is(got[i], want) || got[i] === want, `bits ${i.toString(16)}`).toBe(true);
    }
  });

  it('f64 -> f16 rounds once from the f64 value (no double rounding)', () => {
    // 1 + 2^-11 + 2^-40 rounds up in one step; via f32 (1 + 2^-11 exactly, a tie) it would round to even = 1.
    using t = zeroth.tensor(new Float64Array([1 + 2 ** -11 + 2 ** -40, 1 + 2 ** -11]), { dtype: 'f64' });
    using h = t.to('f16');
    expect(Array.from(h.toTypedArray())).toEqual([0x3c01, 0x3c00]);
  });
});

describe('errors carry stable codes', () => {
  it('shape errors', () => {
    const err = (() => { try { zeroth.tensor(new Float32Array(5), { shape: [2, 3] }); } catch (e) { return e; } })();
    expect(err).toBeInstanceOf(ZerothError);
    expect((err as ZerothError).code).toBe('E_SHAPE');
    expect(() => zeroth.zeros([-1])).toThrowError(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => zeroth.zeros([2 ** 40, 2 ** 40])).toThrowError(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => zeroth.tensor([[1, 2], [3]])).toThrowError(expect.objectContaining({ code: 'E_SHAPE' }));
    using t = zeroth.zeros([6]);
    expect(() => t.reshape(4, 2)).toThrowError(expect.objectContaining({ code: 'E_SHAPE' }));
  });

  it('dtype errors', () => {
    expect(() => zeroth.zeros([2], { dtype: 'f8' as zeroth.DType })).toThrowError(expect.objectContaining({ code: 'E_DTYPE' }));
    expect(() => zeroth.tensor(new Uint16Array(2))).toThrowError(expect.objectContaining({ code: 'E_DTYPE' }));
    using q = zeroth.tensor(new Uint8Array([1, 2]), { dtype: 'int4' });
    expect(() => q.to('f32')).toThrowError(expect.objectContaining({ code: 'E_DTYPE' }));
  });

  it('device errors', () => {
    expect(() => zeroth.zeros([2], { device: 'tpu' as zeroth.DeviceName })).toThrowError(expect.objectContaining({ code: 'E_DEVICE' }));
    const hasCuda = zeroth.devices().some((d) => d.type === 'cuda');
    if (!hasCuda) {
      expect(() => zeroth.zeros([2], { device: 'cuda' })).toThrowError(expect.objectContaining({ code: 'E_DEVICE' }));
      expect(() => zeroth.zeros([2], { device: 'cuda:3' })).toThrowError(/not available|does not exist/);
    }
  });

  it('use after dispose gives E_DISPOSED, and dispose twice is harmless', () => {
    const t = zeroth.tensor([1, 2, 3]);
    t.dispose();
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.toTypedArray()).toThrowError(expect.objectContaining({ code: 'E_DISPOSED' }));
    expect(() => t.clone()).toThrowError(expect.objectContaining({ code: 'E_DISPOSED' }));
  });

  it('`using` disposes at scope exit', () => {
    const before = zeroth.memoryStats().liveTensors;
    let escaped: zeroth.Tensor | undefined;
    {
      using t = zeroth.zeros([1000]);
      escaped = t;
      expect(zeroth.memoryStats().liveTensors).toBe(before + 1);
    }
    expect(escaped.disposed).toBe(true);
    expect(zeroth.memoryStats().liveTensors).toBe(before);
  });
});

describe('devices', () => {
  it('lists the cpu first with a name and its memory', () => {
    const ds = zeroth.devices();
    expect(ds[0]).toMatchObject({ type: 'cpu', index: 0 });
    expect(ds[0]!.name.length).toBeGreaterThan(0);
    expect(ds[0]!.totalMemory).toBeGreaterThan(2 ** 28);
    for (const d of ds.slice(1)) expect(d).toMatchObject({ type: 'cuda' });
  });
});

describe('native handles', () => {
  it('an External that is not a tensor handle is refused with E_INVALID_ARG', async () => {
    const { native } = await import('../src/native.js');
    const journal = native.journalCreate();
    expect(() => native.tensorRead(journal)).toThrowError(expect.objectContaining({ code: 'E_INVALID_ARG' }));
    expect(() => native.tensorRead({})).toThrowError(expect.objectContaining({ code: 'E_INVALID_ARG' }));
  });
});
