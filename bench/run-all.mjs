#!/usr/bin/env node
// Runs every benchmark in bench/ one after another (they use all cores, so never in
// parallel) and prints one JSON object: {benchmark name: its JSON output}. Pass names to run
// a subset: `npm run bench -- gemm perturb`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const names = readdirSync(here)
  .filter((f) => f.endsWith('.mjs') && f !== 'run-all.mjs' && f !== 'gpt2.mjs' && f !== 'proc.mjs')
  .map((f) => f.replace(/\.mjs$/, ''))
  .filter((n) => wanted.length === 0 || wanted.includes(n));

const results = {};
for (const name of names) {
  process.stderr.write(`bench ${name} ...\n`);
  const r = spawnSync(process.execPath, [join(here, `${name}.mjs`)], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const out = r.stdout.trim();
  try {
    results[name] = JSON.parse(out.slice(out.indexOf('{')));
  } catch {
    results[name] = { error: `exit ${r.status}`, stderr: r.stderr.slice(-2000), stdout: out.slice(-2000) };
  }
}
console.log(JSON.stringify(results, null, 2));
