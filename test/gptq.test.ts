// gptq.test.ts — loading 4-bit GPTQ checkpoints as other tools write them.
//
// The test writes whole checkpoints itself: the float parts (embeddings, norms, head) come from
// the shared fixtures, every linear layer is replaced by random GPTQ tensors packed by the
// test's own code (test/gptq_pack.ts: qweight [in/8, out], qzeros [groups, out/8] as zero − 1
// in v1, f16 scales [groups, out], g_idx [in]). Reference: the f32 forward of a float model whose
// linear weights are dequantGptqReference's float64 de-quantization (rounded once to f32);
// logits must agree within 1e-4 (max abs). Covered: desc_act false / true (random act order),
// group_size 32 and -1, v1 and gptq_v2, Llama (nn.Linear) and GPT-2 (Conv1D) layouts, AutoGPTQ's
// quantize_config.json, save -> load, and malformed files (E_FORMAT) / unsupported ones
// (E_UNSUPPORTED).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import * as zeroth from '../src/index.js';
import { loadModel, modelFromWeights } from '../src/model.js';
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

function randomLayer(out: number, inF: number, v: Variant, rand: () => number): GptqLayerData {
  const groups = gptqGroups(inF, v.groupSize);
  const codes = Array.from({ length: out * inF }, () => Math.floor(rand() * 16));
  // v1 cannot store a zero of 0; v2 cannot store 16.
  const zeros = Array.from({ length: groups * out }, () => (v.v2 ? Math.floor(rand() * 16) : 1 + Math.floor(rand() * 15)));
  const scales = Array.from({ length: groups * out }, () => 0.004 + 0.02 * rand());
  let gIdx: Int32Array | undefined;
  if (v.descAct) {
    const order = Array.from({ length: inF }, (_, i) => i);
    for (let i = inF - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    gIdx = actOrderGIdx(order, v.groupSize);
  }
  return { out, in: inF, groupSize: v.groupSize, codes, zeros, scales, gIdx };
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
      if (shapes[stem] && n.endsWith('.weight')) continue;
      file[n] = new zeroth.Tensor(await reader.load(n));
      reference[n] = file[n]!.clone();
    }
  } finally {
    reader.close();
  }
  for (const [stem, [out, inF]] of Object.entries(shapes)) {
    const layer = randomLayer(out, inF, v, rand);
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
      quant_method: 'gptq', bits: 4, group_size: v.groupSize, desc_act: v.descAct, sym: false,
      ...(v.v2 ? { checkpoint_format: 'gptq_v2' } : {}),
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
  expect(model.quantizedNames().length).toBe(Object.keys(linearShapes(v.fixture)).length);
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
  ];
  for (const v of variants) {
    it(`${v.fixture} group_size ${v.groupSize} desc_act ${v.descAct}${v.v2 ? ' gptq_v2' : ''}: logits equal the de-quantized f32 forward`, async () => {
      const { dir, reference, config } = await writeCheckpoint(v, `${v.fixture}-${v.groupSize}-${v.descAct}-${v.v2 ?? false}`);
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

  for (const [field, value] of [['quant_method', 'awq'], ['bits', 8], ['checkpoint_format', 'marlin']] as const) {
    it(`quantization_config.${field} = ${JSON.stringify(value)}: E_UNSUPPORTED naming the field`, async () => {
      const { dir, reference } = await writeCheckpoint(v, `unsupported-${field}`);
      for (const t of Object.values(reference)) t.dispose();
      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { quantization_config: Record<string, unknown> };
      config.quantization_config[field] = value;
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
      await expectCode(loadModel(dir), 'E_UNSUPPORTED', field);
    });
  }
});
