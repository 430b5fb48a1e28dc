#!/usr/bin/env node
// npm install hook: use a prebuilt binary from prebuilds/ when one matches this platform
// (node-gyp-build), otherwise build from source — with cmake-js when cmake is on PATH
// (full build: addon, libzeroth, C test, CUDA when nvcc is found), else with node-gyp
// (CPU-only addon). `--force` skips the prebuilt check.
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');
const fs = require('fs');

const root = path.join(__dirname, '..');
const force = process.argv.includes('--force');

function run(cmd, args) {
  console.log(`zeroth: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env });
  return r.status === 0;
}

function has(cmd) {
  return spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
}

if (!force) {
  try {
    require('node-gyp-build')(root);
    console.log('zeroth: using an existing native binary (prebuilds/ or build/)');
    process.exit(0);
  } catch {
    /* no usable binary yet: build one */
  }
}

const jobs = String(Math.max(1, require('os').availableParallelism?.() ?? require('os').cpus().length));
if (has('cmake')) {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const ok = run(process.execPath, [cmakeJs, 'compile', '--out', 'build', '--parallel', jobs]);
  if (ok) process.exit(0);
  console.error('zeroth: the cmake build failed; trying node-gyp (CPU-only addon)');
  fs.rmSync(path.join(root, 'build'), { recursive: true, force: true });
}
const nodeGyp = process.env.npm_config_node_gyp;
const ok = nodeGyp
  ? run(process.execPath, [nodeGyp, 'rebuild', '-j', jobs])
  : run('npx', ['--yes', 'node-gyp', 'rebuild', '-j', jobs]);
process.exit(ok ? 0 : 1);
