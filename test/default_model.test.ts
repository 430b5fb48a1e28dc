// default_model.test.ts — the model and tasks shipped in models/default and data/default (made by
// tools/pretrain_default.py; see tools/README.md).
//
// 1. The shipped tokenizer loads in zeroth and gives the ids of the Python BPE that trained it (the
//    script stored them in reference.safetensors' metadata), and decodes back to the text.
// 2. The shipped model loads with loadModel and its logits match torch's (reference.safetensors,
//    computed by the script's own GPT-2) within 1e-4 at real tokens; per-row losses within 1e-5.
// 3. The shipped task files are well formed: JSONL rows with the fields the CLI reads, label words
//    that are one token each, balanced classes, train and eval disjoint, rows that fit the context.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import * as zeroth from '../src/index.js';
import * as modelModule from '../src/model.js';
import { loadTokenizer } from '../src/tokenizer.js';

const here = dirname(fileURLToPath(import.meta.url));
const MODEL_DIR = join(here, '..', 'models', 'default');
const DATA_DIR = join(here, '..', 'data', 'default');

// ---- a tiny safetensors reader, independent of zeroth's -----------------------------------------

interface RawTensor {
  dtype: string;
  shape: number[];
  data: Float32Array | Float64Array | Int32Array;
}

function readReference(path: string): { tensors: Record<string, RawTensor>; metadata: Record<string, string> } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const tensors: Record<string, RawTensor> = {};
  let metadata: Record<string, string> = {};
  for (const [name, h] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = h as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: [b, e] } = h as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const bytes = buf.subarray(8 + n + b, 8 + n + e);
    const copy = new ArrayBuffer(bytes.length);
    new Uint8Array(copy).set(bytes);
    const make = { F32: Float32Array, F64: Float64Array, I32: Int32Array }[dtype];
    if (make === undefined) throw new Error(`unexpected dtype ${dtype} in ${path}`);
    tensors[name] = { dtype, shape, data: new make(copy) };
  }
  return { tensors, metadata };
}

const reference = readReference(join(MODEL_DIR, 'reference.safetensors'));
const config = JSON.parse(readFileSync(join(MODEL_DIR, 'config.json'), 'utf8')) as Record<string, number | string>;

function readJsonl(name: string): Record<string, unknown>[] {
  const lines = readFileSync(join(DATA_DIR, name), 'utf8').split('\n');
  expect(lines.pop(), `${name} ends with a newline`).toBe('');
  return lines.map((line, i) => {
    const row = JSON.parse(line) as unknown;
    expect(typeof row === 'object' && row !== null && !Array.isArray(row), `${name} line ${i + 1} is an object`).toBe(true);
    return row as Record<string, unknown>;
  });
}

/** Rows of the [B, T] int32 reference input, without their right padding. */
function unpaddedRows(): number[][] {
  const { input_ids: ids, attention_mask: mask } = reference.tensors;
  const [B, T] = ids!.shape as [number, number];
  const rows: number[][] = [];
  for (let b = 0; b < B; b++) {
    const row: number[] = [];
    for (let t = 0; t < T; t++) if (mask!.data[b * T + t] === 1) row.push(ids!.data[b * T + t]!);
    rows.push(row);
  }
  return rows;
}

describe('shipped tokenizer (models/default)', () => {
  it('loads with the special tokens the config names', async () => {
    const tok = await loadTokenizer(MODEL_DIR);
    expect(tok.vocabSize).toBe(config.vocab_size);
    const eot = tok.tokenToId('<|endoftext|>');
    expect(eot).toBe(config.eos_token_id);
    expect(tok.eosTokenId).toBe(eot);
    expect(tok.bosTokenId).toBe(eot);
    expect(tok.padTokenId).toBe(eot);
  });

  it('gives the ids of the Python tokenizer that trained it, and decodes back to the text', async () => {
    const tok = await loadTokenizer(MODEL_DIR);
    const samples = JSON.parse(reference.metadata.tokenizer_samples!) as { text: string; ids: number[] }[];
    expect(samples.length).toBeGreaterThanOrEqual(5);
    for (const { text, ids } of samples) {
      expect(tok.encode(text), JSON.stringify(text)).toEqual(ids);
      // add_bos_token is false: encoding with special tokens adds nothing.
      expect(tok.encode(text, { addSpecialTokens: true })).toEqual(ids);
      if (ids.length > 0) expect(tok.decode(ids)).toBe(text);
    }
    // The reference batch was tokenized by the same Python code.
    const texts = JSON.parse(reference.metadata.texts!) as string[];
    expect(texts.map((t) => tok.encode(t))).toEqual(unpaddedRows());
  });

  it('learned KJV words as single tokens', async () => {
    const tok = await loadTokenizer(MODEL_DIR);
    for (const word of [' the', ' LORD', ' God', ' Jesus', ' unto']) expect(tok.encode(word), word).toHaveLength(1);
  });
});

describe('shipped model (models/default)', () => {
  it('has the GPT-2 config the pretraining script writes', () => {
    expect(config.model_type).toBe('gpt2');
    expect(config.architectures).toEqual(['GPT2LMHeadModel']);
    expect(config.activation_function).toBe('gelu_new');
    expect(config.tie_word_embeddings).toBe(true);
    expect(config.n_ctx).toBe(config.n_positions);
  });

  it('loads with loadModel and matches the torch logits and losses', async () => {
    expect(typeof modelModule.loadModel, 'src/model.ts exports loadModel').toBe('function');
    const model = await zeroth.loadModel(MODEL_DIR);
    const { input_ids: ids, attention_mask: mask, logits: want, losses: wantLoss } = reference.tensors;
    const [B, T] = ids!.shape as [number, number];
    const V = config.vocab_size as number;
    expect(want!.shape).toEqual([B, T, V]);

    const inputIds = zeroth.tensor(ids!.data as Int32Array, { shape: [B, T], dtype: 'i32' });
    const attentionMask = zeroth.tensor(mask!.data as Int32Array, { shape: [B, T], dtype: 'i32' });
    const logits = await model.forward(inputIds, { attentionMask });
    expect(logits.shape).toEqual([B, T, V]);
    const got = logits.toTypedArray();
    // Real tokens only: at padded positions the value depends on how a forward masks padding, which
    // the loss never reads.
    let worst = 0;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        if (mask!.data[b * T + t] !== 1) continue;
        for (let v = 0; v < V; v++) {
          const i = (b * T + t) * V + v;
          worst = Math.max(worst, Math.abs(got[i]! - want!.data[i]!));
        }
      }
    }
    expect(worst).toBeLessThan(1e-4);

    const losses = (await model.loss(inputIds, { attentionMask })).toTypedArray();
    expect(losses).toHaveLength(B);
    for (let b = 0; b < B; b++) expect(Math.abs(losses[b]! - wantLoss!.data[b]!)).toBeLessThan(1e-5);
    // Pretrained, not random: a KJV verse costs far less than a uniform guess (ln 4096 = 8.3 nats).
    expect(losses[0]!).toBeLessThan(6);
  });
});

describe('shipped tasks (data/default)', () => {
  const limit = config.n_positions as number;

  it('causal LM: train.jsonl and eval.jsonl hold {"text"} rows that fit the context, disjoint', async () => {
    const tok = await loadTokenizer(MODEL_DIR);
    const train = readJsonl('train.jsonl');
    const held = readJsonl('eval.jsonl');
    expect(train.length).toBeGreaterThanOrEqual(200);
    expect(held.length).toBeGreaterThanOrEqual(50);
    for (const row of [...train, ...held]) {
      expect(typeof row.text === 'string' && row.text.length > 0).toBe(true);
      expect(tok.encode(row.text as string).length).toBeLessThanOrEqual(limit);
    }
    const seen = new Set(train.map((r) => r.text));
    expect(held.filter((r) => seen.has(r.text))).toEqual([]);
  });

  it('classification: balanced {"text", "label"} rows, one-token label words, disjoint splits', async () => {
    const tok = await loadTokenizer(MODEL_DIR);
    const cfg = JSON.parse(readFileSync(join(DATA_DIR, 'classify.json'), 'utf8')) as {
      template: string; label_words: Record<string, string>; train: string; eval: string;
    };
    expect(cfg.template).toContain('{text}');
    const labels = Object.keys(cfg.label_words);
    expect(labels.sort()).toEqual(['new', 'old']);
    for (const word of Object.values(cfg.label_words)) expect(tok.encode(word), word).toHaveLength(1);

    const train = readJsonl(cfg.train);
    const held = readJsonl(cfg.eval);
    for (const [rows, min] of [[train, 200], [held, 50]] as const) {
      expect(rows.length).toBeGreaterThanOrEqual(min);
      const count: Record<string, number> = {};
      for (const row of rows) {
        expect(typeof row.text === 'string' && row.text.length > 0).toBe(true);
        expect(labels).toContain(row.label);
        count[row.label as string] = (count[row.label as string] ?? 0) + 1;
        const prompt = cfg.template.replace('{text}', row.text as string) + cfg.label_words[row.label as string];
        expect(tok.encode(prompt).length).toBeLessThanOrEqual(limit);
      }
      expect(count.old).toBe(count.new);
    }
    const seen = new Set(train.map((r) => r.text));
    expect(held.filter((r) => seen.has(r.text))).toEqual([]);
  });
});
