// bench/int4.mjs — int4 GEMV (one token: y = W·x, W [out, in] int4, group 128, f32 scales and zeros)
// against the machine's copy bandwidth and an f32 GEMV of the same shape, all in one run. Prints
// one JSON object.
//
//   node bench/int4.mjs        (ZEROTH_BENCH_THREADS=2, ZEROTH_BENCH_REPS=20, ZEROTH_BENCH_ROUNDS=5)
//
// Every figure is the fastest over ROUNDS rounds; a round measures int4, the copies and the plain
// f32 GEMV back to back, so a burst of load from other processes hits all of them alike instead of
// whichever happened to run during it (on a shared 2-core machine single measurements of the same
// kernel vary by 2x). fractionOfCopyPerRound / speedupVsF32PerRound: the same ratios within each
// round, to show the spread.
//
// Per shape (4096 x 4096 and 11008 x 4096 / 4096 x 11008: out x in):
//   int4            benchInt4Gemv: fastest of REPS calls of the fused GEMV, timed in native code.
//                   weightBytesPerSec = packed int4 code bytes / seconds (scales+zeros add 1/16 more
//                   bytes at group 128 and f32 params; reported as scaleBytes, not counted).
//   int8            the same for per-channel int8 weights (one byte per weight).
//   copyInt4Bytes   benchCopy: a multithreaded memcpy of a buffer as large as the int4 codes;
//                   bytesPerSec = buffer bytes / seconds (bytes read; the copy also writes as many).
//   copyF32Bytes    the same for a buffer as large as the f32 weights (the f32 GEMV's traffic).
//   f32             benchF32Gemv 'plain' (a SIMD dot-product GEMV, int4_gemm_f32.cpp) and 'packed'
//                   (zeroth's gemm_f32 with M = 1, which packs W every call); the faster one is the
//                   reference for speedupVsF32.
//   fractionOfCopy  int4 weightBytesPerSec / copyInt4Bytes bytesPerSec (target >= 0.8).
//   speedupVsF32    f32 seconds / int4 seconds (target >= 5).
// A 4096 x 4096 int4 weight is 8 MiB: it may sit in the last-level cache between calls, as may the
// copy buffer of the same size; both are measured the same way, so the ratio compares like with
// like. loadAverage (os.loadavg() before and after) tells how much other processes took.
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const native = process.env.ZEROTH_ADDON_PATH ? require(process.env.ZEROTH_ADDON_PATH) : require('node-gyp-build')(root);

const THREADS = Number(process.env.ZEROTH_BENCH_THREADS ?? 2);
const REPS = Math.max(1, Number(process.env.ZEROTH_BENCH_REPS ?? 20));
const ROUNDS = Math.max(1, Number(process.env.ZEROTH_BENCH_ROUNDS ?? 5));
native.setThreads(THREADS);

const load0 = loadavg().map((x) => +x.toFixed(2));
const rate = (bytes, s) => +(bytes / s / 1e9).toFixed(2); // GB/s
const fastest = (a, b) => (a === undefined || b.seconds < a.seconds ? b : a);

function shape(out, inn) {
  let int4, copy4, f32Plain, copy32;
  const fractionOfCopyPerRound = [], speedupVsF32PerRound = [];
  for (let round = 0; round < ROUNDS; ++round) {
    const i4 = native.benchInt4Gemv(out, inn, REPS, { bits: 4, groupSize: 128 });
    const c4 = { seconds: native.benchCopy(i4.weightBytes, REPS) };
    const fp = native.benchF32Gemv(out, inn, Math.max(3, REPS >> 2), 'plain');
    const c32 = { seconds: native.benchCopy(fp.weightBytes, Math.max(3, REPS >> 2)) };
    fractionOfCopyPerRound.push(+(c4.seconds / i4.seconds).toFixed(3));
    speedupVsF32PerRound.push(+(fp.seconds / i4.seconds).toFixed(2));
    int4 = fastest(int4, i4);
    copy4 = fastest(copy4, c4);
    f32Plain = fastest(f32Plain, fp);
    copy32 = fastest(copy32, c32);
  }
  const int8 = native.benchInt4Gemv(out, inn, REPS, { bits: 8 });
  const f32Packed = native.benchF32Gemv(out, inn, 3, 'packed');
  const f32Best = Math.min(f32Plain.seconds, f32Packed.seconds);
  const int4Rate = int4.weightBytes / int4.seconds;
  return {
    out,
    in: inn,
    int4: {
      kernel: int4.kernel,
      seconds: +int4.seconds.toPrecision(4),
      weightBytes: int4.weightBytes,
      scaleBytes: int4.scaleBytes,
      weightGBPerSec: rate(int4.weightBytes, int4.seconds),
    },
    int8: { kernel: int8.kernel, seconds: +int8.seconds.toPrecision(4), weightGBPerSec: rate(int8.weightBytes, int8.seconds) },
    copyInt4Bytes: { bytes: int4.weightBytes, seconds: +copy4.seconds.toPrecision(4), GBPerSec: rate(int4.weightBytes, copy4.seconds) },
    copyF32Bytes: { bytes: f32Plain.weightBytes, seconds: +copy32.seconds.toPrecision(4), GBPerSec: rate(f32Plain.weightBytes, copy32.seconds) },
    f32: {
      plainSeconds: +f32Plain.seconds.toPrecision(4),
      plainWeightGBPerSec: rate(f32Plain.weightBytes, f32Plain.seconds),
      packedGemmSeconds: +f32Packed.seconds.toPrecision(4),
    },
    fractionOfCopy: +(int4Rate / (int4.weightBytes / copy4.seconds)).toFixed(3),
    fractionOfF32Copy: +(int4Rate / (f32Plain.weightBytes / copy32.seconds)).toFixed(3),
    speedupVsF32: +(f32Best / int4.seconds).toFixed(2),
    fractionOfCopyPerRound,
    speedupVsF32PerRound,
  };
}

const shapes = [shape(4096, 4096), shape(11008, 4096), shape(4096, 11008)];
console.log(
  JSON.stringify(
    {
      bench: 'int4-gemv',
      threads: THREADS,
      reps: REPS,
      rounds: ROUNDS,
      groupSize: 128,
      shapes,
      targets: { fractionOfCopy: 0.8, speedupVsF32: 5 },
      loadAverage: { before: load0, after: loadavg().map((x) => +x.toFixed(2)) },
    },
    null,
    2,
  ),
);
