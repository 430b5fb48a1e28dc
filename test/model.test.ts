// model.test.ts — the causal-LM forward from TypeScript.
//
// 1. The three reference fixtures (../shared/fixtures): logits within 1e-4 where the mask is 1,
//    per-row losses within 1e-5.
// 2. Checkpoints written by this test for settings the fixtures do not cover (old GPT-2 key
//    names, OPT post-LN with project_in/out, Qwen2 biases with tied embeddings, bf16 weights),
//    compared with an independent float64 forward written below in plain TypeScript.
// 3. Greedy generation with the KV cache equals argmax of full forwards, step by step.
// 4. Perturbed forwards, parameters(), and the errors for configs zeroth cannot run.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

import { tensor, Tensor, ZerothError } from '../src/index.js';
import { loadModel, modelFromWeights } from '../src/model.js';
import { mulberry32 as rng } from './helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const FIXTURES = process.env.ZEROTH_FIXTURES ?? join(here, '..', '..', 'shared', 'fixtures');
const scratch = mkdtempSync(join(tmpdir(), 'zeroth-model-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

// ---- a tiny safetensors reader/writer (independent of zeroth's) ---------------------------------

interface RawTensor {
  dtype: 'F32' | 'F64' | 'I32' | 'BF16';
  shape: number[];
  data: Float64Array; // values (bf16 decoded)
}

function readSafetensors(path: string): Record<string, RawTensor> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const base = 8 + n;
  const out: Record<string, RawTensor> = {};
  for (const [name, h] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [b, e] = h.data_offsets;
    const bytes = buf.subarray(base + b, base + e);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const count = h.shape.reduce((a, c) => a * c, 1);
    const data = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      if (h.dtype === 'F32') data[i] = view.getFloat32(4 * i, true);
      else if (h.dtype === 'F64') data[i] = view.getFloat64(8 * i, true);
      else if (h.dtype === 'I32') data[i] = view.getInt32(4 * i, true);
      else throw new Error(`test reader: dtype ${h.dtype}`);
    }
    out[name] = { dtype: h.dtype as RawTensor['dtype'], shape: h.shape, data };
  }
  return out;
}

// f32 -> bf16 bits, round to nearest even (the checkpoint's own rounding), and back.
function bf16Bits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
function bf16Value(bits: number): number {
  return new Float32Array(new Uint32Array([bits << 16]).buffer)[0]!;
}

function writeSafetensors(path: string, tensors: Record<string, RawTensor>): void {
  const header: Record<string, unknown> = {};
  const parts: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const size = t.dtype === 'BF16' ? 2 : 4;
    const b = Buffer.alloc(t.data.length * size);
    t.data.forEach((v, i) => (t.dtype === 'BF16' ? b.writeUInt16LE(bf16Bits(v), 2 * i) : b.writeFloatLE(v, 4 * i)));
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + b.length] };
    parts.push(b);
    offset += b.length;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, Buffer.from(json), ...parts]));
}

// ---- an independent float64 reference forward --------------------------------------------------

type Weights = Record<string, RawTensor>;

/** Random weights rounded to f32 (or bf16) so the reference reads exactly what zeroth reads. */
function randomWeights(shapes: Record<string, number[]>, seed: number, dtype: 'F32' | 'BF16' = 'F32'): Weights {
  const r = rng(seed);
  const out: Weights = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = /(ln_|layernorm|layer_norm|norm\.weight)/.test(name) && name.endsWith('weight');
    const data = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const u = (r() - 0.5) * 0.5; // uniform in [-0.25, 0.25)
      const v = isNorm ? 1 + u * 0.5 : u;
      data[i] = dtype === 'BF16' ? bf16Value(bf16Bits(v)) : Math.fround(v);
    }
    out[name] = { dtype, shape, data };
  }
  return out;
}

type Cfg = Record<string, any>;

/** Logits [B][T][V] in float64, one row at a time, following the HF modules' math. */
function referenceForward(cfg: Cfg, w: Weights, ids: number[][], mask: number[][]): number[][][] {
  const type: string = cfg.model_type;
  const get = (n: string) => {
    const t = w[n];
    if (!t) throw new Error(`reference: missing ${n}`);
    return t.data;
  };
  const has = (n: string) => w[n] !== undefined;
  // y = x · Wᵀ (+ b) for W [out, in]; conv1d: W [in, out].
  const linear = (x: Float64Array, name: string, bias?: string, conv1d = false): Float64Array => {
    const W = w[name]!;
    const [a, b] = W.shape as [number, number];
    const nIn = conv1d ? a : b, nOut = conv1d ? b : a;
    const y = new Float64Array(nOut);
    for (let o = 0; o < nOut; o++) {
      let s = bias && has(bias) ? get(bias)[o]! : 0;
      for (let i = 0; i < nIn; i++) s += x[i]! * (conv1d ? W.data[i * nOut + o]! : W.data[o * nIn + i]!);
      y[o] = s;
    }
    return y;
  };
  const layerNorm = (x: Float64Array, wn: string | null, bn: string | null, eps: number) => {
    const n = x.length;
    const mean = x.reduce((a, b) => a + b, 0) / n;
    const v = x.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
    return x.map((xi, i) => ((xi - mean) / Math.sqrt(v + eps)) * (wn ? get(wn)[i]! : 1) + (bn ? get(bn)[i]! : 0));
  };
  const rmsNorm = (x: Float64Array, wn: string, eps: number) => {
    const ms = x.reduce((a, b) => a + b * b, 0) / x.length;
    return x.map((xi, i) => (xi / Math.sqrt(ms + eps)) * get(wn)[i]!);
  };
  const act = (name: string, x: number) => {
    if (name === 'relu') return Math.max(0, x);
    if (name === 'gelu_new') return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    if (name === 'silu') return x / (1 + Math.exp(-x));
    throw new Error(`reference: activation ${name}`);
  };
  const gpt2Prefix = has('transformer.wte.weight') ? 'transformer.' : '';
  const optPrefix = 'model.decoder.';

  return ids.map((row, b) => {
    const T = row.length;
    const real = mask[b]!;
    const pos: number[] = [];
    let count = 0;
    for (let t = 0; t < T; t++) pos.push(real[t] ? count++ : type === 'opt' ? -1 : t);
    let d: number, nHead: number, nKv: number, hd: number, nLayer: number;
    if (type === 'gpt2') [d, nHead, nLayer] = [cfg.n_embd, cfg.n_head, cfg.n_layer];
    else [d, nHead, nLayer] = [cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers];
    nKv = cfg.num_key_value_heads ?? nHead;
    hd = d / nHead;
    // Embeddings.
    let xs: Float64Array[] = row.map((id, t) => {
      if (type === 'gpt2') {
        const e = get(gpt2Prefix + 'wte.weight'), p = get(gpt2Prefix + 'wpe.weight');
        return Float64Array.from({ length: d }, (_, i) => e[id * d + i]! + p[pos[t]! * d + i]!);
      }
      if (type === 'opt') {
        const E = cfg.word_embed_proj_dim ?? d;
        const e = get(optPrefix + 'embed_tokens.weight').slice(id * E, id * E + E);
        const x = E !== d ? linear(e, optPrefix + 'project_in.weight') : e;
        const p = get(optPrefix + 'embed_positions.weight');
        return x.map((v, i) => v + p[(pos[t]! + 2) * d + i]!);
      }
      return get('model.embed_tokens.weight').slice(id * d, id * d + d);
    });
    const norm = (x: Float64Array, wn: string, bn: string) =>
      type === 'gpt2' ? layerNorm(x, wn, bn, cfg.layer_norm_epsilon ?? 1e-5)
        : type === 'opt' ? layerNorm(x, wn, bn, 1e-5) : rmsNorm(x, wn, cfg.rms_norm_eps);
    const rope = (v: Float64Array, p: number) => {
      const out = new Float64Array(v.length);
      for (let h = 0; h < v.length / hd; h++)
        for (let i = 0; i < hd / 2; i++) {
          const ang = p * Math.pow(cfg.rope_theta ?? 10000, (-2 * i) / hd);
          const a = v[h * hd + i]!, c = v[h * hd + i + hd / 2]!;
          out[h * hd + i] = a * Math.cos(ang) - c * Math.sin(ang);
          out[h * hd + i + hd / 2] = c * Math.cos(ang) + a * Math.sin(ang);
        }
      return out;
    };
    const preLN = type !== 'opt' || cfg.do_layer_norm_before !== false;
    for (let l = 0; l < nLayer; l++) {
      const P = type === 'gpt2' ? `${gpt2Prefix}h.${l}.` : type === 'opt' ? `${optPrefix}layers.${l}.` : `model.layers.${l}.`;
      const [n1w, n1b, n2w, n2b] = type === 'gpt2' ? [P + 'ln_1.weight', P + 'ln_1.bias', P + 'ln_2.weight', P + 'ln_2.bias']
        : type === 'opt' ? [P + 'self_attn_layer_norm.weight', P + 'self_attn_layer_norm.bias', P + 'final_layer_norm.weight', P + 'final_layer_norm.bias']
          : [P + 'input_layernorm.weight', '', P + 'post_attention_layernorm.weight', ''];
      const hs = xs.map((x) => (preLN ? norm(x, n1w, n1b) : x));
      let q: Float64Array[], k: Float64Array[], v: Float64Array[];
      if (type === 'gpt2') {
        const qkv = hs.map((h) => linear(h, P + 'attn.c_attn.weight', P + 'attn.c_attn.bias', true));
        q = qkv.map((z) => z.slice(0, d)); k = qkv.map((z) => z.slice(d, 2 * d)); v = qkv.map((z) => z.slice(2 * d));
      } else {
        const a = P + 'self_attn.';
        q = hs.map((h) => linear(h, a + 'q_proj.weight', a + 'q_proj.bias'));
        k = hs.map((h) => linear(h, a + 'k_proj.weight', a + 'k_proj.bias'));
        v = hs.map((h) => linear(h, a + 'v_proj.weight', a + 'v_proj.bias'));
        if (type !== 'opt') {
          q = q.map((z, t) => rope(z, pos[t]!));
          k = k.map((z, t) => rope(z, pos[t]!));
        }
      }
      const att = q.map((qt, t) => {
        const o = new Float64Array(nHead * hd);
        for (let h = 0; h < nHead; h++) {
          const kh = Math.floor(h / (nHead / nKv));
          const js = [...Array(t + 1).keys()].filter((j) => real[j]);
          const s = js.map((j) => {
            let dot = 0;
            for (let i = 0; i < hd; i++) dot += qt[h * hd + i]! * k[j]![kh * hd + i]!;
            return dot / Math.sqrt(hd);
          });
          const mx = Math.max(...s);
          const e = s.map((x) => Math.exp(x - mx));
          const z = e.reduce((a2, b2) => a2 + b2, 0);
          js.forEach((j, n) => {
            for (let i = 0; i < hd; i++) o[h * hd + i]! += (e[n]! / z) * v[j]![kh * hd + i]!;
          });
        }
        return o;
      });
      const attOut = att.map((a) => type === 'gpt2' ? linear(a, P + 'attn.c_proj.weight', P + 'attn.c_proj.bias', true)
        : linear(a, P + (type === 'opt' ? 'self_attn.out_proj.weight' : 'self_attn.o_proj.weight'), P + (type === 'opt' ? 'self_attn.out_proj.bias' : 'self_attn.o_proj.bias')));
      xs = xs.map((x, t) => x.map((xi, i) => xi + attOut[t]![i]!));
      if (!preLN) xs = xs.map((x) => norm(x, n1w, n1b));
      const mlp = (h: Float64Array): Float64Array => {
        if (type === 'gpt2') {
          const f = linear(h, P + 'mlp.c_fc.weight', P + 'mlp.c_fc.bias', true).map((z) => act(cfg.activation_function ?? 'gelu_new', z));
          return linear(f, P + 'mlp.c_proj.weight', P + 'mlp.c_proj.bias', true);
        }
        if (type === 'opt') {
          const f = linear(h, P + 'fc1.weight', P + 'fc1.bias').map((z) => act(cfg.activation_function ?? 'relu', z));
          return linear(f, P + 'fc2.weight', P + 'fc2.bias');
        }
        const g = linear(h, P + 'mlp.gate_proj.weight'), u = linear(h, P + 'mlp.up_proj.weight');
        return linear(g.map((z, i) => act('silu', z) * u[i]!), P + 'mlp.down_proj.weight');
      };
      const ff = xs.map((x) => mlp(preLN ? norm(x, n2w, n2b) : x));
      xs = xs.map((x, t) => x.map((xi, i) => xi + ff[t]![i]!));
      if (!preLN) xs = xs.map((x) => norm(x, n2w, n2b));
    }
    // Final norm, projection and head.
    let head: string;
    if (type === 'gpt2') {
      xs = xs.map((x) => norm(x, gpt2Prefix + 'ln_f.weight', gpt2Prefix + 'ln_f.bias'));
      head = gpt2Prefix + 'wte.weight';
    } else if (type === 'opt') {
      if (preLN) xs = xs.map((x) => norm(x, optPrefix + 'final_layer_norm.weight', optPrefix + 'final_layer_norm.bias'));
      if ((cfg.word_embed_proj_dim ?? d) !== d) xs = xs.map((x) => linear(x, optPrefix + 'project_out.weight'));
      head = optPrefix + 'embed_tokens.weight';
    } else {
      xs = xs.map((x) => norm(x, 'model.norm.weight', ''));
      head = cfg.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    }
    return xs.map((x) => Array.from(linear(x, head)));
  });
}

// ---- helpers -----------------------------------------------------------------------------------

function i32(rows: number[][]): Tensor {
  return tensor(rows, { dtype: 'i32' });
}

function maxMaskedDiff(logits: Float32Array, ref: (t: number, b: number) => ArrayLike<number>, mask: number[][], V: number): number {
  let worst = 0;
  const T = mask[0]!.length;
  mask.forEach((row, b) => row.forEach((m, t) => {
    if (!m) return;
    const r = ref(t, b);
    for (let j = 0; j < V; j++) {
      const d = Math.abs(logits[(b * T + t) * V + j]! - r[j]!);
      if (!(d <= worst)) worst = d;
    }
  }));
  return worst;
}

// Writes config.json + model.safetensors into a fresh directory.
function saveCheckpoint(name: string, config: Cfg, weights: Weights): string {
  const dir = mkdtempSync(join(scratch, `${name}-`));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  writeSafetensors(join(dir, 'model.safetensors'), weights);
  return dir;
}

const IDS = [[3, 17, 5, 29, 8, 11, 2], [9, 4, 33, 1, 0, 0, 0]];
const MASK = [[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]];

// ---- 1. the reference fixtures ------------------------------------------------------------------

describe.skipIf(!existsSync(FIXTURES))('reference fixtures', () => {
  for (const name of ['gpt2-tiny', 'opt-tiny', 'llama-tiny']) {
    it(`${name}: logits within 1e-4 and losses within 1e-5 of the reference`, async () => {
      const ref = readSafetensors(join(FIXTURES, name, 'reference.safetensors'));
      const [B, T] = ref.input_ids!.shape as [number, number];
      const V = ref.logits!.shape[2]!;
      const rows = (t: RawTensor) => Array.from({ length: B }, (_, b) => Array.from(t.data.slice(b * T, (b + 1) * T)));
      const ids = rows(ref.input_ids!), mask = rows(ref.attention_mask!);
      using model = await loadModel(join(FIXTURES, name));
      using idsT = i32(ids);
      using maskT = i32(mask);
      using logits = await model.forward(idsT, { attentionMask: maskT });
      expect(logits.shape).toEqual([B, T, V]);
      const diff = maxMaskedDiff(logits.toTypedArray(), (t, b) => ref.logits!.data.subarray((b * T + t) * V, (b * T + t + 1) * V), mask, V);
      expect(diff).toBeLessThanOrEqual(1e-4);
      using loss = await model.loss(idsT, { attentionMask: maskT });
      expect(loss.dtype).toBe('f64');
      const l = loss.toTypedArray();
      for (let b = 0; b < B; b++) expect(Math.abs(l[b]! - ref.loss!.data[b]!)).toBeLessThanOrEqual(1e-5);
      // mean_loss: the per-row means weighted by their pair counts.
      let num = 0, den = 0;
      mask.forEach((m, b) => {
        const pairs = m.slice(0, -1).filter((x, t) => x && m[t + 1]).length;
        num += l[b]! * pairs;
        den += pairs;
      });
      expect(Math.abs(num / den - ref.mean_loss!.data[0]!)).toBeLessThanOrEqual(1e-5);
    });
  }
});

// ---- 2. settings the fixtures do not cover, against the float64 reference ------------------------

function gpt2Case(prefixed: boolean) {
  const cfg: Cfg = { model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], vocab_size: 40, n_positions: 16, n_embd: 16, n_layer: 2, n_head: 2, n_inner: null, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new' };
  const p = prefixed ? 'transformer.' : '';
  const shapes: Record<string, number[]> = { [p + 'wte.weight']: [40, 16], [p + 'wpe.weight']: [16, 16], [p + 'ln_f.weight']: [16], [p + 'ln_f.bias']: [16] };
  for (let l = 0; l < 2; l++) {
    const h = `${p}h.${l}.`;
    Object.assign(shapes, {
      [h + 'ln_1.weight']: [16], [h + 'ln_1.bias']: [16], [h + 'attn.c_attn.weight']: [16, 48], [h + 'attn.c_attn.bias']: [48],
      [h + 'attn.c_proj.weight']: [16, 16], [h + 'attn.c_proj.bias']: [16], [h + 'ln_2.weight']: [16], [h + 'ln_2.bias']: [16],
      [h + 'mlp.c_fc.weight']: [16, 64], [h + 'mlp.c_fc.bias']: [64], [h + 'mlp.c_proj.weight']: [64, 16], [h + 'mlp.c_proj.bias']: [16],
    });
  }
  return { cfg, shapes };
}

function optCase() {
  // Post-LN (like opt-350m) with word_embed_proj_dim != hidden_size: project_in / project_out.
  const cfg: Cfg = { model_type: 'opt', architectures: ['OPTForCausalLM'], vocab_size: 40, hidden_size: 16, word_embed_proj_dim: 8, num_hidden_layers: 2, ffn_dim: 32, num_attention_heads: 4, max_position_embeddings: 16, do_layer_norm_before: false, activation_function: 'relu', enable_bias: true, pad_token_id: 1, eos_token_id: 2 };
  const p = 'model.decoder.';
  const shapes: Record<string, number[]> = { [p + 'embed_tokens.weight']: [40, 8], [p + 'embed_positions.weight']: [18, 16], [p + 'project_in.weight']: [16, 8], [p + 'project_out.weight']: [8, 16] };
  for (let l = 0; l < 2; l++) {
    const h = `${p}layers.${l}.`;
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) Object.assign(shapes, { [`${h}self_attn.${n}.weight`]: [16, 16], [`${h}self_attn.${n}.bias`]: [16] });
    Object.assign(shapes, {
      [h + 'self_attn_layer_norm.weight']: [16], [h + 'self_attn_layer_norm.bias']: [16], [h + 'final_layer_norm.weight']: [16], [h + 'final_layer_norm.bias']: [16],
      [h + 'fc1.weight']: [32, 16], [h + 'fc1.bias']: [32], [h + 'fc2.weight']: [16, 32], [h + 'fc2.bias']: [16],
    });
  }
  return { cfg, shapes };
}

function llamaCase(qwen2: boolean) {
  // Qwen2: q/k/v biases, no o_proj bias, tied embeddings. Llama: untied, no biases.
  const cfg: Cfg = qwen2
    ? { model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], vocab_size: 40, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 2, num_attention_heads: 6, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1000000.0, max_position_embeddings: 32, tie_word_embeddings: true, use_sliding_window: false, hidden_act: 'silu' }
    : { model_type: 'llama', architectures: ['LlamaForCausalLM'], vocab_size: 40, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 2, num_attention_heads: 6, num_key_value_heads: 3, rms_norm_eps: 1e-5, rope_theta: 10000.0, max_position_embeddings: 32, tie_word_embeddings: false, hidden_act: 'silu', eos_token_id: 2 };
  const kv = cfg.num_key_value_heads * 4;
  const shapes: Record<string, number[]> = { 'model.embed_tokens.weight': [40, 24], 'model.norm.weight': [24] };
  if (!qwen2) shapes['lm_head.weight'] = [40, 24];
  for (let l = 0; l < 2; l++) {
    const h = `model.layers.${l}.`;
    Object.assign(shapes, {
      [h + 'input_layernorm.weight']: [24], [h + 'post_attention_layernorm.weight']: [24],
      [h + 'self_attn.q_proj.weight']: [24, 24], [h + 'self_attn.k_proj.weight']: [kv, 24], [h + 'self_attn.v_proj.weight']: [kv, 24], [h + 'self_attn.o_proj.weight']: [24, 24],
      [h + 'mlp.gate_proj.weight']: [40, 24], [h + 'mlp.up_proj.weight']: [40, 24], [h + 'mlp.down_proj.weight']: [24, 40],
    });
    if (qwen2) Object.assign(shapes, { [h + 'self_attn.q_proj.bias']: [24], [h + 'self_attn.k_proj.bias']: [kv], [h + 'self_attn.v_proj.bias']: [kv] });
  }
  return { cfg, shapes };
}

describe('checkpoints against the float64 reference forward', () => {
  const cases: [string, { cfg: Cfg; shapes: Record<string, number[]> }, 'F32' | 'BF16'][] = [
    ['gpt2 with transformer.-prefixed names', gpt2Case(true), 'F32'],
    ['gpt2 with old unprefixed names', gpt2Case(false), 'F32'],
    ['opt post-LN with project_in/out', optCase(), 'F32'],
    ['qwen2 with q/k/v biases and tied embeddings', llamaCase(true), 'F32'],
    ['llama with bf16 weights', llamaCase(false), 'BF16'],
  ];
  cases.forEach(([title, { cfg, shapes }, dtype], i) => {
    it(title, async () => {
      const w = randomWeights(shapes, 100 + i, dtype);
      const dir = saveCheckpoint(`case${i}`, cfg, w);
      using model = await loadModel(dir);
      using ids = i32(IDS);
      using mask = i32(MASK);
      using logits = await model.forward(ids, { attentionMask: mask });
      const ref = referenceForward(cfg, w, IDS, MASK);
      const V = cfg.vocab_size as number;
      const diff = maxMaskedDiff(logits.toTypedArray(), (t, b) => ref[b]![t]!, MASK, V);
      expect(diff).toBeLessThanOrEqual(1e-4);
      // Loss from the reference logits, in float64.
      using loss = await model.loss(ids, { attentionMask: mask });
      const l = loss.toTypedArray();
      MASK.forEach((m, b) => {
        let sum = 0, n = 0;
        for (let t = 0; t + 1 < m.length; t++) {
          if (!m[t] || !m[t + 1]) continue;
          const z = ref[b]![t]!;
          const mx = Math.max(...z);
          sum += mx + Math.log(z.reduce((a, x) => a + Math.exp(x - mx), 0)) - z[IDS[b]![t + 1]!]!;
          n++;
        }
        expect(Math.abs(l[b]! - sum / n)).toBeLessThanOrEqual(1e-5);
      });
    });
  });

  it('a sharded checkpoint (model.safetensors.index.json) loads like a single file', async () => {
    const { cfg, shapes } = llamaCase(true);
    const w = randomWeights(shapes, 71);
    const single = saveCheckpoint('unsharded', cfg, w);
    const dir = mkdtempSync(join(scratch, 'sharded-'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    const names = Object.keys(w);
    const shards: Record<string, Weights> = { 'model-00001-of-00002.safetensors': {}, 'model-00002-of-00002.safetensors': {} };
    const weightMap: Record<string, string> = {};
    names.forEach((n, i) => {
      const file = i % 2 ? 'model-00002-of-00002.safetensors' : 'model-00001-of-00002.safetensors';
      shards[file]![n] = w[n]!;
      weightMap[n] = file;
    });
    for (const [file, tensors] of Object.entries(shards)) writeSafetensors(join(dir, file), tensors);
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    using a = await loadModel(single);
    using b = await loadModel(dir);
    using ids = i32(IDS);
    using la = await a.forward(ids);
    using lb = await b.forward(ids);
    expect(Array.from(lb.toTypedArray())).toEqual(Array.from(la.toTypedArray()));
  });

  it('a gpt2 checkpoint with the causal-mask buffers (attn.bias) of old conversions still loads', async () => {
    const { cfg, shapes } = gpt2Case(false);
    const w = randomWeights(shapes, 7);
    w['h.0.attn.bias'] = { dtype: 'F32', shape: [1, 1, 16, 16], data: new Float64Array(256).fill(1) };
    using model = await loadModel(saveCheckpoint('gpt2-buffers', cfg, w));
    expect(Object.keys(model.parameters())).not.toContain('h.0.attn.bias');
  });
});

// ---- 3. generation ------------------------------------------------------------------------------

describe('generation', () => {
  it('greedy with the KV cache equals argmax of full forwards, for every family', async () => {
    for (const [i, c] of [gpt2Case(true), optCase(), llamaCase(true)].entries()) {
      const w = randomWeights(c.shapes, 300 + i);
      using model = await loadModel(saveCheckpoint(`gen${i}`, { ...c.cfg, eos_token_id: -1 }, w));
      const N = 6;
      using ids = i32(IDS);
      using mask = i32(MASK);
      using gen = await model.generate(ids, { attentionMask: mask, maxNewTokens: N, eosTokenId: -1 });
      expect(gen.shape).toEqual([2, N]);
      const out = gen.toTypedArray();
      const V = c.cfg.vocab_size as number;
      for (let b = 0; b < IDS.length; b++) {
        const seq = IDS[b]!.filter((_, t) => MASK[b]![t]);
        for (let s = 0; s < N; s++) {
          using x = i32([seq]);
          using logits = await model.forward(x);
          const z = logits.toTypedArray().subarray((seq.length - 1) * V, seq.length * V);
          let best = 0;
          for (let j = 1; j < V; j++) if (z[j]! > z[best]!) best = j;
          expect(out[b * N + s]).toBe(best);
          seq.push(best);
        }
      }
    }
  });

  it('sampling is reproducible from its seed, stops at eos and validates its options', async () => {
    const c = llamaCase(false);
    using model = await loadModel(saveCheckpoint('sample', c.cfg, randomWeights(c.shapes, 11)));
    using ids = i32(IDS);
    using mask = i32(MASK);
    const opts = { attentionMask: mask, maxNewTokens: 8, temperature: 1.5, topK: 10, topP: 0.9, seed: 42, eosTokenId: -1 };
    using a = await model.generate(ids, opts);
    using b = await model.generate(ids, opts);
    expect(Array.from(a.toTypedArray())).toEqual(Array.from(b.toTypedArray()));
    using c2 = await model.generate(ids, { ...opts, seed: 43 });
    expect(Array.from(a.toTypedArray())).not.toEqual(Array.from(c2.toTypedArray()));
    // Stop at eos: make the first greedy token of row 0 the eos id; the rest is padding (eos, no pad id).
    using greedy = await model.generate(ids, { attentionMask: mask, maxNewTokens: 4, eosTokenId: -1 });
    const first = greedy.toTypedArray()[0]!;
    using stopped = await model.generate(ids, { attentionMask: mask, maxNewTokens: 4, eosTokenId: first });
    expect(Array.from(stopped.toTypedArray().subarray(0, 4))).toEqual([first, first, first, first]);
    await expect(model.generate(ids, { topP: 0 })).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
    await expect(model.generate(ids, { temperature: -1 })).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
  });
});

// ---- 4. perturbation, parameters, errors --------------------------------------------------------

describe('perturbation and parameters', () => {
  it('a perturbed forward moves the logits, only through trainable weights, and scale 0 is exact', async () => {
    const c = gpt2Case(true);
    const w = randomWeights(c.shapes, 21);
    using model = await loadModel(saveCheckpoint('perturb', c.cfg, w));
    using ids = i32(IDS);
    using clean = await model.forward(ids);
    using zero = await model.forward(ids, { perturbation: { seed: 5, scale: 0 } });
    using none = await model.forward(ids, { perturbation: { seed: 5, scale: 0.01, trainable: [] } });
    using moved = await model.forward(ids, { perturbation: { seed: 5, scale: 0.01 } });
    using again = await model.forward(ids, { perturbation: { seed: 5, scale: 0.01 } });
    using other = await model.forward(ids, { perturbation: { seed: 6, scale: 0.01, dist: 'rademacher' } });
    const cl = clean.toTypedArray();
    expect(Array.from(zero.toTypedArray())).toEqual(Array.from(cl));
    expect(Array.from(none.toTypedArray())).toEqual(Array.from(cl));
    expect(Array.from(again.toTypedArray())).toEqual(Array.from(moved.toTypedArray()));
    const dist = (a: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - cl[i]!)), 0);
    expect(dist(moved.toTypedArray())).toBeGreaterThan(1e-4);
    expect(dist(other.toTypedArray())).toBeGreaterThan(1e-4);
    // Antithetic losses around the clean one: (L+ + L-)/2 stays close to L0 for a small step.
    using l0 = await model.loss(ids);
    using lp = await model.loss(ids, { perturbation: { seed: 9, scale: 1e-3 } });
    using lm = await model.loss(ids, { perturbation: { seed: 9, scale: -1e-3 } });
    const [a0, ap, am] = [l0.toTypedArray()[0]!, lp.toTypedArray()[0]!, lm.toTypedArray()[0]!];
    expect(ap).not.toBe(am);
    expect(Math.abs((ap + am) / 2 - a0)).toBeLessThan(Math.abs(ap - am));
    await expect(model.forward(ids, { perturbation: { seed: 1, scale: 0.1, trainable: ['nope'] } })).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
  });

  it('parameters() are the checkpoint tensors by name, widened to f32', async () => {
    const c = llamaCase(false);
    const w = randomWeights(c.shapes, 31, 'BF16');
    using model = await loadModel(saveCheckpoint('params', c.cfg, w));
    const params = model.parameters();
    expect(Object.keys(params).sort()).toEqual(Object.keys(w).sort());
    expect(model.parameterNames().sort()).toEqual(Object.keys(w).sort());
    for (const [name, t] of Object.entries(params)) {
      expect(t.dtype).toBe('f32');
      expect(t.shape).toEqual(w[name]!.shape);
      expect(Array.from(t.toTypedArray())).toEqual(Array.from(w[name]!.data));
      t.dispose();
    }
  });

  it('concurrent calls on one model give the results of sequential calls', async () => {
    const c = llamaCase(true);
    using model = await loadModel(saveCheckpoint('concurrent', c.cfg, randomWeights(c.shapes, 81)));
    using ids = i32(IDS);
    using mask = i32(MASK);
    using f0 = await model.forward(ids, { attentionMask: mask });
    using l0 = await model.loss(ids, { attentionMask: mask });
    using short = i32([[5, 6, 7]]);
    const results = await Promise.all([
      model.forward(ids, { attentionMask: mask }), model.loss(ids, { attentionMask: mask }),
      model.forward(short), model.forward(ids, { attentionMask: mask }),
    ]);
    expect(Array.from(results[0].toTypedArray())).toEqual(Array.from(f0.toTypedArray()));
    expect(Array.from(results[1].toTypedArray())).toEqual(Array.from(l0.toTypedArray()));
    expect(Array.from(results[3].toTypedArray())).toEqual(Array.from(f0.toTypedArray()));
    for (const r of results) r.dispose();
  });

  it('modelFromWeights builds the same model from tensors in memory', async () => {
    const c = optCase();
    const w = randomWeights(c.shapes, 41);
    const tensors: Record<string, Tensor> = {};
    for (const [n, t] of Object.entries(w)) tensors[n] = tensor(Float32Array.from(t.data), { shape: t.shape });
    using model = await modelFromWeights(c.cfg, tensors);
    using fromDisk = await loadModel(saveCheckpoint('mem', c.cfg, w));
    using ids = i32(IDS);
    using a = await model.forward(ids);
    using b = await fromDisk.forward(ids);
    expect(Array.from(a.toTypedArray())).toEqual(Array.from(b.toTypedArray()));
    for (const t of Object.values(tensors)) t.dispose();
  });
});

describe('errors', () => {
  const expectCode = async (p: Promise<unknown>, code: string, text: string) => {
    const e = await p.then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(ZerothError);
    expect((e as ZerothError).code).toBe(code);
    expect((e as ZerothError).message).toContain(text);
  };

  it('configs zeroth cannot run give E_UNSUPPORTED naming the field', async () => {
    const c = llamaCase(false);
    const w = randomWeights(c.shapes, 51);
    const tensors: Record<string, Tensor> = {};
    for (const [n, t] of Object.entries(w)) tensors[n] = tensor(Float32Array.from(t.data), { shape: t.shape });
    await expectCode(modelFromWeights({ ...c.cfg, rope_scaling: { type: 'linear', factor: 2 } }, tensors), 'E_UNSUPPORTED', 'rope_scaling');
    await expectCode(modelFromWeights({ ...c.cfg, hidden_act: 'gelu' }, tensors), 'E_UNSUPPORTED', 'hidden_act');
    await expectCode(modelFromWeights({ ...c.cfg, architectures: ['BertForMaskedLM'] }, tensors), 'E_UNSUPPORTED', 'architectures');
    await expectCode(modelFromWeights({ model_type: 'mamba' }, tensors), 'E_UNSUPPORTED', 'model_type');
    await expectCode(modelFromWeights({ ...gpt2Case(true).cfg, activation_function: 'quick_gelu' }, tensors), 'E_UNSUPPORTED', 'activation_function');
    await expectCode(modelFromWeights({ ...c.cfg, num_key_value_heads: 4 }, tensors), 'E_INVALID_ARG', 'num_key_value_heads');
    // Weights that do not match the config.
    using intWeight = tensor(new Int32Array(24), { dtype: 'i32' });
    await expectCode(modelFromWeights(c.cfg, { ...tensors, 'model.norm.weight': intWeight }), 'E_DTYPE', 'model.norm.weight');
    await expectCode(modelFromWeights({ ...c.cfg, intermediate_size: 41 }, tensors), 'E_FORMAT', 'mlp.gate_proj.weight');
    await expectCode(modelFromWeights(gpt2Case(true).cfg, tensors), 'E_FORMAT', 'wte.weight');
    for (const t of Object.values(tensors)) t.dispose();
    await expectCode(loadModel(join(scratch, 'does-not-exist')), 'E_IO', 'does-not-exist');
    await expectCode(loadModel(scratch, { device: 'npu' as 'cpu' }), 'E_DEVICE', 'npu');
  });

  it('bad inputs are refused', async () => {
    const c = gpt2Case(true);
    using model = await loadModel(saveCheckpoint('inputs', c.cfg, randomWeights(c.shapes, 61)));
    using f32 = tensor([[1, 2]]);
    await expect(model.forward(f32)).rejects.toMatchObject({ code: 'E_DTYPE' });
    using oov = i32([[1, 40]]);
    await expect(model.forward(oov)).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
    using ids = i32([[1, 2, 3]]);
    using badMask = i32([[1, 2, 1]]);
    await expect(model.forward(ids, { attentionMask: badMask })).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
    using shortMask = i32([[1, 1]]);
    await expect(model.forward(ids, { attentionMask: shortMask })).rejects.toMatchObject({ code: 'E_SHAPE' });
    using tooLong = i32([Array.from({ length: 17 }, () => 1)]);
    await expect(model.forward(tooLong)).rejects.toMatchObject({ code: 'E_INVALID_ARG' });
    model.dispose();
    await expect(model.forward(ids)).rejects.toMatchObject({ code: 'E_DISPOSED' });
  });
});
