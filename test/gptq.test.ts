// gptq.test.ts — loading 4- and 8-bit GPTQ checkpoints as other tools write them.
//
// The test writes whole checkpoints itself: the float parts (embeddings, norms, head) come from
// the shared fixtures, every linear layer is replaced by random GPTQ tensors packed by the
// test's own code (test/gptq_pack.ts: qweight [in/8, out] (4-bit) or [in/4, out] (8-bit),
// qzeros [groups, out/8] or [groups, out/4] as zero − 1 in v1, f16 scales [groups, out], g_idx
// [in]). Reference: the f32 forward of a float model whose linear weights are
// dequantGptqReference's float64 de-quantization (rounded once to f32); logits must agree within
// 1e-4 (max abs). Covered: desc_act false / true (random act order), group_size 32 and -1, v1 and
// gptq_v2, 4 and 8 bits (symmetric 8-bit: zero 128, codes 0..255 -> int8 −128..127), GPTQModel's
// per-module `dynamic` overrides (8-bit layers, other group sizes, a "-:" layer stored in float),
// Llama (nn.Linear) and GPT-2 (Conv1D) layouts, AutoGPTQ's quantize_config.json, save -> load
// (mixed int4 / int8 models, the Hessian plan's included), and malformed files (E_FORMAT) /
// unsupported ones (E_UNSUPPORTED).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import * as zeroth from '../src/index.js';
import { loadModel, modelFromWeights, type HessianPlanOptions } from '../src/model.js';
import { quantCodes, quantInfo } from '../src/quant.js';
import { actOrderGIdx, dequantGptqReference, gptqGroups, packGptqLayer, type GptqLayerData } from './gptq_pack.js';
import { fixtureBatch, FIXTURES, mulberry32 } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'zeroth-gptq-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

async function expectCode(p: Promise<unknown>, code: string, fragment?: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(zeroth.ZerothError);
    expect((e as zeroth.ZerothError).code).toBe(code);
    if (fragment) expect((e as Error).message).toContain(fragment);
    return;
  }
  throw new Error(`expected ${code}`);
}

interface Variant {
  fixture: 'llama-tiny' | 'gpt2-tiny';
  groupSize: number;
  descAct: boolean;
  v2?: boolean;
  /** The checkpoint's (base) bits; default 4. */
  bits?: 4 | 8;
  /** 8-bit layers with random zeros instead of the symmetric 128. */
  asym8?: boolean;
  /** quantization_config.dynamic as written to config.json. */
  dynamic?: Record<string, Record<string, unknown>>;
  /** The test's own reading of `dynamic`: each layer's bits and group size, or 'float' (kept as a float weight). */
  layerFormat?: (stem: string) => { bits: 4 | 8; groupSize: number } | 'float';
}

type LayerFormat = { bits: 4 | 8; groupSize: number } | 'float';

function formatOf(v: Variant, stem: string): LayerFormat {
  return v.layerFormat ? v.layerFormat(stem) : { bits: v.bits ?? 4, groupSize: v.groupSize };
}

/** Linear layers of a fixture: name -> [out, in] (nn.Linear orientation). */
function linearShapes(fixture: Variant['fixture']): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {};
  for (let l = 0; l < 2; l++) {
    if (fixture === 'llama-tiny') {
      const p = `model.layers.${l}.`;
      Object.assign(out, {
        [`${p}self_attn.q_proj`]: [64, 64], [`${p}self_attn.k_proj`]: [32, 64], [`${p}self_attn.v_proj`]: [32, 64],
        [`${p}self_attn.o_proj`]: [64, 64], [`${p}mlp.gate_proj`]: [176, 64], [`${p}mlp.up_proj`]: [176, 64],
        [`${p}mlp.down_proj`]: [64, 176],
      });
    } else {
      const p = `transformer.h.${l}.`;
      Object.assign(out, {
        [`${p}attn.c_attn`]: [192, 64], [`${p}attn.c_proj`]: [64, 64], [`${p}mlp.c_fc`]: [256, 64], [`${p}mlp.c_proj`]: [64, 256],
      });
    }
  }
  return out;
}

function randomLayer(out: number, inF: number, v: Variant, rand: () => number, bits: 4 | 8 = 4, groupSize = v.groupSize): GptqLayerData {
  const groups = gptqGroups(inF, groupSize);
  const levels = 2 ** bits;
  const codes = Array.from({ length: out * inF }, () => Math.floor(rand() * levels));
  // v1 cannot store a zero of 0; v2 cannot store 2^bits. Symmetric 8-bit: 128 (what zeroth reads).
  const zeros = Array.from({ length: groups * out }, () =>
    bits === 8 && !v.asym8 ? 128 : v.v2 ? Math.floor(rand() * levels) : 1 + Math.floor(rand() * (levels - 1)));
  if (bits === 8) codes[0] = 0; // int8 −128
  // 8-bit steps are 16× finer: scale them so the weights stay of the same size as the 4-bit ones.
  const scales = Array.from({ length: groups * out }, () => (0.004 + 0.02 * rand()) / (bits === 8 ? 16 : 1));
  let gIdx: Int32Array | undefined;
  if (v.descAct) {
    const order = Array.from({ length: inF }, (_, i) => i);
    for (let i = inF - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    gIdx = actOrderGIdx(order, groupSize);
  }
  return { out, in: inF, bits, groupSize, codes, zeros, scales, gIdx };
}

/**
 * Writes a GPTQ checkpoint of `v` to a new folder and returns it with the float reference
 * weights (f32) of the same model.
 */
async function writeCheckpoint(v: Variant, name: string, mutate?: (t: Record<string, zeroth.Tensor>) => void):
Promise<{ dir: string; reference: Record<string, zeroth.Tensor>; config: Record<string, unknown> }> {
  const src = join(FIXTURES, v.fixture);
  const baseConfig = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
  const reader = await zeroth.readSafetensors(join(src, 'model.safetensors'));
  const file: Record<string, zeroth.Tensor> = {};
  const reference: Record<string, zeroth.Tensor> = {};
  const shapes = linearShapes(v.fixture);
  const rand = mulberry32(1234 + name.length);
  try {
    for (const n of reader.names) {
      const stem = n.replace(/\.(weight|bias)$/, '');
      if (shapes[stem] && n.endsWith('.weight') && formatOf(v, stem) !== 'float') continue;
      file[n] = new zeroth.Tensor(await reader.load(n));
      reference[n] = file[n]!.clone();
    }
  } finally {
    reader.close();
  }
  for (const [stem, [out, inF]] of Object.entries(shapes)) {
    const lf = formatOf(v, stem);
    if (lf === 'float') continue; // the fixture's float weight, in file and reference alike
    const layer = randomLayer(out, inF, v, rand, lf.bits, lf.groupSize);
    const packed = packGptqLayer(layer, { v2: v.v2 });
    for (const [part, t] of Object.entries(packed)) file[`${stem}.${part}`] = t;
    const w = dequantGptqReference(layer, { v2: v.v2 }); // [out, in]
    if (v.fixture === 'gpt2-tiny') { // Conv1D stores [in, out]
      const t = new Float32Array(out * inF);
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) t[i * out + o] = w[o * inF + i]!;
      reference[`${stem}.weight`] = zeroth.tensor(t, { shape: [inF, out] });
    } else {
      reference[`${stem}.weight`] = zeroth.tensor(w, { shape: [out, inF] });
    }
  }
  mutate?.(file);
  const dir = join(scratch, name);
  const config = {
    ...baseConfig,
    quantization_config: {
      quant_method: 'gptq', bits: v.bits ?? 4, group_size: v.groupSize, desc_act: v.descAct, sym: v.bits === 8 && !v.asym8,
      ...(v.v2 ? { checkpoint_format: 'gptq_v2' } : {}),
      ...(v.dynamic ? { dynamic: v.dynamic } : {}),
    },
  };
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir, { recursive: true });
  await zeroth.writeSafetensors(join(dir, 'model.safetensors'), file, { format: 'pt' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  for (const t of Object.values(file)) t.dispose();
  return { dir, reference, config: baseConfig };
}

async function compareWithReference(v: Variant, dir: string, reference: Record<string, zeroth.Tensor>, config: object): Promise<void> {
  using model = await loadModel(dir);
  const stems = Object.keys(linearShapes(v.fixture));
  expect(model.quantizedNames().length).toBe(stems.filter((s) => formatOf(v, s) !== 'float').length);
  // Every layer holds the width its format says: int8 codes for 8-bit layers.
  const q = model.quantizedWeights();
  for (const stem of stems) {
    const lf = formatOf(v, stem);
    const t = q[`${stem}.weight`];
    if (lf === 'float') expect(t).toBeUndefined();
    else expect(t!.dtype).toBe(lf.bits === 8 ? 'int8' : 'int4');
  }
  for (const t of Object.values(q)) t.dispose();
  using twin = await modelFromWeights(config, reference);
  const batch = await fixtureBatch(join(FIXTURES, v.fixture));
  using got = await model.forward(batch.inputIds, { attentionMask: batch.attentionMask });
  using want = await twin.forward(batch.inputIds, { attentionMask: batch.attentionMask });
  const a = got.toTypedArray();
  const b = want.toTypedArray();
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  expect(worst).toBeLessThanOrEqual(1e-4);
  batch.inputIds.dispose();
  batch.attentionMask?.dispose();
}

describe('loading GPTQ checkpoints', () => {
  const variants: Variant[] = [
    { fixture: 'llama-tiny', groupSize: 32, descAct: false },
    { fixture: 'llama-tiny', groupSize: 32, descAct: true },
    { fixture: 'llama-tiny', groupSize: -1, descAct: false },
    { fixture: 'llama-tiny', groupSize: -1, descAct: true },
    { fixture: 'llama-tiny', groupSize: 16, descAct: true, v2: true },
    { fixture: 'gpt2-tiny', groupSize: 32, descAct: true },
    { fixture: 'llama-tiny', groupSize: 32, descAct: false, bits: 8 },
    { fixture: 'llama-tiny', groupSize: 32, descAct: true, bits: 8 },
    { fixture: 'llama-tiny', groupSize: -1, descAct: false, bits: 8 },
    { fixture: 'llama-tiny', groupSize: -1, descAct: true, bits: 8 },
    { fixture: 'llama-tiny', groupSize: 16, descAct: true, bits: 8, v2: true },
    { fixture: 'gpt2-tiny', groupSize: 32, descAct: true, bits: 8 },
  ];
  for (const v of variants) {
    it(`${v.fixture} ${v.bits ?? 4}-bit group_size ${v.groupSize} desc_act ${v.descAct}${v.v2 ? ' gptq_v2' : ''}: logits equal the de-quantized f32 forward`, async () => {
      const { dir, reference, config } = await writeCheckpoint(v, `${v.fixture}-${v.bits ?? 4}-${v.groupSize}-${v.descAct}-${v.v2 ?? false}`);
      try {
        await compareWithReference(v, dir, reference, config);
      } finally {
        for (const t of Object.values(reference)) t.dispose();
      }
    });
  }

  it("reads AutoGPTQ's quantize_config.json when config.json has no quantization_config", async () => {
    const v: Variant = { fixture: 'llama-tiny', groupSize: 32, descAct: true };
    const { dir, reference, config } = await writeCheckpoint(v, 'autogptq');
    const full = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const { quantization_config: q, ...plain } = full as { quantization_config: Record<string, unknown> };
    const { quant_method: _m, ...rest } = q;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(plain));
    writeFileSync(join(dir, 'quantize_config.json'), JSON.stringify(rest));
    try {
      await compareWithReference(v, dir, reference, config);
    } finally {
      for (const t of Object.values(reference)) t.dispose();
    }
  });

  it('save -> load keeps codes, zeros, act order and the f16 scales, and writes the tensors it read', async () => {
    const v: Variant = { fixture: 'llama-tiny', groupSize: 32, descAct: true };
    const { dir, reference } = await writeCheckpoint(v, 'resave-src');
    for (const t of Object.values(reference)) t.dispose();
    using model = await loadModel(dir);
    const out = join(scratch, 'resave-out');
    await model.save(out);
    const saved = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { quantization_config: Record<string, unknown> };
    expect(saved.quantization_config).toMatchObject({ quant_method: 'gptq', bits: 4, group_size: 32, desc_act: true, checkpoint_format: 'gptq' });
    expect(saved.quantization_config.dynamic).toBeUndefined(); // one format for every layer
    using back = await loadModel(out);
    const a = model.quantizedWeights();
    const b = back.quantizedWeights();
    for (const n of Object.keys(a)) {
      expect(quantCodes(b[n]!)).toEqual(quantCodes(a[n]!));
      const ia = quantInfo(a[n]!);
      const ib = quantInfo(b[n]!);
      expect(ib.scales.toTypedArray()).toEqual(ia.scales.toTypedArray());
      expect(ib.zeros!.toTypedArray()).toEqual(ia.zeros!.toTypedArray());
      expect(ib.perm!.toTypedArray()).toEqual(ia.perm!.toTypedArray());
      for (const t of [ia.scales, ia.zeros, ia.perm, ib.scales, ib.zeros, ib.perm]) t?.dispose();
    }
    for (const t of [...Object.values(a), ...Object.values(b)]) t.dispose();
    // The GPTQ tensors themselves come back bit for bit.
    const r1 = await zeroth.readSafetensors(join(dir, 'model.safetensors'));
    const r2 = await zeroth.readSafetensors(join(out, 'model.safetensors'));
    try {
      for (const n of r1.names.filter((x) => /\.(qweight|qzeros|scales|g_idx)$/.test(x))) {
        using t1 = new zeroth.Tensor(await r1.load(n));
        using t2 = new zeroth.Tensor(await r2.load(n));
        expect(t2.dtype).toBe(t1.dtype);
        expect(t2.toTypedArray()).toEqual(t1.toTypedArray());
      }
    } finally {
      r1.close();
      r2.close();
    }
  });
});

/** The test's own exact-name dynamic key (module names here hold letters, digits, '_' and '.'). */
function exactKey(stem: string, skip = false): string {
  return `${skip ? '-' : '+'}:^${stem.replace(/\./g, '\\.')}$`;
}

function codesOf(m: zeroth.Model): Record<string, Uint8Array | Int8Array> {
  const out: Record<string, Uint8Array | Int8Array> = {};
  for (const [n, t] of Object.entries(m.quantizedWeights())) {
    out[n] = quantCodes(t);
    t.dispose();
  }
  return out;
}

function scalesOf(m: zeroth.Model): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [n, t] of Object.entries(m.quantizedWeights())) {
    const info = quantInfo(t);
    out[n] = info.scales.toTypedArray() as Float32Array;
    for (const x of [info.scales, info.zeros, info.perm]) x?.dispose();
    t.dispose();
  }
  return out;
}

async function logitsOf(m: zeroth.Model, fixture: string): Promise<Float32Array> {
  const batch = await fixtureBatch(join(FIXTURES, fixture));
  try {
    using y = await m.forward(batch.inputIds, { attentionMask: batch.attentionMask });
    return y.toTypedArray() as Float32Array;
  } finally {
    batch.inputIds.dispose();
    batch.attentionMask?.dispose();
  }
}

describe('mixed 4-bit / 8-bit checkpoints (quantization_config.dynamic)', () => {
  // GPTQModel's reading: the first key whose regex matches at the start of the module name
  // decides; "-:" keeps the module in float; no prefix means "+:"; overrides replace only the
  // fields they name. layerFormat is this test's own reading of the same keys.
  const mixed: Variant = {
    fixture: 'llama-tiny', groupSize: 32, descAct: true,
    dynamic: {
      '-:model\\.layers\\.1\\.mlp\\.down_proj': {},
      '+:model\\.layers\\.1\\.': { bits: 8, group_size: -1 },
      '.*\\.self_attn\\.[qk]_proj': { bits: 8, group_size: 16 },
      '+:model\\.layers\\.0\\.mlp\\.up_proj$': { group_size: 16 },
      'mlp': { bits: 8 }, // anchored at the start: matches no module name
    },
    layerFormat: (stem) => {
      if (stem === 'model.layers.1.mlp.down_proj') return 'float';
      if (stem.startsWith('model.layers.1.')) return { bits: 8, groupSize: -1 };
      if (stem === 'model.layers.0.self_attn.q_proj' || stem === 'model.layers.0.self_attn.k_proj') return { bits: 8, groupSize: 16 };
      if (stem === 'model.layers.0.mlp.up_proj') return { bits: 4, groupSize: 16 };
      return { bits: 4, groupSize: 32 };
    },
  };

  it('loads: each layer in its own format, the "-:" layer in float, logits equal the de-quantized f32 forward', async () => {
    const { dir, reference, config } = await writeCheckpoint(mixed, 'mixed-load');
    try {
      await compareWithReference(mixed, dir, reference, config);
    } finally {
      for (const t of Object.values(reference)) t.dispose();
    }
  });

  it('save -> load: exact-name dynamic entries, the tensors it read written back, identical codes, scales and logits', async () => {
    const { dir, reference } = await writeCheckpoint(mixed, 'mixed-resave-src');
    for (const t of Object.values(reference)) t.dispose();
    using model = await loadModel(dir);
    const out = join(scratch, 'mixed-resave-out');
    await model.save(out);
    const saved = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { quantization_config: Record<string, unknown> };
    // Base: the int4 layers' most common group size (32); every other layer by its exact name.
    expect(saved.quantization_config).toMatchObject({ quant_method: 'gptq', bits: 4, group_size: 32, desc_act: true, checkpoint_format: 'gptq' });
    const want: Record<string, Record<string, unknown>> = {};
    for (const stem of Object.keys(linearShapes('llama-tiny'))) {
      const lf = mixed.layerFormat!(stem);
      if (lf === 'float') want[exactKey(stem, true)] = {};
      else if (lf.bits === 8 || lf.groupSize !== 32) {
        // One group (-1): act order sorts nothing, so no permutation and desc_act false.
        want[exactKey(stem)] = { bits: lf.bits, group_size: lf.groupSize, desc_act: lf.groupSize !== -1, sym: lf.bits === 8 };
      }
    }
    expect(saved.quantization_config.dynamic).toEqual(want);
    // The GPTQ tensors come back bit for bit (v1, g_idx present, f16 scales), 8-bit ones included.
    const r1 = await zeroth.readSafetensors(join(dir, 'model.safetensors'));
    const r2 = await zeroth.readSafetensors(join(out, 'model.safetensors'));
    try {
      const parts = r1.names.filter((x) => /\.(qweight|qzeros|scales|g_idx)$/.test(x));
      expect(parts.length).toBe(4 * 13);
      for (const n of [...parts, 'model.layers.1.mlp.down_proj.weight']) {
        using t1 = new zeroth.Tensor(await r1.load(n));
        using t2 = new zeroth.Tensor(await r2.load(n));
        expect(t2.dtype).toBe(t1.dtype);
        expect(t2.shape).toEqual(t1.shape);
        expect(t2.toTypedArray()).toEqual(t1.toTypedArray());
      }
    } finally {
      r1.close();
      r2.close();
    }
    using back = await loadModel(out);
    expect(codesOf(back)).toEqual(codesOf(model));
    expect(scalesOf(back)).toEqual(scalesOf(model));
    expect(await logitsOf(back, 'llama-tiny')).toEqual(await logitsOf(model, 'llama-tiny'));
  });

  it('a Hessian-plan model (int4 and int8 blocks) saves and loads back with identical codes, scales and logits', async () => {
    const dir = join(FIXTURES, 'gpt2-tiny');
    let all4: number, all8: number;
    {
      using m = await loadModel(dir);
      all4 = (await m.quantize({ bits: 4, groupSize: 32 })).bytesAfter;
    }
    {
      using m = await loadModel(dir);
      all8 = (await m.quantize({ bits: 8 })).bytesAfter;
    }
    const batch = await fixtureBatch(dir);
    using model = await loadModel(dir);
    // scaleDtype 'f16' reaches every layer through the plan's common options, so the scales are
    // f16 values already and the checkpoint's f16 scales hold them exactly.
    const opts: HessianPlanOptions & { scaleDtype: 'f16' } = {
      plan: 'hessian', budgetBytes: Math.floor((all4 + all8) / 2), groupSize: 32, probes: 8, scaleDtype: 'f16',
      calibration: { inputIds: batch.inputIds, attentionMask: batch.attentionMask },
    };
    const report = await model.quantize(opts);
    batch.inputIds.dispose();
    batch.attentionMask.dispose();
    const int8 = report.layers.filter((l) => l.bits === 8).map((l) => l.name);
    expect(int8.length).toBeGreaterThan(0);
    expect(int8.length).toBeLessThan(report.layers.length);
    const out = join(scratch, 'hessian-plan');
    await model.save(out);
    const saved = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { quantization_config: Record<string, unknown> };
    expect(saved.quantization_config).toMatchObject({ quant_method: 'gptq', bits: 4, group_size: 32, desc_act: false });
    const want: Record<string, Record<string, unknown>> = {};
    for (const name of int8) want[exactKey(name.replace(/\.weight$/, ''))] = { bits: 8, group_size: -1, desc_act: false, sym: true };
    expect(saved.quantization_config.dynamic).toEqual(want);
    using back = await loadModel(out);
    const qa = model.quantizedWeights();
    const qb = back.quantizedWeights();
    for (const n of Object.keys(qa)) expect(qb[n]!.dtype).toBe(int8.includes(n) ? 'int8' : 'int4');
    for (const t of [...Object.values(qa), ...Object.values(qb)]) t.dispose();
    expect(codesOf(back)).toEqual(codesOf(model));
    expect(scalesOf(back)).toEqual(scalesOf(model));
    expect(await logitsOf(back, 'gpt2-tiny')).toEqual(await logitsOf(model, 'gpt2-tiny'));
  }, 60_000);
});

describe('malformed or unsupported GPTQ checkpoints', () => {
  const v: Variant = { fixture: 'llama-tiny', groupSize: 32, descAct: false };
  const stem = 'model.layers.0.self_attn.q_proj';
  const cases: [string, (t: Record<string, zeroth.Tensor>) => void, string][] = [
    ['qweight rows that do not match in/8', (t) => {
      t[`${stem}.qweight`]!.dispose();
      t[`${stem}.qweight`] = zeroth.zeros([7, 64], { dtype: 'i32' });
    }, 'qweight'],
    ['g_idx out of range', (t) => {
      t[`${stem}.g_idx`]!.dispose();
      t[`${stem}.g_idx`] = zeroth.full([64], 9, { dtype: 'i32' });
    }, 'g_idx'],
    ['a float qweight', (t) => {
      t[`${stem}.qweight`]!.dispose();
      t[`${stem}.qweight`] = zeroth.zeros([8, 64]);
    }, 'qweight'],
    ['scales of the wrong shape', (t) => {
      t[`${stem}.scales`]!.dispose();
      t[`${stem}.scales`] = zeroth.ones([3, 64]);
    }, 'scales'],
    ['a missing qzeros', (t) => {
      t[`${stem}.qzeros`]!.dispose();
      delete t[`${stem}.qzeros`];
    }, 'qzeros'],
  ];
  for (const [what, mutate, fragment] of cases) {
    it(`${what}: E_FORMAT naming the tensor`, async () => {
      const { dir, reference } = await writeCheckpoint(v, `bad-${what.replace(/\W+/g, '-')}`, mutate);
      for (const t of Object.values(reference)) t.dispose();
      await expectCode(loadModel(dir), 'E_FORMAT', fragment);
    });
  }

  for (const [field, value] of [['quant_method', 'awq'], ['bits', 3], ['checkpoint_format', 'marlin'], ['pack_dtype', 'int64']] as const) {
    it(`quantization_config.${field} = ${JSON.stringify(value)}: E_UNSUPPORTED naming the field`, async () => {
      const { dir, reference } = await writeCheckpoint(v, `unsupported-${field}`);
      for (const t of Object.values(reference)) t.dispose();
      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { quantization_config: Record<string, unknown> };
      config.quantization_config[field] = value;
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
      await expectCode(loadModel(dir), 'E_UNSUPPORTED', field);
    });
  }

  it('an asymmetric 8-bit layer (zeros other than 128): E_UNSUPPORTED saying why', async () => {
    const { dir, reference } = await writeCheckpoint({ fixture: 'llama-tiny', groupSize: 32, descAct: false, bits: 8, asym8: true }, 'asym8');
    for (const t of Object.values(reference)) t.dispose();
    await expectCode(loadModel(dir), 'E_UNSUPPORTED', 'asymmetric');
  });

  it('an 8-bit qweight packed as 4-bit ([in/8, out]): E_FORMAT naming it', async () => {
    const v8: Variant = { fixture: 'llama-tiny', groupSize: 32, descAct: false, bits: 8 };
    const { dir, reference } = await writeCheckpoint(v8, 'bad-qweight8', (t) => {
      t[`${stem}.qweight`]!.dispose();
      t[`${stem}.qweight`] = zeroth.zeros([8, 64], { dtype: 'i32' });
    });
    for (const t of Object.values(reference)) t.dispose();
    await expectCode(loadModel(dir), 'E_FORMAT', `${stem}.qweight`);
  });

  const dynamicCases: [string, Record<string, Record<string, unknown>>, string, string][] = [
    ['a "-:" key excluding a layer that has GPTQ tensors', { [`-:${stem.replace(/\./g, '\.')}$`]: {} }, 'E_FORMAT', stem],
    ['bits 3 in an override', { '+:.*q_proj': { bits: 3 } }, 'E_UNSUPPORTED', 'dynamic'],
    ['group_size 0 in an override', { '+:.*q_proj': { group_size: 0 } }, 'E_FORMAT', 'dynamic'],
    ['a Python-only regex', { '+:(?P<m>.*)q_proj': { bits: 8 } }, 'E_UNSUPPORTED', 'dynamic'],
  ];
  for (const [what, dynamic, code, fragment] of dynamicCases) {
    it(`dynamic with ${what}: ${code}`, async () => {
      const { dir, reference } = await writeCheckpoint({ ...v, dynamic }, `bad-dynamic-${what.replace(/\W+/g, '-')}`);
      for (const t of Object.values(reference)) t.dispose();
      await expectCode(loadModel(dir), code, fragment);
    });
  }
});
