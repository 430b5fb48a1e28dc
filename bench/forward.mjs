// bench/forward.mjs — tokens/s of the CPU transformer forward on a GPT-2-small-shaped model
// (12 layers, 768 wide, 12 heads, vocab 50257, random f32 weights built in memory) at
// batch 4 × 128 tokens. Prints one JSON object.
//
//   node bench/forward.mjs            (ZEROTH_BENCH_REPS=3 timed runs each, best kept)
//
// Figures, all measured in this run:
//   forward            logits [4, 128, 50257]
//   loss               per-row losses (what a ZO step calls; the LM head runs in row chunks)
//   lossPerturbed      loss with every weight perturbed on the fly (MeZO's L(θ + εz), normal z)
//   gemm               GFLOP/s of the packed GEMM alone on the MLP shape 512×3072×768 — the
//                      reference: forwardGflops / gemm.gflops is the share of GEMM speed the
//                      whole forward keeps (attention, norms, GELU, embeddings included)
//   pytorch            the same forward in PyTorch (the anchors' GPT class from
//                      ../shared/anchors/mezo_ref.py, no_grad), when python3 has torch; else null
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const native = process.env.ZEROTH_ADDON_PATH ? require(process.env.ZEROTH_ADDON_PATH) : require('node-gyp-build')(root);

const REPS = Math.max(1, Number(process.env.ZEROTH_BENCH_REPS ?? 3));
const L = 12, D = 768, H = 12, V = 50257, P = 1024, B = 4, T = 128;
const cpu = { type: 'cpu', index: 0 };
const now = () => Number(process.hrtime.bigint()) / 1e9;
async function best(fn) {
  let t = Infinity;
  for (let r = 0; r < REPS; r++) {
    const t0 = now();
    const out = await fn();
    t = Math.min(t, now() - t0);
    native.tensorDispose(out);
  }
  return t;
}

// Random weights, uniform in ±0.05 (norm scales 1 ± 0.05): the spread does not change speed.
let seed = 0x9e3779b9;
function weight(shape, around = 0) {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    a[i] = around + (seed / 4294967296 - 0.5) * 0.1;
  }
  return native.tensorFromData(new Uint8Array(a.buffer), 'f32', shape, cpu);
}
const weights = { 'transformer.wte.weight': weight([V, D]), 'transformer.wpe.weight': weight([P, D]),
  'transformer.ln_f.weight': weight([D], 1), 'transformer.ln_f.bias': weight([D]) };
for (let l = 0; l < L; l++) {
  const h = `transformer.h.${l}.`;
  Object.assign(weights, {
    [h + 'ln_1.weight']: weight([D], 1), [h + 'ln_1.bias']: weight([D]),
    [h + 'attn.c_attn.weight']: weight([D, 3 * D]), [h + 'attn.c_attn.bias']: weight([3 * D]),
    [h + 'attn.c_proj.weight']: weight([D, D]), [h + 'attn.c_proj.bias']: weight([D]),
    [h + 'ln_2.weight']: weight([D], 1), [h + 'ln_2.bias']: weight([D]),
    [h + 'mlp.c_fc.weight']: weight([D, 4 * D]), [h + 'mlp.c_fc.bias']: weight([4 * D]),
    [h + 'mlp.c_proj.weight']: weight([4 * D, D]), [h + 'mlp.c_proj.bias']: weight([D]),
  });
}
const config = { family: 'gpt2', activation: 'gelu_tanh', nLayer: L, dModel: D, nHead: H, nKvHead: H, headDim: D / H,
  dFf: 4 * D, vocabSize: V, maxPositions: P, normEps: 1e-5, ropeTheta: 10000, preNorm: true, qkvBias: true,
  outBias: true, mlpBias: true, normAffine: true, tiedEmbeddings: true, wordEmbedProjDim: D, padTokenId: -1 };
const model = await native.modelCreate(config, weights);
for (const h of Object.values(weights)) native.tensorDispose(h); // the model keeps its own references

const idsData = Int32Array.from({ length: B * T }, (_, i) => (i * 7919 + 13) % V);
const ids = native.tensorFromData(new Uint8Array(idsData.buffer), 'i32', [B, T], cpu);
const perturbation = { seed: 1, scale: 1e-3, dist: 'normal', trainable: Object.keys(weights), streams: null };

native.tensorDispose(await native.modelForward(model, ids, null, null)); // warm-up (pages, pool)
// The GEMM reference is timed before and after the model (best kept): on a shared machine a
// single measurement can land in someone else's burst.
const gemmBefore = native.benchGemm(512, 3072, 768, REPS, 'packed', { transB: false });
const forward = await best(() => native.modelForward(model, ids, null, null));
const loss = await best(() => native.modelLoss(model, ids, null, null));
const lossPerturbed = await best(() => native.modelLoss(model, ids, null, perturbation));

// FLOPs of one forward: weight GEMMs, the LM head, and the two attention GEMMs per head
// (full T×T score matrices, as computed).
const tokens = B * T;
const weightFlops = 2 * tokens * L * (D * 3 * D + D * D + 2 * D * 4 * D);
const headFlops = 2 * tokens * D * V;
const attnFlops = L * B * H * 2 * (2 * T * T * (D / H));
const flops = weightFlops + headFlops + attnFlops;
const gemmSeconds = Math.min(gemmBefore, native.benchGemm(512, 3072, 768, REPS, 'packed', { transB: false }));
const gemmGflops = (2 * 512 * 3072 * 768) / gemmSeconds / 1e9;

// The PyTorch anchor, when available.
let pytorch = null;
const anchors = join(root, '..', 'shared', 'anchors');
if (existsSync(join(anchors, 'mezo_ref.py'))) {
  const code = `
import sys, time, torch
sys.path.insert(0, ${JSON.stringify(anchors)})
from mezo_ref import GPT
torch.set_num_threads(${native.gemmInfo().threads}); torch.manual_seed(0)
m = GPT(${L}, ${D}, ${H}, ${V}, ${P}).eval()
idx = torch.randint(0, ${V}, (${B}, ${T})); tgt = torch.randint(0, ${V}, (${B}, ${T}))
with torch.no_grad():
    m(idx, tgt); best = 1e9
    for _ in range(${REPS}):
        t = time.perf_counter(); m(idx, tgt); best = min(best, time.perf_counter() - t)
print(best)`;
  // The first python that has torch: ZEROTH_BENCH_PYTHON, python3 on PATH, the system's.
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE; // see ../shared/anchors/README.md: the anchor at its best
  delete env.OPENBLAS_L2_SIZE;
  let r;
  for (const py of [process.env.ZEROTH_BENCH_PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean)) {
    r = spawnSync(py, ['-c', code], { encoding: 'utf8', env });
    if (r.status === 0) break;
  }
  const s = Number.parseFloat(r.stdout);
  pytorch = r.status === 0 && Number.isFinite(s)
    ? { seconds: +s.toFixed(4), tokensPerSecond: Math.round(tokens / s), what: 'anchors GPT forward + loss, torch.no_grad' }
    : { unavailable: (r.stderr || r.error?.message || 'python3 failed').trim().split('\n').pop() };
}

const fig = (s) => ({ seconds: +s.toFixed(4), tokensPerSecond: Math.round(tokens / s) });
console.log(JSON.stringify({
  bench: 'forward',
  model: { layers: L, width: D, heads: H, vocab: V, batch: B, tokens: T, dtype: 'f32' },
  threads: native.gemmInfo().threads,
  gemmKernel: native.gemmInfo().kernel,
  forward: { ...fig(forward), gflops: +(flops / forward / 1e9).toFixed(1) },
  loss: fig(loss),
  lossPerturbed: fig(lossPerturbed),
  gemm: { shape: '512x3072x768', gflops: +gemmGflops.toFixed(1) },
  forwardShareOfGemmSpeed: +((flops / forward / 1e9) / gemmGflops).toFixed(3),
  pytorch,
  speedupVsPytorch: pytorch?.seconds ? +(pytorch.seconds / loss).toFixed(2) : null,
}, null, 2));
native.modelDispose(model);
native.tensorDispose(ids);
