#!/usr/bin/env node
// zeroth — the command-line interface. Each subcommand lives in its own file and exports
// `run(argv)`; errors print as one line with a non-zero exit code.
import { ZerothError } from '../errors.js';

interface Command {
  summary: string;
  load: () => Promise<{ run: (argv: string[]) => Promise<void> }>;
}

const commands: Record<string, Command> = {
  finetune: { summary: 'fine-tune a language model with forward passes only (no flags: the embedded demo)', load: () => import('./finetune.js') },
  eval: { summary: 'held-out loss / accuracy of a model on a JSONL file', load: () => import('./eval.js') },
  generate: { summary: 'continue a prompt with a model', load: () => import('./generate.js') },
  replay: { summary: 'rebuild a fine-tuned model from its base model and trajectory', load: () => import('./replay.js') },
  trace: { summary: 'Hessian trace of the loss, whole and per block, from forward passes', load: () => import('./trace.js') },
  quantize: { summary: 'quantize a model to int4 / int8 (or a Hessian-aware mix) and write a GPTQ checkpoint', load: () => import('./quantize.js') },
  devices: { summary: 'list the devices zeroth can use and how it was built', load: () => import('./devices.js') },
};

function help(): string {
  const lines = ['zeroth — forward-only fine-tuning and curvature estimation', '', 'usage: zeroth <command> [flags]', '', 'commands:'];
  for (const [name, c] of Object.entries(commands)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  lines.push('', 'Run `zeroth <command> --help` for the flags of a command.');
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name === undefined ? 1 : 0;
  }
  const command = commands[name];
  if (!command) {
    console.error(`zeroth: unknown command '${name}'. Commands: ${Object.keys(commands).join(', ')}`);
    return 2;
  }
  try {
    await (await command.load()).run(rest);
    return 0;
  } catch (err) {
    if (err instanceof ZerothError) {
      console.error(`zeroth ${name}: ${err.message} [${err.code}]`);
      return err.code === 'E_ABORTED' ? 130 : 1;
    }
    throw err;
  }
}

process.exitCode = await main(process.argv.slice(2));
