// bench/cuda.mjs — the CUDA kernels against their references on the same GPU, in one run.
// Prints one JSON object; without a CUDA device (or a build without CUDA): {"skipped": "no CUDA device"}.
//
//   node bench/cuda.mjs       (ZEROTH_ADDON_PATH picks the build; test_cuda_gemm sits beside it)
//
// Figures:
//   gemm[]           y[M, N] = x[M, K]·Wᵀ for LLM shapes (M = batch 16 × 256 tokens; GPT-2 small,
//                    OPT-1.3B projections and the LM head): TFLOP/s of zeroth's f32 SIMT GEMM (plain,
//                    and with the weight perturbed in the tile load, normal and Rademacher z) and
//                    of its bf16 tensor-core GEMM, measured by `test_cuda_gemm --bench`
//   torch[]          torch.matmul on the same shapes and dtypes in a python3 child process (f32 with
//                    TF32 disabled, as zeroth's f32 path, and bf16), when torch with CUDA is installed
//   ratios[]         zeroth / torch per shape and dtype (the target: >= 0.7)
//   perturb          perturbTo / restoreAndUpdate on 1e8 f32 weights in GB/s (4 bytes read + 4
//                    written per element) against a device-to-device copy of the same tensor
//   int4             the quantized kernels of cuda/int4_gemm.cu, measured by `test_cuda_int4 --bench`
//                    (when built): int4 GEMV weight bytes/s (codes + scales) on 4096 x 4096,
//                    4096 x 11008 and 11008 x 4096 (out x in, group 128), plain and with perturbed
//                    scales, each weight streamed from HBM, against a device-to-device copy in the
//                    same run (gemv_vs_copy; the target: >= 0.7); the tiled GEMM's TFLOP/s
//   zo_step          a whole ZO step on a device model (loadModel(dir, {device: 'cuda'}), the
//                    transformer forward's CUDA twin): a GPT-2-small-shaped random model (bench/gpt2.mjs),
//                    batch 16 x 256 tokens, every weight trainable, ZOSGD: seconds per step against two
//                    plain losses on the same model in the same run (stepOverTwoForwards; the probes
//                    are fused perturbed forwards, so ~1.0-1.1 is the target). Needs dist/ (npm run build).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const addonPath = process.env.ZEROTH_ADDON_PATH ?? join(root, 'build', 'Release', 'zeroth.node');
const native = process.env.ZEROTH_ADDON_PATH ? require(process.env.ZEROTH_ADDON_PATH) : require('node-gyp-build')(root);

const skip = (why) => {
  console.error(`bench/cuda: ${why}`);
  console.log(JSON.stringify({ skipped: 'no CUDA device' }));
  process.exit(0);
};

const build = native.buildInfo();
const gpus = native.devices().filter((d) => d.type === 'cuda');
if (!build.cuda) skip('this build of zeroth has no CUDA backend');
if (gpus.length === 0) skip('no usable CUDA device or driver on this machine');

const program = join(dirname(addonPath), 'test_cuda_gemm');
if (!existsSync(program)) skip(`${program} is not built`);
const ours = spawnSync(program, ['--bench'], { encoding: 'utf8', timeout: 1_200_000 });
if (ours.status !== 0) {
  console.log(JSON.stringify({ error: 'test_cuda_gemm --bench failed', output: `${ours.stdout}${ours.stderr}` }));
  process.exit(1);
}
const result = JSON.parse(ours.stdout.trim().split('\n').pop());

// The quantized GEMV / GEMM: a separate program, so a failure there leaves the figures above.
let int4;
const int4Program = join(dirname(addonPath), 'test_cuda_int4');
if (existsSync(int4Program)) {
  const q = spawnSync(int4Program, ['--bench'], { encoding: 'utf8', timeout: 1_200_000 });
  if (q.status === 0) int4 = JSON.parse(q.stdout.trim().split('\n').pop());
  else int4 = { error: 'test_cuda_int4 --bench failed', output: `${q.stdout}${q.stderr}`.slice(-2000) };
}

// torch.matmul on the same shapes, timed with CUDA events (best of 5 after a warm-up).
const shapes = result.gemm.map((g) => [g.M, g.N, g.K]);
const py = `
import json, sys
try:
    import torch
except Exception as e:
    print(json.dumps({"unavailable": "torch not importable: %s" % e})); sys.exit(0)
if not torch.cuda.is_available():
    print(json.dumps({"unavailable": "torch has no CUDA device"})); sys.exit(0)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
out = []
for M, N, K in ${JSON.stringify(shapes)}:
    row = {"M": M, "N": N, "K": K}
    for name, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        x = torch.zeros(M, K, device="cuda", dtype=dt)
        w = torch.zeros(N, K, device="cuda", dtype=dt)
        torch.matmul(x, w.t()); torch.cuda.synchronize()
        best = 1e30
        for _ in range(5):
            a = torch.cuda.Event(enable_timing=True); b = torch.cuda.Event(enable_timing=True)
            a.record(); torch.matmul(x, w.t()); b.record(); torch.cuda.synchronize()
            best = min(best, a.elapsed_time(b) / 1e3)
        row[name + "_tflops"] = 2.0 * M * N * K / best / 1e12
        del x, w
    out.append(row)
print(json.dumps({"torch": torch.__version__, "gemm": out}))
`;
const ref = spawnSync('python3', ['-c', py], { encoding: 'utf8', timeout: 1_200_000 });
let torch = { unavailable: 'python3 did not run' };
if (ref.status === 0 && ref.stdout.trim()) torch = JSON.parse(ref.stdout.trim().split('\n').pop());
else if (ref.stderr) torch = { unavailable: ref.stderr.trim().split('\n').pop() };

result.torch = torch;
if (torch.gemm) {
  result.ratios = result.gemm.map((g, i) => ({
    M: g.M,
    N: g.N,
    K: g.K,
    f32_vs_torch: +(g.f32_tflops / torch.gemm[i].f32_tflops).toFixed(3),
    bf16_vs_torch: +(g.bf16_tflops / torch.gemm[i].bf16_tflops).toFixed(3),
  }));
}
if (int4) result.int4 = int4;

// A ZO step on a device model: the CPU builds and saves the random checkpoint, loadModel uploads it.
result.zo_step = await zoStep().catch((e) => ({ error: `${e.code ?? ''} ${e.message}`.trim() }));

async function zoStep() {
  const dist = join(root, 'dist', 'index.js');
  if (!existsSync(dist)) return { skipped: 'dist/ is not built (npm run build)' };
  const zeroth = await import(dist);
  const { randomGpt2, tokenBatch } = await import('./gpt2.mjs');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const B = 16, T = 256, V = 50257, REPS = 5;
  const dir = mkdtempSync(join(tmpdir(), 'zeroth-bench-cuda-'));
  try {
    const built = await randomGpt2(zeroth, { V });
    await built.model.save(dir);
    built.model.dispose();
    const model = await zeroth.loadModel(dir, { device: 'cuda:0' });
    const batch = tokenBatch(zeroth, B, T, V);
    const opt = new zeroth.optim.ZOSGD(model, { lr: 1e-6, eps: 1e-3, seed: 1 });
    const now = () => performance.now() / 1e3;
    const loss = async () => (await model.loss(batch.inputIds, { attentionMask: batch.attentionMask })).dispose();
    await loss();
    await opt.step(batch); // warm-up: allocator cache, workspace
    const steps = [], pairs = [];
    for (let r = 0; r < REPS; r++) {
      let t0 = now();
      await opt.step(batch);
      steps.push(now() - t0);
      t0 = now();
      await loss();
      await loss();
      pairs.push(now() - t0);
    }
    const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
    const params = built.params;
    opt.dispose();
    model.dispose();
    batch.inputIds.dispose();
    batch.attentionMask.dispose();
    return {
      device: 'cuda:0', shape: { layers: 12, dim: 768, heads: 12, vocab: V, batch: B, seq: T, params, trainable: 'full' },
      stepSeconds: median(steps), twoForwardsSeconds: median(pairs), stepOverTwoForwards: median(steps) / median(pairs),
      steps, pairs,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(JSON.stringify(result, null, 2));
