import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The C++ unit tests in test/native/ (one executable each, built by CMake next to the addon)
// check the kernels against their references without Node in the way. Each prints
// "N passed, N failed" and exits non-zero on failure.
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = process.env.ZEROTH_ADDON_PATH ? dirname(process.env.ZEROTH_ADDON_PATH) : join(root, 'build', 'Release');
// One program per test/native/*.cpp, named after the file (CMakeLists.txt builds them so).
const programs = readdirSync(join(root, 'test', 'native')).filter((f) => f.endsWith('.cpp')).map((f) => f.slice(0, -4)).sort();

describe('native unit tests', () => {
  for (const name of programs) {
    const path = join(buildDir, name);
    it.skipIf(!existsSync(path))(`${name} passes`, () => {
      const r = spawnSync(path, [], {
        encoding: 'utf8',
        timeout: 240_000,
        env: { ...process.env, ZEROTH_FIXTURES: process.env.ZEROTH_FIXTURES ?? join(root, '..', 'shared', 'fixtures') },
      });
      const out = `${r.stdout}${r.stderr}`;
      const tail = out.split('\n').slice(-15).join('\n');
      expect(r.status, tail).toBe(0);
      expect(out, tail).toMatch(/\d+ passed, 0 failed|^SKIP/m);
    }, 300_000);
    if (!existsSync(path)) {
      it(`reports why ${name} was skipped`, () => {
        console.log(`SKIP ${name}: not built at ${path} (native tests need the cmake build)`);
      });
    }
  }
});
