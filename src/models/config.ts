// models/config.ts — Hugging Face config.json -> the architecture facts zeroth's forward needs,
// for the three families it runs: GPT-2, OPT and the Llama family (Llama, Qwen2, SmolLM).
//
// Defaults are those of the transformers config classes. A setting the forward does not
// implement is refused with E_UNSUPPORTED naming the config field, never silently ignored.
import { ZerothError } from '../errors.js';

export type ModelFamily = 'gpt2' | 'opt' | 'llama';
export type ActivationName = 'gelu_tanh' | 'gelu' | 'relu' | 'silu';

/** The parsed architecture of a model (`model.config`). */
export interface ModelConfig {
  readonly family: ModelFamily;
  /** config.json's model_type ('gpt2', 'opt', 'llama', 'qwen2'). */
  readonly modelType: string;
  readonly nLayer: number;
  readonly dModel: number;
  readonly nHead: number;
  /** Key/value heads (< nHead: grouped-query attention). */
  readonly nKvHead: number;
  readonly headDim: number;
  readonly dFf: number;
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly normEps: number;
  readonly ropeTheta: number;
  readonly activation: ActivationName;
  /** false for OPT's post-LN variant (do_layer_norm_before = false). */
  readonly preNorm: boolean;
  readonly qkvBias: boolean;
  readonly outBias: boolean;
  readonly mlpBias: boolean;
  readonly normAffine: boolean;
  readonly tiedEmbeddings: boolean;
  /** OPT's embedding width (project_in / project_out when it differs from dModel); else dModel. */
  readonly wordEmbedProjDim: number;
  /** -1 when the config has none. */
  readonly padTokenId: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  /** config.json as read. */
  readonly raw: Readonly<Record<string, unknown>>;
}

const ARCHITECTURES: Record<string, ModelFamily> = {
  GPT2LMHeadModel: 'gpt2',
  OPTForCausalLM: 'opt',
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'llama',
};
const MODEL_TYPES: Record<string, ModelFamily> = { gpt2: 'gpt2', opt: 'opt', llama: 'llama', qwen2: 'llama' };

const unsupported = (field: string, why: string) =>
  new ZerothError('E_UNSUPPORTED', `config.json: ${field} ${why}`);

class Reader {
  constructor(private readonly raw: Record<string, unknown>) {}

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }
  int(key: string, fallback?: number): number {
    const v = this.has(key) ? this.raw[key] : fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      throw new ZerothError('E_FORMAT', `config.json: ${key} must be a non-negative integer (got ${JSON.stringify(v)})`);
    }
    return v;
  }
  positive(key: string, fallback?: number): number {
    const v = this.int(key, fallback);
    if (v === 0) throw new ZerothError('E_FORMAT', `config.json: ${key} must be positive`);
    return v;
  }
  num(key: string, fallback: number): number {
    const v = this.has(key) ? this.raw[key] : fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new ZerothError('E_FORMAT', `config.json: ${key} must be a number (got ${JSON.stringify(v)})`);
    }
    return v;
  }
  bool(key: string, fallback: boolean): boolean {
    const v = this.has(key) ? this.raw[key] : fallback;
    if (typeof v !== 'boolean') throw new ZerothError('E_FORMAT', `config.json: ${key} must be true or false`);
    return v;
  }
  str(key: string, fallback: string): string {
    const v = this.has(key) ? this.raw[key] : fallback;
    if (typeof v !== 'string') throw new ZerothError('E_FORMAT', `config.json: ${key} must be a string`);
    return v;
  }
  /** A token id: an integer, the first of a list, or -1 when absent. */
  tokenId(key: string, fallback = -1): number {
    let v = this.has(key) ? this.raw[key] : fallback;
    if (Array.isArray(v)) v = v[0];
    return typeof v === 'number' && Number.isInteger(v) ? v : -1;
  }
  /** Refuses a field unless it is absent/null or equals one of the values the forward implements. */
  requireAbsentOr(key: string, ...allowed: unknown[]): void {
    if (!this.has(key)) return;
    if (!allowed.includes(this.raw[key])) {
      throw unsupported(key, `= ${JSON.stringify(this.raw[key])} is not supported by zeroth's forward`);
    }
  }
}

function activation(name: string, field: string): ActivationName {
  switch (name) {
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
    case 'gelu_fast':
      return 'gelu_tanh';
    case 'gelu':
      return 'gelu';
    case 'relu':
      return 'relu';
    case 'silu':
    case 'swish':
      return 'silu';
    default:
      throw unsupported(field, `'${name}' is not a supported activation (gelu_new, gelu, relu, silu)`);
  }
}

function familyOf(raw: Record<string, unknown>): ModelFamily {
  const archs = raw.architectures;
  if (archs !== undefined && archs !== null) {
    if (!Array.isArray(archs) || archs.length === 0 || typeof archs[0] !== 'string') {
      throw new ZerothError('E_FORMAT', 'config.json: architectures must be a non-empty list of class names');
    }
    const fam = ARCHITECTURES[archs[0]];
    if (!fam) {
      throw unsupported('architectures', `'${archs[0]}' is not supported; zeroth runs ${Object.keys(ARCHITECTURES).join(', ')}`);
    }
    return fam;
  }
  const type = raw.model_type;
  const fam = typeof type === 'string' ? MODEL_TYPES[type] : undefined;
  if (!fam) {
    throw unsupported('model_type', `${JSON.stringify(type)} is not supported; zeroth runs ${Object.keys(MODEL_TYPES).join(', ')}`);
  }
  return fam;
}

/** Parses config.json's object into a ModelConfig; E_UNSUPPORTED names the field it cannot run. */
export function parseModelConfig(raw: unknown): ModelConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ZerothError('E_FORMAT', 'config.json must hold a JSON object');
  }
  const obj = raw as Record<string, unknown>;
  const r = new Reader(obj);
  const family = familyOf(obj);
  const modelType = r.str('model_type', family);
  if (MODEL_TYPES[modelType] !== family) {
    throw unsupported('model_type', `'${modelType}' does not match architectures (${family} family)`);
  }
  const common = { family, modelType, raw: Object.freeze({ ...obj }), bosTokenId: r.tokenId('bos_token_id'), eosTokenId: r.tokenId('eos_token_id') };

  if (family === 'gpt2') {
    r.requireAbsentOr('scale_attn_weights', true);
    r.requireAbsentOr('scale_attn_by_inverse_layer_idx', false);
    r.requireAbsentOr('add_cross_attention', false);
    const d = r.positive('n_embd', 768);
    const nHead = r.positive('n_head', 12);
    return Object.freeze({
      ...common,
      nLayer: r.positive('n_layer', 12),
      dModel: d,
      nHead,
      nKvHead: nHead,
      headDim: Math.floor(d / nHead),
      dFf: r.has('n_inner') ? r.positive('n_inner') : 4 * d,
      vocabSize: r.positive('vocab_size', 50257),
      maxPositions: r.positive('n_positions', 1024),
      normEps: r.num('layer_norm_epsilon', 1e-5),
      ropeTheta: 10000,
      activation: activation(r.str('activation_function', 'gelu_new'), 'activation_function'),
      preNorm: true,
      qkvBias: true,
      outBias: true,
      mlpBias: true,
      normAffine: true,
      tiedEmbeddings: r.bool('tie_word_embeddings', true),
      wordEmbedProjDim: d,
      padTokenId: r.tokenId('pad_token_id'),
    });
  }

  if (family === 'opt') {
    r.requireAbsentOr('_remove_final_layer_norm', false);
    const d = r.positive('hidden_size', 768);
    const nHead = r.positive('num_attention_heads', 12);
    const bias = r.bool('enable_bias', true);
    return Object.freeze({
      ...common,
      nLayer: r.positive('num_hidden_layers', 12),
      dModel: d,
      nHead,
      nKvHead: nHead,
      headDim: Math.floor(d / nHead),
      dFf: r.positive('ffn_dim', 3072),
      vocabSize: r.positive('vocab_size', 50272),
      maxPositions: r.positive('max_position_embeddings', 2048),
      normEps: 1e-5, // OPT's nn.LayerNorm default
      ropeTheta: 10000,
      activation: activation(r.str('activation_function', 'relu'), 'activation_function'),
      preNorm: r.bool('do_layer_norm_before', true),
      qkvBias: bias,
      outBias: bias,
      mlpBias: bias,
      normAffine: r.bool('layer_norm_elementwise_affine', true),
      tiedEmbeddings: r.bool('tie_word_embeddings', true),
      wordEmbedProjDim: r.has('word_embed_proj_dim') ? r.positive('word_embed_proj_dim') : d,
      padTokenId: r.tokenId('pad_token_id', 1),
    });
  }

  // Llama family.
  r.requireAbsentOr('rope_scaling');
  r.requireAbsentOr('use_sliding_window', false);
  r.requireAbsentOr('partial_rotary_factor', 1, 1.0);
  const d = r.positive('hidden_size', 4096);
  const nHead = r.positive('num_attention_heads', 32);
  const act = activation(r.str('hidden_act', 'silu'), 'hidden_act');
  if (act !== 'silu') throw unsupported('hidden_act', `'${r.str('hidden_act', 'silu')}' is not supported in the gated MLP (silu only)`);
  const qwen2 = modelType === 'qwen2';
  const attnBias = r.bool('attention_bias', false);
  return Object.freeze({
    ...common,
    nLayer: r.positive('num_hidden_layers', 32),
    dModel: d,
    nHead,
    nKvHead: r.has('num_key_value_heads') ? r.positive('num_key_value_heads') : nHead,
    headDim: r.has('head_dim') ? r.positive('head_dim') : Math.floor(d / nHead),
    dFf: r.positive('intermediate_size', 11008),
    vocabSize: r.positive('vocab_size', 32000),
    maxPositions: r.positive('max_position_embeddings', 2048),
    normEps: r.num('rms_norm_eps', 1e-6),
    ropeTheta: r.num('rope_theta', 10000),
    activation: act,
    preNorm: true,
    // Qwen2 always has q/k/v biases and no o_proj bias; Llama follows attention_bias.
    qkvBias: qwen2 ? true : attnBias,
    outBias: qwen2 ? false : attnBias,
    mlpBias: qwen2 ? false : r.bool('mlp_bias', false),
    normAffine: true,
    tiedEmbeddings: r.bool('tie_word_embeddings', false),
    wordEmbedProjDim: d,
    padTokenId: r.tokenId('pad_token_id'),
  });
}
