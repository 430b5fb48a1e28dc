// common.ts — what the CLI commands share: where the embedded defaults live, flags merged with
// a --config JSON file, and copying tokenizer files next to a saved model.
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { DeviceName } from '../device.js';
import { ZerothError } from '../errors.js';
import { parseFlags, type FlagSpec, type Flags } from './args.js';

/** The package root (this file is dist/cli/common.js, or src/cli/common.ts under vitest). */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DEFAULT_MODEL = join(PACKAGE_ROOT, 'models', 'default');
export const DEFAULT_DATA = join(PACKAGE_ROOT, 'data', 'default');

/** The tokenizer files a Hugging Face model folder may carry; copied verbatim next to saved weights. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt', 'generation_config.json'];

export async function copyTokenizerFiles(from: string, to: string): Promise<string[]> {
  const copied: string[] = [];
  for (const f of TOKENIZER_FILES) {
    try {
      await copyFile(join(from, f), join(to, f));
      copied.push(f);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new ZerothError('E_IO', `cannot copy ${join(from, f)} to ${to}: ${(err as Error).message}`);
      }
    }
  }
  return copied;
}

/**
 * Flags from the command line, over the keys of `--config FILE` (a JSON object whose keys are
 * flag names, e.g. {"steps": 500, "lr": 1e-4}), over the spec's defaults.
 * `explicit` names the flags the user set (either way), for commands that merge saved state.
 */
export async function parseCommand(argv: readonly string[], spec: Record<string, FlagSpec>): Promise<{ flags: Flags; explicit: Set<string> }> {
  const bare: Record<string, FlagSpec> = {};
  for (const [k, s] of Object.entries(spec)) bare[k] = { type: s.type, help: s.help };
  const { flags: cli, rest } = parseFlags(argv, bare);
  if (rest.length > 0) {
    throw new ZerothError('E_INVALID_ARG', `unexpected argument ${JSON.stringify(rest[0])}; flags take the form --name value`);
  }
  const fromFile: Flags = {};
  if (typeof cli.config === 'string') {
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(cli.config, 'utf8'));
    } catch (err) {
      const code = err instanceof SyntaxError ? 'E_FORMAT' : 'E_IO';
      throw new ZerothError(code, `cannot read --config ${cli.config}: ${(err as Error).message}`);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new ZerothError('E_FORMAT', `--config ${cli.config} must hold a JSON object of flag names and values`);
    }
    for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
      // Accept camelCase too: maxLength → max-length.
      const name = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      const s = spec[name];
      if (!s || name === 'config' || name === 'help') {
        throw new ZerothError('E_INVALID_ARG', `--config ${cli.config}: unknown key "${key}"; known: ${Object.keys(spec).filter((k) => k !== 'config' && k !== 'help').join(', ')}`);
      }
      const ok = s.type === 'number' ? typeof value === 'number' && Number.isFinite(value) : typeof value === s.type;
      if (!ok) throw new ZerothError('E_INVALID_ARG', `--config ${cli.config}: "${key}" must be a ${s.type}, got ${JSON.stringify(value)}`);
      fromFile[name] = value as string | number | boolean;
    }
  }
  const flags: Flags = {};
  const explicit = new Set<string>();
  for (const [k, s] of Object.entries(spec)) {
    if (cli[k] !== undefined) { flags[k] = cli[k]; explicit.add(k); }
    else if (fromFile[k] !== undefined) { flags[k] = fromFile[k]; explicit.add(k); }
    else if (s.default !== undefined) flags[k] = s.default;
  }
  return { flags, explicit };
}

export function intFlag(flags: Flags, name: string, min: number): number {
  const v = flags[name];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new ZerothError('E_INVALID_ARG', `--${name} must be an integer >= ${min}, got ${String(v)}`);
  }
  return v;
}

export function numberFlag(flags: Flags, name: string, ok: (x: number) => boolean, rule: string): number {
  const v = flags[name];
  if (typeof v !== 'number' || !ok(v)) throw new ZerothError('E_INVALID_ARG', `--${name} must be ${rule}, got ${String(v)}`);
  return v;
}

/**
 * --device: 'cpu', 'cuda' or 'cuda:N'. Whether the device exists is loadModel's to say (one
 * E_DEVICE line naming what is missing: a CUDA build, a GPU and driver, or the index).
 */
export function deviceFlag(flags: Flags, name = 'device'): DeviceName {
  const v = flags[name];
  if (typeof v !== 'string' || !/^(cpu|cuda|cuda:\d{1,4})$/.test(v)) {
    throw new ZerothError('E_INVALID_ARG', `--${name} must be cpu, cuda or cuda:N, got ${JSON.stringify(v)}`);
  }
  return v as DeviceName;
}

export function choiceFlag<T extends string>(flags: Flags, name: string, allowed: readonly T[]): T {
  const v = flags[name];
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new ZerothError('E_INVALID_ARG', `--${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}
