// args.ts — a small, strict flag parser: --name value, --name=value and boolean --flag.
// Unknown flags are errors that name the flag and list the known ones.
import { ZerothError } from '../errors.js';

export interface FlagSpec {
  /** 'string' | 'number' | 'boolean' */
  type: 'string' | 'number' | 'boolean';
  help: string;
  default?: string | number | boolean;
}

export type Flags = Record<string, string | number | boolean | undefined>;

export function parseFlags(argv: readonly string[], spec: Record<string, FlagSpec>): { flags: Flags; rest: string[] } {
  const flags: Flags = {};
  const rest: string[] = [];
  for (const [name, s] of Object.entries(spec)) if (s.default !== undefined) flags[name] = s.default;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      rest.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const s = spec[name];
    if (!s) {
      throw new ZerothError('E_INVALID_ARG', `unknown flag --${name}; known flags: ${Object.keys(spec).map((k) => `--${k}`).join(', ')}`);
    }
    if (s.type === 'boolean') {
      flags[name] = eq < 0 ? true : arg.slice(eq + 1) !== 'false';
      continue;
    }
    const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined) throw new ZerothError('E_INVALID_ARG', `flag --${name} needs a value`);
    if (s.type === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new ZerothError('E_INVALID_ARG', `flag --${name} must be a number, got ${JSON.stringify(value)}`);
      flags[name] = n;
    } else {
      flags[name] = value;
    }
  }
  return { flags, rest };
}

export function usage(command: string, summary: string, spec: Record<string, FlagSpec>): string {
  const lines = [`usage: zeroth ${command} [flags]`, '', summary, '', 'flags:'];
  for (const [name, s] of Object.entries(spec)) {
    const def = s.default === undefined ? '' : ` (default: ${String(s.default)})`;
    lines.push(`  --${name.padEnd(16)} ${s.help}${def}`);
  }
  return lines.join('\n');
}
