// zeroth eval — held-out loss (and accuracy) of a model folder on a JSONL task.
import { evaluate, formatEval } from '../data/evaluate.js';
import { ZerothError } from '../errors.js';
import type { DeviceName } from '../device.js';
import { loadModel } from '../model.js';
import { loadTokenizer } from '../tokenizer.js';
import { usage, type FlagSpec } from './args.js';
import { choiceFlag, DEFAULT_MODEL, intFlag, parseCommand } from './common.js';
import { loadData, resolveData } from './setup.js';

const spec: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'Hugging Face model folder with its tokenizer.json; default: the embedded model' },
  data: { type: 'string', help: 'JSONL file to score (default: the embedded held-out file of --task)' },
  task: { type: 'string', help: 'lm | classify | choice', default: 'lm' },
  'task-config': { type: 'string', help: 'classify: JSON {"template": "...{text}...", "labelWords": {"label": " word"}}' },
  'max-length': { type: 'number', help: 'longest example in tokens (longer ones are cut)', default: 128 },
  batch: { type: 'number', help: 'examples per forward', default: 16 },
  device: { type: 'string', help: 'cpu | cuda', default: 'cpu' },
  json: { type: 'boolean', help: 'print the result as JSON' },
  config: { type: 'string', help: 'JSON file of flag values' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function run(argv: string[]): Promise<void> {
  const { flags } = await parseCommand(argv, spec);
  if (flags.help) {
    console.log(usage('eval', 'Scores a model on held-out data: mean loss per example, and accuracy for classify / choice tasks.', spec));
    return;
  }
  const task = choiceFlag(flags, 'task', ['lm', 'classify', 'choice'] as const);
  const device = choiceFlag(flags, 'device', ['cpu', 'cuda'] as const);
  const maxLength = intFlag(flags, 'max-length', 2);
  const batchSize = intFlag(flags, 'batch', 1);
  const modelDir = typeof flags.model === 'string' ? flags.model : DEFAULT_MODEL;
  // Without --data, score the task's embedded held-out file.
  const choice = await resolveData({ task, eval: flags.data as string | undefined, taskConfig: flags['task-config'] as string | undefined });
  const file = choice.eval;
  if (file === undefined) throw new ZerothError('E_INVALID_ARG', 'pass --data FILE: the JSONL to score');
  const model = await loadModel(modelDir, { device: device as DeviceName });
  try {
    const tok = await loadTokenizer(modelDir);
    const data = await loadData({ ...choice, data: undefined, eval: file }, tok, { maxLength, seed: 0, needTrain: false });
    const result = await evaluate(model, data.task, data.heldOut, { batchSize });
    if (flags.json) {
      console.log(JSON.stringify({ model: modelDir, data: file, task, ...result }));
    } else {
      for (const n of data.notes) if (n.includes('dropped')) console.log(n);
      console.log(`eval: ${formatEval(result, task)}`);
    }
  } finally {
    model.dispose();
  }
}
