// data.test.ts — JSONL reading, tasks and sampling (src/data).
//
// Errors: every bad file names the file and the line. Sampling: permutations, splits and batch
// orders are deterministic functions of the seed. Tasks: the classification and multiple-choice
// losses equal references computed here in float64 from model.forward logits of each example
// run alone (no padding), on the gpt2-tiny fixture with a byte-level tokenizer written here.
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { tensor, ZerothError } from '../src/index.js';
import { loadModel, type Model } from '../src/model.js';
import { loadTokenizer, type Tokenizer } from '../src/tokenizer.js';
import { BatchOrder, ChoiceTask, ClassifyTask, evaluate, heldOutSplit, LmTask, parseJsonl, permutation } from '../src/data/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const FIXTURES = process.env.ZEROTH_FIXTURES ?? join(here, '..', '..', 'shared', 'fixtures');
const scratch = mkdtempSync(join(tmpdir(), 'zeroth-data-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A byte-level BPE without merges: id 0 is <|endoftext|>, byte b is id b + 1 (fits gpt2-tiny's 320). */
function byteTokenizerJson(): object {
  const vocab: Record<string, number> = { '<|endoftext|>': 0 };
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    vocab[String.fromCodePoint(printable ? b : 256 + n++)] = b + 1;
  }
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0', truncation: null, padding: null, normalizer: null,
    added_tokens: [{ id: 0, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    pre_tokenizer: byteLevel, post_processor: byteLevel, decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
}

function file(name: string, text: string): string {
  const p = join(scratch, name);
  writeFileSync(p, text);
  return p;
}

function jsonl(rows: unknown[]): string {
  return rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
}

async function expectFormatError(p: Promise<unknown> | (() => unknown), ...fragments: string[]): Promise<void> {
  let caught: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ZerothError);
  expect((caught as ZerothError).code).toBe('E_FORMAT');
  for (const f of fragments) expect((caught as ZerothError).message).toContain(f);
}

let tok: Tokenizer;
let model: Model;
beforeAll(async () => {
  const dir = join(scratch, 'model');
  rmSync(dir, { recursive: true, force: true });
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir);
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(FIXTURES, 'gpt2-tiny', f), join(dir, f));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(byteTokenizerJson()));
  tok = await loadTokenizer(dir);
  model = await loadModel(dir);
});
afterAll(() => model?.dispose());

describe('JSONL errors name the file and the line', () => {
  it('invalid JSON, non-objects and empty files', async () => {
    await expectFormatError(() => parseJsonl('{"text": "a"}\n\n{"text": oops}\n', 'f.jsonl'), 'f.jsonl:3', 'invalid JSON');
    await expectFormatError(() => parseJsonl('{"text": "a"}\n[1, 2]\n', 'f.jsonl'), 'f.jsonl:2', 'an array');
    await expectFormatError(() => parseJsonl('"text"\n', 'g.jsonl'), 'g.jsonl:1', 'string');
    await expectFormatError(() => parseJsonl('', 'empty.jsonl'), 'empty.jsonl', 'empty');
    await expectFormatError(() => parseJsonl('\n  \n', 'blank.jsonl'), 'blank.jsonl', 'empty');
    // CRLF line ends and blank lines are fine; lines keep their numbers.
    expect(parseJsonl('{"a": 1}\r\n\r\n{"a": 2}\r\n', 'ok').map((r) => r.line)).toEqual([1, 3]);
  });

  it('missing or ill-typed fields, per task', async () => {
    const lm = new LmTask(tok, 64);
    await expectFormatError(lm.load(file('lm1.jsonl', jsonl([{ text: 'ok' }, { txt: 'no' }]))), 'lm1.jsonl:2', 'missing field "text"');
    await expectFormatError(lm.load(file('lm2.jsonl', jsonl([{ text: 'ok' }, { text: 'ok' }, { text: 7 }]))), 'lm2.jsonl:3', '"text" must be a string');
    await expectFormatError(lm.load(file('lm3.jsonl', '')), 'lm3.jsonl', 'empty');
    await expect(lm.load(join(scratch, 'absent.jsonl'))).rejects.toMatchObject({ code: 'E_IO' });

    const cls = new ClassifyTask(tok, { template: '{text} is', labelWords: { yes: 'Y', no: 'N' } }, 64);
    await expectFormatError(cls.load(file('c1.jsonl', jsonl([{ text: 'a', label: 'yes' }, { text: 'b' }]))), 'c1.jsonl:2', 'missing field "label"');
    await expectFormatError(cls.load(file('c2.jsonl', jsonl([{ text: 'a', label: 'maybe' }]))), 'c2.jsonl:1', '"maybe"', 'yes, no');
    await expectFormatError(cls.load(file('c3.jsonl', jsonl([{ text: 'a', label: [1] }]))), 'c3.jsonl:1', '"label" must be');

    const mc = new ChoiceTask(tok, 64);
    await expectFormatError(mc.load(file('m1.jsonl', jsonl([{ text: 'a', choices: ['x'], answer: 0 }]))), 'm1.jsonl:1', '"choices"');
    await expectFormatError(mc.load(file('m2.jsonl', jsonl([{ text: 'a', choices: [' x', ' y'], answer: 0 }, { text: 'a', choices: [' x', ' y'], answer: 2 }]))), 'm2.jsonl:2', '"answer"');
  });

  it('drops rows with fewer than two tokens and counts them', async () => {
    const lm = new LmTask(tok, 64);
    const { examples, dropped } = await lm.load(file('short.jsonl', jsonl([{ text: 'hello' }, { text: 'x' }, { text: '' }, { text: 'ab' }])));
    expect(dropped).toBe(2);
    expect(examples).toEqual([[...'hello'].map((c) => c.charCodeAt(0) + 1), [98, 99]]);
    // maxLength cuts long rows to their first tokens.
    const cut = await new LmTask(tok, 3).load(file('long.jsonl', jsonl([{ text: 'abcdef' }])));
    expect(cut.examples).toEqual([[98, 99, 100]]);
  });
});

describe('seeded sampling', () => {
  it('permutations are deterministic and are permutations', () => {
    const a = permutation(100, 7);
    expect(permutation(100, 7)).toEqual(a);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(permutation(100, 8)).not.toEqual(a);
    expect(a).not.toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('held-out split: disjoint, complete, seeded', () => {
    const rows = Array.from({ length: 50 }, (_, i) => i);
    const s = heldOutSplit(rows, 3);
    expect(s.heldOut.length).toBe(5);
    expect([...s.train, ...s.heldOut].sort((x, y) => x - y)).toEqual(rows);
    expect(heldOutSplit(rows, 3)).toEqual(s);
    expect(heldOutSplit(rows, 4).heldOut).not.toEqual(s.heldOut);
    expect(heldOutSplit([1, 2], 0).heldOut.length).toBe(1);
    expect(() => heldOutSplit([1], 0)).toThrow(/--eval/);
  });

  it('batch order: each epoch visits every row once; any step can be recomputed alone', () => {
    const order = new BatchOrder(12, 4, 5);
    const steps = Array.from({ length: 9 }, (_, s) => order.at(s));
    for (let e = 0; e < 3; e++) {
      const seen = steps.slice(3 * e, 3 * e + 3).flat().sort((x, y) => x - y);
      expect(seen).toEqual(Array.from({ length: 12 }, (_, i) => i));
    }
    expect(steps[0]).not.toEqual(steps[3]); // epochs are shuffled differently
    expect(new BatchOrder(12, 4, 5).at(7)).toEqual(steps[7]); // a resumed run sees the same batch
    expect(new BatchOrder(12, 4, 6).at(0)).not.toEqual(steps[0]);
    // Batch sizes that do not divide the data wrap into the next epoch.
    const odd = new BatchOrder(5, 3, 1);
    expect([...odd.at(0), ...odd.at(1)].slice(0, 5).sort()).toEqual([0, 1, 2, 3, 4]);
  });
});

/** Logits of one unpadded row, as float64 rows [T][V]. */
async function rowLogits(ids: number[]): Promise<number[][]> {
  using input = tensor(new Int32Array(ids), { dtype: 'i32', shape: [1, ids.length] });
  using logits = await model.forward(input);
  const V = logits.shape[2]!;
  const data = logits.toTypedArray();
  return ids.map((_, t) => Array.from(data.subarray(t * V, (t + 1) * V), Number));
}

function logSoftmax(row: number[]): number[] {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
  return row.map((x) => x - lse);
}

describe('task losses against float64 references from logits', () => {
  it('classification: cross entropy over the label words at the end of the prompt; accuracy', async () => {
    const config = { template: 'Review: {text} Verdict:', labelWords: { good: ' yes', bad: 'no', meh: 'M' } };
    const task = new ClassifyTask(tok, config, 64);
    const rows = [
      { text: 'lovely film', label: 'good' }, { text: 'a bore', label: 'bad' }, { text: 'fine I guess, long text here', label: 'meh' },
      { text: 'x', label: 'good' }, { text: 'ok', label: 'bad' },
    ];
    const { examples } = await task.load(file('cls.jsonl', jsonl(rows)));
    // Label tokens: first token of each word (' yes' starts with the space byte).
    expect(task.labelTokens).toEqual([' '.charCodeAt(0) + 1, 'n'.charCodeAt(0) + 1, 'M'.charCodeAt(0) + 1]);
    let lossSum = 0;
    let correct = 0;
    for (const [i, r] of rows.entries()) {
      const ids = tok.encode(config.template.replace('{text}', r.text));
      expect(examples[i]!.ids).toEqual(ids);
      const last = (await rowLogits(ids))[ids.length - 1]!;
      const cls = task.labelTokens.map((t) => last[t]!);
      const answer = task.labels.indexOf(r.label);
      lossSum += -logSoftmax(cls)[answer]!;
      if (cls.indexOf(Math.max(...cls)) === answer) correct++;
    }
    const got = await task.score(model, examples); // one padded batch of unequal lengths
    expect(got.count).toBe(rows.length);
    expect(Math.abs(got.lossSum - lossSum)).toBeLessThan(1e-4);
    expect(got.correct).toBe(correct);
    const ev = await evaluate(model, task, examples, { batchSize: 2 });
    expect(Math.abs(ev.loss - lossSum / rows.length)).toBeLessThan(1e-5);
    expect(ev.accuracy).toBe(correct / rows.length);
    // The accuracy objective is 1 − accuracy of the batch.
    const acc = new ClassifyTask(tok, config, 64, 'accuracy');
    expect(await acc.batchObjective(model, examples)).toBeCloseTo(1 - correct / rows.length, 12);
  });

  it('multiple choice: mean token loss of each continuation; cross entropy over the choices', async () => {
    const task = new ChoiceTask(tok, 64);
    const rows = [
      { text: 'The cat sat on the', choices: [' mat', ' moon', ' a'], answer: 0 },
      { text: 'One two', choices: [' three', ' four!'], answer: 1 },
    ];
    const { examples } = await task.load(file('mc.jsonl', jsonl(rows)));
    let lossSum = 0;
    let correct = 0;
    for (const r of rows) {
      const prefix = tok.encode(r.text);
      const scores: number[] = [];
      for (const c of r.choices) {
        const cont = tok.encode(c, { addSpecialTokens: false });
        const ids = [...prefix, ...cont];
        const logits = await rowLogits(ids);
        let nll = 0;
        for (let p = prefix.length; p < ids.length; p++) nll -= logSoftmax(logits[p - 1]!)[ids[p]!]!;
        scores.push(-nll / cont.length);
      }
      lossSum += -logSoftmax(scores)[r.answer]!;
      if (scores.indexOf(Math.max(...scores)) === r.answer) correct++;
    }
    const got = await task.score(model, examples);
    expect(Math.abs(got.lossSum - lossSum)).toBeLessThan(1e-4);
    expect(got.correct).toBe(correct);
  });

  it('lm: the batch loss is the mean of per-row losses, padding ignored', async () => {
    const task = new LmTask(tok, 64);
    const { examples } = await task.load(file('lm.jsonl', jsonl([{ text: 'hello there' }, { text: 'hi' }, { text: 'a longer line of text' }])));
    let sum = 0;
    for (const ids of examples) {
      const logits = await rowLogits(ids);
      let nll = 0;
      for (let p = 1; p < ids.length; p++) nll -= logSoftmax(logits[p - 1]!)[ids[p]!]!;
      sum += nll / (ids.length - 1);
    }
    expect(Math.abs((await task.batchObjective(model, examples)) - sum / examples.length)).toBeLessThan(1e-5);
  });
});
