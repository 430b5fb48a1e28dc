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
//   zo_step          whole ZO steps on device models (loadModel(dir, {device: 'cuda:0'}), the transformer
//                    forward's CUDA twin), batch 16 x 256 tokens, every weight trainable, ZOSGD, in
//                    zo_step.models[]: a GPT-2-small-shaped random model (bench/gpt2.mjs) and an
//                    OPT-1.3B-shaped one (bench/opt.mjs; ZEROTH_BENCH_ZO=gpt2 or =opt runs one), in bf16
//                    when loadModel takes {dtype: 'bf16'}, else f32 (dtypeFallback says why). Each:
//                    seconds per step against two plain losses in the same run (stepOverTwoForwards;
//                    the probes are fused perturbed forwards, so ~1.0-1.1 is the target); the PyTorch
//                    MeZO step on the same shape and dtype (bench/cuda_mezo_ref.py, a child process:
//                    pytorch{step_s, forward_s, perturb_s, ...}, pytorchOverStep = its step / ours, the
//                    issue's target >= 1.5; with our f32 fallback also pytorchBf16OverStep); memory:
//                    the device allocator's peak over 3 ZO steps against its peak over plain losses of
//                    the same model and batch (memoryStats({device, resetPeak}); memoryRatio, target
//                    <= 1.1 + a few MiB). zo_step's top-level keys are the GPT-2 entry, as before.
//                    Needs dist/ (npm run build) and, for the anchor, python3 with torch + CUDA
//                    (ZEROTH_PYTHON picks the interpreter).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const addonPath = process.env.ZEROTH_ADDON_PATH ?? join(root, 'build', 'Release', 'zeroth.node');

const skip = (why) => {
  console.error(`bench/cuda: ${why}`);
  console.log(JSON.stringify({ skipped: 'no CUDA device' }));
  process.exit(0);
};

// No addon built at all is a machine without the CUDA build too: the same skip, with the reason.
let native;
try {
  native = process.env.ZEROTH_ADDON_PATH ? require(process.env.ZEROTH_ADDON_PATH) : require('node-gyp-build')(root);
} catch (e) {
  skip(`the native addon did not load (${e.message.split('\n')[0]})`);
}

const build = native.buildInfo();
const gpus = native.devices().filter((d) => d.type === 'cuda');
if (!build.cuda) skip('this build of zeroth has no CUDA backend');
if (gpus.length === 0) skip('no usable CUDA device or driver on this machine');

// ZEROTH_BENCH_CUDA picks the parts (default gemm,int4,zo): =zo runs only the ZO steps, when the
// GEMM and int4 figures came from tools/gpu-check.sh's bench_* stages already.
const parts = (process.env.ZEROTH_BENCH_CUDA ?? 'gemm,int4,zo').split(',');
const result = parts.includes('gemm') ? kernelFigures() : {};

// The GEMM figures (test_cuda_gemm --bench), the int4 kernels' and torch.matmul's on the same shapes.
function kernelFigures() {
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
  if (parts.includes('int4') && existsSync(int4Program)) {
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
  return result;
}

// ZO steps on device models: the CPU writes the random checkpoint, loadModel uploads it.
if (parts.includes('zo')) result.zo_step = await zoSteps().catch((e) => ({ error: `${e.code ?? ''} ${e.message}`.trim() }));

async function zoSteps() {
  const dist = join(root, 'dist', 'index.js');
  if (!existsSync(dist)) return { skipped: 'dist/ is not built (npm run build)' };
  const zeroth = await import(dist);
  // ZEROTH_BENCH_ZO=gpt2 (or opt) runs one shape only, when device time is short.
  const only = (process.env.ZEROTH_BENCH_ZO ?? 'gpt2,opt').split(',');
  const specs = [
    { family: 'gpt2', layers: 12, dim: 768, heads: 12, ffn: 3072, vocab: 50257, reps: 5 },
    { family: 'opt', layers: 24, dim: 2048, heads: 32, ffn: 8192, vocab: 50272, reps: 3 },
  ].filter((s) => only.includes(s.family));
  const models = [];
  for (const spec of specs) {
    models.push(await zoStep(zeroth, spec).catch((e) => ({ family: spec.family, error: `${e.code ?? ''} ${e.message}`.trim() })));
  }
  // The GPT-2 entry's keys stay at the top level, as before the OPT shape was added.
  return { ...(models.find((m) => m.family === 'gpt2') ?? {}), models };
}

// The random checkpoint of a shape, in `dir`: GPT-2 through modelFromWeights + save (124M
// weights), OPT written tensor by tensor (bench/opt.mjs: 1.3B weights never in memory at once).
async function writeCheckpoint(zeroth, spec, dir) {
  if (spec.family === 'gpt2') {
    const { randomGpt2 } = await import('./gpt2.mjs');
    const built = await randomGpt2(zeroth, { L: spec.layers, D: spec.dim, H: spec.heads, V: spec.vocab });
    await built.model.save(dir);
    built.model.dispose();
    return built.params;
  }
  const { writeRandomOpt } = await import('./opt.mjs');
  return writeRandomOpt(dir, { L: spec.layers, D: spec.dim, H: spec.heads, F: spec.ffn, V: spec.vocab }).params;
}

// bf16 when loadModel takes {dtype: 'bf16'} on the device; else f32, with the refusal kept.
async function loadOnDevice(zeroth, dir) {
  try {
    return { model: await zeroth.loadModel(dir, { device: 'cuda:0', dtype: 'bf16' }), dtype: 'bf16' };
  } catch (e) {
    if (e.code !== 'E_UNSUPPORTED' && e.code !== 'E_INVALID_ARG') throw e;
    return { model: await zeroth.loadModel(dir, { device: 'cuda:0' }), dtype: 'f32', dtypeFallback: `${e.code}: ${e.message}` };
  }
}

// The PyTorch MeZO step (bench/cuda_mezo_ref.py) on the same shape in a child process: its
// key=value line as numbers, or {unavailable}.
function pytorchMezo(spec, dtype, B, T) {
  const args = [join(root, 'bench', 'cuda_mezo_ref.py'), '--device', 'cuda', '--dtype', dtype, '--family', spec.family,
    '--layers', spec.layers, '--dim', spec.dim, '--heads', spec.heads, '--ffn', spec.ffn, '--vocab', spec.vocab,
    '--batch', B, '--seq', T, '--steps', 3].map(String);
  const r = spawnSync(process.env.ZEROTH_PYTHON ?? 'python3', args, { encoding: 'utf8', timeout: 900_000 });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.includes('step_s=')) {
    return { unavailable: `${r.stderr ?? ''}${r.error ? r.error.message : ''}`.trim().split('\n').pop() || `exit ${r.status}` };
  }
  const out = {};
  for (const kv of line.split(/\s+/)) {
    const [k, v] = kv.split('=');
    out[k] = v !== '' && Number.isFinite(Number(v)) ? Number(v) : v;
  }
  return out;
}

async function zoStep(zeroth, spec) {
  const { tokenBatch } = await import('./gpt2.mjs');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const B = 16, T = 256, V = spec.vocab, device = 'cuda:0';
  const dir = mkdtempSync(join(tmpdir(), 'zeroth-bench-cuda-'));
  let model, opt, batch;
  try {
    const params = await writeCheckpoint(zeroth, spec, dir);
    const loaded = await loadOnDevice(zeroth, dir);
    model = loaded.model;
    rmSync(dir, { recursive: true, force: true }); // the device holds the weights now
    batch = tokenBatch(zeroth, B, T, V);
    const now = () => performance.now() / 1e3;
    const loss = async () => (await model.loss(batch.inputIds, { attentionMask: batch.attentionMask })).dispose();
    const stats = (resetPeak) => zeroth.memoryStats({ device, resetPeak });

    // (d) Peak device memory: plain losses before any optimizer exists, then ZO steps with the
    // optimizer's state; the same model and batch, warmed up first (workspace, size classes).
    await loss();
    let memory;
    try {
      const weights = stats(true).allocatedBytes;
      await loss();
      await loss();
      const inference = stats(true).peakAllocatedBytes;
      opt = new zeroth.optim.ZOSGD(model, { lr: 1e-6, eps: 1e-3, seed: 1 });
      for (let i = 0; i < 3; i++) await opt.step(batch);
      const fineTune = stats(false).peakAllocatedBytes;
      memory = { weightsBytes: weights, inferencePeakBytes: inference, fineTunePeakBytes: fineTune,
        memoryRatio: fineTune / inference, extraMiB: (fineTune - inference) / 2 ** 20 };
    } catch (e) {
      memory = { error: `${e.code ?? ''} ${e.message}`.trim() };
    }
    opt ??= new zeroth.optim.ZOSGD(model, { lr: 1e-6, eps: 1e-3, seed: 1 });
    await opt.step(batch); // warm-up (again, when the memory figures failed)

    const steps = [], pairs = [];
    for (let r = 0; r < spec.reps; r++) {
      let t0 = now();
      await opt.step(batch);
      steps.push(now() - t0);
      t0 = now();
      await loss();
      await loss();
      pairs.push(now() - t0);
    }
    const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
    const stepSeconds = median(steps), twoForwardsSeconds = median(pairs);
    opt.dispose();
    model.dispose();
    batch.inputIds.dispose();
    batch.attentionMask.dispose();
    opt = model = batch = undefined;

    // The anchor runs after our model is freed (the allocator keeps its blocks cached: both fit).
    const entry = {
      family: spec.family, device, dtype: loaded.dtype,
      shape: { layers: spec.layers, dim: spec.dim, heads: spec.heads, ffn: spec.ffn, vocab: V, batch: B, seq: T, params, trainable: 'full' },
      stepSeconds, twoForwardsSeconds, stepOverTwoForwards: stepSeconds / twoForwardsSeconds, steps, pairs, memory,
    };
    if (loaded.dtypeFallback) entry.dtypeFallback = loaded.dtypeFallback;
    entry.pytorch = pytorchMezo(spec, loaded.dtype, B, T);
    if (entry.pytorch.step_s) {
      entry.pytorchOverStep = entry.pytorch.step_s / stepSeconds; // the target: >= 1.5
      if (entry.pytorch.infer_peak_mem_bytes > 0) entry.pytorchMemoryRatio = entry.pytorch.step_peak_mem_bytes / entry.pytorch.infer_peak_mem_bytes;
    }
    // When ours ran in f32, PyTorch in bf16 too: the anchor the target is set against.
    if (loaded.dtype !== 'bf16') {
      entry.pytorchBf16 = pytorchMezo(spec, 'bf16', B, T);
      if (entry.pytorchBf16.step_s) entry.pytorchBf16OverStep = entry.pytorchBf16.step_s / stepSeconds;
    }
    return entry;
  } finally {
    opt?.dispose();
    model?.dispose();
    batch?.inputIds.dispose();
    batch?.attentionMask.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(JSON.stringify(result, null, 2));
