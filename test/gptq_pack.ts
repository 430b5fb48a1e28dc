// gptq_pack.ts — test helper (not a spec file): one linear layer's 4- or 8-bit quantization data packed
// the way GPTQ checkpoints store it (AutoGPTQ / GPTQModel / transformers + optimum), with this
// file's own packing code, plus the float64 reference of the weights a GPTQ loader reconstructs.
// Use it to write GPTQ checkpoints for tests: put the tensors under "<stem>.qweight", ".qzeros",
// ".scales", ".g_idx" and write them with writeSafetensors.
//
// Layout (b = bits, 4 or 8; p = 32 / b codes per word; in = input features, out = output features):
//   qweight i32 [in/p, out]        p codes per int32 along the INPUT dimension, low bits first:
//                                  code(i, o) = (qweight[i/p, o] >> b·(i%p)) & (2^b − 1)
//   qzeros  i32 [groups, ⌈out/p⌉]  p zero fields per int32 along the OUTPUT dimension, low bits first;
//                                  field = zero − 1 in checkpoint_format "gptq" (v1), zero in "gptq_v2"
//   scales  f16 [groups, out]
//   g_idx   i32 [in]               group of each input feature
//   w[o, i] = scales[g, o]·(code(i, o) − zero[g, o]), g = g_idx[i]; groups = ⌈in / groupSize⌉
//   (groupSize −1: one group). act order (desc_act): g_idx[order[k]] = ⌊k / groupSize⌋ for the
//   order the quantizer visited the inputs in (actOrderGIdx).
// v1 cannot hold a zero of 0 (its field would be −1); a field of 2^b − 1 reads back as 2^b, so v1
// zeros are 1..2^b here and v2 zeros 0..2^b − 1. Symmetric GPTQ uses the zero 2^(b−1) (8 / 128).
// The Python loaders size qzeros as out/p words (out a multiple of p); for other `out` the last
// word is partly used (its unused fields are 0).
import { tensor, type Tensor } from '../src/index.js';

/** One GPTQ layer's data, nn.Linear layout for the codes. */
export interface GptqLayerData {
  /** Output features (rows of the nn.Linear weight). */
  out: number;
  /** Input features; a multiple of 32 / bits (8 for 4 bits, 4 for 8 bits). */
  in: number;
  /** Code width: 4 (default) or 8. */
  bits?: 4 | 8;
  /** quantization_config group_size: inputs per group, or −1 for one group. */
  groupSize: number;
  /** [out, in] row-major integer codes 0..2^bits − 1 (codes[o·in + i] multiplies input i). */
  codes: ArrayLike<number>;
  /** [groups, out] integer zero points (v1: 1..2^bits, v2: 0..2^bits − 1). */
  zeros: ArrayLike<number>;
  /** [groups, out] scales; stored as f16 (rounded to nearest even from their f32 value) unless scaleDtype 'f32'. */
  scales: ArrayLike<number>;
  /** [in] group of each input; default ⌊i / groupSize⌋ (0 for groupSize −1). */
  gIdx?: ArrayLike<number>;
}

export interface GptqPackOptions {
  /** checkpoint_format "gptq_v2": qzeros hold the zero itself (default false: v1, zero − 1). */
  v2?: boolean;
  /** Dtype of the scales tensor (default 'f16', as every GPTQ quantizer writes). */
  scaleDtype?: 'f16' | 'f32';
}

/** The tensors of one layer, ready for writeSafetensors under "<stem>.qweight" etc. */
export interface GptqLayerTensors {
  qweight: Tensor<'i32'>;
  qzeros: Tensor<'i32'>;
  scales: Tensor<'f16'> | Tensor<'f32'>;
  g_idx: Tensor<'i32'>;
}

/** Number of groups of a layer: ⌈in / groupSize⌉, or 1 for groupSize −1. */
export function gptqGroups(inFeatures: number, groupSize: number): number {
  return groupSize === -1 ? 1 : Math.ceil(inFeatures / groupSize);
}

/** g_idx of an act-order layer whose inputs were quantized in `order` (a permutation of 0..in−1). */
export function actOrderGIdx(order: ArrayLike<number>, groupSize: number): Int32Array {
  const g = new Int32Array(order.length).fill(-1);
  for (let k = 0; k < order.length; k++) {
    const i = order[k]!;
    if (!Number.isInteger(i) || i < 0 || i >= order.length || g[i] !== -1) throw new Error('actOrderGIdx: order is not a permutation');
    g[i] = groupSize === -1 ? 0 : Math.floor(k / groupSize);
  }
  return g;
}

function roundHalfEven(y: number): number {
  const f = Math.floor(y);
  const d = y - f;
  if (d !== 0.5) return d < 0.5 ? f : f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * IEEE binary16 bits of Math.fround(x), rounded to nearest, ties to even (the scaling by powers
 * of two below is exact in float64, so the one rounding is roundHalfEven's). Throws when the
 * value does not fit (|x| >= 65520 rounds to infinity) or is NaN: a GPTQ scale must be finite.
 */
export function f16Bits(x: number): number {
  const v = Math.fround(x);
  if (!Number.isFinite(v) || Math.abs(v) >= 65520) throw new Error(`f16Bits: ${x} is not a finite f16`);
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24); // subnormal (1024 carries into the smallest normal)
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  const m = roundHalfEven((a / 2 ** e) * 1024); // 1024..2048; 2048 carries into the exponent
  return sign | (((e + 15) << 10) + (m - 1024));
}

/** The value of binary16 bits (exact). */
export function f16Value(h: number): number {
  const exp = (h >> 10) & 31;
  const mant = h & 1023;
  const mag = exp === 0 ? mant * 2 ** -24 : exp === 31 ? (mant ? NaN : Infinity) : (1024 + mant) * 2 ** (exp - 25);
  return h & 0x8000 ? -mag : mag;
}

interface Checked {
  groups: number;
  gIdx: Int32Array;
  scale: (g: number, o: number) => number; // the stored scale's value
}

function checkLayer(layer: GptqLayerData, opts: GptqPackOptions): Checked {
  const { out, in: inF, groupSize } = layer;
  const bits = layer.bits ?? 4;
  const v2 = opts.v2 ?? false;
  const scaleDtype = opts.scaleDtype ?? 'f16';
  if (bits !== 4 && bits !== 8) throw new Error(`bits must be 4 or 8, got ${String(bits)}`);
  const per = 32 / bits;
  const top = 2 ** bits - 1;
  if (!Number.isInteger(out) || out < 1) throw new Error(`out must be a positive integer, got ${out}`);
  if (!Number.isInteger(inF) || inF < per || inF % per !== 0) throw new Error(`in must be a positive multiple of ${per}, got ${inF}`);
  if (!(groupSize === -1 || (Number.isInteger(groupSize) && groupSize >= 1))) throw new Error(`groupSize must be -1 or >= 1, got ${groupSize}`);
  if (scaleDtype !== 'f16' && scaleDtype !== 'f32') throw new Error(`scaleDtype must be 'f16' or 'f32'`);
  const groups = gptqGroups(inF, groupSize);
  const need = (what: string, a: ArrayLike<number>, n: number) => {
    if (a.length !== n) throw new Error(`${what} has ${a.length} entries, expected ${n}`);
  };
  need('codes', layer.codes, out * inF);
  need('zeros', layer.zeros, groups * out);
  need('scales', layer.scales, groups * out);
  for (let k = 0; k < layer.codes.length; k++) {
    const c = layer.codes[k]!;
    if (!Number.isInteger(c) || c < 0 || c > top) throw new Error(`codes[${k}] = ${c} is not an integer in 0..${top}`);
  }
  const [zlo, zhi] = v2 ? [0, top] : [1, top + 1];
  for (let k = 0; k < layer.zeros.length; k++) {
    const z = layer.zeros[k]!;
    if (!Number.isInteger(z) || z < zlo || z > zhi) {
      throw new Error(`zeros[${k}] = ${z}: ${v2 ? 'gptq_v2' : 'gptq (v1)'} holds integer zeros ${zlo}..${zhi}`);
    }
  }
  const gIdx = new Int32Array(inF);
  for (let i = 0; i < inF; i++) {
    const g = layer.gIdx ? layer.gIdx[i]! : groupSize === -1 ? 0 : Math.floor(i / groupSize);
    if (!Number.isInteger(g) || g < 0 || g >= groups) throw new Error(`gIdx[${i}] = ${g} is outside 0..${groups - 1}`);
    gIdx[i] = g;
  }
  if (layer.gIdx) need('gIdx', layer.gIdx, inF);
  const sv = new Float64Array(groups * out);
  for (let k = 0; k < sv.length; k++) sv[k] = scaleDtype === 'f16' ? f16Value(f16Bits(layer.scales[k]!)) : Math.fround(layer.scales[k]!);
  return { groups, gIdx, scale: (g, o) => sv[g * out + o]! };
}

/** Packs one layer into GPTQ tensors (see the top of this file). */
export function packGptqLayer(layer: GptqLayerData, opts: GptqPackOptions = {}): GptqLayerTensors {
  const { groups, gIdx } = checkLayer(layer, opts);
  const { out, in: inF } = layer;
  const bits = layer.bits ?? 4;
  const per = 32 / bits;
  const mask = 2 ** bits - 1;
  const v2 = opts.v2 ?? false;
  // Int32Array stores the low 32 bits of each |=, so a code shifted into bit 31 wraps as int32 does.
  const qweight = new Int32Array((inF / per) * out);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inF; i++) qweight[Math.floor(i / per) * out + o]! |= layer.codes[o * inF + i]! << (bits * (i % per));
  }
  const words = Math.ceil(out / per);
  const qzeros = new Int32Array(groups * words);
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < out; o++) {
      const field = (layer.zeros[g * out + o]! - (v2 ? 0 : 1)) & mask;
      qzeros[g * words + Math.floor(o / per)]! |= field << (bits * (o % per));
    }
  }
  let scales: Tensor<'f16'> | Tensor<'f32'>;
  if ((opts.scaleDtype ?? 'f16') === 'f16') {
    const bits = new Uint16Array(groups * out);
    for (let k = 0; k < bits.length; k++) bits[k] = f16Bits(layer.scales[k]!);
    scales = tensor<'f16'>(bits, { dtype: 'f16', shape: [groups, out] });
  } else {
    scales = tensor<'f32'>(Float32Array.from(layer.scales), { dtype: 'f32', shape: [groups, out] });
  }
  return {
    qweight: tensor<'i32'>(qweight, { dtype: 'i32', shape: [inF / per, out] }),
    qzeros: tensor<'i32'>(qzeros, { dtype: 'i32', shape: [groups, words] }),
    scales,
    g_idx: tensor<'i32'>(gIdx, { dtype: 'i32', shape: [inF] }),
  };
}

/**
 * The weights a GPTQ loader reconstructs from packGptqLayer(layer, opts), in nn.Linear layout
 * [out, in]: w[o, i] = s·(code − zero) with s the stored scale's value (f16-rounded unless
 * scaleDtype 'f32'), evaluated in float64 and rounded once to f32. The product of an f16 scale
 * (11 significant bits) and an integer of magnitude <= 256 is exact in f32, so this is the value
 * zeroth's dequantize must give bit for bit (and, with f32 scales, the correctly rounded f32 product).
 */
export function dequantGptqReference(layer: GptqLayerData, opts: GptqPackOptions = {}): Float32Array {
  const { gIdx, scale } = checkLayer(layer, opts);
  const { out, in: inF } = layer;
  const w = new Float32Array(out * inF);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inF; i++) {
      const g = gIdx[i]!;
      w[o * inF + i] = scale(g, o) * (layer.codes[o * inF + i]! - layer.zeros[g * out + o]!);
    }
  }
  return w;
}
