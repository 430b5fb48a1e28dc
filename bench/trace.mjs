// bench/trace.mjs — Hutchinson trace from forward passes: cost per probe and error vs exact.
// Prints one JSON object.
//
//   npm run build:ts && node bench/trace.mjs      (ZEROTH_DIST=<dir> to use another compiled dist)
//
// Figures, all measured in this run:
//   mlp.*        the 67-parameter tanh MLP of test/curvature_mlp.ts (same construction), whose
//                exact Hessian is formed here in float64 (central differences of the analytic
//                gradient). For probes = 1, 4, 16, 64: forwards per probe (target ≤ 2 + 1/probes)
//                and the relative error |estimate − tr(H)|/tr(H), mean over SEEDS runs, for f32
//                tensors (loss through zeroth.ops) and f64 host arrays (loss in JS), next to the
//                theoretical relative standard error sqrt(2·Σ_{i≠j}H_ij² / probes)/tr(H).
//   big.*        a closure MLP of a few million f32 parameters through zeroth.ops: seconds per
//                plain forward (median) and per probe (two perturbed forwards plus the journaled
//                perturb/restore passes), and their ratio.
//   pyhessian.*  when `python3 -c "import torch"` works: /work/shared/anchors/hessian_ref.py with
//                small shapes (PyHessian-style double backprop), its probe_per_forward next to ours.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(process.env.ZEROTH_DIST ?? join(here, '..', 'dist'));
const zeroth = await import(pathToFileURL(join(dist, 'index.js')).href);
const { hessianTrace } = await import(pathToFileURL(join(dist, 'curvature', 'index.js')).href);
const { ops } = zeroth;
const SEEDS = Number(process.env.ZEROTH_BENCH_SEEDS ?? 8);
const now = () => Number(process.hrtime.bigint()) / 1e9;

// ---- the small MLP with its exact Hessian ---------------------------------------------------

function lcg(seed) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}
const din = 4, hid = 8, dout = 3, B = 16;
const layout = [['l1.weight', [din, hid]], ['l1.bias', [hid]], ['l2.weight', [hid, dout]], ['l2.bias', [dout]]];
const r = lcg(7);
const X = Float64Array.from({ length: B * din }, () => r());
const T = Float64Array.from({ length: B * dout }, () => r());
const init = [];
for (const [, shape] of layout) {
  const scale = 1.5 / Math.sqrt(shape[0]);
  for (let i = 0; i < shape.reduce((a, b) => a * b, 1); i++) init.push(Math.fround(scale * r()));
}
const n = init.length;
function split(flat) {
  const out = {};
  let o = 0;
  for (const [name, shape] of layout) {
    const size = shape.reduce((a, b) => a * b, 1);
    out[name] = flat.subarray(o, o + size);
    o += size;
  }
  return out;
}
function lossAndGrad(flat, wantGrad) {
  const p = split(flat);
  const g = new Float64Array(n);
  const gp = split(g);
  const s = new Float64Array(hid), dS = new Float64Array(hid);
  let sum = 0;
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < hid; j++) {
      let a = p['l1.bias'][j];
      for (let i = 0; i < din; i++) a += X[b * din + i] * p['l1.weight'][i * hid + j];
      s[j] = Math.tanh(a);
    }
    dS.fill(0);
    for (let k = 0; k < dout; k++) {
      let y = p['l2.bias'][k];
      for (let j = 0; j < hid; j++) y += s[j] * p['l2.weight'][j * dout + k];
      const res = y - T[b * dout + k];
      sum += res * res;
      if (!wantGrad) continue;
      const G = (2 * res) / (B * dout);
      gp['l2.bias'][k] += G;
      for (let j = 0; j < hid; j++) {
        gp['l2.weight'][j * dout + k] += s[j] * G;
        dS[j] += G * p['l2.weight'][j * dout + k];
      }
    }
    if (!wantGrad) continue;
    for (let j = 0; j < hid; j++) {
      const dA = dS[j] * (1 - s[j] * s[j]);
      gp['l1.bias'][j] += dA;
      for (let i = 0; i < din; i++) gp['l1.weight'][i * hid + j] += X[b * din + i] * dA;
    }
  }
  return { loss: sum / (B * dout), grad: g };
}
const flat0 = Float64Array.from(init);
let exactTrace = 0, offSq = 0;
{
  const q = Float64Array.from(flat0);
  const h = 1e-5;
  const H = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    q[j] = flat0[j] + h;
    const gp = lossAndGrad(q, true).grad;
    q[j] = flat0[j] - h;
    const gm = lossAndGrad(q, true).grad;
    q[j] = flat0[j];
    for (let i = 0; i < n; i++) H[i * n + j] = (gp[i] - gm[i]) / (2 * h);
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const v = (H[i * n + j] + H[j * n + i]) / 2;
      if (i === j) exactTrace += v;
      else offSq += v * v;
    }
  }
}

function f32Target() {
  const views = split(flat0);
  const params = {};
  for (const [name, shape] of layout) params[name] = zeroth.tensor(Float32Array.from(views[name]), { shape });
  const x = zeroth.tensor(Float32Array.from(X), { shape: [B, din] });
  const t = zeroth.tensor(Float32Array.from(T), { shape: [B, dout] });
  const closure = () => {
    const tmp = [];
    const keep = (v) => (tmp.push(v), v);
    const y = keep(ops.add(keep(ops.matmul(keep(ops.tanh(keep(ops.add(keep(ops.matmul(x, params['l1.weight'])), params['l1.bias'])))), params['l2.weight'])), params['l2.bias']));
    const loss = ops.mse(y, t);
    for (const v of tmp) v.dispose();
    return loss;
  };
  return { params, closure, dispose: () => [...Object.values(params), x, t].forEach((v) => v.dispose()) };
}
function f64Target() {
  const flat = Float64Array.from(flat0);
  return { params: split(flat), closure: () => lossAndGrad(flat, false).loss, dispose: () => {} };
}

const mlp = { params: n, exactTrace, rows: [] };
for (const probes of [1, 4, 16, 64]) {
  const row = { probes, theoryRelStdErr: Math.sqrt((2 * offSq) / probes) / exactTrace };
  for (const [kind, make] of [['f32', f32Target], ['f64', f64Target]]) {
    let err = 0, forwards = 0;
    for (let s = 0; s < SEEDS; s++) {
      const t = make();
      const res = await hessianTrace(t.closure, { params: t.params, probes, seed: 1000 + s });
      t.dispose();
      err += Math.abs(res.trace - exactTrace) / exactTrace;
      forwards = res.forwards / res.probes;
    }
    row[kind] = { forwardsPerProbe: forwards, meanRelError: err / SEEDS };
  }
  row.forwardsTarget = 2 + 1 / probes;
  mlp.rows.push(row);
}

// ---- a closure model of a few million parameters --------------------------------------------

const BIG = { batch: 32, din: 1024, hidden: 2048, dout: 512 };
const big = {};
{
  const rb = lcg(3);
  const mk = (shape, scale) => zeroth.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => scale * rb()), { shape });
  const params = {
    'l1.weight': mk([BIG.din, BIG.hidden], 1 / Math.sqrt(BIG.din)), 'l1.bias': mk([BIG.hidden], 0.1),
    'l2.weight': mk([BIG.hidden, BIG.dout], 1 / Math.sqrt(BIG.hidden)), 'l2.bias': mk([BIG.dout], 0.1),
  };
  const x = mk([BIG.batch, BIG.din], 1);
  const t = mk([BIG.batch, BIG.dout], 1);
  const closure = () => {
    const tmp = [];
    const keep = (v) => (tmp.push(v), v);
    const y = keep(ops.add(keep(ops.matmul(keep(ops.tanh(keep(ops.add(keep(ops.matmul(x, params['l1.weight'])), params['l1.bias'])))), params['l2.weight'])), params['l2.bias']));
    const loss = ops.mse(y, t);
    for (const v of tmp) v.dispose();
    return loss;
  };
  const times = [];
  for (let i = 0; i < 6; i++) {
    const t0 = now();
    closure().dispose();
    times.push(now() - t0);
  }
  times.sort((a, b) => a - b);
  const forward = times[Math.floor(times.length / 2)];
  const probes = 6;
  const t0 = now();
  const res = await hessianTrace(closure, { params, probes, seed: 1 });
  const total = now() - t0;
  const perProbe = (total - forward) / probes;
  Object.assign(big, {
    params: Object.values(params).reduce((a, p) => a + p.numel, 0), shape: BIG, forward_s: forward, probe_s: perProbe,
    probe_per_forward: perProbe / forward, trace: res.trace, stdErr: res.stdErr, forwards: res.forwards,
  });
  [...Object.values(params), x, t].forEach((v) => v.dispose());
}

// ---- GPT-2-small-shaped model: time per probe vs one forward (the fused path) --------------

const { randomGpt2, tokenBatch } = await import(pathToFileURL(join(here, 'gpt2.mjs')).href);
const gpt2 = {};
{
  const shape = { L: 12, D: 768, H: 12, V: 50257, P: 1024 };
  const { model, params } = await randomGpt2(zeroth, shape);
  const batch = tokenBatch(zeroth, 4, 128, shape.V);
  const lossOnce = async () => {
    const t0 = now();
    (await model.loss(batch.inputIds, { attentionMask: batch.attentionMask })).dispose();
    return now() - t0;
  };
  await lossOnce(); // warm-up
  const times = [await lossOnce(), await lossOnce(), await lossOnce()].sort((a, b) => a - b);
  const forward = times[1];
  const probes = 3;
  const t0 = now();
  const res = await zeroth.hessianTrace(model, { batch, probes, seed: 1 });
  const total = now() - t0;
  const perProbe = (total - forward) / probes; // one clean forward is shared by all probes
  Object.assign(gpt2, { params, batch: '4 x 128', forward_s: forward, probe_s: perProbe, probe_per_forward: perProbe / forward,
    forwards: res.forwards, forwards_per_probe: (res.forwards - 1) / probes, trace: res.trace, stdErr: res.stdErr });
  model.dispose();
}

// ---- PyHessian-style anchor -----------------------------------------------------------------

// Debian's python3 carries python3-torch; a pyenv python3 earlier on PATH usually has no torch.
const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
let pyhessian;
let torch = true;
try {
  execFileSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
} catch {
  torch = false;
  pyhessian = { skipped: 'python3 -c "import torch" failed: install python3-torch to run the anchor' };
}
if (torch) {
  const script = '/work/shared/anchors/hessian_ref.py';
  try {
    const env = { ...process.env };
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    const out = execFileSync(python, [script, '--layers', '2', '--dim', '128', '--heads', '4', '--vocab', '1024', '--seq', '64',
      '--batch', '4', '--probes', '4'], { cwd: dirname(script), encoding: 'utf8', env });
    pyhessian = Object.fromEntries(out.trim().split(/\s+/).map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)]));
    pyhessian.ours_probe_per_forward_mlp = big.probe_per_forward;
    pyhessian.ours_probe_per_forward_gpt2 = gpt2.probe_per_forward;
  } catch (e) {
    pyhessian = { skipped: `${script} failed: ${String(e.message ?? e).split('\n')[0]}` };
  }
}

console.log(JSON.stringify({ bench: 'trace', mlp, big, gpt2, pyhessian }, null, 2));
