// zeroth data — JSONL datasets, tasks (causal LM, prompt classification, multiple choice),
// seeded shuffling and batching, evaluation.
export { parseJsonl, readJsonl } from './jsonl.js';
export type { JsonlRecord } from './jsonl.js';
export { permutation, heldOutSplit, BatchOrder, SplitMix } from './sampler.js';
export { padBatch } from './batch.js';
export type { TokenBatch } from './batch.js';
export { LmTask, ClassifyTask, ChoiceTask, createTask, parseClassifyConfig } from './tasks.js';
export type { Task, TaskKind, TaskOptions, Objective, ClassifyConfig, ClassifyExample, ChoiceExample, Scores, LoadedRows } from './tasks.js';
export { evaluate, formatEval } from './evaluate.js';
export type { EvalResult, EvaluateOptions } from './evaluate.js';
