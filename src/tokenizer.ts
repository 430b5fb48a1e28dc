// tokenizer.ts — Hugging Face tokenizers (tokenizer.json + tokenizer_config.json) for zeroth.
//
// The tokenization itself (normalizers, pre-tokenizers, BPE / Unigram / WordPiece models,
// post-processors, decoders, added tokens) is done by @huggingface/tokenizers, the pure-JS
// implementation the transformers.js team maintains. This file owns what sits around it: reading
// and checking the files (errors that name the file and say what to do), the special-token ids a
// training loop needs (BOS / EOS / PAD), the add_bos_token / add_eos_token switches of
// tokenizer_config.json, and batches padded on the right with attention masks for the model code.

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { ZerothError } from './errors.js';

export interface EncodeOptions {
  /** Add the special tokens of the post-processor (e.g. BOS for Llama). Default true, as in HF. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, PAD, ...) from the text. Default false. */
  skipSpecialTokens?: boolean;
}

export interface EncodeBatchOptions extends EncodeOptions {
  /** Longest allowed row, special tokens included. Needed by padding 'max_length' and by truncation
   *  (where it defaults to model_max_length when the config gives a finite one). */
  maxLength?: number;
  /** 'longest' (default): pad to the longest row; 'max_length': pad every row to maxLength. */
  padding?: 'longest' | 'max_length';
  /** Cut rows longer than maxLength, keeping their first tokens and their special tokens. Without
   *  it, a row longer than maxLength is an error (the model needs a rectangular batch). */
  truncation?: boolean;
}

export interface EncodedBatch {
  /** Token ids, one row per text, padded on the RIGHT with padTokenId. */
  inputIds: number[][];
  /** 1 for a real token, 0 for padding; same shape as inputIds. */
  attentionMask: number[][];
}

/** The fields of tokenizer_config.json that zeroth reads (all optional; the chat template is ignored). */
interface TokenizerConfig {
  bosToken: string | null;
  eosToken: string | null;
  padToken: string | null;
  unkToken: string | null;
  addBosToken: boolean | undefined;
  addEosToken: boolean | undefined;
  modelMaxLength: number;
  cleanUpTokenizationSpaces: boolean;
  /** What the library itself reads from the config, with token objects turned into strings. */
  forLibrary: Record<string, unknown>;
}

/** The model types @huggingface/tokenizers implements (HF's WordLevel is not among them). */
const SUPPORTED_MODELS = ['BPE', 'Unigram', 'WordPiece'];

/** transformers writes this sentinel (int(1e30)) for "no limit"; anything past 2^53 means the same. */
const NO_LIMIT_THRESHOLD = Number.MAX_SAFE_INTEGER;

/**
 * Loads the tokenizer saved in `dir` (as written by `save_pretrained` in Python): `tokenizer.json`
 * is required, `tokenizer_config.json` is optional. Throws ZerothError E_IO when a file cannot be
 * read and E_FORMAT when its content is not a tokenizer.
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  if (typeof dir !== 'string' || dir.length === 0) {
    throw new ZerothError('E_INVALID_ARG', 'loadTokenizer(dir): dir must be the path of a folder holding tokenizer.json');
  }
  let isDir = false;
  try {
    isDir = (await stat(dir)).isDirectory();
  } catch (err) {
    throw new ZerothError('E_IO', `tokenizer folder ${dir} cannot be read (${errorText(err)}): pass the folder that holds tokenizer.json`, { cause: err });
  }
  if (!isDir) {
    throw new ZerothError('E_IO', `${dir} is not a folder: pass the folder that holds tokenizer.json, not the file itself`);
  }

  const tokenizerPath = join(dir, 'tokenizer.json');
  const configPath = join(dir, 'tokenizer_config.json');
  const tokenizerJson = await readJson(tokenizerPath, true);
  const configJson = await readJson(configPath, false);

  checkTokenizerJson(tokenizerJson, tokenizerPath);
  const config = parseConfig(configJson ?? {}, configPath);

  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(withDefaults(tokenizerJson), config.forLibrary);
  } catch (err) {
    throw new ZerothError('E_FORMAT', `${tokenizerPath} cannot be used: ${errorText(err)}. Re-save it with a current version of Hugging Face tokenizers`, { cause: err });
  }
  return new Tokenizer(hf, config, tokenizerJson, tokenizerPath);
}

export class Tokenizer {
  /** Number of token ids (base vocabulary plus added tokens): ids are 0 .. vocabSize-1. */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  /** pad_token of the config; when it has none, the EOS id (the usual choice for GPT-2 / Llama
   *  fine-tuning: padded positions are masked out, so the id only has to be valid). */
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;
  /** model_max_length of the config; Infinity when absent or set to transformers' "no limit". */
  readonly modelMaxLength: number;

  readonly #hf: HfTokenizer;
  readonly #cleanUp: boolean;
  /** Special ids put before / after the text by encode(addSpecialTokens: true), after applying
   *  add_bos_token / add_eos_token; null when the post-processor is not a fixed prefix/suffix. */
  readonly #prefix: number[] | null;
  readonly #suffix: number[] | null;
  /** True when the config's add_bos_token / add_eos_token change what the post-processor adds. */
  readonly #overridesTemplate: boolean;

  /** @internal Use loadTokenizer(dir). */
  constructor(hf: HfTokenizer, config: TokenizerConfig, tokenizerJson: Record<string, unknown>, tokenizerPath: string) {
    this.#hf = hf;
    this.#cleanUp = config.cleanUpTokenizationSpaces;
    this.vocabSize = vocabSizeOf(tokenizerJson);
    this.modelMaxLength = config.modelMaxLength;

    const idOf = (token: string | null, field: string): number | null => {
      if (token === null) return null;
      const id = hf.token_to_id(token);
      if (id === undefined) {
        throw new ZerothError('E_FORMAT', `${field} ${JSON.stringify(token)} (from tokenizer_config.json, or tokenizer.json where the config has none) is not in the vocabulary of ${tokenizerPath}: fix the config or use the tokenizer.json saved with it`);
      }
      return id;
    };
    // Without a config entry, fall back on what tokenizer.json itself says (see specialTokenDefaults).
    const defaults = specialTokenDefaults(tokenizerJson);
    this.bosTokenId = idOf(config.bosToken ?? defaults.bos, 'bos_token');
    this.eosTokenId = idOf(config.eosToken ?? defaults.eos, 'eos_token');
    this.unkTokenId = idOf(config.unkToken ?? defaults.unk, 'unk_token');
    this.padTokenId = idOf(config.padToken, 'pad_token') ?? this.eosTokenId;

    // What does the post-processor add around a single text? Encode a probe with and without
    // special tokens and find the bare ids inside the full ones. Every standard post-processor
    // (TemplateProcessing, Bert, Roberta, ByteLevel, Sequence of these) adds a fixed prefix/suffix.
    const bare = hf.encode('a', { add_special_tokens: false }).ids;
    const full = hf.encode('a', { add_special_tokens: true }).ids;
    const at = bare.length === 0 ? -1 : indexOfRun(full, bare);
    let prefix: number[] | null = at < 0 ? null : full.slice(0, at);
    let suffix: number[] | null = at < 0 ? null : full.slice(at + bare.length);
    let overrides = false;
    if (prefix !== null && suffix !== null) {
      // tokenizer_config.json's add_bos_token / add_eos_token win over tokenizer.json, as in
      // transformers' Llama tokenizers (they rebuild the post-processor from these switches).
      if (config.addBosToken !== undefined && this.bosTokenId !== null) {
        const has = prefix[0] === this.bosTokenId;
        if (config.addBosToken && !has) { prefix = [this.bosTokenId, ...prefix]; overrides = true; }
        if (!config.addBosToken && has) { prefix = prefix.slice(1); overrides = true; }
      }
      if (config.addEosToken !== undefined && this.eosTokenId !== null) {
        const has = suffix[suffix.length - 1] === this.eosTokenId;
        if (config.addEosToken && !has) { suffix = [...suffix, this.eosTokenId]; overrides = true; }
        if (!config.addEosToken && has) { suffix = suffix.slice(0, -1); overrides = true; }
      }
    }
    this.#prefix = prefix;
    this.#suffix = suffix;
    this.#overridesTemplate = overrides;
  }

  /** Token ids of `text`, the same ids the Hugging Face tokenizers library gives. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') {
      throw new ZerothError('E_INVALID_ARG', `encode(text): text must be a string, got ${typeof text}`);
    }
    const addSpecialTokens = optionalBoolean(options.addSpecialTokens, 'addSpecialTokens') ?? true;
    if (addSpecialTokens && this.#overridesTemplate) {
      return [...this.#prefix!, ...this.#bare(text), ...this.#suffix!];
    }
    return this.#hf.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /** Text of `ids`. Ids must be integers in [0, vocabSize). */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') {
      throw new ZerothError('E_INVALID_ARG', 'decode(ids): ids must be an array (or typed array) of token ids');
    }
    const skipSpecialTokens = optionalBoolean(options.skipSpecialTokens, 'skipSpecialTokens') ?? false;
    const list = Array.from(ids, Number);
    for (let i = 0; i < list.length; i++) {
      const id = list[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.#hf.id_to_token(id) === undefined) {
        throw new ZerothError('E_INVALID_ARG', `decode(ids): ids[${i}] = ${id} is not a token id of this tokenizer (valid: integers 0..${this.vocabSize - 1})`);
      }
    }
    if (list.length === 0) return ''; // the library refuses empty input; HF returns ''
    return this.#hf.decode(list, {
      skip_special_tokens: skipSpecialTokens,
      clean_up_tokenization_spaces: this.#cleanUp,
    });
  }

  /** Token string of one id (e.g. 'Ġthe'), or undefined. */
  idToToken(id: number): string | undefined {
    return this.#hf.id_to_token(id);
  }

  /** Id of one token string, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#hf.token_to_id(token);
  }

  /** Encodes several texts into a rectangular batch padded on the right, with its attention mask. */
  encodeBatch(texts: readonly string[], options: EncodeBatchOptions = {}): EncodedBatch {
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string')) {
      throw new ZerothError('E_INVALID_ARG', 'encodeBatch(texts): texts must be an array of strings');
    }
    const padding = options.padding ?? 'longest';
    if (padding !== 'longest' && padding !== 'max_length') {
      throw new ZerothError('E_INVALID_ARG', `encodeBatch: padding must be 'longest' or 'max_length', got ${JSON.stringify(padding)}`);
    }
    const truncation = optionalBoolean(options.truncation, 'truncation') ?? false;
    const addSpecialTokens = optionalBoolean(options.addSpecialTokens, 'addSpecialTokens') ?? true;
    let maxLength = options.maxLength;
    if (maxLength === undefined && truncation && Number.isFinite(this.modelMaxLength)) maxLength = this.modelMaxLength;
    if (maxLength !== undefined && (!Number.isSafeInteger(maxLength) || maxLength < 1)) {
      throw new ZerothError('E_INVALID_ARG', `encodeBatch: maxLength must be a positive integer, got ${maxLength}`);
    }
    if (maxLength === undefined && (padding === 'max_length' || truncation)) {
      throw new ZerothError('E_INVALID_ARG', `encodeBatch: padding 'max_length' and truncation need maxLength (this tokenizer has no finite model_max_length)`);
    }

    const rows = texts.map((text, i) => {
      if (!truncation) {
        const ids = this.encode(text, { addSpecialTokens });
        if (maxLength !== undefined && ids.length > maxLength) {
          throw new ZerothError('E_INVALID_ARG', `encodeBatch: texts[${i}] has ${ids.length} tokens, more than maxLength ${maxLength}: pass truncation: true or a larger maxLength`);
        }
        return ids;
      }
      return this.#truncated(text, maxLength!, addSpecialTokens);
    });

    const width = padding === 'max_length' ? maxLength! : Math.max(0, ...rows.map((r) => r.length));
    const needsPad = rows.some((r) => r.length < width);
    if (needsPad && this.padTokenId === null) {
      throw new ZerothError('E_INVALID_ARG', 'encodeBatch: this tokenizer has neither pad_token nor eos_token, so padding has no id: add pad_token to tokenizer_config.json');
    }
    const pad = this.padTokenId ?? 0;
    return {
      inputIds: rows.map((r) => r.concat(new Array<number>(width - r.length).fill(pad))),
      attentionMask: rows.map((r) => new Array<number>(r.length).fill(1).concat(new Array<number>(width - r.length).fill(0))),
    };
  }

  /** Ids of `text` without special tokens. */
  #bare(text: string): number[] {
    return this.#hf.encode(text, { add_special_tokens: false }).ids;
  }

  /** At most maxLength ids: the text's first tokens, with the special prefix/suffix kept whole
   *  (as HF truncation does: it cuts the sequence, then the post-processor adds specials). */
  #truncated(text: string, maxLength: number, addSpecialTokens: boolean): number[] {
    if (!addSpecialTokens) return this.#bare(text).slice(0, maxLength);
    if (this.#prefix === null || this.#suffix === null) {
      // Unknown post-processor shape: cut the full encoding (cannot happen with standard ones).
      return this.encode(text).slice(0, maxLength);
    }
    const room = maxLength - this.#prefix.length - this.#suffix.length;
    if (room < 0) {
      throw new ZerothError('E_INVALID_ARG', `encodeBatch: maxLength ${maxLength} leaves no room for the ${this.#prefix.length + this.#suffix.length} special tokens: pass a larger maxLength or addSpecialTokens: false`);
    }
    const ids = this.encode(text);
    if (ids.length <= maxLength) return ids;
    return [...this.#prefix, ...this.#bare(text).slice(0, room), ...this.#suffix];
  }
}

// ---------------------------------------------------------------------------------------------
// Reading and checking the files.

async function readJson(path: string, required: true): Promise<Record<string, unknown>>;
async function readJson(path: string, required: false): Promise<Record<string, unknown> | null>;
async function readJson(path: string, required: boolean): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    if (missing && !required) return null;
    const what = missing
      ? `${path} not found: the folder must hold the tokenizer.json of the model (Python: AutoTokenizer.from_pretrained(id).save_pretrained(dir) writes it)`
      : `${path} cannot be read (${errorText(err)}): check its permissions`;
    throw new ZerothError('E_IO', what, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ZerothError('E_FORMAT', `${path} is not valid JSON (${errorText(err)}): the file is damaged or truncated; save or download it again`, { cause: err });
  }
  if (!isObject(value)) {
    throw new ZerothError('E_FORMAT', `${path} must hold a JSON object, found ${Array.isArray(value) ? 'an array' : typeof value}: save or download it again`);
  }
  return value;
}

/** Checks the parts of tokenizer.json the library would otherwise trip on with a bare TypeError. */
function checkTokenizerJson(json: Record<string, unknown>, path: string): void {
  const bad = (what: string): never => {
    throw new ZerothError('E_FORMAT', `${path}: ${what}. This is not a Hugging Face tokenizer.json (or it is damaged): save it again with tokenizer.save_pretrained(dir)`);
  };
  const model = json.model;
  if (!isObject(model)) bad('"model" is missing or not an object');
  const m = model as Record<string, unknown>;
  if (m.type !== undefined && typeof m.type !== 'string') bad('"model.type" must be a string');
  const type = m.type as string | undefined;
  if (type !== undefined && !SUPPORTED_MODELS.includes(type)) {
    throw new ZerothError('E_UNSUPPORTED', `${path}: tokenizer model type ${JSON.stringify(type)} is not supported (supported: ${SUPPORTED_MODELS.join(', ')})`);
  }
  if (type === 'Unigram' || Array.isArray(m.vocab)) {
    if (!Array.isArray(m.vocab)) bad('"model.vocab" of a Unigram model must be an array of [token, score] pairs');
    (m.vocab as unknown[]).forEach((entry, i) => {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'number') {
        bad(`"model.vocab[${i}]" must be a [token, score] pair`);
      }
    });
  } else {
    if (!isObject(m.vocab)) bad('"model.vocab" is missing or not an object mapping tokens to ids');
    for (const [token, id] of Object.entries(m.vocab as Record<string, unknown>)) {
      if (!Number.isSafeInteger(id) || (id as number) < 0) bad(`"model.vocab" maps ${JSON.stringify(token)} to ${JSON.stringify(id)}, not a token id`);
    }
  }
  if (type === 'BPE' && m.merges !== undefined) {
    if (!Array.isArray(m.merges)) bad('"model.merges" must be an array');
    (m.merges as unknown[]).forEach((merge, i) => {
      const ok = typeof merge === 'string'
        ? merge.includes(' ')
        : Array.isArray(merge) && merge.length === 2 && typeof merge[0] === 'string' && typeof merge[1] === 'string';
      if (!ok) bad(`"model.merges[${i}]" must be "left right" or ["left", "right"]`);
    });
  }
  if (json.added_tokens !== undefined) {
    if (!Array.isArray(json.added_tokens)) bad('"added_tokens" must be an array');
    (json.added_tokens as unknown[]).forEach((t, i) => {
      if (!isObject(t) || !Number.isSafeInteger(t.id) || (t.id as number) < 0 || typeof t.content !== 'string' || t.content.length === 0) {
        bad(`"added_tokens[${i}]" must have an integer "id" and a non-empty string "content"`);
      }
    });
  }
  for (const key of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']) {
    const part = json[key];
    if (part !== undefined && part !== null && !(isObject(part) && typeof part.type === 'string')) {
      bad(`"${key}" must be null or an object with a "type"`);
    }
  }
}

/** tokenizer.json with the optional top-level parts the library insists on filled with null / []. */
function withDefaults(json: Record<string, unknown>): Record<string, unknown> {
  const model = json.model as Record<string, unknown>;
  return {
    ...json,
    normalizer: json.normalizer ?? null,
    pre_tokenizer: json.pre_tokenizer ?? null,
    post_processor: json.post_processor ?? null,
    decoder: json.decoder ?? null,
    added_tokens: json.added_tokens ?? [],
    model: model.type === 'BPE' ? { ...model, merges: model.merges ?? [] } : model,
  };
}

function parseConfig(json: Record<string, unknown>, path: string): TokenizerConfig {
  const bad = (what: string): never => {
    throw new ZerothError('E_FORMAT', `${path}: ${what}. Fix the field or delete tokenizer_config.json (it is optional)`);
  };
  // Token fields are a string, null, or (older files) an AddedToken object {content: "..."}.
  const token = (field: string): string | null => {
    const v = json[field];
    if (v === undefined || v === null) return null;
    if (typeof v === 'string') return v;
    if (isObject(v) && typeof v.content === 'string') return v.content;
    return bad(`"${field}" must be a token string, null, or {"content": "..."}`);
  };
  const flag = (field: string): boolean | undefined => {
    const v = json[field];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') bad(`"${field}" must be true or false`);
    return v as boolean;
  };
  let modelMaxLength = Infinity;
  if (json.model_max_length !== undefined && json.model_max_length !== null) {
    const v = json.model_max_length;
    if (typeof v !== 'number' || !(v >= 1)) bad('"model_max_length" must be a positive number');
    modelMaxLength = (v as number) > NO_LIMIT_THRESHOLD ? Infinity : Math.floor(v as number);
  }
  let additional: string[] = [];
  if (json.additional_special_tokens !== undefined && json.additional_special_tokens !== null) {
    if (!Array.isArray(json.additional_special_tokens)) bad('"additional_special_tokens" must be an array');
    additional = (json.additional_special_tokens as unknown[]).map((t, i) => {
      if (typeof t === 'string') return t;
      if (isObject(t) && typeof t.content === 'string') return t.content;
      return bad(`"additional_special_tokens[${i}]" must be a token string`);
    });
  }
  const cleanUp = flag('clean_up_tokenization_spaces') ?? false; // HF tokenizers never cleans up
  const bosToken = token('bos_token');
  const eosToken = token('eos_token');
  const padToken = token('pad_token');
  const unkToken = token('unk_token');
  const forLibrary: Record<string, unknown> = {
    bos_token: bosToken ?? undefined,
    eos_token: eosToken ?? undefined,
    pad_token: padToken ?? undefined,
    unk_token: unkToken ?? undefined,
    additional_special_tokens: additional,
    clean_up_tokenization_spaces: cleanUp,
  };
  for (const key of ['remove_space', 'do_lowercase_and_remove_accent']) {
    const v = flag(key);
    if (v !== undefined) forLibrary[key] = v;
  }
  return {
    bosToken, eosToken, padToken, unkToken,
    addBosToken: flag('add_bos_token'),
    addEosToken: flag('add_eos_token'),
    modelMaxLength,
    cleanUpTokenizationSpaces: cleanUp,
    forLibrary,
  };
}

/**
 * BOS / EOS / UNK strings implied by tokenizer.json alone, for configs that do not name them.
 * UNK: the model's unk_token. BOS / EOS: the special tokens that the post-processor's single-text
 * template puts first / last (Llama: `<s>`), else, when there is exactly one special added token,
 * that token for both (GPT-2: `<|endoftext|>`, which transformers also uses as BOS and EOS).
 */
function specialTokenDefaults(json: Record<string, unknown>): { bos: string | null; eos: string | null; unk: string | null } {
  const modelUnk = (json.model as Record<string, unknown>).unk_token;
  const unk = typeof modelUnk === 'string' ? modelUnk : null;
  const post = json.post_processor;
  if (isObject(post) && post.type === 'TemplateProcessing' && Array.isArray(post.single)) {
    const pieces = post.single as unknown[];
    const special = (p: unknown): string | null =>
      isObject(p) && isObject(p.SpecialToken) && typeof p.SpecialToken.id === 'string' ? p.SpecialToken.id : null;
    const bos = special(pieces[0]);
    const eos = pieces.length > 1 ? special(pieces[pieces.length - 1]) : null;
    if (bos !== null || eos !== null) return { bos, eos, unk };
  }
  const specials = ((json.added_tokens as unknown[] | undefined) ?? []).filter((t) => isObject(t) && t.special === true);
  if (specials.length === 1) {
    const content = (specials[0] as Record<string, unknown>).content as string;
    return { bos: content, eos: content, unk };
  }
  return { bos: null, eos: null, unk };
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

/** 1 + the largest id of the model's vocabulary and the added tokens (as HF's get_vocab_size). */
function vocabSizeOf(json: Record<string, unknown>): number {
  const vocab = (json.model as Record<string, unknown>).vocab;
  let size = Array.isArray(vocab) ? vocab.length : 0;
  if (!Array.isArray(vocab)) for (const id of Object.values(vocab as Record<string, number>)) size = Math.max(size, id + 1);
  for (const t of (json.added_tokens as { id: number }[] | undefined) ?? []) size = Math.max(size, t.id + 1);
  return size;
}

/** Index where `needle` starts inside `haystack` as a contiguous run, or -1. */
function indexOfRun(haystack: readonly number[], needle: readonly number[]): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function optionalBoolean(v: unknown, name: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new ZerothError('E_INVALID_ARG', `option ${name} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
