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
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { mib, runChild, statusKb } from './proc.mjs';

const STEPS = Math.max(1, Number(process.env.ZEROTH_BENCH_STEPS ?? 3));

async function child(mode) {
  // The same random GPT-2-small model as bench/zo-step.mjs (bench/gpt2.mjs).
  const { join, dirname } = await import('node:path');
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const zeroth = await import(join(root, 'dist', 'index.js'));
  const { randomGpt2, tokenBatch } = await import('./gpt2.mjs');
  const L = 12, D = 768, H = 12, V = 50257, P = 1024, B = 4, T = 128;
  const { model } = await randomGpt2(zeroth, { L, D, H, V, P });
  globalThis.gc?.();
  const { inputIds: ids, attentionMask: mask } = tokenBatch(zeroth, B, T, V);
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
    results[mode] = runChild(fileURLToPath(import.meta.url), mode);
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
