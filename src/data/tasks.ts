// tasks.ts — what a fine-tuning run optimises, over JSONL files:
//
//   lm        {"text"}: causal-LM loss, the mean next-token cross entropy of each row.
//   classify  {"text", "label"} + config {template: "...{text}...", labelWords: {label: " word"}}:
//             prompt-based classification as in MeZO (LM-BFF prompts). The prompt is the template
//             with the text filled in; the model's logits at its last token, restricted to the
//             first token of each label word, are the class logits. Loss: their cross entropy
//             against the label; accuracy: their argmax.
//   choice    {"text", "choices": [...], "answer": i}: each choice is scored by the mean token
//             loss of text + choice over the choice's tokens; the scores (negated) are class
//             logits, so loss and accuracy read as for classify.
//
// objective 'accuracy' replaces the loss of a batch by 1 − accuracy: a step function of the
// weights, which only a zeroth-order method can follow.
import { check, ZerothError } from '../errors.js';
import type { Model } from '../model.js';
import type { Tokenizer } from '../tokenizer.js';
import { keepLast, logSumExp, padBatch, type TokenBatch } from './batch.js';
import { readJsonl, stringField, type JsonlRecord } from './jsonl.js';

export type TaskKind = 'lm' | 'classify' | 'choice';
export type Objective = 'loss' | 'accuracy';

export interface ClassifyConfig {
  /** Prompt with a "{text}" placeholder, e.g. "{text} It was". */
  template: string;
  /** Label (as in the data's "label" field) → its word, e.g. {"positive": " great"}. */
  labelWords: Record<string, string>;
}

export interface TaskOptions {
  /** Longest row in tokens; longer texts are cut (lm: their end; prompts: their start). */
  maxLength: number;
  /** classify only. */
  classify?: ClassifyConfig;
  objective?: Objective;
}

/** Sums over some rows: divide by count for means. */
export interface Scores {
  lossSum: number;
  correct: number;
  count: number;
}

export interface LoadedRows<E> {
  examples: E[];
  /** Rows that cannot be scored (fewer than 2 tokens): skipped, and reported. */
  dropped: number;
}

export interface Task<E = unknown> {
  readonly kind: TaskKind;
  readonly objective: Objective;
  /** Whether the task has an accuracy (classify, choice). */
  readonly hasAccuracy: boolean;
  load(file: string): Promise<LoadedRows<E>>;
  /** Loss and accuracy sums of some examples at the model's current weights. */
  score(model: Model, examples: readonly E[]): Promise<Scores>;
  /** The number a ZO step minimises on this batch: mean loss, or 1 − accuracy. */
  batchObjective(model: Model, examples: readonly E[]): Promise<number>;
  /** lm: the tensors for the optimizer's fused model step (the caller disposes them). */
  tensors?(examples: readonly E[]): TokenBatch;
}

export function padIdOf(tok: Tokenizer): number {
  return tok.padTokenId ?? tok.eosTokenId ?? 0;
}

// ---------------------------------------------------------------------------------------------

/** Causal-LM task: examples are token-id rows. */
export class LmTask implements Task<number[]> {
  readonly kind = 'lm' as const;
  readonly objective = 'loss' as const;
  readonly hasAccuracy = false;

  constructor(private readonly tok: Tokenizer, private readonly maxLength: number) {}

  async load(file: string): Promise<LoadedRows<number[]>> {
    const records = await readJsonl(file);
    const texts = records.map((r) => stringField(r, 'text', file));
    const examples: number[][] = [];
    let dropped = 0;
    for (let i = 0; i < texts.length; i += 256) {
      const chunk = texts.slice(i, i + 256);
      const enc = this.tok.encodeBatch(chunk, { maxLength: this.maxLength, truncation: true });
      enc.inputIds.forEach((row, k) => {
        const n = enc.attentionMask[k]!.reduce((a, b) => a + b, 0);
        if (n < 2) dropped++; // no next-token pair to score
        else examples.push(row.slice(0, n));
      });
    }
    return { examples, dropped };
  }

  tensors(examples: readonly number[][]): TokenBatch {
    return padBatch(examples, padIdOf(this.tok));
  }

  async score(model: Model, examples: readonly number[][]): Promise<Scores> {
    const batch = this.tensors(examples);
    try {
      const losses = await model.loss(batch.inputIds, { attentionMask: batch.attentionMask });
      const values = losses.toTypedArray();
      losses.dispose();
      let lossSum = 0;
      for (const v of values) lossSum += v;
      return { lossSum, correct: 0, count: examples.length };
    } finally {
      batch.dispose();
    }
  }

  async batchObjective(model: Model, examples: readonly number[][]): Promise<number> {
    const s = await this.score(model, examples);
    return s.lossSum / s.count;
  }
}

// ---------------------------------------------------------------------------------------------

/** Shared by classify and choice: class logits → loss and accuracy sums. */
function classScores(logits: readonly number[][], answers: readonly number[]): Scores {
  let lossSum = 0;
  let correct = 0;
  logits.forEach((row, i) => {
    const answer = answers[i]!;
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
    lossSum += lse - row[answer]!;
    // Ties count as wrong unless the answer is the first maximum (argmax semantics).
    if (row.indexOf(max) === answer) correct++;
  });
  return { lossSum, correct, count: logits.length };
}

export interface ClassifyExample {
  ids: number[];
  label: number;
}

/** Prompt-based classification as in MeZO. */
export class ClassifyTask implements Task<ClassifyExample> {
  readonly kind = 'classify' as const;
  readonly hasAccuracy = true;
  readonly labels: string[];
  /** First token of each label word, in the order of `labels`. */
  readonly labelTokens: number[];

  constructor(private readonly tok: Tokenizer, private readonly config: ClassifyConfig, private readonly maxLength: number,
    readonly objective: Objective = 'loss') {
    check(typeof config.template === 'string' && config.template.includes('{text}'),
      'the classification config needs "template": a string with a {text} placeholder');
    check(typeof config.labelWords === 'object' && config.labelWords !== null && Object.keys(config.labelWords).length >= 2,
      'the classification config needs "labelWords": an object mapping each label to its word (at least two)');
    this.labels = Object.keys(config.labelWords);
    this.labelTokens = this.labels.map((label) => {
      const word = config.labelWords[label];
      check(typeof word === 'string' && word.length > 0, `labelWords.${label} must be a non-empty string such as " great"`);
      const ids = tok.encode(word, { addSpecialTokens: false });
      check(ids.length > 0, `labelWords.${label} = ${JSON.stringify(word)} has no tokens`);
      return ids[0]!;
    });
    check(new Set(this.labelTokens).size === this.labelTokens.length,
      `two label words start with the same token (${this.labels.map((l, i) => `${l}: ${this.labelTokens[i]}`).join(', ')}); pick words that differ in their first token`);
  }

  prompt(text: string): string {
    return this.config.template.split('{text}').join(text);
  }

  async load(file: string): Promise<LoadedRows<ClassifyExample>> {
    const records = await readJsonl(file);
    const examples = records.map((r) => {
      const text = stringField(r, 'text', file);
      const label = labelOf(r, file, this.labels);
      const ids = keepLast(this.tok.encode(this.prompt(text)), this.maxLength);
      return { ids, label };
    });
    const kept = examples.filter((e) => e.ids.length >= 1);
    return { examples: kept, dropped: examples.length - kept.length };
  }

  /** Class logits of each example: the label tokens' logits at its last prompt token. */
  async classLogits(model: Model, examples: readonly ClassifyExample[]): Promise<number[][]> {
    const batch = padBatch(examples.map((e) => e.ids), padIdOf(this.tok));
    try {
      const logits = await model.forward(batch.inputIds, { attentionMask: batch.attentionMask });
      const [, T, V] = logits.shape as [number, number, number];
      const data = logits.toTypedArray() as Float32Array;
      logits.dispose();
      return examples.map((_, b) => {
        const at = (b * T + batch.lengths[b]! - 1) * V;
        return this.labelTokens.map((t) => data[at + t]!);
      });
    } finally {
      batch.dispose();
    }
  }

  async score(model: Model, examples: readonly ClassifyExample[]): Promise<Scores> {
    return classScores(await this.classLogits(model, examples), examples.map((e) => e.label));
  }

  async batchObjective(model: Model, examples: readonly ClassifyExample[]): Promise<number> {
    const s = await this.score(model, examples);
    return this.objective === 'accuracy' ? 1 - s.correct / s.count : s.lossSum / s.count;
  }
}

function labelOf(r: JsonlRecord, file: string, labels: readonly string[]): number {
  const v = r.value.label;
  if (v === undefined) throw new ZerothError('E_FORMAT', `${file}:${r.line}: missing field "label"`);
  if (typeof v !== 'string' && !(typeof v === 'number' && Number.isInteger(v))) {
    throw new ZerothError('E_FORMAT', `${file}:${r.line}: field "label" must be a string or an integer, found ${JSON.stringify(v)}`);
  }
  const i = labels.indexOf(String(v));
  if (i < 0) throw new ZerothError('E_FORMAT', `${file}:${r.line}: label ${JSON.stringify(v)} is not one of the config's labelWords (${labels.join(', ')})`);
  return i;
}

// ---------------------------------------------------------------------------------------------

export interface ChoiceExample {
  /** Full token rows, one per choice: text then choice, cut to maxLength from the left. */
  rows: number[][];
  /** How many tokens at the end of each row belong to the choice. */
  choiceLengths: number[];
  answer: number;
}

/** Multiple choice scored by the mean token loss of each continuation. */
export class ChoiceTask implements Task<ChoiceExample> {
  readonly kind = 'choice' as const;
  readonly hasAccuracy = true;

  constructor(private readonly tok: Tokenizer, private readonly maxLength: number, readonly objective: Objective = 'loss') {
    check(maxLength >= 2, 'maxLength must be at least 2 for multiple choice');
  }

  async load(file: string): Promise<LoadedRows<ChoiceExample>> {
    const records = await readJsonl(file);
    const examples: ChoiceExample[] = [];
    let dropped = 0;
    for (const r of records) {
      const text = stringField(r, 'text', file);
      const choices = r.value.choices;
      if (!Array.isArray(choices) || choices.length < 2 || choices.some((c) => typeof c !== 'string')) {
        throw new ZerothError('E_FORMAT', `${file}:${r.line}: field "choices" must be an array of at least two strings`);
      }
      const answer = r.value.answer;
      if (typeof answer !== 'number' || !Number.isInteger(answer) || answer < 0 || answer >= choices.length) {
        throw new ZerothError('E_FORMAT', `${file}:${r.line}: field "answer" must be the index of the right choice (0..${choices.length - 1}), found ${JSON.stringify(answer)}`);
      }
      const prefix = this.tok.encode(text);
      const rows: number[][] = [];
      const choiceLengths: number[] = [];
      let scorable = prefix.length >= 1;
      for (const c of choices as string[]) {
        // The continuation's tokens, at most maxLength − 1 so one token of context remains.
        const cont = this.tok.encode(c, { addSpecialTokens: false }).slice(0, this.maxLength - 1);
        if (cont.length === 0) scorable = false;
        rows.push(keepLast([...prefix, ...cont], this.maxLength));
        choiceLengths.push(cont.length);
      }
      if (scorable) examples.push({ rows, choiceLengths, answer });
      else dropped++;
    }
    return { examples, dropped };
  }

  /** Mean negative log-likelihood of each choice's tokens, per example and choice. */
  async choiceLosses(model: Model, examples: readonly ChoiceExample[]): Promise<number[][]> {
    const rows = examples.flatMap((e) => e.rows);
    const lengths = examples.flatMap((e) => e.choiceLengths);
    const batch = padBatch(rows, padIdOf(this.tok));
    let flat: number[];
    try {
      const logits = await model.forward(batch.inputIds, { attentionMask: batch.attentionMask });
      const [, T, V] = logits.shape as [number, number, number];
      const data = logits.toTypedArray() as Float32Array;
      logits.dispose();
      flat = rows.map((row, b) => {
        let nll = 0;
        // Token p (a choice token) is predicted by the logits at p − 1.
        for (let p = row.length - lengths[b]!; p < row.length; p++) {
          const at = (b * T + p - 1) * V;
          nll += logSumExp(data, at, at + V) - data[at + row[p]!]!;
        }
        return nll / lengths[b]!;
      });
    } finally {
      batch.dispose();
    }
    let k = 0;
    return examples.map((e) => e.rows.map(() => flat[k++]!));
  }

  async score(model: Model, examples: readonly ChoiceExample[]): Promise<Scores> {
    const losses = await this.choiceLosses(model, examples);
    return classScores(losses.map((row) => row.map((l) => -l)), examples.map((e) => e.answer));
  }

  async batchObjective(model: Model, examples: readonly ChoiceExample[]): Promise<number> {
    const s = await this.score(model, examples);
    return this.objective === 'accuracy' ? 1 - s.correct / s.count : s.lossSum / s.count;
  }
}

/** Checks a parsed classification config (from a JSON file). */
export function parseClassifyConfig(raw: Record<string, unknown>, file: string): ClassifyConfig {
  const template = raw.template;
  const labelWords = raw.labelWords ?? raw.label_words;
  if (typeof template !== 'string' || !template.includes('{text}')) {
    throw new ZerothError('E_FORMAT', `${file}: "template" must be a string with a {text} placeholder, e.g. "{text} It was"`);
  }
  if (typeof labelWords !== 'object' || labelWords === null || Array.isArray(labelWords)) {
    throw new ZerothError('E_FORMAT', `${file}: "labelWords" must map each label to its word, e.g. {"positive": " great", "negative": " terrible"}`);
  }
  for (const [k, v] of Object.entries(labelWords)) {
    if (typeof v !== 'string' || v.length === 0) throw new ZerothError('E_FORMAT', `${file}: labelWords.${k} must be a non-empty string`);
  }
  return { template, labelWords: labelWords as Record<string, string> };
}

export function createTask(kind: TaskKind, tok: Tokenizer, opts: TaskOptions): Task<unknown> {
  check(Number.isInteger(opts.maxLength) && opts.maxLength >= 2, `maxLength must be an integer >= 2, got ${opts.maxLength}`);
  const objective = opts.objective ?? 'loss';
  check(objective === 'loss' || objective === 'accuracy', `objective must be 'loss' or 'accuracy', got ${JSON.stringify(objective)}`);
  switch (kind) {
    case 'lm':
      check(objective === 'loss', "objective 'accuracy' needs a task with an accuracy (classify or choice)");
      return new LmTask(tok, opts.maxLength) as Task<unknown>;
    case 'classify':
      check(opts.classify !== undefined, 'the classify task needs a config {template, labelWords} (--task-config FILE)');
      return new ClassifyTask(tok, opts.classify, opts.maxLength, objective) as Task<unknown>;
    case 'choice':
      return new ChoiceTask(tok, opts.maxLength, objective) as Task<unknown>;
    default:
      throw new ZerothError('E_INVALID_ARG', `unknown task ${JSON.stringify(kind)}; use lm, classify or choice`);
  }
}
