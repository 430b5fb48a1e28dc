// setup.ts — turning the data flags of finetune and eval into a task and its examples:
// which files (the embedded defaults when none are given), which task, the held-out split.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import { readJsonObject } from '../data/jsonl.js';
import { heldOutSplit } from '../data/sampler.js';
import { createTask, parseClassifyConfig, type ClassifyConfig, type Objective, type Task, type TaskKind } from '../data/tasks.js';
import { ZerothError } from '../errors.js';
import type { Tokenizer } from '../tokenizer.js';
import { DEFAULT_DATA } from './common.js';

export interface DataChoice {
  task: TaskKind;
  /** Training file (absolute), or undefined for eval-only use. */
  data?: string;
  /** Held-out file; undefined: a seeded split of `data`. */
  eval?: string;
  /** classify: the config file {template, labelWords}. */
  taskConfig?: string;
}

/**
 * Fills in the embedded defaults: lm → data/default/{train,eval}.jsonl; classify → the config
 * data/default/classify.json and the files it names. A config's "train"/"eval" entries are read
 * relative to the config file and used when --data/--eval are not given.
 */
export async function resolveData(choice: { task: TaskKind; data?: string; eval?: string; taskConfig?: string }): Promise<DataChoice & { classify?: ClassifyConfig }> {
  const out: DataChoice & { classify?: ClassifyConfig } = {
    task: choice.task,
    data: choice.data === undefined ? undefined : resolve(choice.data),
    eval: choice.eval === undefined ? undefined : resolve(choice.eval),
  };
  if (choice.task === 'classify') {
    let configFile = choice.taskConfig;
    if (configFile === undefined) {
      if (choice.data !== undefined || choice.eval !== undefined) {
        throw new ZerothError('E_INVALID_ARG', '--task classify needs --task-config FILE: a JSON object {"template": "...{text}...", "labelWords": {"label": " word"}}');
      }
      configFile = join(DEFAULT_DATA, 'classify.json');
    }
    out.taskConfig = resolve(configFile);
    const raw = await readJsonObject(out.taskConfig, 'task config');
    out.classify = parseClassifyConfig(raw, out.taskConfig);
    const base = dirname(out.taskConfig);
    if (out.data === undefined && typeof raw.train === 'string') {
      out.data = resolve(base, raw.train);
      if (out.eval === undefined && typeof raw.eval === 'string') out.eval = resolve(base, raw.eval);
    }
  } else if (out.data === undefined && choice.task === 'lm') {
    out.data = join(DEFAULT_DATA, 'train.jsonl');
    if (out.eval === undefined && existsSync(join(DEFAULT_DATA, 'eval.jsonl'))) out.eval = join(DEFAULT_DATA, 'eval.jsonl');
  }
  if (out.data === undefined && out.eval === undefined) {
    throw new ZerothError('E_INVALID_ARG', `--task ${choice.task} has no embedded data: pass --data FILE`);
  }
  return out;
}

export interface LoadedData {
  task: Task<unknown>;
  train: unknown[];
  heldOut: unknown[];
  /** Human-readable notes (files, counts, rows dropped). */
  notes: string[];
}

/** Loads the train and held-out examples of a resolved choice. */
export async function loadData(choice: DataChoice & { classify?: ClassifyConfig }, tok: Tokenizer,
  opts: { maxLength: number; objective?: Objective; seed: number; needTrain: boolean }): Promise<LoadedData> {
  const task = createTask(choice.task, tok, { maxLength: opts.maxLength, classify: choice.classify, objective: opts.objective });
  const notes: string[] = [];
  const dropNote = (file: string, dropped: number): void => {
    if (dropped > 0) notes.push(`${file}: dropped ${dropped} row${dropped === 1 ? '' : 's'} with fewer than 2 tokens (nothing to score)`);
  };
  let train: unknown[] = [];
  let heldOut: unknown[];
  if (opts.needTrain || choice.eval === undefined) {
    if (choice.data === undefined) throw new ZerothError('E_INVALID_ARG', 'no training data: pass --data FILE');
    const loaded = await task.load(choice.data);
    dropNote(choice.data, loaded.dropped);
    train = loaded.examples;
  }
  if (choice.eval !== undefined) {
    const loaded = await task.load(choice.eval);
    dropNote(choice.eval, loaded.dropped);
    heldOut = loaded.examples;
    notes.push(`data: ${train.length > 0 ? `${train.length} training examples from ${choice.data}, ` : ''}${heldOut.length} held-out from ${choice.eval}`);
  } else {
    const split = heldOutSplit(train, opts.seed);
    train = split.train;
    heldOut = split.heldOut;
    notes.push(`data: ${choice.data}, split with seed ${opts.seed} into ${train.length} training and ${heldOut.length} held-out examples`);
  }
  if (opts.needTrain && train.length === 0) throw new ZerothError('E_FORMAT', `${choice.data}: no usable training examples`);
  if (heldOut.length === 0) throw new ZerothError('E_FORMAT', `${choice.eval ?? choice.data}: no usable held-out examples`);
  return { task, train, heldOut, notes };
}
