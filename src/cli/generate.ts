// zeroth generate — continue a prompt with a model folder (greedy, or sampled with temperature,
// top-k and top-p), using the KV-cache generation of the native forward.
import { padBatch } from '../data/batch.js';
import { padIdOf } from '../data/tasks.js';
import { ZerothError } from '../errors.js';
import type { DeviceName } from '../device.js';
import { loadModel } from '../model.js';
import { loadTokenizer } from '../tokenizer.js';
import { usage, type FlagSpec } from './args.js';
import { choiceFlag, DEFAULT_MODEL, intFlag, numberFlag, parseCommand } from './common.js';

const spec: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'Hugging Face model folder with its tokenizer.json; default: the embedded model' },
  prompt: { type: 'string', help: 'the text to continue', default: 'The' },
  'max-new-tokens': { type: 'number', help: 'tokens to generate', default: 40 },
  temperature: { type: 'number', help: 'sampling temperature (0: greedy)', default: 0.8 },
  'top-k': { type: 'number', help: 'sample among the k most likely tokens (0: off)', default: 40 },
  'top-p': { type: 'number', help: 'sample among the smallest set of tokens reaching this probability (1: off)', default: 0.95 },
  seed: { type: 'number', help: 'seed of the sampling', default: 0 },
  device: { type: 'string', help: 'cpu | cuda', default: 'cpu' },
  config: { type: 'string', help: 'JSON file of flag values' },
  help: { type: 'boolean', help: 'show this help' },
};

export async function run(argv: string[]): Promise<void> {
  const { flags } = await parseCommand(argv, spec);
  if (flags.help) {
    console.log(usage('generate', 'Continues --prompt with the model and prints the prompt and its continuation.', spec));
    return;
  }
  const device = choiceFlag(flags, 'device', ['cpu', 'cuda'] as const);
  const maxNewTokens = intFlag(flags, 'max-new-tokens', 1);
  const temperature = numberFlag(flags, 'temperature', (x) => x >= 0, 'a number >= 0 (0 is greedy)');
  const topK = intFlag(flags, 'top-k', 0);
  const topP = numberFlag(flags, 'top-p', (x) => x > 0 && x <= 1, 'in (0, 1]');
  const seed = intFlag(flags, 'seed', 0);
  const prompt = String(flags.prompt);
  const modelDir = typeof flags.model === 'string' ? flags.model : DEFAULT_MODEL;
  const model = await loadModel(modelDir, { device: device as DeviceName });
  try {
    const tok = await loadTokenizer(modelDir);
    const ids = tok.encode(prompt);
    if (ids.length === 0) throw new ZerothError('E_INVALID_ARG', '--prompt has no tokens; pass some text');
    const room = model.config.maxPositions - ids.length;
    if (maxNewTokens > room) {
      throw new ZerothError('E_INVALID_ARG', `--max-new-tokens ${maxNewTokens} does not fit: the prompt has ${ids.length} tokens and the model sees at most ${model.config.maxPositions}`);
    }
    const batch = padBatch([ids], padIdOf(tok));
    try {
      const out = await model.generate(batch.inputIds, { attentionMask: batch.attentionMask, maxNewTokens, temperature, topK, topP, seed });
      const gen = Array.from(out.toTypedArray());
      out.dispose();
      // Rows stop at EOS; what follows it is padding.
      const eos = model.config.eosTokenId;
      const cut = gen.indexOf(eos);
      // A model's embedding may be wider than its tokenizer's vocabulary (padded for speed):
      // ids past the tokenizer have no text, so they are left out, and said so.
      const tokens = cut < 0 ? gen : gen.slice(0, cut);
      const kept = tokens.filter((id) => id < tok.vocabSize && tok.idToToken(id) !== undefined);
      if (kept.length < tokens.length) process.stderr.write(`note: ${tokens.length - kept.length} generated ids have no text in the tokenizer and were left out\n`);
      process.stdout.write(`${prompt}${tok.decode(kept, { skipSpecialTokens: true })}\n`);
    } finally {
      batch.dispose();
    }
  } finally {
    model.dispose();
  }
}
