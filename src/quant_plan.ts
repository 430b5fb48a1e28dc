// quant_plan.ts — the Hessian-aware precision plan of model.quantize({plan: 'hessian'}) (HAWQ-V2):
// each transformer block's linear layers go to int4 or int8 so that the expected loss increase
// is smallest within a byte budget.
//
// Sensitivity of block b at a bit width: Ω_b = (tr(H_b) / n_b) · ‖Q(W_b) − W_b‖², the block's
// mean Hessian trace (Hutchinson, per block, on the fused forward) times the squared error its
// weights take when quantized. A negative trace estimate counts as 0 (no evidence that the block
// needs more bits). Every block starts at int4; blocks are then raised to int8 in order of
// (Ω_b(4) − Ω_b(8)) per extra byte, while the model still fits the budget (a greedy knapsack).
import { hessianTrace } from './curvature/trace.js';
import { DTYPES } from './dtype.js';
import { check, ZerothError } from './errors.js';
import type { HessianPlanOptions, Model, PlanBlock, QuantizeReport } from './model.js';
import * as ops from './ops.js';
import { dequantize, quantize, quantInfo } from './quant.js';
import { tensor, type Tensor } from './tensor.js';

/** The block a linear weight belongs to: its transformer layer ('transformer.h.3', 'model.layers.3'). */
function blockOf(name: string): string {
  const m = /^(.*?\.(?:h|layers)\.\d+)\./.exec(name);
  return m ? m[1]! : name;
}

/**
 * A calibration batch sampled from the model itself (temperature 1, from the BOS token), for
 * when the caller has no data: the traces then measure curvature on text the model finds likely.
 */
async function selfCalibration(model: Model, seed: bigint): Promise<{ inputIds: Tensor }> {
  const start = model.config.bosTokenId >= 0 ? model.config.bosTokenId : Math.max(model.config.eosTokenId, 0);
  const rows = 4;
  const length = Math.min(64, model.config.maxPositions);
  using prompt = tensor(new Int32Array(rows).fill(start), { shape: [rows, 1] });
  using sampled = await model.generate(prompt, { maxNewTokens: length - 1, temperature: 1, seed, eosTokenId: -1 });
  return { inputIds: ops.concat([prompt, sampled], 1) };
}

/** Bytes of one quantized layer in memory: codes, f32 scales, f32 zeros (asymmetric int4). */
function quantizedBytes(out: number, inputs: number, bits: 4 | 8, groupSize: number, symmetric: boolean): number {
  if (bits === 8) return out * inputs + 4 * out;
  const groups = Math.ceil(inputs / Math.min(groupSize, inputs));
  return Math.ceil((out * inputs) / 2) + 4 * out * groups * (symmetric ? 1 : 2);
}

/** ‖Q(W) − W‖² of a [out, in] weight, accumulated in float64. */
function squaredError(w: Tensor, bits: 4 | 8, groupSize: number, symmetric: boolean, clip: boolean): number {
  using q = bits === 4 ? quantize(w, { bits, groupSize, symmetric, clip }) : quantize(w, { bits: 8, clip });
  const info = quantInfo(q);
  info.scales.dispose();
  info.zeros?.dispose();
  using back = dequantize(q);
  using mse = ops.mse(back, w);
  return ops.item(mse) * w.numel;
}

export async function planHessian(
  model: Model,
  opts: HessianPlanOptions,
): Promise<{ layers: QuantizeReport['layers']; blocks: PlanBlock[] }> {
  const { budgetBytes } = opts;
  check(Number.isFinite(budgetBytes) && budgetBytes > 0, `quantize: budgetBytes must be a positive number of bytes, got ${String(budgetBytes)}`);
  const groupSize = opts.groupSize ?? 128;
  check(Number.isSafeInteger(groupSize) && groupSize >= 1, 'quantize: groupSize must be a positive integer');
  const symmetric = opts.symmetric ?? false;
  const clip = opts.clip ?? false;
  check(model.quantizedNames().length === 0, "quantize: the Hessian plan starts from a float model; this one is quantized already");

  const linear = model.linearNames();
  const members: Record<string, string[]> = {};
  for (const name of linear) (members[blockOf(name)] ??= []).push(name);

  const seed = BigInt(opts.seed ?? 0);
  const calibration = opts.calibration ?? (await selfCalibration(model, seed));
  let traces;
  try {
    traces = await hessianTrace(model, {
      batch: calibration, names: linear, perBlock: members, probes: opts.probes ?? 16, seed, signal: opts.signal,
    });
  } finally {
    if (!opts.calibration) calibration.inputIds.dispose();
  }

  // Per block: numel, quantization errors and sizes at both widths.
  const params = model.parameters();
  const transposeFirst = model.config.family === 'gpt2'; // Conv1D weights are stored [in, out]
  const blocks: (PlanBlock & { numel: number; bytes4: number; bytes8: number; floatBytes: number })[] = [];
  try {
    for (const [name, layers] of Object.entries(members)) {
      let numel = 0, error4 = 0, error8 = 0, bytes4 = 0, bytes8 = 0, floatBytes = 0;
      for (const layer of layers) {
        // The errors are measured on the host in f32: a device model's weight comes down, a bf16
        // one is widened (exactly), before the CPU quantizer sees it.
        const p = params[layer]!;
        using host = p.device === 'cpu' ? null : p.to('cpu');
        const onHost = host ?? p;
        using wide = onHost.dtype === 'f32' ? null : onHost.to('f32');
        const w32 = wide ?? onHost;
        using w = transposeFirst ? ops.transpose(w32) : w32.clone();
        const [out, inputs] = w.shape as [number, number];
        numel += w.numel;
        floatBytes += DTYPES[p.dtype].arrayBytes * w.numel;
        error4 += squaredError(w, 4, groupSize, symmetric, clip);
        error8 += squaredError(w, 8, groupSize, symmetric, clip);
        bytes4 += quantizedBytes(out, inputs, 4, groupSize, symmetric);
        bytes8 += quantizedBytes(out, inputs, 8, groupSize, symmetric);
      }
      const t = traces.blocks![name]!;
      blocks.push({ name, layers, trace: t.trace, stdErr: t.stdErr, error4, error8, bits: 4, numel, bytes4, bytes8, floatBytes });
    }
  } finally {
    for (const t of Object.values(params)) t.dispose();
  }

  const rest = model.weightBytes() - blocks.reduce((a, b) => a + b.floatBytes, 0);
  let total = rest + blocks.reduce((a, b) => a + b.bytes4, 0);
  if (total > budgetBytes) {
    throw new ZerothError('E_INVALID_ARG',
      `quantize: budgetBytes ${budgetBytes} is below ${total}, the size with every block at int4 ` +
        '(embeddings, norms and the head stay f32); raise the budget or use a larger groupSize');
  }
  const omega = (b: (typeof blocks)[number], bits: 4 | 8): number =>
    (Math.max(b.trace, 0) / b.numel) * (bits === 4 ? b.error4 : b.error8);
  const order = [...blocks].sort((a, b) =>
    (omega(b, 4) - omega(b, 8)) / (b.bytes8 - b.bytes4) - (omega(a, 4) - omega(a, 8)) / (a.bytes8 - a.bytes4));
  for (const b of order) {
    if (total + b.bytes8 - b.bytes4 > budgetBytes) continue;
    total += b.bytes8 - b.bytes4;
    b.bits = 8;
  }
  const layers = blocks.flatMap((b) => b.layers.map((name) => ({ name, bits: b.bits, groupSize: b.bits === 4 ? groupSize : 0 })));
  return {
    layers,
    blocks: blocks.map(({ name, layers: l, trace, stdErr, error4, error8, bits }) => ({ name, layers: l, trace, stdErr, error4, error8, bits })),
  };
}
