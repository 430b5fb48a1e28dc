// zeroth replay — rebuild a fine-tuned model from its base model and a trajectory (the seeds and
// projected gradients of a run): no forward pass, the same bits as the run's weights.
import { readFile } from 'node:fs/promises';

import { ZerothError } from '../errors.js';
import { loadModel } from '../model.js';
import { replay } from '../optim/replay.js';
import { usage, type FlagSpec } from './args.js';
import { copyTokenizerFiles, DEFAULT_MODEL, parseCommand } from './common.js';

const spec: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'the base model folder the run started from; default: the embedded model' },
  trajectory: { type: 'string', help: 'trajectory.bin written by zeroth finetune' },
  out: { type: 'string', help: 'folder for the rebuilt model (config.json, model.safetensors, tokenizer files)' },
  config: { type: 'string', help: 'JSON file of flag values' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function run(argv: string[]): Promise<void> {
  const { flags } = await parseCommand(argv, spec);
  if (flags.help) {
    console.log(usage('replay', 'Applies a fine-tuning trajectory to its base model and saves the result, without any forward pass.', spec));
    return;
  }
  if (typeof flags.trajectory !== 'string') throw new ZerothError('E_INVALID_ARG', 'pass --trajectory FILE (the trajectory.bin of a finetune run)');
  if (typeof flags.out !== 'string') throw new ZerothError('E_INVALID_ARG', 'pass --out DIR: where to write the rebuilt model');
  const modelDir = typeof flags.model === 'string' ? flags.model : DEFAULT_MODEL;
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(flags.trajectory));
  } catch (err) {
    throw new ZerothError('E_IO', `cannot read --trajectory ${flags.trajectory}: ${(err as Error).message}`);
  }
  const model = await loadModel(modelDir);
  try {
    const started = performance.now();
    let steps = 0;
    await replay(model, bytes, { onProgress: (done) => { steps = done; } });
    await model.save(flags.out);
    const copied = await copyTokenizerFiles(modelDir, flags.out);
    console.log(`replayed ${steps} steps onto ${modelDir} in ${((performance.now() - started) / 1000).toFixed(2)} s; wrote ${flags.out}` +
      (copied.length ? ` (with ${copied.join(', ')})` : ''));
  } finally {
    model.dispose();
  }
}
