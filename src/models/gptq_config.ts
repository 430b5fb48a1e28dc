// gptq_config.ts — config.json's quantization_config for GPTQ checkpoints, both ways.
//
// Reading: quant_method "gptq" with bits 4, group_size (-1: one group per input row), desc_act,
// sym, and checkpoint_format "gptq" (zeros stored as zero − 1, the common v1 layout) or
// "gptq_v2" (zeros stored as is). Any other method or format is refused with E_UNSUPPORTED
// naming the field, never loaded as garbage. Fields that only matter when quantizing
// (damp_percent, true_sequential, static_groups, ...) are ignored.
import { ZerothError } from '../errors.js';

/** How a checkpoint's GPTQ layers are stored (native/model/gptq.h GptqFormat). */
export interface GptqFormat {
  bits: number;
  groupSize: number;
  descAct: boolean;
  sym: boolean;
  v2: boolean;
}

const unsupported = (field: string, why: string) =>
  new ZerothError('E_UNSUPPORTED', `config.json: quantization_config.${field} ${why}`);

function field<T>(q: Record<string, unknown>, key: string, kind: 'number' | 'boolean' | 'string', fallback: T): T {
  const v = q[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== kind) throw new ZerothError('E_FORMAT', `config.json: quantization_config.${key} must be a ${kind}`);
  return v as T;
}

/** The GPTQ format of a config, undefined for a float checkpoint. */
export function parseQuantizationConfig(raw: Readonly<Record<string, unknown>>): GptqFormat | undefined {
  const q = raw.quantization_config;
  if (q === undefined || q === null) return undefined;
  if (typeof q !== 'object' || Array.isArray(q)) {
    throw new ZerothError('E_FORMAT', 'config.json: quantization_config must be an object');
  }
  const o = q as Record<string, unknown>;
  const method = field<string>(o, 'quant_method', 'string', 'gptq');
  if (method !== 'gptq') {
    throw unsupported('quant_method', `"${method}" is not supported; zeroth loads 4-bit GPTQ checkpoints (quant_method "gptq")`);
  }
  const bits = field<number>(o, 'bits', 'number', 4);
  if (bits !== 4) throw unsupported('bits', `= ${bits} is not supported; zeroth loads 4-bit GPTQ checkpoints`);
  const groupSize = field<number>(o, 'group_size', 'number', 128);
  if (!Number.isInteger(groupSize) || (groupSize < 1 && groupSize !== -1)) {
    throw new ZerothError('E_FORMAT', `config.json: quantization_config.group_size must be a positive integer or -1, got ${groupSize}`);
  }
  const format = field<string>(o, 'checkpoint_format', 'string', 'gptq');
  if (format !== 'gptq' && format !== 'gptq_v2') {
    throw unsupported('checkpoint_format', `"${format}" is not supported; zeroth reads "gptq" (v1) and "gptq_v2"`);
  }
  const dynamic = o.dynamic;
  if (dynamic !== undefined && dynamic !== null && Object.keys(dynamic as object).length > 0) {
    throw unsupported('dynamic', 'per-module overrides are not supported; every layer must use the same settings');
  }
  return {
    bits,
    groupSize,
    descAct: field<boolean>(o, 'desc_act', 'boolean', false),
    sym: field<boolean>(o, 'sym', 'boolean', true),
    v2: format === 'gptq_v2',
  };
}

/** quantization_config for config.json of a checkpoint zeroth writes. */
export function gptqConfigJson(f: GptqFormat): Record<string, unknown> {
  return {
    quant_method: 'gptq',
    bits: f.bits,
    group_size: f.groupSize,
    desc_act: f.descAct,
    sym: f.sym,
    checkpoint_format: f.v2 ? 'gptq_v2' : 'gptq',
  };
}
