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

const REPS = Math.max(1, Number(process.env.ZEROTH_BENCH_REPS ?? 3));
const L = 12, D = 768, H = 12, V = 50257, P = 1024, B = 4, T = 128;
const now = () => Number(process.hrtime.bigint()) / 1e9;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Random weights, uniform in ±0.05 (norm scales 1 ± 0.05): the values do not change speed.
let state = 0x9e3779b9;
function weight(shape, around = 0) {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    a[i] = around + (state / 4294967296 - 0.5) * 0.1;
  }
  return zeroth.tensor(a, { shape });
}
function gpt2Weights() {
  const w = { 'transformer.wte.weight': weight([V, D]), 'transformer.wpe.weight': weight([P, D]),
    'transformer.ln_f.weight': weight([D], 1), 'transformer.ln_f.bias': weight([D]) };
  for (let l = 0; l < L; l++) {
    const h = `transformer.h.${l}.`;
    Object.assign(w, {
      [h + 'ln_1.weight']: weight([D], 1), [h + 'ln_1.bias']: weight([D]),
      [h + 'attn.c_attn.weight']: weight([D, 3 * D]), [h + 'attn.c_attn.bias']: weight([3 * D]),
      [h + 'attn.c_proj.weight']: weight([D, D]), [h + 'attn.c_proj.bias']: weight([D]),
      [h + 'ln_2.weight']: weight([D], 1), [h + 'ln_2.bias']: weight([D]),
      [h + 'mlp.c_fc.weight']: weight([D, 4 * D]), [h + 'mlp.c_fc.bias']: weight([4 * D]),
      [h + 'mlp.c_proj.weight']: weight([4 * D, D]), [h + 'mlp.c_proj.bias']: weight([D]),
    });
  }
  return w;
}
const config = { model_type: 'gpt2', vocab_size: V, n_positions: P, n_embd: D, n_layer: L, n_head: H,
  activation_function: 'gelu_new', layer_norm_epsilon: 1e-5 };

const weights = gpt2Weights();
const model = await zeroth.modelFromWeights(config, weights);
let params = 0;
for (const t of Object.values(weights)) { params += t.numel; t.dispose(); }

const ids = zeroth.tensor(Int32Array.from({ length: B * T }, (_, i) => (i * 7919 + 13) % V), { dtype: 'i32', shape: [B, T] });
const mask = zeroth.ones([B, T], { dtype: 'i32' });
const opt = new zeroth.optim.ZOSGD(model, { lr: 1e-6, eps: 1e-3, seed: 1 });

async function plainLoss() {
  const t0 = now();
  (await model.loss(ids, { attentionMask: mask })).dispose();
  return now() - t0;
}
// Warm-up: pages, thread pool, packing buffers.
await plainLoss();
await opt.step({ inputIds: ids, attentionMask: mask });

// Interleave steps and forward pairs so a burst on a shared machine hits both alike.
const steps = [];
const pairs = [];
for (let r = 0; r < REPS; r++) {
  const t0 = now();
  await opt.step({ inputIds: ids, attentionMask: mask });
  steps.push(now() - t0);
  pairs.push((await plainLoss()) + (await plainLoss()));
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
  pytorch,
  pytorchOverStep: pytorch?.stepSeconds ? pytorch.stepSeconds / stepSeconds : null,
  targetPytorchOverStep: 2,
  steps, pairs,
}, null, 2));
