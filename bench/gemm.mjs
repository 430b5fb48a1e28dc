// bench/gemm.mjs — GFLOP/s of zeroth's packed f32 GEMM against the machine's measured peak and a
// naive triple loop, all in one run. Prints one JSON object.
//
//   node bench/gemm.mjs        (ZEROTH_BENCH_THREADS=2, ZEROTH_BENCH_REPS=5 by default)
//
// Figures (2·M·N·K flops per call, the fastest of REPS calls timed in native code):
//   peak            benchPeakFlops: register-only FMA chains on every thread, at the best SIMD level;
//                   measured before and after the GEMMs, the larger one is the reference
//   square          M = N = K in 256, 512, 1024, 2048 (B stored [K, N])
//   llm             M x K x N shapes of a GPT-2-small forward at 512 tokens, with the weight stored
//                   [N, K] (nn.Linear, transB) and [K, N] (Conv1D), and transB with a perturbation
//                   descriptor (scale·z drawn while packing the weight)
//   naive           the plain i-j-k loop (double accumulator), only at 256 and 512 (nothing is
//                   extrapolated to larger sizes)
// fractionOfPeak = GFLOP/s / peak GFLOP/s, both wall-clock rates on THREADS threads.
// perCpuSecond: the same work timed by process CPU time (all threads, only while scheduled), so
// it is the rate per dedicated core; fractionOfPeak there compares with the peak loop timed the
// same way. It is reported because shared machines (loadAverage: os.loadavg() at start and end)
// make the wall-clock figures low by the share other processes take; it ignores load imbalance
// between our threads (an idle thread sleeps and spends no CPU time).
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const native = process.env.ZEROTH_ADDON_PATH ? require(process.env.ZEROTH_ADDON_PATH) : require('node-gyp-build')(root);

const THREADS = Number(process.env.ZEROTH_BENCH_THREADS ?? 2);
const REPS = Math.max(1, Number(process.env.ZEROTH_BENCH_REPS ?? 5));
native.setThreads(THREADS);

const load0 = loadavg().map((x) => +x.toFixed(2));
const peakBefore = native.benchPeakFlops(2.0);

const gflops = (M, N, K, s) => (2 * M * N * K) / s / 1e9;
function measure(M, N, K, variant, opts, reps = REPS) {
  const seconds = native.benchGemm(M, N, K, reps, variant, opts);
  const cpuSeconds = native.benchGemm(M, N, K, reps, variant, { ...opts, clock: 'cpu' });
  return {
    M,
    N,
    K,
    ...opts,
    seconds: +seconds.toPrecision(4),
    gflops: +gflops(M, N, K, seconds).toFixed(1),
    cpuSeconds: +cpuSeconds.toPrecision(4),
    gflopsPerCpuSecond: +gflops(M, N, K, cpuSeconds).toFixed(1),
  };
}

const square = [256, 512, 1024, 2048].map((n) => measure(n, n, n, 'packed', {}, n >= 2048 ? 3 : REPS));
const llmShapes = [
  [512, 768, 3072], // M x K x N: MLP up-projection
  [512, 3072, 768], // MLP down-projection
  [512, 768, 2304], // fused QKV projection
  [512, 768, 50257], // LM head
];
const llm = [];
for (const [M, K, N] of llmShapes) {
  const reps = N > 10000 ? 3 : REPS;
  llm.push({ shape: `${M}x${K}x${N}`, weight: '[N,K] transB', ...measure(M, N, K, 'packed', { transB: true }, reps) });
  llm.push({ shape: `${M}x${K}x${N}`, weight: '[K,N]', ...measure(M, N, K, 'packed', {}, reps) });
  llm.push({
    shape: `${M}x${K}x${N}`,
    weight: '[N,K] transB, perturbed',
    ...measure(M, N, K, 'packed', { transB: true, perturb: true }, reps),
  });
}
const naive = [256, 512].map((n) => measure(n, n, n, 'naive', {}, 1));

const peakAfter = native.benchPeakFlops(2.0);
const peak = Math.max(peakBefore.gflops, peakAfter.gflops);
const peakPerCpuSecond = Math.max(peakBefore.gflopsPerCpuSecond, peakAfter.gflopsPerCpuSecond);
const withFraction = (r) => ({
  ...r,
  fractionOfPeak: +(r.gflops / peak).toFixed(3),
  perCpuSecondFractionOfPeak: +(r.gflopsPerCpuSecond / peakPerCpuSecond).toFixed(3),
});
const packedAt = (n) => square.find((r) => r.M === n).gflops;

console.log(
  JSON.stringify(
    {
      benchmark: 'gemm_f32',
      kernel: native.gemmInfo().kernel,
      threads: THREADS,
      reps: REPS,
      loadAverage: { start: load0, end: loadavg().map((x) => +x.toFixed(2)) },
      peak: {
        gflops: +peak.toFixed(1),
        before: +peakBefore.gflops.toFixed(1),
        after: +peakAfter.gflops.toFixed(1),
        gflopsPerCpuSecond: +peakPerCpuSecond.toFixed(1),
        simd: peakBefore.simd,
        threads: peakBefore.threads,
      },
      square: square.map(withFraction),
      llm: llm.map(withFraction),
      naive: naive.map((r) => ({ ...withFraction(r), packedSpeedup: +(packedAt(r.M) / r.gflops).toFixed(1) })),
    },
    null,
    2,
  ),
);
