// zeroth finetune — forward-only fine-tuning of a causal LM on a JSONL task.
//
// With no flags it fine-tunes the embedded model (models/default) on the embedded task
// (data/default). Writes to --out: metrics.jsonl, report.html, the fine-tuned model
// (config.json, model.safetensors, tokenizer files), trajectory.bin (the run as a few KB of
// seeds and projected gradients) and state.json. Ctrl-C stops after the current step and leaves
// a checkpoint that `--resume DIR` continues exactly.
import { mkdir, readFile, rename, writeFile, appendFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import { evaluate, formatEval, type EvalResult } from '../data/evaluate.js';
import { BatchOrder } from '../data/sampler.js';
import type { Objective, TaskKind } from '../data/tasks.js';
import { ZerothError } from '../errors.js';
import type { DeviceName } from '../device.js';
import { loadModel, type Model } from '../model.js';
import { ZOAdam, ZOSGD, ZOSignSGD } from '../optim/optimizers.js';
import type { ZOOptimizer } from '../optim/optimizer.js';
import { loadTokenizer } from '../tokenizer.js';
import { usage, type FlagSpec, type Flags } from './args.js';
import { choiceFlag, copyTokenizerFiles, DEFAULT_MODEL, deviceFlag, intFlag, numberFlag, parseCommand } from './common.js';
import { Progress } from './progress.js';
import { renderReport, type ReportPoint } from './report.js';
import { hessianTrace } from '../curvature/index.js';
import { loadData, resolveData } from './setup.js';

export const spec: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'Hugging Face model folder (config.json, model.safetensors, tokenizer.json); default: the embedded model' },
  data: { type: 'string', help: 'training JSONL: {"text"} (lm), {"text","label"} (classify), {"text","choices","answer"} (choice); default: the embedded task' },
  eval: { type: 'string', help: 'held-out JSONL (default: the embedded held-out file, or a seeded 10% split of --data)' },
  task: { type: 'string', help: 'lm | classify | choice', default: 'lm' },
  'task-config': { type: 'string', help: 'classify: JSON {"template": "...{text}...", "labelWords": {"label": " word"}}' },
  objective: { type: 'string', help: 'loss | accuracy (classify/choice: minimise 1 - accuracy directly; a step function, so use a larger --eps such as 0.05)', default: 'loss' },
  steps: { type: 'number', help: 'optimizer steps (in total, when resuming)', default: 400 },
  lr: { type: 'number', help: 'learning rate', default: 3e-4 },
  eps: { type: 'number', help: 'perturbation size epsilon', default: 1e-3 },
  batch: { type: 'number', help: 'examples per step', default: 8 },
  seed: { type: 'number', help: 'seed of the perturbations, shuffling and split', default: 0 },
  optimizer: { type: 'string', help: 'zosgd | zoadam | zosign', default: 'zosgd' },
  momentum: { type: 'number', help: 'zosgd heavy-ball momentum', default: 0 },
  'weight-decay': { type: 'number', help: 'decoupled weight decay', default: 0 },
  queries: { type: 'number', help: 'perturbations averaged per step (n-SPSA)', default: 1 },
  trainable: { type: 'string', help: "full | bias | lora (rank 8, alpha 16 adapters on the attention projections; merged on save) | scales (QZO: a quantized --model's int4 scales, e.g. from `zeroth quantize`)", default: 'full' },
  'grad-clip': { type: 'number', help: 'clip each projected gradient to [-C, C] (QZO; default: off)' },
  'max-length': { type: 'number', help: 'longest example in tokens (longer ones are cut)', default: 128 },
  'eval-every': { type: 'number', help: 'evaluate on held-out data every N steps (0: only before and after)', default: 100 },
  'eval-batch': { type: 'number', help: 'examples per evaluation batch', default: 16 },
  'trace-probes': { type: 'number', help: 'lm task: Hessian trace of the trainable set on a held-out batch before and after, with N probes (0: off)', default: 0 },
  'log-every': { type: 'number', help: 'without a terminal: print a progress line every N steps (0: about 20 lines)', default: 0 },
  device: { type: 'string', help: 'cpu | cuda | cuda:N (weights, forwards and updates on that GPU)', default: 'cpu' },
  out: { type: 'string', help: 'output folder', default: './zeroth-out' },
  resume: { type: 'string', help: 'continue the stopped run whose output folder is DIR' },
  config: { type: 'string', help: 'JSON file of flag values, e.g. {"steps": 500, "lr": 1e-4}; flags given here win' },
  help: { type: 'boolean', help: 'show this help' },
};

/** Flags that shape the run: a resumed run must keep them. */
const RUN_FLAGS = ['model', 'data', 'eval', 'task', 'task-config', 'objective', 'lr', 'eps', 'batch', 'seed', 'optimizer',
  'momentum', 'weight-decay', 'queries', 'trainable', 'max-length', 'device', 'grad-clip'] as const;

interface RunConfig {
  model: string;
  data?: string;
  eval?: string;
  task: TaskKind;
  'task-config'?: string;
  objective: Objective;
  lr: number;
  eps: number;
  batch: number;
  seed: number;
  optimizer: 'zosgd' | 'zoadam' | 'zosign';
  momentum: number;
  'weight-decay': number;
  queries: number;
  trainable: 'full' | 'bias' | 'lora' | 'scales';
  'grad-clip'?: number;
  'max-length': number;
  device: DeviceName;
}

interface State {
  version: 1;
  /** Steps in trajectory.bin. */
  step: number;
  /** The step count the run was asked for. */
  steps: number;
  finished: boolean;
  config: RunConfig;
}

const STATE_FILE = 'state.json';
const TRAJECTORY_FILE = 'trajectory.bin';
const METRICS_FILE = 'metrics.jsonl';

function runConfig(flags: Flags): RunConfig {
  const task = choiceFlag(flags, 'task', ['lm', 'classify', 'choice'] as const);
  const trainable = choiceFlag(flags, 'trainable', ['full', 'bias', 'lora', 'scales'] as const);
  const cfg: RunConfig = {
    model: resolve(typeof flags.model === 'string' ? flags.model : DEFAULT_MODEL),
    task,
    objective: choiceFlag(flags, 'objective', ['loss', 'accuracy'] as const),
    lr: numberFlag(flags, 'lr', (x) => x >= 0, 'a non-negative number'),
    eps: numberFlag(flags, 'eps', (x) => x > 0, 'a positive number'),
    batch: intFlag(flags, 'batch', 1),
    seed: intFlag(flags, 'seed', 0),
    optimizer: choiceFlag(flags, 'optimizer', ['zosgd', 'zoadam', 'zosign'] as const),
    momentum: numberFlag(flags, 'momentum', (x) => x >= 0 && x < 1, 'in [0, 1)'),
    'weight-decay': numberFlag(flags, 'weight-decay', (x) => x >= 0, 'a non-negative number'),
    queries: intFlag(flags, 'queries', 1),
    trainable,
    'max-length': intFlag(flags, 'max-length', 2),
    device: deviceFlag(flags),
  };
  if (flags['grad-clip'] !== undefined) cfg['grad-clip'] = numberFlag(flags, 'grad-clip', (x) => x > 0, 'a positive number');
  if (typeof flags.data === 'string') cfg.data = resolve(flags.data);
  if (typeof flags.eval === 'string') cfg.eval = resolve(flags.eval);
  if (typeof flags['task-config'] === 'string') cfg['task-config'] = resolve(flags['task-config']);
  if (cfg.objective === 'accuracy' && cfg.task === 'lm') {
    throw new ZerothError('E_INVALID_ARG', '--objective accuracy needs a task with an accuracy: --task classify or --task choice');
  }
  return cfg;
}

function makeOptimizer(model: Model, cfg: RunConfig): ZOOptimizer {
  const opts = { lr: cfg.lr, eps: cfg.eps, weightDecay: cfg['weight-decay'], queries: cfg.queries, seed: cfg.seed, gradClip: cfg['grad-clip'] };
  switch (cfg.optimizer) {
    case 'zosgd': return new ZOSGD(model, { ...opts, momentum: cfg.momentum });
    case 'zoadam': return new ZOAdam(model, opts);
    case 'zosign': return new ZOSignSGD(model, opts);
  }
}

async function readState(dir: string): Promise<{ state: State; trajectory: Uint8Array }> {
  let state: State;
  try {
    state = JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as State;
  } catch (err) {
    throw new ZerothError('E_IO', `--resume ${dir}: cannot read ${STATE_FILE} (${(err as Error).message}); pass the --out folder of a previous run`);
  }
  if (state?.version !== 1 || typeof state.step !== 'number' || typeof state.config !== 'object') {
    throw new ZerothError('E_FORMAT', `--resume ${dir}: ${STATE_FILE} is not a zeroth finetune checkpoint`);
  }
  let trajectory: Uint8Array;
  try {
    trajectory = new Uint8Array(await readFile(join(dir, TRAJECTORY_FILE)));
  } catch (err) {
    throw new ZerothError('E_IO', `--resume ${dir}: cannot read ${TRAJECTORY_FILE}: ${(err as Error).message}`);
  }
  return { state, trajectory };
}

/** Writes a file whole or not at all (a Ctrl-C never leaves half a checkpoint). */
async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await writeFile(`${file}.tmp`, data);
  await rename(`${file}.tmp`, file);
}

function evalLine(label: string, r: EvalResult, kind: string): string {
  return `eval ${label}: ${formatEval(r, kind)}`;
}

export async function run(argv: string[]): Promise<void> {
  const { flags, explicit } = await parseCommand(argv, spec);
  if (flags.help) {
    console.log(usage('finetune', 'Fine-tunes a causal language model with forward passes only (MeZO-style zeroth-order optimization).\n' +
      'With no flags: the embedded model on the embedded task. Ctrl-C stops after the current step; --resume DIR continues.', spec));
    return;
  }

  let cfg: RunConfig;
  let resumed: { state: State; trajectory: Uint8Array } | undefined;
  if (typeof flags.resume === 'string') {
    resumed = await readState(resolve(flags.resume));
    cfg = resumed.state.config;
    const given: Flags = { ...cfg };
    for (const name of explicit) given[name] = flags[name];
    const asked = runConfig(given);
    for (const name of RUN_FLAGS) {
      if (explicit.has(name) && asked[name] !== cfg[name]) {
        throw new ZerothError('E_INVALID_ARG', `--${name} cannot change when resuming (the run used ${JSON.stringify(cfg[name])}); only --steps, --out, --eval-every and --log-every can`);
      }
    }
  } else {
    cfg = runConfig(flags);
  }
  const steps = explicit.has('steps') || !resumed ? intFlag(flags, 'steps', 0) : resumed.state.steps;
  const out = resolve(typeof flags.out === 'string' && (explicit.has('out') || !resumed) ? flags.out : flags.resume as string);
  const evalEvery = intFlag(flags, 'eval-every', 0);
  const evalBatch = intFlag(flags, 'eval-batch', 1);
  const logEvery = intFlag(flags, 'log-every', 0);
  const traceProbes = intFlag(flags, 'trace-probes', 0);
  const startStep = resumed?.state.step ?? 0;
  if (steps < startStep) {
    throw new ZerothError('E_INVALID_ARG', `--steps ${steps} is fewer than the ${startStep} steps the checkpoint already holds`);
  }

  // Model, tokenizer, data.
  // --device cuda: loadModel uploads the weights (or answers one E_DEVICE line saying what is missing).
  const model = await loadModel(cfg.model, { device: cfg.device });
  try {
    const tok = await loadTokenizer(cfg.model);
    const choice = await resolveData({ task: cfg.task, data: cfg.data, eval: cfg.eval, taskConfig: cfg['task-config'] });
    const data = await loadData(choice, tok, { maxLength: cfg['max-length'], objective: cfg.objective, seed: cfg.seed, needTrain: true });
    const task = data.task;
    // LoRA adapters start from the run's seed, so --resume and replay rebuild the same ones;
    // adapters the model folder already holds (adapter_model.safetensors) train as they are.
    const params = cfg.trainable === 'bias' ? model.trainable({ mode: 'bias' })
      : cfg.trainable === 'lora' ? model.trainable(model.loraSpec() ? { mode: 'lora' } : { mode: 'lora', rank: 8, alpha: 16, seed: cfg.seed })
        : cfg.trainable === 'scales' ? model.trainable({ mode: 'scales' })
          : model.trainable({ mode: 'full' });
    let trained = 0;
    for (const t of Object.values(params)) { trained += t.numel; t.dispose(); }
    console.log(`model: ${cfg.model} (${{ full: 'all', bias: 'bias/norm', lora: 'LoRA rank-8 adapter', scales: 'quantization scale' }[cfg.trainable]} parameters train: ${trained.toLocaleString('en-US')})`);
    for (const n of data.notes) console.log(n);
    console.log(`task: ${cfg.task}${cfg.objective === 'accuracy' ? ' (objective: 1 - accuracy)' : ''}; ${cfg.optimizer} lr ${cfg.lr} eps ${cfg.eps} batch ${cfg.batch} seed ${cfg.seed}; ${steps} steps -> ${out}`);

    await mkdir(out, { recursive: true }).catch((e: Error) => {
      throw new ZerothError('E_IO', `cannot create --out ${out}: ${e.message}`);
    });
    const metricsFile = join(out, METRICS_FILE);
    if (!resumed || resolve(flags.resume as string) !== out) await writeFile(metricsFile, '');
    const log = (record: Record<string, unknown>): Promise<void> => appendFile(metricsFile, `${JSON.stringify(record)}\n`);

    const opt = makeOptimizer(model, cfg);
    try {
      if (resumed) {
        await opt.resume(resumed.trajectory);
        if (opt.stepCount !== startStep) {
          throw new ZerothError('E_FORMAT', `--resume: ${TRAJECTORY_FILE} holds ${opt.stepCount} steps but ${STATE_FILE} says ${startStep}`);
        }
        console.log(`resumed at step ${startStep} from ${resolve(flags.resume as string)}`);
      }
      const evalOpts = { batchSize: evalBatch };
      const before = await evaluate(model, task, data.heldOut, evalOpts);
      console.log(evalLine('before', before, cfg.task) + (startStep > 0 ? ` (at step ${startStep})` : ''));
      await log({ type: 'eval', step: startStep, loss: before.loss, accuracy: before.accuracy });
      // Curvature (sharpness) of the held-out loss, from forward passes only.
      const traceLine = async (when: 'before' | 'after', step: number): Promise<void> => {
        if (traceProbes === 0 || !task.tensors) return;
        const batch = task.tensors(data.heldOut.slice(0, 8));
        try {
          const t = await hessianTrace(model, { batch, probes: traceProbes, seed: cfg.seed });
          console.log(`trace ${when}: ${t.trace.toPrecision(5)} ± ${t.stdErr.toPrecision(2)} (Hutchinson, ${t.probes} probes on ${batch.lengths.length} held-out examples)`);
          await log({ type: 'trace', step, trace: t.trace, stdErr: t.stdErr, probes: t.probes });
        } finally {
          batch.dispose();
        }
      };
      await traceLine('before', startStep);

      // Ctrl-C: finish the step in flight, then write a checkpoint. A second Ctrl-C quits at once.
      let stopRequested = false;
      const onSigint = (): void => {
        if (stopRequested) process.exit(130);
        stopRequested = true;
        process.stderr.write('\nstopping after the current step (Ctrl-C again to quit without a checkpoint)\n');
      };
      process.on('SIGINT', onSigint);
      const checkpoint = async (step: number, finished: boolean): Promise<void> => {
        await writeAtomic(join(out, TRAJECTORY_FILE), opt.trajectory());
        const state: State = { version: 1, step, steps, finished, config: cfg };
        await writeAtomic(join(out, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
      };

      const order = new BatchOrder(data.train.length, cfg.batch, cfg.seed);
      const progress = new Progress(steps, startStep, { every: logEvery || undefined });
      const started = performance.now();
      let step = startStep;
      let rejected = 0;
      try {
        while (step < steps && !stopRequested) {
          const examples = order.at(step).map((i) => data.train[i]);
          let r;
          if (task.tensors) {
            const batch = task.tensors(examples);
            try {
              r = await opt.step({ inputIds: batch.inputIds, attentionMask: batch.attentionMask });
            } finally {
              batch.dispose();
            }
          } else {
            r = await opt.step(() => task.batchObjective(model, examples));
          }
          step++;
          if (!r.accepted) rejected++;
          const loss = (r.lossPlus + r.lossMinus) / 2;
          await log({ type: 'train', step, loss, lossPlus: r.lossPlus, lossMinus: r.lossMinus, projectedGrad: r.projectedGrad,
            lr: r.lr, accepted: r.accepted, seconds: (performance.now() - started) / 1000 });
          progress.update(step, loss);
          if (evalEvery > 0 && step % evalEvery === 0 && step < steps && !stopRequested) {
            const mid = await evaluate(model, task, data.heldOut, evalOpts);
            progress.message(evalLine(`at step ${step}`, mid, cfg.task));
            await log({ type: 'eval', step, loss: mid.loss, accuracy: mid.accuracy });
          }
        }
      } finally {
        progress.end();
        process.off('SIGINT', onSigint);
      }
      if (rejected > 0) console.log(`${rejected} step${rejected === 1 ? ' was' : 's were'} skipped (non-finite loss)`);
      await checkpoint(step, step >= steps);
      if (step < steps) {
        await writeReportFile(out, cfg, metricsFile, steps);
        throw new ZerothError('E_ABORTED', `interrupted after step ${step} of ${steps}; the checkpoint is in ${out}. Continue with: zeroth finetune --resume ${out}`);
      }

      const after = await evaluate(model, task, data.heldOut, evalOpts);
      console.log(evalLine('after', after, cfg.task));
      await log({ type: 'eval', step, loss: after.loss, accuracy: after.accuracy });
      await traceLine('after', step);
      await model.save(out);
      await copyTokenizerFiles(cfg.model, out);
      await writeReportFile(out, cfg, metricsFile, steps);
      const seconds = (performance.now() - started) / 1000;
      console.log(`${step - startStep} steps in ${seconds.toFixed(1)} s; wrote the model, ${TRAJECTORY_FILE}, ${METRICS_FILE} and report.html to ${out}`);
    } finally {
      opt.dispose();
    }
  } finally {
    model.dispose();
  }
}

async function writeReportFile(out: string, cfg: RunConfig, metricsFile: string, steps: number): Promise<void> {
  const train: ReportPoint[] = [];
  const evals: ReportPoint[] = [];
  const traces: { trace: number; stdErr: number }[] = [];
  for (const line of (await readFile(metricsFile, 'utf8')).split('\n')) {
    if (!line) continue;
    const m = JSON.parse(line) as { type: string; step: number; loss: number; accuracy?: number; trace: number; stdErr: number };
    if (m.type === 'trace') traces.push(m);
    else (m.type === 'eval' ? evals : train).push({ step: m.step, loss: m.loss, accuracy: m.accuracy });
  }
  const facts: [string, string][] = Object.entries(cfg).map(([k, v]) => [k, String(v)]);
  facts.push(['steps', `${train.length ? train[train.length - 1]!.step : 0} of ${steps}`]);
  if (evals.length > 0) {
    const first = evals[0]!;
    const last = evals[evals.length - 1]!;
    facts.push(['held-out loss', `${first.loss.toFixed(4)} -> ${last.loss.toFixed(4)}`]);
    if (first.accuracy !== undefined && last.accuracy !== undefined) {
      facts.push(['held-out accuracy', `${(100 * first.accuracy).toFixed(1)}% -> ${(100 * last.accuracy).toFixed(1)}%`]);
    }
  }
  if (traces.length > 0) {
    const fmt = (t: { trace: number; stdErr: number }): string => `${t.trace.toPrecision(4)} ± ${t.stdErr.toPrecision(2)}`;
    facts.push(['Hessian trace (held-out batch)', traces.map(fmt).join(' -> ')]);
  }
  await writeFile(join(out, 'report.html'), renderReport({ title: `zeroth finetune — ${cfg.task} on ${cfg.data ?? 'the embedded task'}`, train, eval: evals, facts }));
}
