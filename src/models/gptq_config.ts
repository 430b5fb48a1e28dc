// gptq_config.ts — config.json's quantization_config for GPTQ checkpoints, both ways.
//
// Reading: quant_method "gptq" with bits 4 or 8, group_size (-1: one group per input row),
// desc_act, sym, and checkpoint_format "gptq" (zeros stored as zero − 1, the common v1 layout) or
// "gptq_v2" (zeros stored as is). `dynamic` (GPTQModel's per-module overrides) maps module-name
// regexes to overrides of those fields: {"+:<regex>": {"bits": 8, "group_size": 32}} (no prefix
// means "+:"), and "-:<regex>" marks modules that were not quantized (they stay float). The first
// key in the config's order whose regex matches at the start of the module name decides
// (Python's re.match); the native side resolves it per layer (native/model/gptq.h). Any other
// method, width or format is refused with E_UNSUPPORTED naming the field, never loaded as
// garbage. Fields that only matter when quantizing (damp_percent, true_sequential,
// static_groups, ...) are ignored.
//
// Writing: the base fields, plus `dynamic` when the native side needs per-layer entries (int8
// layers next to int4 ones, other group sizes, float block layers), each an exact-name key
// "+:^<escaped module name>$" / "-:^...$".
import { ZerothError } from '../errors.js';

/** One quantization_config.dynamic entry (native/model/gptq.h GptqOverride); unset fields keep the base. */
export interface GptqOverride {
  /** The key as in the config: "+:<regex>", "-:<regex>" (module not quantized) or "<regex>". */
  key: string;
  bits?: number;
  groupSize?: number;
  descAct?: boolean;
  sym?: boolean;
}

/** How a checkpoint's GPTQ layers are stored (native/model/gptq.h GptqFormat). */
export interface GptqFormat {
  bits: number;
  groupSize: number;
  descAct: boolean;
  sym: boolean;
  v2: boolean;
  /** Per-module overrides in the config's order (absent or empty: none). */
  dynamic?: GptqOverride[];
}

const unsupported = (field: string, why: string) =>
  new ZerothError('E_UNSUPPORTED', `config.json: quantization_config.${field} ${why}`);

function field<T>(q: Record<string, unknown>, key: string, kind: 'number' | 'boolean' | 'string', fallback: T, path = ''): T {
  const v = q[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== kind) throw new ZerothError('E_FORMAT', `config.json: quantization_config.${path}${key} must be a ${kind}`);
  return v as T;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkBits(bits: number, path: string): void {
  if (bits !== 4 && bits !== 8) throw unsupported(path, `= ${bits} is not supported; zeroth loads 4- and 8-bit GPTQ checkpoints`);
}

function checkGroupSize(groupSize: number, path: string): void {
  if (!Number.isInteger(groupSize) || (groupSize < 1 && groupSize !== -1)) {
    throw new ZerothError('E_FORMAT', `config.json: quantization_config.${path} must be a positive integer or -1, got ${groupSize}`);
  }
}

// pack_dtype (GPTQModel): the word the codes are packed in; zeroth reads int32 words only.
function checkPackDtype(o: Record<string, unknown>, path: string): void {
  const p = field<string>(o, 'pack_dtype', 'string', 'int32', path);
  if (p !== 'int32') throw unsupported(`${path}pack_dtype`, `"${p}" is not supported; zeroth reads codes packed in int32 words`);
}

function parseDynamic(raw: unknown): GptqOverride[] {
  if (raw === undefined || raw === null) return [];
  if (!isPlainObject(raw)) {
    throw new ZerothError('E_FORMAT', 'config.json: quantization_config.dynamic must be an object {regex: overrides}');
  }
  const out: GptqOverride[] = [];
  for (const [key, value] of Object.entries(raw)) {
    const path = `dynamic[${JSON.stringify(key)}].`;
    if (key.startsWith('-:')) { // the module was not quantized; its overrides (GPTQModel writes {}) do not matter
      out.push({ key });
      continue;
    }
    if (!isPlainObject(value)) {
      throw new ZerothError('E_FORMAT', `config.json: quantization_config.dynamic[${JSON.stringify(key)}] must be an object of overrides`);
    }
    const o: GptqOverride = { key };
    const bits = field<number | undefined>(value, 'bits', 'number', undefined, path);
    if (bits !== undefined) {
      checkBits(bits, `${path}bits`);
      o.bits = bits;
    }
    const groupSize = field<number | undefined>(value, 'group_size', 'number', undefined, path);
    if (groupSize !== undefined) {
      checkGroupSize(groupSize, `${path}group_size`);
      o.groupSize = groupSize;
    }
    const descAct = field<boolean | undefined>(value, 'desc_act', 'boolean', undefined, path);
    if (descAct !== undefined) o.descAct = descAct;
    const sym = field<boolean | undefined>(value, 'sym', 'boolean', undefined, path);
    if (sym !== undefined) o.sym = sym;
    checkPackDtype(value, path);
    out.push(o);
  }
  return out;
}

/** The GPTQ format of a config, undefined for a float checkpoint. */
export function parseQuantizationConfig(raw: Readonly<Record<string, unknown>>): GptqFormat | undefined {
  const q = raw.quantization_config;
  if (q === undefined || q === null) return undefined;
  if (!isPlainObject(q)) {
    throw new ZerothError('E_FORMAT', 'config.json: quantization_config must be an object');
  }
  const o = q;
  const method = field<string>(o, 'quant_method', 'string', 'gptq');
  if (method !== 'gptq') {
    throw unsupported('quant_method', `"${method}" is not supported; zeroth loads 4- and 8-bit GPTQ checkpoints (quant_method "gptq")`);
  }
  const bits = field<number>(o, 'bits', 'number', 4);
  checkBits(bits, 'bits');
  const groupSize = field<number>(o, 'group_size', 'number', 128);
  checkGroupSize(groupSize, 'group_size');
  const format = field<string>(o, 'checkpoint_format', 'string', 'gptq');
  if (format !== 'gptq' && format !== 'gptq_v2') {
    throw unsupported('checkpoint_format', `"${format}" is not supported; zeroth reads "gptq" (v1) and "gptq_v2"`);
  }
  checkPackDtype(o, '');
  const dynamic = parseDynamic(o.dynamic);
  const f: GptqFormat = {
    bits,
    groupSize,
    descAct: field<boolean>(o, 'desc_act', 'boolean', false),
    sym: field<boolean>(o, 'sym', 'boolean', true),
    v2: format === 'gptq_v2',
  };
  if (dynamic.length > 0) f.dynamic = dynamic;
  return f;
}

/** quantization_config for config.json of a checkpoint zeroth writes. */
export function gptqConfigJson(f: GptqFormat): Record<string, unknown> {
  const json: Record<string, unknown> = {
    quant_method: 'gptq',
    bits: f.bits,
    group_size: f.groupSize,
    desc_act: f.descAct,
    sym: f.sym,
    checkpoint_format: f.v2 ? 'gptq_v2' : 'gptq',
  };
  if (f.dynamic && f.dynamic.length > 0) {
    const dynamic: Record<string, Record<string, unknown>> = {};
    for (const d of f.dynamic) {
      const o: Record<string, unknown> = {};
      if (d.bits !== undefined) o.bits = d.bits;
      if (d.groupSize !== undefined) o.group_size = d.groupSize;
      if (d.descAct !== undefined) o.desc_act = d.descAct;
      if (d.sym !== undefined) o.sym = d.sym;
      dynamic[d.key] = o;
    }
    json.dynamic = dynamic;
  }
  return json;
}
