// bench/generate.mjs — greedy generation of a GPT-2-small-shaped model (random weights, 12 layers,
// 768 wide, vocab 50257), f32 against int4, in tokens per second and resident memory. Each mode
// runs in its own child process, which reports its own memory. Prints one JSON object.
//
//   node bench/generate.mjs        (ZEROTH_BENCH_TOKENS=64 new tokens after a 32-token prompt, batch 1)
//
// Modes:
//   f32              the model as built
//   int4             every matrix int4 (group 128, asymmetric): block linear layers and the token
//                    embedding / tied LM head, as llama.cpp's 4-bit files do
//   int4-int8-embed  block layers int4, embedding / head int8 per row
//   int4-f32-embed   block layers int4, embedding and head left f32 (model.quantize's default)
// Figures per mode, all measured in this run:
//   tokensPerSecond  new tokens / seconds of one generate() call (KV cache), after a warm-up call
//   residentMiB      VmRSS once the model is ready (f32 weights freed and the allocator's cache
//                    trimmed with zeroth.trimMemory(), in every mode alike)
//   peakMiB          VmHWM during generation (reset through /proc/self/clear_refs once the model
//                    is ready): what serving the model takes, the model build excluded
// Targets (issue #8): int4 tokens/s >= 3x f32; int4 peak <= 0.3x f32.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { mib, runChild, statusKb } from './proc.mjs';

const TOKENS = Math.max(1, Number(process.env.ZEROTH_BENCH_TOKENS ?? 64));
const PROMPT = 32;

async function child(mode) {
  const { join, dirname } = await import('node:path');
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const zeroth = await import(join(root, 'dist', 'index.js'));
  const { randomGpt2 } = await import('./gpt2.mjs');
  const V = 50257;
  const { model } = await randomGpt2(zeroth, { L: 12, D: 768, H: 12, V, P: 1024 });
  if (mode === 'int4') await model.quantize({ bits: 4, groupSize: 128, embeddings: 4 });
  if (mode === 'int4-int8-embed') await model.quantize({ bits: 4, groupSize: 128, embeddings: 8 });
  if (mode === 'int4-f32-embed') await model.quantize({ bits: 4, groupSize: 128 });
  const prompt = zeroth.tensor(Int32Array.from({ length: PROMPT }, (_, i) => (i * 7919 + 13) % V), { dtype: 'i32', shape: [1, PROMPT] });
  (await model.generate(prompt, { maxNewTokens: 4 })).dispose(); // warm-up: workspace and KV cache buffers
  globalThis.gc?.();
  zeroth.trimMemory();
  const residentKb = statusKb('VmRSS');
  writeFileSync('/proc/self/clear_refs', '5'); // VmHWM := VmRSS
  const t0 = performance.now();
  const out = await model.generate(prompt, { maxNewTokens: TOKENS, eosTokenId: -1 });
  const seconds = (performance.now() - t0) / 1000;
  const tokens = [...out.toTypedArray()];
  out.dispose();
  const peakKb = statusKb('VmHWM');
  process.stdout.write(JSON.stringify({ mode, tokensPerSecond: TOKENS / seconds, seconds, residentKb, peakKb, weightBytes: model.weightBytes(), firstTokens: tokens.slice(0, 8) }));
}

if (process.argv[2] === '--child') {
  await child(process.argv[3]);
} else {
  const results = {};
  for (const mode of ['f32', 'int4', 'int4-int8-embed', 'int4-f32-embed']) {
    results[mode] = runChild(fileURLToPath(import.meta.url), mode);
  }
  const f32 = results.f32;
  const summary = (r) => ({
    tokensPerSecond: r.tokensPerSecond, residentMiB: mib(r.residentKb), peakMiB: mib(r.peakKb), weightMiB: r.weightBytes / 2 ** 20,
    speedup: r.tokensPerSecond / f32.tokensPerSecond, peakRatio: r.peakKb / f32.peakKb, firstTokens: r.firstTokens,
  });
  console.log(JSON.stringify({
    bench: 'generate',
    shape: { layers: 12, dim: 768, heads: 12, vocab: 50257, batch: 1, prompt: PROMPT, newTokens: TOKENS },
    f32: summary(f32),
    int4: summary(results.int4),
    int4Int8Embeddings: summary(results['int4-int8-embed']),
    int4F32Embeddings: summary(results['int4-f32-embed']),
    targets: { speedup: 3, peakRatio: 0.3 },
  }, null, 2));
}
