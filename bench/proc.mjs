// proc.mjs — what the memory benchmarks read about their own process, and how they run a mode
// in a child process of its own. Not a benchmark itself: run-all.mjs skips it.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** A kB field of /proc/self/status (VmRSS: resident now; VmHWM: the peak since start or the last reset). */
export function statusKb(field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

export const mib = (kb) => kb / 1024;

/** Runs `script --child mode` with --expose-gc and returns the JSON it printed. */
export function runChild(script, mode) {
  const r = spawnSync(process.execPath, ['--expose-gc', script, '--child', mode], { encoding: 'utf8', env: process.env });
  if (r.status !== 0) throw new Error(`${mode} child failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
