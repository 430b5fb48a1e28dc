// bench/zo-step.mjs — one ZO-SGD step (MeZO) on a GPT-2-small-shaped model (12 layers, 768 wide,
// 12 heads, vocab 50257, random f32 weights) at batch 4 × 128, full parameters, through the
// public API: `await new zeroth.optim.ZOSGD(model, opts).step({inputIds, attentionMask})`.
// Prints one JSON object. Needs the TypeScript build (npx tsc) and the addon.
//
//   node bench/zo-step.mjs        (ZEROTH_BENCH_REPS=3 timed steps and forwards, median kept)
//
// Figures, all measured in this run:
//   stepSeconds          one fused step: two perturbed forwards + the update pass
//   twoForwardsSeconds   two plain forwards (model.loss) — the floor a ZO step cannot beat;
//                        stepOverTwoForwards = perturbation + update overhead (target <= 1.1)
//   cpuSeconds           the same two, in process CPU time (all threads): less disturbed by
//                        other tenants of a shared machine than the wall-clock medians
//   pytorch              the MeZO step users run today (../shared/anchors/mezo_ref.py, Debian
//                        python3-torch, 2 threads, in-place seeded perturbation) on the same
//                        shapes; pytorchOverStep = our speed-up (target >= 2). null when python3
//                        has no torch.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const zeroth = await import(join(root, 'dist', 'index.js'));
const { randomGpt2, tokenBatch } = await import('./gpt2.mjs');

const REPS = Math.max(1, Number(process.env.ZEROTH_BENCH_REPS ?? 3));
const L = 12, D = 768, H = 12, V = 50257, P = 1024, B = 4, T = 128;
const now = () => Number(process.hrtime.bigint()) / 1e9;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const { model, params } = await randomGpt2(zeroth, { L, D, H, V, P });
const { inputIds: ids, attentionMask: mask } = tokenBatch(zeroth, B, T, V);
const opt = new zeroth.optim.ZOSGD(model, { lr: 1e-6, eps: 1e-3, seed: 1 });

// Process CPU seconds (all threads): a second view that a burst on a shared machine, which
// stretches wall time while our threads wait to be scheduled, disturbs less.
const cpuNow = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const cpuSteps = [];
const cpuPairs = [];

async function plainLoss() {
  const t0 = now(), c0 = cpuNow();
  (await model.loss(ids, { attentionMask: mask })).dispose();
  return [now() - t0, cpuNow() - c0];
}
// Warm-up: pages, thread pool, packing buffers.
await plainLoss();
await opt.step({ inputIds: ids, attentionMask: mask });

// Interleave steps and forward pairs so a burst on a shared machine hits both alike.
const steps = [];
const pairs = [];
for (let r = 0; r < REPS; r++) {
  const t0 = now(), c0 = cpuNow();
  await opt.step({ inputIds: ids, attentionMask: mask });
  steps.push(now() - t0);
  cpuSteps.push(cpuNow() - c0);
  const [a, b] = [await plainLoss(), await plainLoss()];
  pairs.push(a[0] + b[0]);
  cpuPairs.push(a[1] + b[1]);
}
opt.dispose();
model.dispose();
ids.dispose();
mask.dispose();

// The PyTorch anchor, same shapes, in this run.
let pytorch = null;
const anchor = join(root, '..', 'shared', 'anchors', 'mezo_ref.py');
if (existsSync(anchor) && process.env.ZEROTH_BENCH_NO_TORCH !== '1') {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE; // these hold OpenBLAS to old kernels on this machine
  delete env.OPENBLAS_L2_SIZE;
  // Debian's python3 carries python3-torch; a pyenv python3 earlier on PATH usually has no torch.
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const r = spawnSync(python, [anchor, '--layers', String(L), '--dim', String(D), '--heads', String(H), '--vocab', String(V),
    '--seq', String(T), '--batch', String(B), '--steps', '3', '--threads', '2'], { encoding: 'utf8', env, timeout: 600_000 });
  const m = /step_s=([0-9.]+) forward_s=([0-9.]+) perturb_s=([0-9.]+)/.exec(r.stdout ?? '');
  if (m) pytorch = { stepSeconds: Number(m[1]), forwardSeconds: Number(m[2]), perturbSeconds: Number(m[3]) };
  else pytorch = { error: (r.stderr || r.stdout || String(r.error)).trim().split('\n').pop() };
}

const stepSeconds = median(steps);
const twoForwardsSeconds = median(pairs);
console.log(JSON.stringify({
  bench: 'zo-step',
  shape: { layers: L, dim: D, heads: H, vocab: V, batch: B, seq: T, params, dtype: 'f32', trainable: 'full' },
  threads: zeroth.buildInfo().threads,
  simd: zeroth.buildInfo().simd,
  reps: REPS,
  stepSeconds,
  twoForwardsSeconds,
  stepOverTwoForwards: stepSeconds / twoForwardsSeconds,
  targetStepOverTwoForwards: 1.1,
  cpuSeconds: { step: median(cpuSteps), twoForwards: median(cpuPairs), stepOverTwoForwards: median(cpuSteps) / median(cpuPairs) },
  pytorch,
  pytorchOverStep: pytorch?.stepSeconds ? pytorch.stepSeconds / stepSeconds : null,
  targetPytorchOverStep: 2,
  steps, pairs,
}, null, 2));
