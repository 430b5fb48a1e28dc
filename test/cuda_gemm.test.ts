// cuda_gemm.test.ts — runs the native program test_cuda_gemm (test/native/test_cuda_gemm.cpp):
// the CUDA GEMMs (f32 SIMT, perturbed tile loads, bf16/f16 tensor cores) and the forward kernels
// (norms, activations, RoPE, embedding, attention, cross entropy) against their CPU references,
// plus the host-side GEMM plan, which is checked on every machine.
//
// Without a GPU (or on a build without CUDA) the program checks the host plan, prints
// "SKIP ... GPU checks: <reason>" and exits 0; this spec then passes with that reason printed.
// Without the program (no cmake build next to the addon) the spec skips and says where it looked.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { native } from '../src/native.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = process.env.ZEROTH_ADDON_PATH ? dirname(process.env.ZEROTH_ADDON_PATH) : join(root, 'build', 'Release');
const program = join(buildDir, 'test_cuda_gemm');

const build = native.buildInfo() as { cuda: boolean };
const gpus = (native.devices() as { type: string }[]).filter((d) => d.type === 'cuda');
const hasGpu = build.cuda && gpus.length > 0;

describe('CUDA GEMM and forward kernels (test_cuda_gemm)', () => {
  if (!existsSync(program)) {
    it('reports why it was skipped', () => {
      console.log(`SKIP cuda gemm tests: ${program} is not built (native tests need the cmake build)`);
    });
    return;
  }
  it('passes against the CPU references', () => {
    const r = spawnSync(program, [], { encoding: 'utf8', timeout: 240_000 });
    const out = `${r.stdout}${r.stderr}`;
    const tail = out.trim().split('\n').slice(-20).join('\n');
    console.log(tail);
    expect(r.status, tail).toBe(0);
    expect(out, tail).toMatch(/[1-9]\d* passed, 0 failed/);
    if (hasGpu) {
      expect(out, tail).not.toMatch(/^SKIP /m);
    } else {
      // The skip must say why: no CUDA in this build, or no usable device here.
      expect(out, tail).toMatch(/^SKIP test_cuda_gemm GPU checks: .*(no CUDA backend|no usable CUDA device)/m);
    }
  }, 300_000);
  // The benchmark mode (bench/cuda.mjs runs it on a GPU) must say it skipped, in JSON, without one.
  it.skipIf(hasGpu)('--bench prints {"skipped": "no CUDA device"} without a GPU', () => {
    const r = spawnSync(program, ['--bench'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop() as string)).toEqual({ skipped: 'no CUDA device' });
  });
});
