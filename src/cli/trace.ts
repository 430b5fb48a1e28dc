// zeroth trace — the Hessian trace of a model's loss on a batch of held-out text, whole and
// per block (layer / module), from forward passes only (Hutchinson probes, fused perturbation).
import { writeFile } from 'node:fs/promises';
import { hessianTrace, rankBlocksByTrace } from '../curvature/index.js';
import { ZerothError } from '../errors.js';
import { loadModel } from '../model.js';
import { loadTokenizer } from '../tokenizer.js';
import { usage, type FlagSpec } from './args.js';
import { choiceFlag, DEFAULT_MODEL, deviceFlag, intFlag, numberFlag, parseCommand } from './common.js';
import { loadData, resolveData } from './setup.js';

const spec: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'Hugging Face model folder with its tokenizer.json; default: the embedded model' },
  data: { type: 'string', help: 'JSONL of {"text"} lines (default: the embedded held-out file)' },
  batch: { type: 'number', help: 'examples in the probed batch', default: 8 },
  'max-length': { type: 'number', help: 'longest example in tokens', default: 128 },
  probes: { type: 'number', help: 'probe budget per block', default: 32 },
  'rel-std-err': { type: 'number', help: 'stop once the standard error is below this fraction of the trace' },
  'per-block': { type: 'boolean', help: 'also estimate the trace of each block (use --per-block=false to skip)', default: true },
  distribution: { type: 'string', help: 'rademacher | normal', default: 'rademacher' },
  seed: { type: 'number', help: 'seed of the probes', default: 0 },
  device: { type: 'string', help: 'cpu | cuda | cuda:N (the forwards of every probe run there)', default: 'cpu' },
  out: { type: 'string', help: 'write the result as JSON to this file' },
  json: { type: 'boolean', help: 'print JSON instead of a table' },
  config: { type: 'string', help: 'JSON file of flag values' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function run(argv: string[]): Promise<void> {
  const { flags } = await parseCommand(argv, spec);
  if (flags.help) {
    console.log(usage('trace', 'Estimates tr(H) of the loss on a batch, and per block (ranked), with Hutchinson probes.', spec));
    return;
  }
  const device = deviceFlag(flags);
  const distribution = choiceFlag(flags, 'distribution', ['rademacher', 'normal'] as const);
  const batchSize = intFlag(flags, 'batch', 1);
  const maxLength = intFlag(flags, 'max-length', 2);
  const probes = intFlag(flags, 'probes', 1);
  const seed = intFlag(flags, 'seed', 0);
  const relStdErr = flags['rel-std-err'] === undefined ? undefined
    : numberFlag(flags, 'rel-std-err', (x) => x > 0 && x < 1, 'a fraction in (0, 1)');
  const modelDir = typeof flags.model === 'string' ? flags.model : DEFAULT_MODEL;
  const choice = await resolveData({ task: 'lm', eval: flags.data as string | undefined });
  if (choice.eval === undefined) throw new ZerothError('E_INVALID_ARG', 'pass --data FILE: the JSONL whose loss is probed');
  const model = await loadModel(modelDir, { device });
  try {
    const tok = await loadTokenizer(modelDir);
    const data = await loadData({ ...choice, data: undefined }, tok, { maxLength, seed, needTrain: false });
    const examples = data.heldOut.slice(0, batchSize);
    if (examples.length === 0 || !data.task.tensors) throw new ZerothError('E_INVALID_ARG', `${choice.eval} has no usable rows`);
    const tb = data.task.tensors(examples);
    const batch = { inputIds: tb.inputIds, attentionMask: tb.attentionMask };
    try {
      const started = Date.now();
      const result = await hessianTrace(model, {
        batch, probes, relStdErr, distribution, seed, perBlock: flags['per-block'] === true,
        onProgress: (p) => {
          if (process.stderr.isTTY) process.stderr.write(`\rprobe ${p.probes}/${p.budget}  trace ${p.trace.toPrecision(5)} ± ${p.stdErr.toPrecision(2)}  `);
        },
      });
      if (process.stderr.isTTY) process.stderr.write('\n');
      const seconds = (Date.now() - started) / 1000;
      const out = {
        model: modelDir, data: choice.eval, examples: examples.length, distribution,
        trace: result.trace, stdErr: result.stdErr, probes: result.probes, forwards: result.forwards, seconds,
        blocks: result.blocks
          ? rankBlocksByTrace(result.blocks).map((b) => ({ ...b, numel: result.blocks![b.name]!.numel }))
          : undefined,
      };
      if (typeof flags.out === 'string') await writeFile(flags.out, `${JSON.stringify(out, null, 2)}\n`);
      if (flags.json) {
        console.log(JSON.stringify(out));
        return;
      }
      console.log(`trace: ${result.trace.toPrecision(6)} ± ${result.stdErr.toPrecision(3)} (${result.probes} probes, ${result.forwards} forwards, ${seconds.toFixed(1)} s)`);
      if (out.blocks) {
        console.log(`${'block'.padEnd(40)} ${'trace'.padStart(12)} ${'std err'.padStart(10)} ${'elements'.padStart(10)}`);
        for (const b of out.blocks) {
          console.log(`${b.name.padEnd(40)} ${b.trace.toPrecision(5).padStart(12)} ${b.stdErr.toPrecision(3).padStart(10)} ${String(b.numel).padStart(10)}`);
        }
      }
    } finally {
      tb.dispose();
    }
  } finally {
    model.dispose();
  }
}
