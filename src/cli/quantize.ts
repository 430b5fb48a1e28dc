// zeroth quantize — quantizes a model's linear layers (int4 group-wise, int8 per row, or a
// Hessian-aware int4/int8 plan under a byte budget), prints the held-out loss before and after,
// and writes a 4-bit GPTQ checkpoint (plus the tokenizer) that loadModel and other tools read.
import { ZerothError } from '../errors.js';
import { evaluate, formatEval } from '../data/evaluate.js';
import { loadModel, type QuantizeReport } from '../model.js';
import { loadTokenizer } from '../tokenizer.js';
import { usage, type FlagSpec } from './args.js';
import { choiceFlag, copyTokenizerFiles, DEFAULT_MODEL, intFlag, numberFlag, parseCommand } from './common.js';
import { loadData, resolveData } from './setup.js';

const spec: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'Hugging Face model folder with its tokenizer.json; default: the embedded model' },
  bits: { type: 'number', help: '4 (group-wise int4) or 8 (per-row int8); ignored with --plan hessian', default: 4 },
  'group-size': { type: 'number', help: 'int4 input features per scale', default: 128 },
  symmetric: { type: 'boolean', help: 'int4 with a fixed zero point (8) instead of one per group' },
  clip: { type: 'boolean', help: 'search each group\'s range for the least squared error' },
  plan: { type: 'string', help: "'hessian': int4 or int8 per block from per-block Hessian traces (needs --budget)" },
  budget: { type: 'string', help: 'with --plan hessian: bytes the weights may take, e.g. 3000000, 12MB, 1.5GiB' },
  probes: { type: 'number', help: 'with --plan hessian: Hutchinson probes per block', default: 16 },
  data: { type: 'string', help: 'JSONL of {"text"} lines: calibration (plan) and held-out loss; default: the embedded held-out file' },
  batch: { type: 'number', help: 'calibration examples for the Hessian plan', default: 8 },
  'max-length': { type: 'number', help: 'longest example in tokens', default: 128 },
  'eval-examples': { type: 'number', help: 'held-out examples scored before and after (0: skip)', default: 64 },
  seed: { type: 'number', help: 'seed of the probes', default: 0 },
  out: { type: 'string', help: 'folder to write the quantized checkpoint to (GPTQ layout)' },
  json: { type: 'boolean', help: 'print the report as JSON' },
  config: { type: 'string', help: 'JSON file of flag values' },
  help: { type: 'boolean', help: 'show this help' },
};

const UNITS: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };

/** "12MB" -> 12e6, "1.5GiB" -> 1610612736, "3000000" -> 3e6. */
export function parseBytes(text: string): number {
  const m = /^\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new ZerothError('E_INVALID_ARG', `--budget: cannot read '${text}'; write bytes like 3000000, 12MB or 1.5GiB`);
  }
  return Math.floor(Number(m[1]) * unit);
}

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(2)} MB`;

export async function run(argv: string[]): Promise<void> {
  const { flags } = await parseCommand(argv, spec);
  if (flags.help) {
    console.log(usage('quantize', 'Quantizes a model to int4 / int8 (or a Hessian-aware mix) and writes a GPTQ checkpoint.', spec));
    return;
  }
  const plan = flags.plan === undefined ? undefined : choiceFlag(flags, 'plan', ['hessian'] as const);
  const bits = numberFlag(flags, 'bits', (x) => x === 4 || x === 8, '4 or 8') as 4 | 8;
  const groupSize = intFlag(flags, 'group-size', 1);
  const maxLength = intFlag(flags, 'max-length', 2);
  const evalCount = intFlag(flags, 'eval-examples', 0);
  const seed = intFlag(flags, 'seed', 0);
  if (plan && typeof flags.budget !== 'string') throw new ZerothError('E_INVALID_ARG', '--plan hessian needs --budget BYTES');
  const modelDir = typeof flags.model === 'string' ? flags.model : DEFAULT_MODEL;
  const choice = await resolveData({ task: 'lm', eval: flags.data as string | undefined });
  const model = await loadModel(modelDir);
  try {
    const tok = await loadTokenizer(modelDir);
    const data = await loadData({ ...choice, data: undefined }, tok, { maxLength, seed, needTrain: false });
    const heldOut = data.heldOut.slice(0, evalCount);
    const score = async (): Promise<string | undefined> =>
      heldOut.length > 0 ? formatEval(await evaluate(model, data.task, heldOut), 'lm') : undefined;
    const before = await score();
    if (before) console.log(`eval before: ${before}`);

    const started = Date.now();
    let report: QuantizeReport;
    const common = { groupSize, symmetric: flags.symmetric === true, clip: flags.clip === true };
    if (plan) {
      const calib = data.heldOut.slice(0, intFlag(flags, 'batch', 1));
      if (!data.task.tensors || calib.length === 0) throw new ZerothError('E_INVALID_ARG', 'no calibration examples in the data');
      const tb = data.task.tensors(calib);
      try {
        report = await model.quantize({
          plan, budgetBytes: parseBytes(flags.budget as string), probes: intFlag(flags, 'probes', 1), seed, ...common,
          calibration: { inputIds: tb.inputIds, attentionMask: tb.attentionMask },
        });
      } finally {
        tb.dispose();
      }
    } else {
      report = await model.quantize({ bits, ...common });
    }
    const seconds = (Date.now() - started) / 1000;
    const after = await score();
    if (after) console.log(`eval after: ${after}`);
    if (flags.json) console.log(JSON.stringify({ ...report, seconds }));
    else {
      const int8 = report.layers.filter((l) => l.bits === 8).length;
      console.log(`quantized ${report.layers.length} linear layers (${report.layers.length - int8} int4, ${int8} int8) in ${seconds.toFixed(1)} s: ` +
        `weights ${mb(report.bytesBefore)} -> ${mb(report.bytesAfter)} (${(report.bytesAfter / report.bytesBefore).toFixed(3)}x)`);
      for (const b of report.blocks ?? []) {
        console.log(`  ${b.name.padEnd(28)} int${b.bits}  trace ${b.trace.toPrecision(4).padStart(10)} ± ${b.stdErr.toPrecision(2).padEnd(8)}` +
          ` error int4 ${b.error4.toExponential(2)}  int8 ${b.error8.toExponential(2)}`);
      }
    }
    if (typeof flags.out === 'string') {
      await model.save(flags.out);
      const copied = await copyTokenizerFiles(modelDir, flags.out);
      console.log(`wrote ${flags.out} (GPTQ checkpoint${copied.length > 0 ? ` + ${copied.join(', ')}` : ''})`);
    }
  } finally {
    model.dispose();
  }
}
