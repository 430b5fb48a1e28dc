import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The C program in test/c/ links libzeroth through the C ABI alone. CMake builds it next to
// the addon; a node-gyp build (no cmake on the machine) has no libzeroth, and the test says so.
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = process.env.ZEROTH_ADDON_PATH ? dirname(process.env.ZEROTH_ADDON_PATH) : join(root, 'build', 'Release');
const program = join(buildDir, 'zeroth_c_test');

describe('C ABI', () => {
  it.skipIf(!existsSync(program))(`the C test program passes (${program})`, () => {
    const r = spawnSync(program, ['cuda'], { encoding: 'utf8', timeout: 60_000 });
    const out = `${r.stdout}${r.stderr}`;
    expect(out, out).toMatch(/\d+ passed, 0 failed/);
    expect(r.status, out).toBe(0);
  });
  if (!existsSync(program)) {
    it('reports why the C test program was skipped', () => {
      console.log(`SKIP C ABI program: ${program} was not built (it needs cmake; node-gyp builds only the addon)`);
    });
  }
});
