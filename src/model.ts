// model.ts — causal language models from Hugging Face checkpoints on disk: GPT-2, OPT and
// the Llama family (Llama, Qwen2, SmolLM), run by the native forward on the CPU or, with
// loadModel(dir, {device: 'cuda'}), on a GPU (native/model/transformer_cuda.cpp).
//
//   const model = await zeroth.loadModel(dir);
//   const logits = await model.forward(inputIds, { attentionMask });   // f32 [B, T, V]
//   const losses = await model.loss(inputIds, { attentionMask });      // f64 [B]
//   const next = await model.generate(inputIds, { attentionMask, maxNewTokens: 20 });
//
// Inputs are int32 tensors [B, T] with right padding (attentionMask 1 for real tokens). A
// forward may carry a perturbation {seed, scale, dist, trainable}: every trainable weight is
// read as w + scale·z(seed, stream(name)) on the fly, which equals perturbing it in place.
//
// A device model keeps its weights on the GPU (model.parameters() are device tensors, so the
// optimizers' native updates run there); inputs stay CPU int32 tensors, and forward / loss
// results come back as CPU tensors (logits f32 [B, T, V], losses f64 [B]).
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { deviceName, devices, parseDevice, type DeviceName, type DeviceSpec } from './device.js';
import { DTYPES, type DType } from './dtype.js';
import { check, ZerothError } from './errors.js';
import { parseModelConfig, type ModelConfig } from './models/config.js';
import { gptqConfigJson, parseQuantizationConfig, type GptqFormat } from './models/gptq_config.js';
import { wrapQuantized, type QuantizedTensor, type QuantizeOptions } from './quant.js';
import { native } from './native.js';
import { readSafetensors, writeSafetensors } from './safetensors.js';
import * as ops from './ops.js';
import { Tensor, tensor, zeros, type NativeHandle } from './tensor.js';

export type { ModelConfig, ModelFamily, ActivationName } from './models/config.js';

/** loraSpec().seed of adapters read from a PEFT folder (not drawn from a seed). */
export const LOADED_ADAPTERS = 'loaded';

/** The dtypes of model.parameters(): f32, or bf16 for the matrices of a bf16 device model. */
export type ParameterDtype = 'f32' | 'bf16';

export interface LoadModelOptions {
  /**
   * Dtype of the weight matrices (default 'f32'; f16/bf16 checkpoints are widened to f32 at load).
   * 'bf16', on a CUDA device only: the matrices (block linear layers, the token embedding / LM
   * head, OPT's project_in / project_out) are held as bf16 device tensors (rounded to nearest
   * even) and multiplied on tensor cores (activations rounded to bf16, f32 accumulation); norms,
   * biases, position tables and LoRA adapters stay f32, and model.parameters() returns those
   * matrices as bf16 tensors (the optimizers update them in bf16, stochastic rounding available).
   * Losses then differ from the f32 model's by bf16 rounding (~1e-2 relative). E_UNSUPPORTED on
   * a CPU model and for a GPTQ checkpoint (float matrices only).
   */
  dtype?: ParameterDtype;
  /**
   * 'cpu' (default), 'cuda' (= 'cuda:0') or 'cuda:N': the weights are uploaded once to that GPU
   * and forward / loss run there (generate stays CPU-only). E_DEVICE when this build has no CUDA
   * backend or the machine no such device.
   */
  device?: DeviceName;
}

export interface Perturbation {
  seed: number | bigint;
  /** Every trainable weight w is read as w + scale·z. */
  scale: number;
  dist?: 'normal' | 'rademacher';
  /** Names of the weights to perturb; default: all of model.parameters(). */
  trainable?: readonly string[];
  /** Stream id per weight name; default: FNV-1a 64 of the name (DESIGN principle 1). */
  streams?: Readonly<Record<string, number | bigint>>;
}

export interface ForwardOptions {
  /** int32 [B, T] of 0/1 (1: real token); default: all ones. */
  attentionMask?: Tensor;
  perturbation?: Perturbation;
}

export interface GenerateOptions {
  attentionMask?: Tensor;
  /** Tokens to generate per row (default 16). */
  maxNewTokens?: number;
  /** 0 (default): greedy. */
  temperature?: number;
  /** Keep the k most likely tokens (0: off). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches topP (1: off). */
  topP?: number;
  /** Seed of the sampling draws (default 0). */
  seed?: number | bigint;
  /** A row stops after emitting it; default: the config's eos_token_id (-1: never stop). */
  eosTokenId?: number;
}

function nativeConfig(c: ModelConfig): Record<string, unknown> {
  const { raw: _raw, modelType: _type, bosTokenId: _bos, eosTokenId: _eos, ...rest } = c;
  return rest;
}

function checkIds(ids: Tensor, what = 'inputIds'): void {
  check(ids instanceof Tensor, `${what} must be a zeroth Tensor (int32 [batch, tokens])`);
  check(ids.dtype === 'i32', `${what} must be an 'i32' tensor (got '${ids.dtype}')`, 'E_DTYPE');
  check(ids.shape.length === 2, `${what} must have shape [batch, tokens] (got [${ids.shape.join(', ')}])`, 'E_SHAPE');
  check(ids.device === 'cpu', `${what} must be on the CPU (got ${ids.device})`, 'E_DEVICE');
}

function checkMask(ids: Tensor, mask: Tensor | undefined): void {
  if (mask === undefined) return;
  checkIds(mask, 'attentionMask');
  check(mask.shape[0] === ids.shape[0] && mask.shape[1] === ids.shape[1],
    `attentionMask has shape [${mask.shape.join(', ')}] but inputIds has [${ids.shape.join(', ')}]`, 'E_SHAPE');
}

/** What `model.trainable()` selects for ZO fine-tuning. */
export type TrainableSpec =
  | { mode: 'full' }
  /** Biases and normalization weights only (BitFit-style). */
  | { mode: 'bias' }
  /** Parameters whose names match any of the patterns (`*` matches any run of characters). */
  | { mode: 'patterns'; patterns: readonly string[] }
  /** Sparse MeZO: every parameter, with a magnitude mask per tensor (the in-place path). */
  | { mode: 'mask'; fraction: number; keep?: 'smallest' | 'largest' }
  /**
   * LoRA adapters on the block's linear layers: only the adapters train. A [rank, in] starts at
   * z(seed, stream(A's name))/√in (normal, deterministic, so replay can rebuild it), B [out, rank]
   * at zero; the layer reads W + (alpha/rank)·B·A. Default targets: the attention query and
   * value projections (GPT-2: the fused c_attn).
   */
  | { mode: 'lora'; rank?: number; alpha?: number; targets?: readonly string[]; seed?: number | bigint }
  /**
   * QZO on a quantized model: only the per-group scales of the quantized layers ('<layer>.scales')
   * train; the integer codes stay frozen. Optimizers hold them above a floor (ZOOptions.scaleFloor).
   */
  | { mode: 'scales' };

/** model.quantize with one setting for every block linear layer (or those `layers` matches). */
export interface ModelQuantizeOptions extends QuantizeOptions {
  /** Glob patterns of the linear weights to quantize (default: every block linear layer). */
  layers?: readonly string[];
  /**
   * Also hold the token embedding and the LM head (one tensor when tied) at this width, int8
   * per row or int4 with the layers' group size; rows are de-quantized on lookup. Default: they
   * stay f32 (they then dominate a small model's memory and a generated token's reads).
   * Quantized embeddings do not train and cannot be saved as GPTQ.
   */
  embeddings?: 4 | 8;
}

/** model.quantize choosing int4 or int8 per block from per-block Hessian traces (HAWQ). */
export interface HessianPlanOptions {
  plan: 'hessian';
  /** Bytes the model's weights may take in memory after quantization (float parts included). */
  budgetBytes: number;
  /** int4 group size (default 128); int8 layers use one scale per output row. */
  groupSize?: number;
  symmetric?: boolean;
  clip?: boolean;
  /** The batch whose loss curvature ranks the blocks; default: sequences sampled from the model itself. */
  calibration?: { inputIds: Tensor; attentionMask?: Tensor };
  /** Hutchinson probes per block (default 16). */
  probes?: number;
  seed?: number | bigint;
  signal?: AbortSignal;
}

/** What model.quantize did. */
export interface QuantizeReport {
  layers: { name: string; bits: 4 | 8; groupSize: number }[];
  /** Bytes of the model's weights in memory before and after. */
  bytesBefore: number;
  bytesAfter: number;
  /** The Hessian plan's per-block figures (plan: 'hessian' only). */
  blocks?: PlanBlock[];
}

export interface PlanBlock {
  name: string;
  layers: string[];
  trace: number;
  stdErr: number;
  /** Squared quantization error ‖Q(W) − W‖² of the block's weights at 4 and 8 bits. */
  error4: number;
  error8: number;
  bits: 4 | 8;
}

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

const NORM_OR_BIAS = /(\.bias$|(^|\.)(ln_?\w*|\w*_?norm\w*|final_layer_norm|self_attn_layer_norm)\.weight$)/;

export class Model {
  readonly config: ModelConfig;
  #handle: NativeHandle | undefined;
  #trainable: string[] | undefined;
  #masks: Record<string, Tensor<'u8'>> = {};
  /** The LoRA settings applied (recorded in trajectories so replay can rebuild the adapters). */
  #loraSpec: { rank: number; alpha: number; seed: string; targets?: string[] } | undefined;
  /** LoRA adapters by base weight name. */
  #lora = new Map<string, { rank: number; alpha: number; inOut: boolean; a: string; b: string }>();

  /** @internal Use loadModel or modelFromWeights. */
  constructor(config: ModelConfig, handle: NativeHandle) {
    this.config = config;
    this.#handle = handle;
  }

  /** Where the weights live and forward / loss run: 'cpu' or 'cuda:N'. */
  get device(): DeviceName {
    return deviceName(native.modelDevice(this.handle) as DeviceSpec);
  }

  private get handle(): NativeHandle {
    if (this.#handle === undefined) throw new ZerothError('E_DISPOSED', 'this model was disposed; load it again');
    return this.#handle;
  }

  /** Logits f32 [B, T, V], a CPU tensor whatever the model's device. */
  async forward(inputIds: Tensor, opts: ForwardOptions = {}): Promise<Tensor<'f32'>> {
    checkIds(inputIds);
    checkMask(inputIds, opts.attentionMask);
    const h = await native.modelForward(this.handle, inputIds.handle, opts.attentionMask?.handle ?? null,
      this.perturbation(opts.perturbation));
    return new Tensor<'f32'>(h);
  }

  /**
   * Per-row mean next-token cross entropy, f64 [B]: the prediction at t is scored against the
   * token at t + 1 where both are real; reduced in float64. NaN for a row with no such pair.
   */
  async loss(inputIds: Tensor, opts: ForwardOptions = {}): Promise<Tensor<'f64'>> {
    checkIds(inputIds);
    checkMask(inputIds, opts.attentionMask);
    const h = await native.modelLoss(this.handle, inputIds.handle, opts.attentionMask?.handle ?? null,
      this.perturbation(opts.perturbation));
    return new Tensor<'f64'>(h);
  }

  /**
   * Tokens generated after each row's last real token, int32 [B, maxNewTokens], with a KV
   * cache. Rows that emitted eosTokenId are filled with the pad id (or eos) afterwards.
   * CPU models only (E_UNSUPPORTED on a device model).
   */
  async generate(inputIds: Tensor, opts: GenerateOptions = {}): Promise<Tensor<'i32'>> {
    checkIds(inputIds);
    checkMask(inputIds, opts.attentionMask);
    const maxNewTokens = opts.maxNewTokens ?? 16;
    const temperature = opts.temperature ?? 0;
    const topK = opts.topK ?? 0;
    const topP = opts.topP ?? 1;
    check(Number.isInteger(maxNewTokens) && maxNewTokens >= 1, 'maxNewTokens must be an integer >= 1');
    check(Number.isFinite(temperature) && temperature >= 0, 'temperature must be >= 0 (0 is greedy)');
    check(Number.isInteger(topK) && topK >= 0, 'topK must be an integer >= 0 (0 turns it off)');
    check(Number.isFinite(topP) && topP > 0 && topP <= 1, 'topP must be in (0, 1]');
    const eos = opts.eosTokenId ?? this.config.eosTokenId;
    check(Number.isInteger(eos) && eos >= -1 && eos < this.config.vocabSize, 'eosTokenId must be a token id or -1');
    const h = await native.modelGenerate(this.handle, inputIds.handle, opts.attentionMask?.handle ?? null, {
      maxNewTokens, temperature, topK, topP, seed: opts.seed ?? 0, eosTokenId: eos,
    });
    return new Tensor<'i32'>(h);
  }

  /**
   * The model's weights by checkpoint name (on the model's device; f32, or bf16 for the matrices
   * of a model loaded with dtype 'bf16'). They share memory with the model: writing them changes
   * the next forward. Tied weights appear once (under the embedding's name).
   */
  parameters(): Record<string, Tensor<ParameterDtype>> {
    const out: Record<string, Tensor<ParameterDtype>> = {};
    for (const { name, tensor } of native.modelParameters(this.handle) as { name: string; tensor: NativeHandle }[]) {
      out[name] = new Tensor<ParameterDtype>(tensor);
    }
    return out;
  }

  /** The names parameters() returns, without touching the tensors. */
  parameterNames(): string[] {
    return native.modelParameterNames(this.handle) as string[];
  }

  /**
   * Chooses what ZO fine-tuning trains and returns those tensors by name (they share memory
   * with the model). Optimizers built on the model (`new ZOSGD(model, opts)`) train this set;
   * by default every parameter.
   */
  trainable(spec: TrainableSpec = { mode: 'full' }): Record<string, Tensor<ParameterDtype>> {
    check(spec !== null && typeof spec === 'object', "trainable: pass a spec such as {mode: 'full'}");
    const names = this.parameterNames();
    let chosen: string[];
    // The new set replaces the old one only once it is complete (a failing spec changes nothing).
    const masks: Record<string, Tensor<'u8'>> = {};
    switch (spec.mode) {
      case 'full':
        chosen = names;
        break;
      case 'bias':
        chosen = names.filter((n) => NORM_OR_BIAS.test(n));
        break;
      case 'patterns': {
        check(Array.isArray(spec.patterns) && spec.patterns.length > 0, "trainable: mode 'patterns' needs patterns: string[]");
        const res = spec.patterns.map(globToRegExp);
        chosen = names.filter((n) => res.some((r) => r.test(n)));
        break;
      }
      case 'mask': {
        check(Number.isFinite(spec.fraction) && spec.fraction > 0 && spec.fraction <= 1, 'trainable: mask fraction must be in (0, 1]');
        chosen = names;
        const params = this.parameters();
        for (const [n, t] of Object.entries(params)) {
          // The magnitude ranking is CPU code: a device model ranks a host copy and keeps the
          // mask on its device (the update kernels take masks on the parameter's device).
          const onHost = t.device === 'cpu' ? t : t.to('cpu');
          const mask = new Tensor<'u8'>(native.maskFromMagnitude(onHost.handle, { fraction: spec.fraction, keep: spec.keep ?? 'smallest' }));
          if (onHost !== t) onHost.dispose();
          t.dispose();
          if (mask.device === this.device) masks[n] = mask;
          else {
            masks[n] = mask.to(this.device);
            mask.dispose();
          }
        }
        break;
      }
      case 'lora':
        chosen = this.addLora(spec);
        break;
      case 'scales': {
        const quantized = this.quantizedNames();
        check(quantized.length > 0, "trainable: mode 'scales' needs a quantized model; call model.quantize() or load a GPTQ checkpoint");
        const scales = new Set(quantized.map((n) => `${n.replace(/\.weight$/, '')}.scales`));
        chosen = names.filter((n) => scales.has(n));
        break;
      }
      default:
        throw new ZerothError('E_INVALID_ARG', `trainable: unknown mode ${JSON.stringify((spec as { mode: unknown }).mode)}; use 'full', 'bias', 'patterns', 'mask', 'lora' or 'scales'`);
    }
    check(chosen.length > 0, `trainable: no parameter matches mode ${spec.mode}`);
    for (const m of Object.values(this.#masks)) m.dispose(); // optimizers hold their own copies
    this.#masks = masks;
    this.#trainable = chosen;
    const all = this.parameters();
    const out: Record<string, Tensor<ParameterDtype>> = {};
    for (const [n, t] of Object.entries(all)) {
      if (chosen.includes(n)) out[n] = t;
      else t.dispose();
    }
    return out;
  }

  /** Adds LoRA adapters (once per model) and returns their names. */
  private addLora(spec: Extract<TrainableSpec, { mode: 'lora' }>): string[] {
    const loaded = this.#loraSpec;
    if (loaded?.seed === LOADED_ADAPTERS) {
      // Adapters read from a PEFT folder: train them as they are.
      check((spec.rank === undefined || spec.rank === loaded.rank) && (spec.alpha === undefined || spec.alpha === loaded.alpha) &&
        spec.seed === undefined && spec.targets === undefined,
      `trainable: this model's LoRA adapters were loaded from adapter_model.safetensors (rank ${loaded.rank}, alpha ${loaded.alpha}); ` +
        "call trainable({mode: 'lora'}) to train them, or load the model without its adapters for new ones");
      return [...this.#lora.values()].flatMap((l) => [l.a, l.b]);
    }
    const rank = spec.rank ?? 8;
    const alpha = spec.alpha ?? 2 * rank;
    check(Number.isInteger(rank) && rank >= 1 && rank <= 4096, 'trainable: LoRA rank must be an integer from 1 to 4096');
    check(Number.isFinite(alpha) && alpha > 0, 'trainable: LoRA alpha must be a positive number');
    const seed = BigInt(spec.seed ?? 0);
    const family = this.config.family;
    const patterns = spec.targets ?? (family === 'gpt2' ? ['*.attn.c_attn.weight'] : ['*.self_attn.q_proj.weight', '*.self_attn.v_proj.weight']);
    // One LoRA configuration per model: replay rebuilds the adapters from the recorded spec.
    const prior = this.#loraSpec;
    check(!prior || (prior.rank === rank && prior.alpha === alpha && prior.seed === seed.toString() &&
      JSON.stringify(prior.targets ?? null) === JSON.stringify(spec.targets ? [...spec.targets] : null)),
    `trainable: this model already has LoRA adapters (rank ${prior?.rank}, alpha ${prior?.alpha}, seed ${prior?.seed}); load the model again to use other settings`);
    const res = patterns.map(globToRegExp);
    // Quantized bases are [out, in] whatever the family; float Conv1D weights are [in, out].
    const params: Record<string, Tensor> = { ...this.parameters(), ...this.quantizedWeights() };
    const quantized = new Set(this.quantizedNames());
    try {
      const names = Object.keys(params).filter((n) => !n.includes('.lora_') && res.some((r) => r.test(n)));
      check(names.length > 0, `trainable: no weight matches the LoRA targets ${JSON.stringify(patterns)}`);
      const lora: string[] = [];
      for (const name of names) {
        if (this.#lora.has(name)) {
          const l = this.#lora.get(name)!;
          check(l.rank === rank && l.alpha === alpha, `trainable: ${name} already has a LoRA adapter of rank ${l.rank}, alpha ${l.alpha}`);
        } else {
          const w = params[name]!;
          const inOut = this.config.family === 'gpt2' && !quantized.has(name); // Conv1D weights are stored [in, out]
          const [rows, cols] = w.shape as [number, number];
          const inDim = inOut ? rows : cols;
          const outDim = inOut ? cols : rows;
          const stem = name.replace(/\.weight$/, '');
          const z = native.fillZ(seed, native.streamId(`${stem}.lora_A.weight`), 'normal', 0, rank * inDim) as Float32Array;
          const scaleA = 1 / Math.sqrt(inDim);
          // The adapters live on the model's device (with_lora requires it).
          using a = tensor(z.map((v) => v * scaleA), { shape: [rank, inDim], device: this.device });
          using b = zeros([outDim, rank], { device: this.device });
          native.modelAddLora(this.handle, name, a.handle, b.handle, alpha / rank);
          this.#lora.set(name, { rank, alpha, inOut, a: `${stem}.lora_A.weight`, b: `${stem}.lora_B.weight` });
        }
        const l = this.#lora.get(name)!;
        lora.push(l.a, l.b);
      }
      this.#loraSpec = { rank, alpha, seed: seed.toString(), ...(spec.targets ? { targets: [...spec.targets] } : {}) };
      return lora;
    } finally {
      for (const t of Object.values(params)) t.dispose();
    }
  }

  /** Names of the quantized weights (int4 / int8 block linear layers), without touching them. */
  quantizedNames(): string[] {
    return (native.modelQuantizedWeights(this.handle) as { name: string; tensor: NativeHandle }[]).map((w) => {
      native.tensorDispose(w.tensor);
      return w.name;
    });
  }

  /**
   * The quantized weights by name: int4 / int8 tensors [out, in] sharing memory with the model
   * (their scales are also parameters, named '<layer>.scales'). Empty for a float model.
   */
  quantizedWeights(): Record<string, QuantizedTensor> {
    const out: Record<string, QuantizedTensor> = {};
    for (const { name, tensor } of native.modelQuantizedWeights(this.handle) as { name: string; tensor: NativeHandle }[]) {
      out[name] = wrapQuantized(tensor);
    }
    return out;
  }

  /** Names of the blocks' linear weights (attention and MLP projections), float or quantized. */
  linearNames(): string[] {
    return native.modelLinearNames(this.handle) as string[];
  }

  /**
   * Quantizes the blocks' linear layers in place of their float weights: one setting for all
   * (`{bits: 4, groupSize: 128}`), or a Hessian-aware plan (`{plan: 'hessian', budgetBytes}`)
   * that keeps the blocks where curvature × quantization error is largest at int8 and the rest
   * at int4, within the byte budget (HAWQ). Embeddings, norms and the head stay in f32.
   * The forward then runs the fused de-quantizing kernels; the codes are frozen, the scales
   * ('<layer>.scales') can be trained with trainable({mode: 'scales'}) (QZO).
   */
  async quantize(opts: ModelQuantizeOptions | HessianPlanOptions): Promise<QuantizeReport> {
    check(opts !== null && typeof opts === 'object', "quantize: pass {bits: 4, groupSize: 128} or {plan: 'hessian', budgetBytes}");
    const bytesBefore = this.weightBytes();
    let layers: QuantizeReport['layers'];
    let blocks: PlanBlock[] | undefined;
    if ('plan' in opts) {
      check(opts.plan === 'hessian', `quantize: plan must be 'hessian', got ${JSON.stringify(opts.plan)}`);
      const { planHessian } = await import('./quant_plan.js');
      ({ layers, blocks } = await planHessian(this, opts));
    } else {
      check(opts.bits === 4 || opts.bits === 8, `quantize: bits must be 4 or 8, got ${String(opts.bits)}`);
      const res = (opts.layers ?? ['*']).map(globToRegExp);
      const done = new Set(this.quantizedNames());
      const names = this.linearNames().filter((n) => !done.has(n) && res.some((r) => r.test(n)));
      check(names.length > 0, 'quantize: no float linear layer matches (already quantized, or the layers patterns match none)');
      const groupSize = opts.bits === 4 ? (opts.groupSize ?? 128) : 0;
      layers = names.map((name) => ({ name, bits: opts.bits, groupSize }));
      if (opts.embeddings !== undefined) {
        check(opts.embeddings === 4 || opts.embeddings === 8, `quantize: embeddings must be 4 or 8, got ${String(opts.embeddings)}`);
        const { embedding, head } = native.modelEmbeddingNames(this.handle) as { embedding: string; head: string };
        const bits = opts.embeddings;
        for (const name of new Set([embedding, head])) {
          if (!done.has(name)) layers.push({ name, bits, groupSize: bits === 4 ? (opts.groupSize ?? 128) : 0 });
        }
      }
    }
    const { layers: _l, budgetBytes: _b, plan: _p, calibration: _c, probes: _r, seed: _s, signal: _g, embeddings: _e, ...common } =
      opts as Partial<ModelQuantizeOptions & HessianPlanOptions>;
    await this.applyQuantization(layers.map((l) => ({ ...common, name: l.name, bits: l.bits, groupSize: l.groupSize || undefined })));
    const report: QuantizeReport = { layers, bytesBefore, bytesAfter: this.weightBytes() };
    if (blocks) report.blocks = blocks;
    return report;
  }

  /** @internal Quantizes the named layers, each with its own options. */
  async applyQuantization(plan: (QuantizeOptions & { name: string })[]): Promise<void> {
    const entries = plan.map(({ name, bits, groupSize, symmetric, clip, scaleDtype }) => {
      const e: Record<string, unknown> = { name, bits };
      if (groupSize !== undefined) e.groupSize = groupSize;
      if (symmetric !== undefined && bits === 4) e.symmetric = symmetric; // int8 is always symmetric
      if (clip !== undefined) e.clip = clip;
      if (scaleDtype !== undefined) e.scaleDtype = scaleDtype;
      return e;
    });
    await native.modelQuantize(this.handle, entries);
    // Weights that became quantized leave the float trainable set.
    if (this.#trainable) {
      const names = new Set(this.parameterNames());
      this.#trainable = this.#trainable.filter((n) => names.has(n));
      if (this.#trainable.length === 0) this.#trainable = undefined;
    }
  }

  /** Bytes of the model's weights in memory: float parameters plus quantized codes. */
  weightBytes(): number {
    let bytes = 0;
    for (const { tensor } of native.modelParameters(this.handle) as { name: string; tensor: NativeHandle }[]) {
      const meta = native.tensorMeta(tensor) as { dtype: DType; shape: number[] };
      bytes += DTYPES[meta.dtype].arrayBytes * meta.shape.reduce((a, b) => a * b, 1);
      native.tensorDispose(tensor);
    }
    for (const { tensor } of native.modelQuantizedWeights(this.handle) as { name: string; tensor: NativeHandle }[]) {
      const meta = native.tensorMeta(tensor) as { dtype: string; shape: number[] };
      const n = meta.shape.reduce((a, b) => a * b, 1);
      const info = native.quantInfo(tensor) as { zeros?: NativeHandle; scales: NativeHandle } | null;
      bytes += meta.dtype === 'int4' ? Math.ceil(n / 2) : n; // scales are counted as parameters
      if (info?.zeros) {
        const z = native.tensorMeta(info.zeros) as { shape: number[] };
        bytes += 4 * z.shape.reduce((a, b) => a * b, 1);
        native.tensorDispose(info.zeros);
      }
      if (info) native.tensorDispose(info.scales);
      native.tensorDispose(tensor);
    }
    return bytes;
  }

  /** The LoRA adapters' settings, when trainable({mode: 'lora'}) added them. */
  loraSpec(): { rank: number; alpha: number; seed: string; targets?: string[] } | undefined {
    return this.#loraSpec && { ...this.#loraSpec };
  }

  /** Names of the trainable set (all parameters unless trainable() chose others). */
  trainableNames(): string[] {
    return [...(this.#trainable ?? this.parameterNames())];
  }

  /** The sparse masks chosen by trainable({mode: 'mask'}) (empty otherwise). */
  trainableMasks(): Record<string, Tensor<'u8'>> {
    return { ...this.#masks };
  }

  /**
   * Writes config.json and model.safetensors in the Hugging Face layout, loadable by loadModel
   * and by Hugging Face tools. Tied weights are written once, as in the checkpoint. Float
   * models are written in f32 with LoRA adapters merged into their base weights. Quantized
   * models are written as a GPTQ checkpoint (quantization_config in config.json; scales
   * rounded to f16, codes exact): int4 layers as 4-bit, int8 layers as symmetric 8-bit GPTQ
   * (zero 128); layers the base bits / group_size do not describe (int8 next to int4, another
   * group size) and block layers left in float get exact-name `dynamic` entries
   * ("+:^<name>$" / "-:^<name>$", as GPTQModel writes them). LoRA adapters over quantized
   * layers cannot be merged into integer codes, so they go to adapter_model.safetensors +
   * adapter_config.json (PEFT layout). A model on a GPU is written from host copies of its
   * weights (LoRA merged on the host, the same f32 arithmetic; quantized layers packed as GPTQ
   * from host copies).
   */
  async save(dir: string): Promise<void> {
    check(typeof dir === 'string' && dir.length > 0, 'save: dir must be a directory path');
    const quantized = this.quantizedNames();
    // Check what can be written before touching the directory.
    const gptq = quantized.length > 0 ? (native.modelGptqCheckpoint(this.handle) as GptqCheckpoint) : undefined;
    await mkdir(dir, { recursive: true }).catch((e: Error) => {
      throw new ZerothError('E_IO', `save: cannot create ${dir}: ${e.message}`);
    });
    const params: Record<string, Tensor> = this.parameters();
    const adapters: Record<string, Tensor> = {};
    try {
      const onQuantized = new Set(quantized);
      for (const [base, l] of this.#lora) {
        if (onQuantized.has(base)) {
          // PEFT names: base_model.model.<module>.lora_A.weight [r, in], lora_B.weight [out, r].
          for (const n of [l.a, l.b]) {
            adapters[`base_model.model.${n}`] = params[n]!;
            delete params[n];
          }
          continue;
        }
        // W + (alpha/rank)·B·A (transposed for Conv1D's [in, out] layout): a plain checkpoint.
        // The ops are CPU code: a device model merges host copies (the same f32 arithmetic), and
        // the safetensors writer takes the host result like any other tensor.
        using hb = host(params[l.b]!);
        using ha = host(params[l.a]!);
        using hw = host(params[base]!);
        using ba = ops.matmul(hb.tensor, ha.tensor);
        using delta = l.inOut ? ops.transpose(ba) : ba.clone();
        using scaled = ops.mul(delta, l.alpha / l.rank);
        const w = ops.add(hw.tensor, scaled);
        params[base]!.dispose();
        params[base] = w;
        for (const n of [l.a, l.b]) {
          params[n]!.dispose();
          delete params[n];
        }
      }
      if (gptq) {
        for (const layer of gptq.layers) {
          const stem = layer.name.replace(/\.weight$/, '');
          params[`${stem}.scales`]!.dispose(); // the f32 scales travel as GPTQ's f16 scales
          delete params[`${stem}.scales`];
          for (const part of ['qweight', 'qzeros', 'scales', 'g_idx'] as const) params[`${stem}.${part}`] = new Tensor(layer[part]);
        }
      }
      await writeSafetensors(join(dir, 'model.safetensors'), params, { format: 'pt' });
      if (Object.keys(adapters).length > 0) {
        await writeSafetensors(join(dir, 'adapter_model.safetensors'), adapters, { format: 'pt' });
        await writeJson(join(dir, 'adapter_config.json'), this.peftConfig());
      }
    } finally {
      for (const t of [...Object.values(params), ...Object.values(adapters)]) t.dispose();
    }
    const config: Record<string, unknown> = { ...this.config.raw };
    if (gptq) config.quantization_config = gptqConfigJson(gptq.format);
    await writeJson(join(dir, 'config.json'), config);
  }

  /**
   * @internal Attaches the LoRA adapters of a PEFT folder (adapter_config.json +
   * adapter_model.safetensors, as save() writes them over a quantized base and PEFT's
   * save_pretrained writes them): tensors `base_model.model.<module>.lora_A.weight` [r, in] and
   * `.lora_B.weight` [out, r], read with scale lora_alpha / r. loadModel calls it when the folder
   * has an adapter_config.json.
   */
  async loadPeftAdapters(dir: string): Promise<void> {
    const cfgPath = join(dir, 'adapter_config.json');
    let cfg: Record<string, unknown>;
    try {
      cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new ZerothError('E_FORMAT', `loadModel: ${cfgPath} is not a readable JSON file: ${(e as Error).message}`);
    }
    check(typeof cfg === 'object' && cfg !== null, `loadModel: ${cfgPath} must hold a JSON object`, 'E_FORMAT');
    const unsupported = (why: string): never => {
      throw new ZerothError('E_UNSUPPORTED', `loadModel: ${cfgPath}: ${why}; zeroth reads plain LoRA adapters`);
    };
    if (cfg.peft_type !== 'LORA') unsupported(`peft_type ${JSON.stringify(cfg.peft_type)}`);
    if (cfg.use_dora === true) unsupported('use_dora is true');
    if (cfg.use_rslora === true) unsupported('use_rslora is true');
    for (const k of ['rank_pattern', 'alpha_pattern'] as const) {
      const v = cfg[k];
      if (v !== undefined && v !== null && Object.keys(v as object).length > 0) unsupported(`${k} sets per-module values`);
    }
    const rank = cfg.r, alpha = cfg.lora_alpha;
    check(typeof rank === 'number' && Number.isInteger(rank) && rank >= 1, `loadModel: ${cfgPath}: r must be a positive integer`, 'E_FORMAT');
    check(typeof alpha === 'number' && Number.isFinite(alpha) && alpha > 0, `loadModel: ${cfgPath}: lora_alpha must be a positive number`, 'E_FORMAT');
    const file = await readSafetensors(join(dir, 'adapter_model.safetensors'));
    const bases: Record<string, Tensor> = { ...this.parameters(), ...this.quantizedWeights() };
    const quantized = new Set(this.quantizedNames());
    try {
      const stems = new Set<string>();
      for (const n of file.names) {
        const m = /^base_model\.model\.(.+)\.lora_[AB]\.weight$/.exec(n);
        check(m !== null, `loadModel: adapter_model.safetensors holds '${n}', not a LoRA tensor (base_model.model.<module>.lora_A/B.weight)`, 'E_FORMAT');
        stems.add(m![1]!);
      }
      check(stems.size > 0, 'loadModel: adapter_model.safetensors holds no LoRA tensors', 'E_FORMAT');
      for (const stem of stems) {
        const name = `${stem}.weight`;
        check(name in bases && !name.includes('.lora_'), `loadModel: the adapters target '${name}', which this model does not have`, 'E_FORMAT');
        const read = async (part: 'A' | 'B'): Promise<Tensor> => {
          const key = `base_model.model.${stem}.lora_${part}.weight`;
          check(file.names.includes(key), `loadModel: adapter_model.safetensors lacks '${key}'`, 'E_FORMAT');
          const host = new Tensor(await file.load(key, { dtype: 'f32' }));
          if (this.device === 'cpu') return host;
          try {
            return host.to(this.device);
          } finally {
            host.dispose();
          }
        };
        using a = await read('A');
        using b = await read('B');
        check(a.shape[0] === rank, `loadModel: ${stem}.lora_A has rank ${a.shape[0]}, adapter_config.json says r = ${rank}`, 'E_SHAPE');
        native.modelAddLora(this.handle, name, a.handle, b.handle, alpha / rank); // shapes checked there (E_SHAPE)
        const inOut = this.config.family === 'gpt2' && !quantized.has(name);
        this.#lora.set(name, { rank, alpha, inOut, a: `${stem}.lora_A.weight`, b: `${stem}.lora_B.weight` });
      }
      this.#loraSpec = { rank, alpha, seed: LOADED_ADAPTERS, targets: [...stems].map((s) => `${s}.weight`) };
    } finally {
      file.close();
      for (const t of Object.values(bases)) t.dispose();
    }
  }

  /** adapter_config.json of the LoRA adapters (PEFT's LoraConfig fields). */
  private peftConfig(): Record<string, unknown> {
    const spec = this.#loraSpec!;
    const modules = [...new Set([...this.#lora.keys()].map((n) => n.replace(/\.weight$/, '').split('.').pop()!))];
    return {
      peft_type: 'LORA', task_type: 'CAUSAL_LM', r: spec.rank, lora_alpha: spec.alpha, lora_dropout: 0,
      target_modules: modules, bias: 'none', fan_in_fan_out: false, base_model_name_or_path: null,
      inference_mode: true,
    };
  }

  /** Frees the model's weights (tensors from parameters() stay valid until disposed). */
  dispose(): void {
    if (this.#handle === undefined) return;
    native.modelDispose(this.#handle);
    this.#handle = undefined;
    for (const m of Object.values(this.#masks)) m.dispose();
    this.#masks = {};
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private perturbation(p: Perturbation | undefined): object | null {
    if (p === undefined) return null;
    check(typeof p === 'object' && p !== null, 'perturbation must be an object {seed, scale, dist?, trainable?}');
    check(typeof p.seed === 'bigint' ? p.seed >= 0n : Number.isSafeInteger(p.seed) && p.seed >= 0,
      'perturbation.seed must be a non-negative integer');
    check(Number.isFinite(p.scale), 'perturbation.scale must be a finite number');
    const dist = p.dist ?? 'normal';
    check(dist === 'normal' || dist === 'rademacher', "perturbation.dist must be 'normal' or 'rademacher'");
    const trainable = p.trainable ?? this.parameterNames();
    return { seed: p.seed, scale: p.scale, dist, trainable: [...trainable], streams: p.streams ?? null };
  }
}

/** t itself when it is on the CPU, else a host copy; disposing the result frees only a copy. */
function host(t: Tensor): { tensor: Tensor; [Symbol.dispose](): void } {
  const onCpu = t.device === 'cpu' ? undefined : t.to('cpu');
  // A bf16 device model's matrix is widened exactly, so the merge adds in f32 as for f32 weights.
  const wide = (onCpu ?? t).dtype === 'bf16' ? (onCpu ?? t).to('f32') : undefined;
  if (wide) onCpu?.dispose();
  const copy = wide ?? onCpu;
  return { tensor: copy ?? t, [Symbol.dispose]: () => copy?.dispose() };
}

/** What the native side returns for saving a quantized model as GPTQ. */
interface GptqCheckpoint {
  format: GptqFormat;
  layers: { name: string; qweight: NativeHandle; qzeros: NativeHandle; scales: NativeHandle; g_idx: NativeHandle }[];
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`).catch((e: Error) => {
    throw new ZerothError('E_IO', `save: cannot write ${path}: ${e.message}`);
  });
}

/**
 * The weight matrices' dtype (default 'f32'): E_UNSUPPORTED for anything but 'f32' / 'bf16', and
 * for 'bf16' on the CPU (whose forward computes in f32). A CUDA device is checked by requireDevice.
 */
function checkDtype(dtype: unknown, device: DeviceSpec, what: string): ParameterDtype {
  const d = dtype ?? 'f32';
  if (d !== 'f32' && d !== 'bf16') {
    throw new ZerothError('E_UNSUPPORTED', `${what}: dtype ${JSON.stringify(d)} is not supported; use 'f32' (default) or, on a CUDA device, 'bf16'`);
  }
  if (d === 'bf16' && device.type === 'cpu') {
    throw new ZerothError('E_UNSUPPORTED', `${what}: dtype 'bf16' needs a CUDA device (device 'cuda'); the CPU forward computes in 'f32' (f16/bf16 checkpoints are widened at load)`);
  }
  return d;
}

/**
 * E_DEVICE unless `device` can hold a model here, naming what is missing: a CUDA backend in
 * this build, a usable GPU and driver, or the device index.
 */
function requireDevice(device: DeviceSpec, asked: string, what: string): void {
  if (device.type === 'cpu') return;
  const build = native.buildInfo() as { cuda: boolean };
  if (!build.cuda) {
    throw new ZerothError('E_DEVICE', `${what}: device '${asked}' is not available: this build of zeroth has no CUDA backend (it was built without nvcc); use 'cpu'`);
  }
  const gpus = devices().filter((d) => d.type === 'cuda');
  if (gpus.length === 0) {
    throw new ZerothError('E_DEVICE', `${what}: device '${asked}' is not available: no usable CUDA device or driver was found on this machine; use 'cpu'`);
  }
  if (device.index >= gpus.length) {
    throw new ZerothError('E_DEVICE', `${what}: device '${asked}' does not exist: this machine has ${gpus.length} CUDA device(s), cuda:0 .. cuda:${gpus.length - 1}`);
  }
}

/**
 * A model from a config.json object and tensors named as in its checkpoint (f32, f16 or bf16),
 * on `opts.device` (default 'cpu'; see LoadModelOptions.device).
 */
export async function modelFromWeights(config: unknown, weights: Readonly<Record<string, Tensor>>,
  opts: { device?: DeviceName; dtype?: ParameterDtype } = {}): Promise<Model> {
  const device = parseDevice(opts.device);
  const dtype = checkDtype(opts.dtype, device, 'modelFromWeights');
  requireDevice(device, String(opts.device), 'modelFromWeights');
  const parsed = parseModelConfig(config);
  const gptq = parseQuantizationConfig(parsed.raw);
  if (dtype === 'bf16' && gptq) {
    throw new ZerothError('E_UNSUPPORTED', "modelFromWeights: dtype 'bf16' applies to float matrices; this checkpoint stores GPTQ layers (quantization_config): load it with dtype 'f32'");
  }
  const handles: Record<string, NativeHandle> = {};
  for (const [name, t] of Object.entries(weights)) {
    check(t instanceof Tensor, `weights['${name}'] must be a zeroth Tensor`);
    handles[name] = t.handle;
  }
  return new Model(parsed, await native.modelCreate(nativeConfig(parsed), handles, gptq ?? null, device, dtype));
}

/**
 * Loads a Hugging Face checkpoint directory: config.json plus model.safetensors or the shards
 * of model.safetensors.index.json. Nothing is downloaded.
 */
export async function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<Model> {
  check(typeof dir === 'string' && dir.length > 0, 'loadModel: dir must be a directory path');
  const device = parseDevice(opts.device);
  const dtype = checkDtype(opts.dtype, device, 'loadModel');
  requireDevice(device, String(opts.device), 'loadModel'); // before reading any weight
  const info = await stat(dir).catch((e: Error) => {
    throw new ZerothError('E_IO', `loadModel: cannot read ${dir}: ${e.message}`);
  });
  check(info.isDirectory(), `loadModel: ${dir} is not a directory`, 'E_IO');
  let text: string;
  try {
    text = await readFile(join(dir, 'config.json'), 'utf8');
  } catch (e) {
    throw new ZerothError('E_IO', `loadModel: cannot read ${join(dir, 'config.json')}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ZerothError('E_FORMAT', `loadModel: ${join(dir, 'config.json')} is not valid JSON: ${(e as Error).message}`);
  }
  // AutoGPTQ writes its settings to quantize_config.json instead of config.json.
  if (typeof raw === 'object' && raw !== null && !('quantization_config' in raw)) {
    const extra = await readFile(join(dir, 'quantize_config.json'), 'utf8').catch(() => undefined);
    if (extra !== undefined) {
      try {
        raw = { ...raw, quantization_config: { quant_method: 'gptq', ...JSON.parse(extra) } };
      } catch (e) {
        throw new ZerothError('E_FORMAT', `loadModel: ${join(dir, 'quantize_config.json')} is not valid JSON: ${(e as Error).message}`);
      }
    }
  }
  // Refuse unsupported configs (and bf16 over GPTQ layers) before reading any weight.
  if (parseQuantizationConfig(parseModelConfig(raw).raw) && dtype === 'bf16') {
    throw new ZerothError('E_UNSUPPORTED', `loadModel: dtype 'bf16' applies to float matrices; ${dir} is a GPTQ checkpoint: load it with dtype 'f32'`);
  }

  const reader = await readSafetensors(dir); // model.safetensors, or the shards of its index
  const weights: Record<string, Tensor> = {};
  try {
    // Every tensor goes to the native side, which refuses weights that are not F32/F16/BF16
    // (E_DTYPE naming them) unless they are GPTQ layers, and ignores known non-parameter buffers.
    for (const name of reader.names) weights[name] = new Tensor(await reader.load(name));
    const model = await modelFromWeights(raw, weights, { device: deviceName(device), dtype });
    // LoRA adapters beside the base (save() over a quantized base, or PEFT's save_pretrained).
    if (await stat(join(dir, 'adapter_config.json')).then(() => true, () => false)) {
      try {
        await model.loadPeftAdapters(dir);
      } catch (e) {
        model.dispose();
        throw e;
      }
    }
    return model;
  } finally {
    reader.close();
    // The model holds its own references (and f32 copies of f16/bf16 weights).
    for (const t of Object.values(weights)) t.dispose();
  }
}
