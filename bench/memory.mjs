// bench/memory.mjs — peak resident memory of ZO fine-tuning against inference of the same model
// and batch (GPT-2-small shape, random f32 weights, batch 4 × 128, full parameters). Each mode
// runs in its own child process, which reports its peak RSS (VmHWM of /proc/self/status). Prints
// one JSON object.
//
//   node bench/memory.mjs          (ZEROTH_BENCH_STEPS=3 steps / forward pairs per mode)
//
// Figures, all measured in this run:
//   peak              VmHWM of the whole child process (model build included)
//   workloadPeak      VmHWM after the model is built, reset through /proc/self/clear_refs, so it
//                     counts only what the steps (or forwards) add on top of the weights
//   ratio             finetune / inference of workloadPeak (target <= 1.1); peakRatio the same
//                     for the whole-process peak (which the random-weight build in JS dominates)
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const STEPS = Math.max(1, Number(process.env.ZEROTH_BENCH_STEPS ?? 3));
const mib = (kb) => kb / 1024;

function statusKb(field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function child(mode) {
  // The same random GPT-2-small weights as bench/zo-step.mjs (importing that file would run it).
  const { join, dirname } = await import('node:path');
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const zeroth = await import(join(root, 'dist', 'index.js'));
  const L = 12, D = 768, H = 12, V = 50257, P = 1024, B = 4, T = 128;
  let state = 0x9e3779b9;
  const weight = (shape, around = 0) => {
    const a = new Float32Array(shape.reduce((x, y) => x * y, 1));
    for (let i = 0; i < a.length; i++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      a[i] = around + (state / 4294967296 - 0.5) * 0.1;
    }
    return zeroth.tensor(a, { shape });
  };
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
  const model = await zeroth.modelFromWeights({ model_type: 'gpt2', vocab_size: V, n_positions: P, n_embd: D, n_layer: L,
    n_head: H, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5 }, w);
  for (const t of Object.values(w)) t.dispose();
  globalThis.gc?.();
  const ids = zeroth.tensor(Int32Array.from({ length: B * T }, (_, i) => (i * 7919 + 13) % V), { dtype: 'i32', shape: [B, T] });
  const mask = zeroth.ones([B, T], { dtype: 'i32' });
  const afterBuild = statusKb('VmRSS');
  const buildPeak = statusKb('VmHWM');
  writeFileSync('/proc/self/clear_refs', '5'); // reset VmHWM to the current RSS
  if (mode === 'finetune') {
    const opt = new zeroth.optim.ZOSGD(model, { lr: 1e-6, eps: 1e-3, seed: 1 });
    for (let s = 0; s < STEPS; s++) await opt.step({ inputIds: ids, attentionMask: mask });
    opt.dispose();
  } else {
    // The same number of forwards as the steps: two per step.
    for (let s = 0; s < 2 * STEPS; s++) (await model.loss(ids, { attentionMask: mask })).dispose();
  }
  const workloadPeak = statusKb('VmHWM');
  process.stdout.write(JSON.stringify({ mode, afterBuildKb: afterBuild, peakKb: Math.max(buildPeak, workloadPeak), workloadPeakKb: workloadPeak }));
}

if (process.argv[2] === '--child') {
  await child(process.argv[3]);
} else {
  const results = {};
  for (const mode of ['inference', 'finetune']) {
    const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', mode], { encoding: 'utf8', env: process.env });
    if (r.status !== 0) throw new Error(`${mode} child failed: ${r.stderr}`);
    results[mode] = JSON.parse(r.stdout);
  }
  const inf = results.inference;
  const ft = results.finetune;
  console.log(JSON.stringify({
    bench: 'memory',
    shape: { layers: 12, dim: 768, heads: 12, vocab: 50257, batch: 4, seq: 128, dtype: 'f32', trainable: 'full' },
    steps: STEPS,
    inference: { afterBuildMiB: mib(inf.afterBuildKb), peakMiB: mib(inf.peakKb), workloadPeakMiB: mib(inf.workloadPeakKb) },
    finetune: { afterBuildMiB: mib(ft.afterBuildKb), peakMiB: mib(ft.peakKb), workloadPeakMiB: mib(ft.workloadPeakKb) },
    ratio: ft.workloadPeakKb / inf.workloadPeakKb,
    peakRatio: ft.peakKb / inf.peakKb,
    target: 1.1,
  }, null, 2));
}
