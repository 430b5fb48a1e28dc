// safetensors.test.ts — the safetensors reader and writer through the addon.
//
// Independent checks written here in plain TypeScript: a reader (DataView + JSON.parse) that
// checks what our writer produced against the format's rules, a writer that produces files in
// a different layout (unsorted, unpadded, I64 / BOOL / BF16 / F8 tensors) for our reader, and
// bf16 / f16 decoders for the conversions on load.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ZerothError } from '../src/errors.js';
import { native } from '../src/native.js';
import { readSafetensors, writeSafetensors, type NativeHandle } from '../src/safetensors.js';
import { Tensor } from '../src/tensor.js';
import { mulberry32 as seeded } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'zeroth-st-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CPU = { type: 'cpu', index: 0 };
const BYTES: Record<string, number> = { f64: 8, f32: 4, f16: 2, bf16: 2, i32: 4, i8: 1, u8: 1 };
const FILE_DTYPE: Record<string, string> = { f64: 'F64', f32: 'F32', f16: 'F16', bf16: 'BF16', i32: 'I32', i8: 'I8', u8: 'U8' };

function randomBytes(n: number, rnd: () => number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

function makeTensor(dtype: string, shape: number[], bytes: Uint8Array): NativeHandle {
  return native.tensorFromData(bytes, dtype, shape, CPU) as NativeHandle;
}

function readTensor(h: NativeHandle): Uint8Array {
  return new Uint8Array(native.tensorRead(h) as ArrayBuffer);
}

function meta(h: NativeHandle): { dtype: string; shape: number[] } {
  return native.tensorMeta(h) as { dtype: string; shape: number[] };
}

// ---- an independent reader: the format's rules, checked one by one ----------------------------

interface ParsedFile {
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  metadata?: Record<string, string>;
  headerText: string;
  data: Uint8Array;
}

const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I32: 4, I8: 1, U8: 1, I64: 8, BOOL: 1, I16: 2 };

function independentRead(bytes: Uint8Array): ParsedFile {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  expect(8 + n).toBeLessThanOrEqual(bytes.length);
  const headerText = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
  expect(headerText[0]).toBe('{');
  const parsed = JSON.parse(headerText) as Record<string, unknown>;
  const data = bytes.subarray(8 + n);
  const { __metadata__: metadata, ...rest } = parsed;
  const header = rest as ParsedFile['header'];
  const byOffset = Object.entries(header).sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  let at = 0;
  for (const [name, t] of byOffset) {
    const [b, e] = t.data_offsets;
    expect(b, `${name} starts where the previous ends`).toBe(at);
    const size = t.shape.reduce((x, y) => x * y, 1) * DTYPE_BYTES[t.dtype]!;
    expect(e - b, `${name}: shape x dtype size = byte range`).toBe(size);
    at = e;
  }
  expect(at, 'ranges cover the data section').toBe(data.length);
  return { header, metadata: metadata as Record<string, string> | undefined, headerText, data };
}

// ---- an independent writer: any order, no padding, any dtype name ------------------------------

function independentWrite(
  entries: Array<{ name: string; dtype: string; shape: number[]; data: Uint8Array }>,
  metadata?: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.data.length] };
    offset += e.data.length;
  }
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  let at = 8 + h.length;
  for (const e of entries) {
    out.set(e.data, at);
    at += e.data.length;
  }
  return out;
}

function bf16ToNumber(h: number): number {
  return new Float32Array(new Uint32Array([h << 16]).buffer)[0]!;
}

function f16ToNumber(h: number): number {
  const s = h >> 15 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

async function expectCode(p: Promise<unknown>, code: string, ...needles: string[]): Promise<ZerothError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(ZerothError);
  const z = err as ZerothError;
  expect(z.code, z.message).toBe(code);
  for (const n of needles) expect(z.message).toContain(n);
  return z;
}

describe('safetensors writer', () => {
  it('writes files an independent reader accepts, and reads them back bit-exact', async () => {
    const rnd = seeded(1);
    const specs: Array<[string, string, number[]]> = [
      ['w.f32', 'f32', [3, 5]],
      ['w.f64', 'f64', [7]],
      ['w.f16', 'f16', [2, 3]],
      ['w.bf16', 'bf16', [9]],
      ['ids', 'i32', [2, 2]],
      ['q', 'i8', [5]],
      ['b', 'u8', [3]],
      ['scalar', 'f32', []],
      ['empty', 'f32', [0, 4]],
      ['naïve "name"', 'f32', [1]],
    ];
    const source = new Map<string, Uint8Array>();
    const tensors: Record<string, NativeHandle> = {};
    for (const [name, dtype, shape] of specs) {
      const bytes = randomBytes(shape.reduce((a, b) => a * b, 1) * BYTES[dtype]!, rnd);
      source.set(name, bytes);
      tensors[name] = makeTensor(dtype, shape, bytes);
    }
    const path = join(dir, 'written.safetensors');
    await writeSafetensors(path, tensors, { format: 'pt', note: 'multi\nline' });

    const file = new Uint8Array(readFileSync(path));
    const parsed = independentRead(file);
    const n = parsed.headerText.length;
    expect(new TextEncoder().encode(parsed.headerText).length % 8, 'header padded to 8 bytes').toBe(0);
    expect(parsed.headerText.trimEnd().endsWith('}')).toBe(true);
    expect(/^[^]*\} *$/.test(parsed.headerText), 'padding is spaces only').toBe(true);
    expect(n).toBeGreaterThan(0);
    expect(parsed.metadata).toEqual({ format: 'pt', note: 'multi\nline' });
    const names = Object.keys(parsed.header);
    const sorted = [...names].sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : 1));
    expect(names).toEqual(sorted);
    // Data offsets contiguous in name order, each holding the source bytes.
    let at = 0;
    for (const name of sorted) {
      const t = parsed.header[name]!;
      const spec = specs.find((s) => s[0] === name)!;
      expect(t.dtype).toBe(FILE_DTYPE[spec[1]]);
      expect(t.shape).toEqual(spec[2]);
      expect(t.data_offsets[0]).toBe(at);
      at = t.data_offsets[1];
      expect(parsed.data.subarray(t.data_offsets[0], t.data_offsets[1])).toEqual(source.get(name));
    }

    const reader = await readSafetensors(path);
    expect([...reader.names]).toEqual(sorted);
    expect(reader.metadata).toEqual({ format: 'pt', note: 'multi\nline' });
    for (const [name, dtype, shape] of specs) {
      const info = reader.info(name);
      expect(info.dtype).toBe(dtype);
      expect(info.fileDtype).toBe(FILE_DTYPE[dtype]);
      expect([...info.shape]).toEqual(shape);
      const h = await reader.load(name);
      expect(meta(h)).toMatchObject({ dtype, shape });
      expect(readTensor(h)).toEqual(source.get(name));
      native.tensorDispose(h);
    }
    reader.close();
    expect(readdirSync(dir).some((f) => f.includes('.tmp-')), 'no temporary file left').toBe(false);
  });

  it('accepts Tensor objects and refuses int4, reserved names and bad metadata', async () => {
    const t = new Tensor(makeTensor('f32', [2], new Uint8Array(new Float32Array([1.5, -2]).buffer)));
    const path = join(dir, 'tensor-object.safetensors');
    await writeSafetensors(path, { x: t });
    const r = await readSafetensors(path);
    expect(Array.from(new Float32Array(readTensor(await r.load('x')).buffer))).toEqual([1.5, -2]);
    r.close();

    const i4 = native.tensorFromData(new Uint8Array([1, 2, 3, 4]), 'int4', [4], CPU) as NativeHandle;
    await expectCode(writeSafetensors(join(dir, 'i4.safetensors'), { q: i4 }), 'E_UNSUPPORTED', 'int4');
    await expectCode(writeSafetensors(join(dir, 'r.safetensors'), { __metadata__: t }), 'E_INVALID_ARG', 'reserved');
    await expectCode(
      writeSafetensors(join(dir, 'm.safetensors'), { x: t }, { n: 1 as unknown as string }),
      'E_INVALID_ARG',
      'metadata.n',
    );
    await expectCode(writeSafetensors(join(dir, 'no', 'such', 'dir.safetensors'), { x: t }), 'E_IO');
    expect(existsSync(join(dir, 'i4.safetensors'))).toBe(false);
    // A tensor handle is not a checkpoint handle: the addon checks the handle's type tag.
    let err: unknown;
    try {
      native.safetensorsLoad(t.handle, 'x');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ZerothError);
    expect((err as ZerothError).code).toBe('E_INVALID_ARG');
  });
});

describe('safetensors reader', () => {
  it('reads files from an independent writer, converting dtypes on load', async () => {
    const rnd = seeded(2);
    const bf = new Uint16Array(64).map(() => Math.floor(rnd() * 65536));
    bf[0] = 0x3f80; // 1.0
    const f16 = new Uint16Array(64).map(() => Math.floor(rnd() * 65536));
    f16[0] = 0x0001; // smallest subnormal
    const i64 = new BigInt64Array([0n, -1n, 2147483647n, -2147483648n]);
    const file = independentWrite(
      [
        { name: 'z.bf16', dtype: 'BF16', shape: [8, 8], data: new Uint8Array(bf.buffer) },
        { name: 'a.i64', dtype: 'I64', shape: [4], data: new Uint8Array(i64.buffer) },
        { name: 'm.bool', dtype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) },
        { name: 'h.f16', dtype: 'F16', shape: [64], data: new Uint8Array(f16.buffer) },
        { name: 'f8', dtype: 'F8_E4M3', shape: [2], data: new Uint8Array([1, 2]) },
      ],
      { source: 'independent' },
    );
    const path = join(dir, 'independent.safetensors');
    writeFileSync(path, file);
    const r = await readSafetensors(path);
    expect([...r.names]).toEqual(['a.i64', 'f8', 'h.f16', 'm.bool', 'z.bf16']);
    expect(r.metadata).toEqual({ source: 'independent' });
    expect(r.info('a.i64')).toMatchObject({ dtype: 'i32', fileDtype: 'I64', shape: [4] });
    expect(r.info('m.bool')).toMatchObject({ dtype: 'u8', fileDtype: 'BOOL' });
    expect(r.info('f8')).toMatchObject({ dtype: null, fileDtype: 'F8_E4M3' });

    const asF32 = new Float32Array(readTensor(await r.load('z.bf16', { dtype: 'f32' })).buffer);
    bf.forEach((h, i) => {
      const want = bf16ToNumber(h);
      if (Number.isNaN(want)) expect(Number.isNaN(asF32[i]!)).toBe(true);
      else expect(Object.is(asF32[i], want), `bf16 element ${i}`).toBe(true);
    });
    const h16 = new Float32Array(readTensor(await r.load('h.f16', { dtype: 'f32' })).buffer);
    f16.forEach((h, i) => {
      const want = f16ToNumber(h);
      if (Number.isNaN(want)) expect(Number.isNaN(h16[i]!)).toBe(true);
      else expect(Object.is(h16[i], Math.fround(want)), `f16 element ${i}`).toBe(true);
    });
    const ids = await r.load('a.i64');
    expect(meta(ids).dtype).toBe('i32');
    expect(Array.from(new Int32Array(readTensor(ids).buffer))).toEqual([0, -1, 2147483647, -2147483648]);
    expect(Array.from(readTensor(await r.load('m.bool')))).toEqual([1, 0, 1]);
    const asF64 = new Float64Array(readTensor(await r.load('a.i64', { dtype: 'f64' })).buffer);
    expect(Array.from(asF64)).toEqual([0, -1, 2147483647, -2147483648]);

    await expectCode(r.load('f8'), 'E_UNSUPPORTED', 'F8_E4M3');
    await expectCode(r.load('nope'), 'E_INVALID_ARG', 'nope');
    await expectCode(r.load('z.bf16', { dtype: 'int4' as 'f32' }), 'E_DTYPE');
    const kept = await r.load('m.bool');
    r.close();
    r.close();
    await expectCode(r.load('m.bool'), 'E_DISPOSED');
    expect(Array.from(readTensor(kept)), 'a loaded tensor outlives close()').toEqual([1, 0, 1]);
  });

  it('refuses I64 values outside the i32 range', async () => {
    const path = join(dir, 'big-i64.safetensors');
    const data = new Uint8Array(new BigInt64Array([1n, 2n ** 40n]).buffer);
    writeFileSync(path, independentWrite([{ name: 'ids', dtype: 'I64', shape: [2], data }]));
    const r = await readSafetensors(path);
    await expectCode(r.load('ids'), 'E_DTYPE', 'ids', 'element 1');
    r.close();
  });

  const good = (): Uint8Array =>
    independentWrite([
      { name: 'a', dtype: 'F32', shape: [2], data: new Uint8Array(8) },
      { name: 'b', dtype: 'U8', shape: [4], data: new Uint8Array(4) },
    ]);
  const withHeader = (header: string, dataBytes: number): Uint8Array => {
    const h = new TextEncoder().encode(header);
    const out = new Uint8Array(8 + h.length + dataBytes);
    new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
    out.set(h, 8);
    return out;
  };
  const entry = (dtype: string, shape: unknown, offsets: unknown): string =>
    JSON.stringify({ t: { dtype, shape, data_offsets: offsets } });

  const malformed: Array<[string, () => Uint8Array, string]> = [
    ['empty file', () => new Uint8Array(0), 'shorter than the 8-byte'],
    ['truncated in the length', () => good().subarray(0, 5), 'shorter than the 8-byte'],
    ['truncated in the header', () => good().subarray(0, 30), 'runs past the end'],
    ['truncated in the data', () => good().subarray(0, good().length - 3), 'past the data section'],
    [
      'header length absurd',
      () => {
        const b = good();
        new DataView(b.buffer).setBigUint64(0, 2n ** 62n, true);
        return b;
      },
      'exceeds the 100000000-byte limit',
    ],
    ['invalid JSON', () => withHeader('{"t": {"dtype": "F32",}}', 0), 'invalid JSON'],
    ['invalid UTF-8', () => { const b = withHeader('{"tX": 1}', 0); b[10] = 0xff; return b; }, 'UTF-8'],
    ['duplicate keys', () => withHeader('{"t":{},"t":{}}', 0), 'duplicate key'],
    ['unknown dtype', () => withHeader(entry('Q7', [2], [0, 8]), 8), 'unknown dtype "Q7"'],
    ['negative shape', () => withHeader(entry('F32', [-2], [0, 8]), 8), 'shape[0]'],
    ['fractional shape', () => withHeader(entry('F32', [2.5], [0, 8]), 8), 'shape[0]'],
    ['shape product overflowing', () => withHeader('{"t":{"dtype":"F32","shape":[4294967296,4294967297],"data_offsets":[0,8]}}', 8), 'overflows'],
    ['size mismatch', () => withHeader(entry('F32', [3], [0, 8]), 8), 'needs 12 bytes'],
    ['begin after end', () => withHeader(entry('F32', [0], [8, 0]), 8), 'begin after end'],
    ['range out of bounds', () => withHeader(entry('F32', [4], [0, 16]), 8), 'past the data section'],
    [
      'overlapping ranges',
      () => withHeader(JSON.stringify({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }), 12),
      'overlaps',
    ],
    [
      'hole between ranges',
      () => withHeader(JSON.stringify({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }), 12),
      'hole',
    ],
    ['bytes after the last tensor', () => withHeader(entry('F32', [2], [0, 8]), 12), 'after the last tensor'],
    ['metadata not strings', () => withHeader('{"__metadata__":{"a":1}}', 0), '__metadata__'],
  ];
  for (const [label, make, needle] of malformed) {
    it(`gives E_FORMAT for: ${label}`, async () => {
      const path = join(dir, `bad-${label.replace(/\W+/g, '-')}.safetensors`);
      writeFileSync(path, make());
      await expectCode(readSafetensors(path), 'E_FORMAT', needle, path);
    });
  }

  it('survives random mutations of a valid file: each loads or rejects with E_FORMAT', async () => {
    const rnd = seeded(3);
    const base = independentWrite(
      [
        { name: 'a', dtype: 'F32', shape: [3, 2], data: randomBytes(24, rnd) },
        { name: 'b', dtype: 'BF16', shape: [5], data: randomBytes(10, rnd) },
        { name: 'c', dtype: 'I64', shape: [1], data: new Uint8Array(8) },
      ],
      { k: 'v' },
    );
    const path = join(dir, 'fuzz.safetensors');
    let accepted = 0;
    let rejected = 0;
    for (let round = 0; round < 300; round++) {
      let b = base.slice();
      const kind = Math.floor(rnd() * 3);
      if (kind === 0) b[Math.floor(rnd() * Math.min(b.length, 90))] = Math.floor(rnd() * 256);
      else if (kind === 1) b = b.subarray(0, Math.floor(rnd() * b.length));
      else {
        const k = Math.floor(rnd() * 8); // a bit of the header length
        b[k] = b[k]! ^ (1 << Math.floor(rnd() * 8));
      }
      writeFileSync(path, b);
      try {
        const r = await readSafetensors(path);
        for (const name of r.names) {
          try {
            native.tensorDispose(await r.load(name, { dtype: 'f32' }));
          } catch (e) {
            expect(e).toBeInstanceOf(ZerothError);
          }
        }
        r.close();
        accepted++;
      } catch (e) {
        expect(e).toBeInstanceOf(ZerothError);
        expect((e as ZerothError).code).toBe('E_FORMAT');
        rejected++;
      }
    }
    expect(accepted + rejected).toBe(300);
    expect(rejected).toBeGreaterThan(100);
  });

  it('gives E_IO for a missing file', async () => {
    await expectCode(readSafetensors(join(dir, 'missing.safetensors')), 'E_IO', 'missing.safetensors');
  });
});

describe('sharded checkpoints', () => {
  it('opens model.safetensors.index.json and checks it against the shards', async () => {
    const ck = join(dir, 'sharded');
    mkdirSync(ck);
    const a = makeTensor('f32', [2], new Uint8Array(new Float32Array([1, 2]).buffer));
    const b = makeTensor('f32', [1], new Uint8Array(new Float32Array([3]).buffer));
    await writeSafetensors(join(ck, 'model-00001-of-00002.safetensors'), { a });
    await writeSafetensors(join(ck, 'model-00002-of-00002.safetensors'), { b });
    const index = (map: Record<string, string>): void =>
      writeFileSync(join(ck, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 12 }, weight_map: map }));
    index({ a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' });
    const r = await readSafetensors(ck);
    expect([...r.names]).toEqual(['a', 'b']);
    expect(r.metadata).toEqual({ total_size: '12' });
    expect(r.info('b').file).toBe(join(ck, 'model-00002-of-00002.safetensors'));
    expect(Array.from(new Float32Array(readTensor(await r.load('b')).buffer))).toEqual([3]);
    r.close();

    index({ a: 'model-00002-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' });
    await expectCode(readSafetensors(ck), 'E_FORMAT', 'no such tensor');
    index({ b: 'model-00002-of-00002.safetensors' });
    expect((await readSafetensors(ck)).names).toEqual(['b']); // shard 1 is not referenced at all
    index({ a: '../outside.safetensors' });
    await expectCode(readSafetensors(ck), 'E_FORMAT', 'inside the checkpoint folder');
  });
});

describe('shared fixtures', () => {
  const root = process.env.ZEROTH_FIXTURES ?? '/work/shared/fixtures';
  const folders = existsSync(root) ? readdirSync(root).filter((f) => existsSync(join(root, f, 'model.safetensors'))) : [];
  it.skipIf(folders.length === 0)('lists and loads every fixture checkpoint', async () => {
    for (const f of folders) {
      const model = await readSafetensors(join(root, f, 'model.safetensors'));
      expect(model.names.length).toBeGreaterThan(0);
      for (const name of model.names) {
        const info = model.info(name);
        const h = await model.load(name, { dtype: 'f32' });
        expect(meta(h).shape).toEqual([...info.shape]);
        native.tensorDispose(h);
      }
      model.close();
      const ref = await readSafetensors(join(root, f, 'reference.safetensors'));
      expect(ref.info('input_ids')).toMatchObject({ dtype: 'i32' });
      const [bsz, len] = ref.info('input_ids').shape;
      expect(ref.info('logits').shape.slice(0, 2)).toEqual([bsz, len]);
      expect(ref.info('loss')).toMatchObject({ dtype: 'f64', shape: [bsz] });
      ref.close();
    }
  });
});
