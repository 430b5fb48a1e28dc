// bench/perturb.mjs — throughput of the fused perturbation kernels against memory bandwidth
// and against the naive two-pass way, measured in the same run. Prints one JSON object.
//
//   node bench/perturb.mjs            (ZEROTH_BENCH_N=1e8 elements by default, f32)
//
// Figures, each the best of REPS runs over the same N f32 weights (bytes = 4·N read + 4·N written):
//   copy.buffer       Buffer.copy of 4·N bytes between two warmed buffers (one thread, memcpy)
//   copy.tensorCopy   native tensorCopy of the weight tensor (allocates its destination)
//   fused.<dist>      perturbTo clean -> +eps, perturbTo +eps -> -eps (journal), restoreAndUpdate
//   naive.<dist>      fillZ(N) into a fresh Float32Array, then a JS loop w[i] += eps·z[i]
//                     (the generate-then-add way: two passes over memory plus the z buffer)
//   fillZPerCore      z values per second on one thread (fillZ runs on the calling thread): 2^15
//                     values per call, best of 1000 calls. Small calls keep the returned
//                     Float32Array in memory the allocator reuses (a fresh 4 MiB array costs more
//                     in page faults than its values here); the N-API call and the allocation
//                     are included, so the kernel alone is faster.
// Ratios: fused bandwidth / best copy bandwidth, and naive time / fused perturbTo time.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const native = process.env.ZEROTH_ADDON_PATH ? require(process.env.ZEROTH_ADDON_PATH) : require('node-gyp-build')(root);

const N = Math.round(Number(process.env.ZEROTH_BENCH_N ?? 1e8));
const REPS = Math.max(1, Number(process.env.ZEROTH_BENCH_REPS ?? 3));
const cpu = { type: 'cpu', index: 0 };
const bytesPerPass = 8 * N; // 4·N read + 4·N written

const now = () => Number(process.hrtime.bigint()) / 1e9;
async function best(fn) {
  let t = Infinity;
  for (let r = 0; r < REPS; r++) {
    const t0 = now();
    await fn(r);
    t = Math.min(t, now() - t0);
  }
  return t;
}
const figure = (seconds) => ({
  seconds: +seconds.toFixed(5),
  elementsPerSecond: +(N / seconds).toExponential(3),
  GBps: +(bytesPerPass / seconds / 1e9).toFixed(2),
});

// Weights: standard normals (the spread of real weights does not matter for speed).
const init = native.fillZ(1n, 1n, 'normal', 0n, N);
const weights = native.tensorFromData(new Uint8Array(init.buffer), 'f32', [N], cpu);
const stream = native.streamId('bench.weight');
const targets = [{ tensor: weights, stream }];
const eps = 1e-3;

// (a) memory bandwidth: a plain copy of the same bytes.
const src = Buffer.from(init.buffer);
const dst = Buffer.alloc(src.length);
src.copy(dst); // warm both (page faults out of the timing)
const copyBuffer = await best(() => src.copy(dst));
const copyTensor = await best(() => native.tensorDispose(native.tensorCopy(weights, 'f32', cpu)));
const bestCopy = Math.min(copyBuffer, copyTensor);

const result = {
  bench: 'perturb',
  elements: N,
  dtype: 'f32',
  reps: REPS,
  simd: native.setSimd(process.env.ZEROTH_SIMD ?? 'avx512'), // the best level the CPU allows, or ZEROTH_SIMD
  copy: { buffer: figure(copyBuffer), tensorCopy: figure(copyTensor) },
  fused: {},
  naive: {},
  ratios: {},
};

for (const dist of ['normal', 'rademacher']) {
  const journal = native.journalCreate();
  let seed = 100n;
  // Each kernel timed on its own: clean -> +eps, +eps -> -eps, restore with a small update.
  const times = { perturbTo: Infinity, perturbToFlip: Infinity, restoreAndUpdate: Infinity };
  let journalEntries = 0;
  for (let r = 0; r < REPS; r++, seed++) {
    let t0 = now();
    await native.perturbTo(targets, journal, seed, eps, dist);
    times.perturbTo = Math.min(times.perturbTo, now() - t0);
    t0 = now();
    await native.perturbTo(targets, journal, seed, -eps, dist);
    times.perturbToFlip = Math.min(times.perturbToFlip, now() - t0);
    journalEntries = native.journalEntryCount(journal);
    t0 = now();
    await native.restoreAndUpdate(targets, journal, { stepScale: 1e-6, decay: 0 });
    times.restoreAndUpdate = Math.min(times.restoreAndUpdate, now() - t0);
  }
  result.fused[dist] = {
    perturbTo: figure(times.perturbTo),
    perturbToFlip: figure(times.perturbToFlip),
    restoreAndUpdate: figure(times.restoreAndUpdate),
    journalEntries,
    journalFraction: +(journalEntries / N).toExponential(3),
  };

  // (b) naive: generate z into a buffer, then add it in a second pass.
  const w = new Float32Array(N);
  w.set(init);
  let fillSeconds = Infinity;
  const naive = await best(() => {
    const t0 = now();
    const z = native.fillZ(7n, stream, dist, 0n, N);
    fillSeconds = Math.min(fillSeconds, now() - t0);
    for (let i = 0; i < N; i++) w[i] += eps * z[i];
  });
  result.naive[dist] = { total: figure(naive), fillZOnly: figure(fillSeconds) };
  const M = 1 << 15;
  let perCall = Infinity;
  for (let r = 0; r < 1000; r++) {
    const t0 = now();
    native.fillZ(11n, stream, dist, BigInt(r * M), M);
    perCall = Math.min(perCall, now() - t0);
  }
  (result.fillZPerCore ??= {})[dist] = +(M / perCall).toExponential(3);
  result.ratios[dist] = {
    perturbToVsCopy: +(bestCopy / times.perturbTo).toFixed(3),
    perturbToFlipVsCopy: +(bestCopy / times.perturbToFlip).toFixed(3),
    restoreAndUpdateVsCopy: +(bestCopy / times.restoreAndUpdate).toFixed(3),
    naiveOverPerturbTo: +(naive / times.perturbTo).toFixed(2),
  };
}
result.targets = { fusedVsCopy: '>= 0.7', naiveOverFused: '>= 2' };
console.log(JSON.stringify(result, null, 2));
