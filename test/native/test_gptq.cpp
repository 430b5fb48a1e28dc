// test_gptq.cpp — GPTQ checkpoint tensors <-> zeroth int4 / int8 (model/gptq.h), per-module
// formats (quantization_config "dynamic"), and the column permutation of quantized weights
// (cpu/quant.h) that act-order checkpoints need.
//
// The GPTQ tensors are packed here by this file's own code from random codes, zeros, g_idx and
// f16 scales (raw bits, decoded here too), so the converter is checked against the format as the
// loaders define it, not against itself.
// Checks:
//   1. gptq_to_quantized + dequantize equals w[o, i] = s·(q − zero) exactly: the product of an f16
//      (or f32) scale and a small integer is exact in float64, so its f32 rounding is the one value
//      zeroth's f32 expression can give. Cases: desc_act off / on (random act order), group_size 32
//      and -1, v1 (zeros 1..16, field 15 included) and v2 (zeros 0..15), out 40 and 43 (a partly
//      used qzeros word), in not a multiple of the group size, g_idx absent, f32 scales.
//   2. quant_matmul (M = 1 GEMV and M > 1 GEMM, every SIMD path) with the permutation equals a
//      float64 x·Wᵀ within 1e-5 · Σ_i |x_i·w_i| per output (as test_int4.cpp: f32 summation error is
//      ~√K·2^-24 of that; a wrong column order gives errors of the size of a weight).
//   3. Round trip: quantized_to_gptq gives back the very tensors read (v1 with g_idx), and reading
//      those again gives identical codes, zeros, perm and scales; weights made by quantize()
//      survive save -> load with their codes and zeros, and scales rounded to f16.
//   4. Malformed tensors throw E_FORMAT, unsupported layouts E_UNSUPPORTED, bad perms E_INVALID_ARG.
//   5. 8 bits (4 codes per word, zeros along the output in words of 4, symmetric zero 128 = v1
//      field 127): loaded as int8 codes q − 128 (q = 0 -> −128 included) equal to the float64
//      definition exactly, act order and group_size -1 included, quant_matmul on every SIMD path,
//      the tensors written back bit for bit (v1 and v2), int8 weights from quantize() and a
//      hand-made one holding −128 survive save -> load; asymmetric 8-bit layers E_UNSUPPORTED,
//      malformed 8-bit shapes E_FORMAT.
//   6. dynamic: the first key matching at the start of the module name wins (re.match), "-:" skips,
//      "+:" / no prefix override only the fields they name; exact-name keys escape metacharacters
//      and match one name only; a key std::regex cannot read is E_UNSUPPORTED. The checkpoint
//      format of mixed weights: base = the int4 layers' common group size, exact-name entries for
//      int8 / other group sizes / float layers, and resolving each layer gives back its own format.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/int4_gemm.h"
#include "cpu/quant.h"
#include "model/gptq.h"
#include "model/transformer.h"
#include "model/transformer_quant.h"
#include "check.h"

using namespace zeroth;
using namespace zeroth_test;
using model::GptqFormat;
using model::GptqTensors;

namespace {

constexpr zeroth_device kCpu{ZEROTH_DEVICE_CPU, 0};

// Own binary16 decoding (exact in float64).
double f16_value(uint16_t h) {
  const int exp = (h >> 10) & 31, mant = h & 1023;
  const double mag = exp == 0 ? std::ldexp(mant, -24) : std::ldexp(1024 + mant, exp - 25);
  return (h & 0x8000) ? -mag : mag;
}

// One GPTQ layer in plain arrays, nn.Linear layout for the codes.
struct Layer {
  int bits = 4;
  int64_t out = 0, in = 0, gs = 0, groups = 0;  // gs as in quantization_config (-1: one group)
  bool v2 = false, f32_scales = false;
  std::vector<int> codes;           // [out, in]
  std::vector<int> zeros;           // [groups, out] true zero points
  std::vector<uint16_t> scales16;   // [groups, out] f16 bits
  std::vector<float> scales32;      // [groups, out] when f32_scales
  std::vector<int32_t> g_idx;       // [in]
  double scale(int64_t g, int64_t o) const {
    return f32_scales ? static_cast<double>(scales32[g * out + o]) : f16_value(scales16[g * out + o]);
  }
  // The loaders' definition, evaluated in float64 (exact) and rounded once to f32.
  float w(int64_t o, int64_t i) const {
    const int64_t g = g_idx[i];
    return static_cast<float>(scale(g, o) * (codes[o * in + i] - zeros[g * out + o]));
  }
};

Layer make_layer(uint64_t seed, int64_t out, int64_t in, int64_t gs, bool desc_act, bool v2, bool f32_scales = false,
                 int bits = 4) {
  Rng rng{seed};
  Layer L;
  L.bits = bits;
  L.out = out, L.in = in, L.gs = gs, L.v2 = v2, L.f32_scales = f32_scales;
  const int64_t g_eff = gs == -1 ? in : gs;
  L.groups = (in + g_eff - 1) / g_eff;
  L.codes.resize(static_cast<size_t>(out * in));
  for (int& c : L.codes) c = static_cast<int>(rng.below(bits == 4 ? 16 : 256));
  L.zeros.resize(static_cast<size_t>(L.groups * out));
  if (bits == 8) {
    // Symmetric 8-bit (the only kind zeroth reads): zero 128; the extreme codes 0 and 255
    // (int8 −128 and 127) occur.
    for (int& z : L.zeros) z = 128;
    L.codes[0] = 0;
    L.codes[1] = 255;
  } else {
    // v1 holds zeros 1..16 (16: the field 15 that AutoGPTQ's zero − 1 wrapped to), v2 0..15.
    for (int& z : L.zeros) z = static_cast<int>(rng.below(16)) + (v2 ? 0 : 1);
    L.zeros[0] = v2 ? 0 : 16;
  }
  L.scales16.resize(static_cast<size_t>(L.groups * out));
  L.scales32.resize(L.scales16.size());
  for (size_t k = 0; k < L.scales16.size(); ++k) {
    // Normal f16 2^-9..2^0 with a random mantissa; every 17th a subnormal.
    const uint16_t exp = static_cast<uint16_t>(6 + rng.below(10)), mant = static_cast<uint16_t>(rng.below(1024));
    L.scales16[k] = (k % 17 == 5) ? static_cast<uint16_t>(1 + rng.below(1023)) : static_cast<uint16_t>(exp << 10 | mant);
    L.scales32[k] = 0.001f + 0.1f * std::fabs(rng.uniform());
  }
  L.g_idx.resize(static_cast<size_t>(in));
  if (desc_act) {
    // Act order: the quantizer visited inputs in order `visit` and cut groups along it.
    std::vector<int64_t> visit(static_cast<size_t>(in));
    for (int64_t i = 0; i < in; ++i) visit[static_cast<size_t>(i)] = i;
    for (int64_t i = in - 1; i > 0; --i) std::swap(visit[static_cast<size_t>(i)], visit[static_cast<size_t>(rng.below(i + 1))]);
    for (int64_t k = 0; k < in; ++k) L.g_idx[static_cast<size_t>(visit[static_cast<size_t>(k)])] = static_cast<int32_t>(k / g_eff);
  } else {
    for (int64_t i = 0; i < in; ++i) L.g_idx[static_cast<size_t>(i)] = static_cast<int32_t>(i / g_eff);
  }
  return L;
}

struct Packed {
  TensorPtr qweight, qzeros, scales, g_idx;
};

// Own GPTQ packing: 32/bits codes per int32 along the input dimension, zeros along the output
// one, low bits first; v1 stores zero − 1 (a bits-wide field).
Packed pack(const Layer& L) {
  const int64_t per = 32 / L.bits;
  const uint32_t mask = (1u << L.bits) - 1u;
  const int64_t zw = (L.out + per - 1) / per;
  std::vector<uint32_t> qw(static_cast<size_t>(L.in / per * L.out), 0), qz(static_cast<size_t>(L.groups * zw), 0);
  for (int64_t o = 0; o < L.out; ++o)
    for (int64_t i = 0; i < L.in; ++i)
      qw[static_cast<size_t>((i / per) * L.out + o)] |= static_cast<uint32_t>(L.codes[o * L.in + i]) << (L.bits * (i % per));
  for (int64_t g = 0; g < L.groups; ++g)
    for (int64_t o = 0; o < L.out; ++o) {
      const uint32_t field = static_cast<uint32_t>(L.zeros[g * L.out + o] - (L.v2 ? 0 : 1)) & mask;
      qz[static_cast<size_t>(g * zw + o / per)] |= field << (L.bits * (o % per));
    }
  Packed p;
  p.qweight = tensor_from_host(ZEROTH_I32, {L.in / per, L.out}, kCpu, qw.data(), qw.size() * 4);
  p.qzeros = tensor_from_host(ZEROTH_I32, {L.groups, zw}, kCpu, qz.data(), qz.size() * 4);
  if (L.f32_scales) p.scales = tensor_from_host(ZEROTH_F32, {L.groups, L.out}, kCpu, L.scales32.data(), L.scales32.size() * 4);
  else p.scales = tensor_from_host(ZEROTH_F16, {L.groups, L.out}, kCpu, L.scales16.data(), L.scales16.size() * 2);
  p.g_idx = tensor_from_host(ZEROTH_I32, {L.in}, kCpu, L.g_idx.data(), L.g_idx.size() * 4);
  return p;
}

GptqFormat format_of(const Layer& L, bool desc_act) {
  GptqFormat f;
  f.bits = L.bits;
  f.group_size = L.gs;
  f.desc_act = desc_act;
  f.v2 = L.v2;
  return f;
}

std::string name(const Layer& L, bool desc_act, bool with_gidx) {
  return std::to_string(L.bits) + "-bit [" + std::to_string(L.out) + "x" + std::to_string(L.in) + "] gs " + std::to_string(L.gs) +
         (desc_act ? " act-order" : "") + (L.v2 ? " v2" : " v1") + (L.f32_scales ? " f32-scales" : "") +
         (with_gidx ? "" : " no-g_idx");
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.nbytes() == b.nbytes() &&
         std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

bool same_perm(const Tensor& a, const Tensor& b) {
  const TensorPtr &pa = a.quant->perm, &pb = b.quant->perm;
  if (!pa || !pb) return !pa && !pb;
  return same_bytes(*pa, *pb);
}

// 1 + 3: load, compare every weight with the float64 definition, save, load again.
TensorPtr test_load(const Layer& L, bool desc_act, bool with_gidx) {
  const std::string what = name(L, desc_act, with_gidx);
  const Packed p = pack(L);
  TensorPtr q = model::gptq_to_quantized("layer", *p.qweight, *p.qzeros, *p.scales, with_gidx ? p.g_idx.get() : nullptr,
                                         format_of(L, desc_act));
  check(q->dtype == ZEROTH_INT4 && q->shape == (Shape{L.out, L.in}), what + ": int4 [out, in]");
  check(!q->quant->symmetric && q->quant->zeros && q->quant->scales->dtype == ZEROTH_F32, what + ": f32 scales and zeros");
  bool identity = true;
  for (int64_t i = 0; i < L.in; ++i) identity = identity && L.g_idx[i] == i / (L.gs == -1 ? L.in : L.gs);
  check(static_cast<bool>(q->quant->perm) == !identity, what + ": perm present exactly when g_idx is not i / group_size");

  TensorPtr d = dequantize(*q);
  int64_t bad = 0;
  for (int64_t o = 0; o < L.out; ++o)
    for (int64_t i = 0; i < L.in; ++i) bad += d->as<float>()[o * L.in + i] != L.w(o, i);
  check(bad == 0, what + ": dequantize equals s·(q − zero) exactly (" + std::to_string(bad) + " differ)");

  // Save: the tensors read come back bit for bit (v1 and v2 alike: every v2 layer here has a zero 0).
  const GptqTensors t = model::quantized_to_gptq("layer", *q);
  check(t.v2 == L.v2, what + ": save picks v2 exactly when a zero is 0");
  check(same_bytes(*t.qweight, *p.qweight), what + ": saved qweight equals the original");
  check(same_bytes(*t.qzeros, *p.qzeros), what + ": saved qzeros equals the original");
  check(same_bytes(*t.g_idx, *p.g_idx), what + ": saved g_idx equals the original");
  if (!L.f32_scales) check(same_bytes(*t.scales, *p.scales), what + ": saved f16 scales equal the original");
  GptqFormat f2 = format_of(L, desc_act);
  f2.v2 = t.v2;
  TensorPtr q2 = model::gptq_to_quantized("layer", *t.qweight, *t.qzeros, *t.scales, t.g_idx.get(), f2);
  check(same_bytes(*q2, *q), what + ": reload: identical codes");
  check(same_bytes(*q2->quant->zeros, *q->quant->zeros), what + ": reload: identical zeros");
  check(same_perm(*q2, *q), what + ": reload: identical perm");
  if (!L.f32_scales) check(same_bytes(*q2->quant->scales, *q->quant->scales), what + ": reload: identical scales");
  return q;
}

// 2: the fused product with the permutation against float64 x·Wᵀ of the reference weights.
void test_matmul(const Layer& L, const TensorPtr& q, int64_t M) {
  const std::string what = name(L, true, true) + " M " + std::to_string(M) + " " + simd_level_name(simd_level());
  Rng rng{static_cast<uint64_t>(L.out * 7 + L.in * 3 + M)};
  TensorPtr x = tensor_empty(ZEROTH_F32, {M, L.in}, kCpu);
  for (int64_t k = 0; k < M * L.in; ++k) x->as<float>()[k] = rng.uniform();
  TensorPtr y = quant_matmul(*x, *q);
  bool ok = y->shape == (Shape{M, L.out});
  double worst = 0;
  for (int64_t m = 0; m < M && ok; ++m)
    for (int64_t o = 0; o < L.out; ++o) {
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < L.in; ++i) {
        const double p = static_cast<double>(x->as<float>()[m * L.in + i]) * L.w(o, i);
        ref += p;
        mag += std::fabs(p);
      }
      const double err = std::fabs(y->as<float>()[m * L.out + o] - ref) / std::max(mag, 1e-30);
      worst = std::max(worst, err);
    }
  char buf[64];
  std::snprintf(buf, sizeof buf, " (worst %.2e)", worst);
  check(ok && worst <= 1e-5, what + ": quant_matmul within 1e-5 of float64 x·Wᵀ" + buf);
}

// 3: weights made by quantize() (asymmetric / symmetric, f32 / f16 scales) survive save -> load.
void test_from_quantize(bool sym, zeroth_dtype sdt) {
  const std::string what = std::string("quantize() ") + (sym ? "sym" : "asym") + (sdt == ZEROTH_F16 ? " f16" : " f32");
  Rng rng{sym ? 11u : 12u};
  const int64_t out = 24, in = 96;
  TensorPtr w = tensor_empty(ZEROTH_F32, {out, in}, kCpu);
  for (int64_t k = 0; k < out * in; ++k) w->as<float>()[k] = rng.uniform() + (k % 7 == 0 ? 1.5f : 0.0f);
  for (int64_t i = 0; i < 32; ++i) w->as<float>()[i] = 0.5f + 0.01f * static_cast<float>(i);  // a group with zero 0
  QuantizeOptions o;
  o.group_size = 32;
  o.symmetric = sym;
  o.scale_dtype = sdt;
  TensorPtr q = quantize(*w, o);
  const GptqTensors t = model::quantized_to_gptq("m", *q);
  check(t.sym == sym && t.group_size == 32 && t.v2 == !sym, what + ": sym / group_size / v2 reported");
  GptqFormat f;
  f.group_size = 32;
  f.v2 = t.v2;
  TensorPtr q2 = model::gptq_to_quantized("m", *t.qweight, *t.qzeros, *t.scales, t.g_idx.get(), f);
  check(same_bytes(*q2, *q) && !q2->quant->perm, what + ": identical codes, no perm");
  std::vector<float> s1, s2;
  const QuantMatrix a = quant_matrix(*q, s1), b = quant_matrix(*q2, s2);
  bool zeros_ok = true, scales_ok = true;
  for (int64_t r = 0; r < out; ++r)
    for (int64_t g = 0; g < a.groups; ++g) {
      zeros_ok = zeros_ok && a.zero(r, g) == b.zero(r, g);
      // f16 scales are carried exactly; f32 ones are rounded to the nearest f16 (own decoding).
      const double want = sdt == ZEROTH_F16 ? a.scale(r, g) : f16_value(t.scales->as<uint16_t>()[g * out + r]);
      const double rel = std::fabs(static_cast<double>(a.scale(r, g)) - want) / a.scale(r, g);
      scales_ok = scales_ok && b.scale(r, g) == want && rel <= 1.0 / 2048;
    }
  check(zeros_ok, what + ": identical zeros");
  check(scales_ok, what + ": scales are the f16 rounding (within 2^-11 relative)");
}

// 4: malformed checkpoints and unsupported layouts.
void test_errors() {
  const Layer L = make_layer(99, 16, 64, 32, true, false);
  const Packed p = pack(L);
  const GptqFormat f = format_of(L, true);
  auto load = [&](const TensorPtr& qw, const TensorPtr& qz, const TensorPtr& s, const Tensor* g, const GptqFormat& ff) {
    model::gptq_to_quantized("model.layers.0.mlp.up_proj", *qw, *qz, *s, g, ff);
  };
  const Tensor* g = p.g_idx.get();
  // Shapes.
  expect_error(ZEROTH_E_FORMAT, "qweight rows != in/8", [&] {
    load(tensor_zeros(ZEROTH_I32, {7, 16}, kCpu), p.qzeros, p.scales, g, f);
  });
  expect_error(ZEROTH_E_FORMAT, "qweight not 2-D", [&] { load(tensor_zeros(ZEROTH_I32, {8 * 16}, kCpu), p.qzeros, p.scales, g, f); });
  expect_error(ZEROTH_E_FORMAT, "qweight out != scales out", [&] {
    load(tensor_zeros(ZEROTH_I32, {8, 24}, kCpu), p.qzeros, p.scales, g, f);
  });
  expect_error(ZEROTH_E_FORMAT, "qzeros [groups, out/8 + 1]", [&] { load(p.qweight, tensor_zeros(ZEROTH_I32, {2, 3}, kCpu), p.scales, g, f); });
  expect_error(ZEROTH_E_FORMAT, "qzeros [groups + 1, out/8]", [&] { load(p.qweight, tensor_zeros(ZEROTH_I32, {3, 2}, kCpu), p.scales, g, f); });
  expect_error(ZEROTH_E_FORMAT, "scales [out, groups] (transposed)", [&] {
    load(p.qweight, p.qzeros, tensor_zeros(ZEROTH_F16, {16, 2}, kCpu), g, f);
  });
  expect_error(ZEROTH_E_FORMAT, "g_idx length != in", [&] {
    TensorPtr short_g = tensor_zeros(ZEROTH_I32, {56}, kCpu);
    load(p.qweight, p.qzeros, p.scales, short_g.get(), f);
  });
  // g_idx entries.
  for (int32_t badv : {-1, 2, 1 << 30}) {
    expect_error(ZEROTH_E_FORMAT, "g_idx entry " + std::to_string(badv), [&] {
      std::vector<int32_t> gv = L.g_idx;
      gv[37] = badv;
      TensorPtr bad = tensor_from_host(ZEROTH_I32, {64}, kCpu, gv.data(), gv.size() * 4);
      load(p.qweight, p.qzeros, p.scales, bad.get(), f);
    });
  }
  // Dtypes.
  expect_error(ZEROTH_E_FORMAT, "qweight f32", [&] { load(tensor_zeros(ZEROTH_F32, {8, 16}, kCpu), p.qzeros, p.scales, g, f); });
  expect_error(ZEROTH_E_FORMAT, "qzeros u8", [&] { load(p.qweight, tensor_zeros(ZEROTH_U8, {2, 2}, kCpu), p.scales, g, f); });
  expect_error(ZEROTH_E_FORMAT, "scales i32", [&] { load(p.qweight, p.qzeros, tensor_zeros(ZEROTH_I32, {2, 16}, kCpu), g, f); });
  expect_error(ZEROTH_E_FORMAT, "scales bf16", [&] { load(p.qweight, p.qzeros, tensor_zeros(ZEROTH_BF16, {2, 16}, kCpu), g, f); });
  expect_error(ZEROTH_E_FORMAT, "g_idx f32", [&] {
    TensorPtr gf = tensor_zeros(ZEROTH_F32, {64}, kCpu);
    load(p.qweight, p.qzeros, p.scales, gf.get(), f);
  });
  // Config.
  GptqFormat f3 = f;
  f3.bits = 3;
  expect_error(ZEROTH_E_UNSUPPORTED, "bits 3", [&] { load(p.qweight, p.qzeros, p.scales, g, f3); });
  GptqFormat f0 = f;
  f0.group_size = 0;
  expect_error(ZEROTH_E_FORMAT, "group_size 0", [&] { load(p.qweight, p.qzeros, p.scales, g, f0); });
  expect_error(ZEROTH_E_FORMAT, "desc_act without g_idx", [&] { load(p.qweight, p.qzeros, p.scales, nullptr, f); });
  expect_error(ZEROTH_E_UNSUPPORTED, "a group of 33 and one of 31", [&] {
    std::vector<int32_t> gv = L.g_idx;
    for (int64_t i = 0; i < 64; ++i)
      if (gv[static_cast<size_t>(i)] == 1) {
        gv[static_cast<size_t>(i)] = 0;
        break;
      }
    TensorPtr uneven = tensor_from_host(ZEROTH_I32, {64}, kCpu, gv.data(), gv.size() * 4);
    load(p.qweight, p.qzeros, p.scales, uneven.get(), f);
  });
  {
    std::string msg;
    try {
      load(p.qweight, tensor_zeros(ZEROTH_I32, {2, 3}, kCpu), p.scales, g, f);
    } catch (const Error& e) {
      msg = e.what();
    }
    check(msg.find("model.layers.0.mlp.up_proj.qzeros") != std::string::npos, "the error names the tensor: " + msg);
  }

  // Permutations in quant info (E_INVALID_ARG from every reader).
  TensorPtr q = model::gptq_to_quantized("l", *p.qweight, *p.qzeros, *p.scales, g, f);
  auto with_perm = [&](TensorPtr perm) {
    auto t = std::make_shared<Tensor>(*q);
    auto info = std::make_shared<QuantInfo>(*q->quant);
    info->perm = std::move(perm);
    t->quant = info;
    return t;
  };
  std::vector<int32_t> dup(64);
  for (int32_t i = 0; i < 64; ++i) dup[static_cast<size_t>(i)] = i;
  dup[5] = 6;
  std::vector<int32_t> range = dup;
  range[5] = 64;
  TensorPtr x = tensor_zeros(ZEROTH_F32, {64}, kCpu);
  for (auto& [label, perm] : std::vector<std::pair<std::string, TensorPtr>>{
           {"duplicate entry", tensor_from_host(ZEROTH_I32, {64}, kCpu, dup.data(), 256)},
           {"entry out of range", tensor_from_host(ZEROTH_I32, {64}, kCpu, range.data(), 256)},
           {"f32 perm", tensor_zeros(ZEROTH_F32, {64}, kCpu)},
           {"short perm", tensor_from_host(ZEROTH_I32, {63}, kCpu, dup.data(), 252)}}) {
    TensorPtr bad = with_perm(perm);
    expect_error(ZEROTH_E_INVALID_ARG, "perm " + label + " (dequantize)", [&] { dequantize(*bad); });
    expect_error(ZEROTH_E_INVALID_ARG, "perm " + label + " (quant_matmul)", [&] { quant_matmul(*x, *bad); });
  }

  // Saving.
  QuantizeOptions qo;
  qo.group_size = 4;
  TensorPtr odd = quantize(*tensor_zeros(ZEROTH_F32, {3, 12}, kCpu), qo);
  expect_error(ZEROTH_E_UNSUPPORTED, "save: in = 12 is not a multiple of 8", [&] { model::quantized_to_gptq("l", *odd); });
  auto with_zero = [&](float z) {
    auto t = std::make_shared<Tensor>(*q);
    auto info = std::make_shared<QuantInfo>(*q->quant);
    info->zeros = tensor_copy(*q->quant->zeros, ZEROTH_F32, kCpu);
    info->zeros->as<float>()[3] = z;
    t->quant = info;
    return t;
  };
  expect_error(ZEROTH_E_UNSUPPORTED, "save: zero 2.5", [&] { model::quantized_to_gptq("l", *with_zero(2.5f)); });
  expect_error(ZEROTH_E_UNSUPPORTED, "save: zero 17", [&] { model::quantized_to_gptq("l", *with_zero(17.0f)); });
  expect_error(ZEROTH_E_UNSUPPORTED, "save: zero -1", [&] { model::quantized_to_gptq("l", *with_zero(-1.0f)); });
  // L's zeros include 16 (v1 field 15); adding a 0 leaves no format that holds both.
  expect_error(ZEROTH_E_UNSUPPORTED, "save: zeros 0 and 16", [&] { model::quantized_to_gptq("l", *with_zero(0.0f)); });
  GptqFormat fv2 = f;
  fv2.v2 = true;
  expect_error(ZEROTH_E_UNSUPPORTED, "save as v2: zero 16", [&] { model::quantized_to_gptq("l", *q, fv2); });
  {
    const Layer L2 = make_layer(98, 16, 64, 32, false, true);
    const Packed p2 = pack(L2);
    TensorPtr q2 = model::gptq_to_quantized("l", *p2.qweight, *p2.qzeros, *p2.scales, p2.g_idx.get(), format_of(L2, false));
    GptqFormat fv1 = format_of(L2, false);
    fv1.v2 = false;
    expect_error(ZEROTH_E_UNSUPPORTED, "save as v1: zero 0", [&] { model::quantized_to_gptq("l", *q2, fv1); });
  }
  GptqFormat f64g = f;
  f64g.group_size = 16;
  expect_error(ZEROTH_E_UNSUPPORTED, "save with another group_size", [&] { model::quantized_to_gptq("l", *q, f64g); });
  {
    auto t = std::make_shared<Tensor>(*q);
    auto info = std::make_shared<QuantInfo>(*q->quant);
    info->scales = tensor_copy(*q->quant->scales, ZEROTH_F32, kCpu);
    info->scales->as<float>()[0] = 1e6f;
    t->quant = info;
    expect_error(ZEROTH_E_UNSUPPORTED, "save: scale 1e6 overflows f16", [&] { model::quantized_to_gptq("l", *t); });
  }
  expect_error(ZEROTH_E_DTYPE, "save: an f32 tensor", [&] { model::quantized_to_gptq("l", *tensor_zeros(ZEROTH_F32, {8, 8}, kCpu)); });
}

// 5: an 8-bit layer: int8 codes q − 128, exact values, tensors written back bit for bit.
TensorPtr test_load8(const Layer& L, bool desc_act) {
  const std::string what = name(L, desc_act, true);
  const Packed p = pack(L);
  const GptqFormat f = format_of(L, desc_act);
  TensorPtr q = model::gptq_to_quantized("layer", *p.qweight, *p.qzeros, *p.scales, p.g_idx.get(), f);
  check(q->dtype == ZEROTH_I8 && q->shape == (Shape{L.out, L.in}), what + ": i8 [out, in]");
  check(q->quant->symmetric && !q->quant->zeros && q->quant->scales->dtype == ZEROTH_F32, what + ": symmetric, f32 scales, no zeros");
  const int64_t g_eff = L.gs == -1 ? L.in : L.gs;
  bool identity = true;
  for (int64_t i = 0; i < L.in; ++i) identity = identity && L.g_idx[i] == i / g_eff;
  check(static_cast<bool>(q->quant->perm) == !identity, what + ": perm present exactly when g_idx is not i / group_size");
  // Codes: stored column j holds input perm[j] (or j), code q − 128 (q = 0 -> −128).
  const int32_t* perm = q->quant->perm ? q->quant->perm->as<int32_t>() : nullptr;
  int64_t bad_codes = 0;
  for (int64_t o = 0; o < L.out; ++o)
    for (int64_t j = 0; j < L.in; ++j) {
      const int64_t i = perm ? perm[j] : j;
      bad_codes += q->as<int8_t>()[o * L.in + j] != L.codes[o * L.in + i] - 128;
    }
  check(bad_codes == 0, what + ": codes are q − 128 (" + std::to_string(bad_codes) + " differ)");
  TensorPtr d = dequantize(*q);
  int64_t bad = 0;
  for (int64_t o = 0; o < L.out; ++o)
    for (int64_t i = 0; i < L.in; ++i) bad += d->as<float>()[o * L.in + i] != L.w(o, i);
  check(bad == 0, what + ": dequantize equals s·(q − 128) exactly (" + std::to_string(bad) + " differ)");

  const GptqTensors t = model::quantized_to_gptq("layer", *q, f);
  check(t.bits == 8 && t.sym && t.v2 == L.v2, what + ": written as symmetric 8-bit");
  check(same_bytes(*t.qweight, *p.qweight), what + ": saved qweight equals the original");
  check(same_bytes(*t.qzeros, *p.qzeros), what + ": saved qzeros equals the original (zero 128)");
  check(same_bytes(*t.g_idx, *p.g_idx), what + ": saved g_idx equals the original");
  if (!L.f32_scales) check(same_bytes(*t.scales, *p.scales), what + ": saved f16 scales equal the original");
  TensorPtr q2 = model::gptq_to_quantized("layer", *t.qweight, *t.qzeros, *t.scales, t.g_idx.get(), f);
  check(same_bytes(*q2, *q) && same_perm(*q2, *q), what + ": reload: identical codes and perm");
  if (!L.f32_scales) check(same_bytes(*q2->quant->scales, *q->quant->scales), what + ": reload: identical scales");
  if (!L.v2) {  // without a format the int8 weight is written in v1 (no int4 zero asks for v2)
    const GptqTensors t1 = model::quantized_to_gptq("layer", *q);
    check(t1.bits == 8 && !t1.v2 && same_bytes(*t1.qzeros, *p.qzeros), what + ": default save is v1, field 127");
  }
  return q;
}

// 5: int8 weights made by quantize() (one group per row, groups of 32) and one holding −128.
void test_from_quantize8() {
  for (int64_t gs : {int64_t{0}, int64_t{32}}) {
    const std::string what = "quantize() int8 group " + std::to_string(gs);
    Rng rng{static_cast<uint64_t>(21 + gs)};
    const int64_t out = 12, in = 100;  // a multiple of 4, not of 8 or 32: the last group holds 4
    TensorPtr w = tensor_empty(ZEROTH_F32, {out, in}, kCpu);
    for (int64_t k = 0; k < out * in; ++k) w->as<float>()[k] = rng.uniform();
    QuantizeOptions o;
    o.bits = 8;
    o.symmetric = true;
    o.group_size = gs;
    o.scale_dtype = ZEROTH_F16;
    TensorPtr q = quantize(*w, o);
    const GptqTensors t = model::quantized_to_gptq("m", *q);
    check(t.bits == 8 && t.sym && !t.v2 && t.group_size == (gs == 0 ? in : gs), what + ": bits / sym / v1 / group_size reported");
    check(t.qweight->shape == (Shape{in / 4, out}) && t.qzeros->shape == (Shape{(in + t.group_size - 1) / t.group_size, 3}),
          what + ": qweight [in/4, out], qzeros [groups, out/4]");
    bool fields = true;
    for (int64_t k = 0; k < t.qzeros->numel; ++k) fields = fields && static_cast<uint32_t>(t.qzeros->as<int32_t>()[k]) == 0x7f7f7f7fu;
    check(fields, what + ": every qzeros field is 127 (v1 zero − 1 of 128)");
    GptqFormat f;
    f.bits = 8;
    f.group_size = gs == 0 ? -1 : gs;
    TensorPtr q2 = model::gptq_to_quantized("m", *t.qweight, *t.qzeros, *t.scales, t.g_idx.get(), f);
    std::vector<float> s1, s2;
    const QuantMatrix a = quant_matrix(*q, s1), b = quant_matrix(*q2, s2);
    bool scales_ok = a.groups == b.groups;
    for (int64_t r = 0; r < out && scales_ok; ++r)
      for (int64_t g = 0; g < a.groups; ++g) scales_ok = scales_ok && a.scale(r, g) == b.scale(r, g);
    check(same_bytes(*q2, *q) && !q2->quant->perm, what + ": identical codes, no perm");
    check(scales_ok, what + ": identical (f16) scales");
  }
  // −128 (which quantize() never writes) round-trips as q = 0.
  std::vector<int8_t> codes(8 * 4);
  for (size_t k = 0; k < codes.size(); ++k) codes[k] = static_cast<int8_t>(static_cast<int>(k * 37 % 256) - 128);
  codes[5] = -128;
  TensorPtr q = tensor_from_host(ZEROTH_I8, {4, 8}, kCpu, codes.data(), codes.size());
  auto info = std::make_shared<QuantInfo>();
  info->group_size = 8;
  info->symmetric = true;
  std::vector<float> sc = {0.5f, 0.25f, 0.125f, 1.0f};
  info->scales = tensor_from_host(ZEROTH_F32, {4, 1}, kCpu, sc.data(), sc.size() * 4);
  q->quant = info;
  TensorPtr d = dequantize(*q);
  check(d->as<float>()[5] == -64.0f, "int8 −128: dequantize gives −128·scale");
  const GptqTensors t = model::quantized_to_gptq("m", *q);
  check(((static_cast<uint32_t>(t.qweight->as<int32_t>()[1 * 4 + 0]) >> 8) & 255u) == 0u, "int8 −128 is written as q = 0");
  GptqFormat f;
  f.bits = 8;
  f.group_size = -1;
  TensorPtr q2 = model::gptq_to_quantized("m", *t.qweight, *t.qzeros, *t.scales, t.g_idx.get(), f);
  check(same_bytes(*q2, *q), "int8 −128: save -> load keeps every code");
}

// 5: 8-bit errors.
void test_errors8() {
  const Layer L = make_layer(97, 16, 64, 32, true, false, false, 8);
  const Packed p = pack(L);
  const GptqFormat f = format_of(L, true);
  const std::string stem = "model.layers.1.mlp.down_proj";
  auto load = [&](const TensorPtr& qw, const TensorPtr& qz, const Tensor* g, const GptqFormat& ff) {
    model::gptq_to_quantized(stem, *qw, *qz, *p.scales, g, ff);
  };
  const Tensor* g = p.g_idx.get();
  expect_error(ZEROTH_E_FORMAT, "8-bit qweight [in/8, out] (the 4-bit shape)", [&] {
    load(tensor_zeros(ZEROTH_I32, {8, 16}, kCpu), p.qzeros, g, f);
  });
  expect_error(ZEROTH_E_FORMAT, "8-bit qzeros [groups, out/8] (the 4-bit shape)", [&] {
    load(p.qweight, tensor_zeros(ZEROTH_I32, {2, 2}, kCpu), g, f);
  });
  {
    std::string msg;
    try {
      load(tensor_zeros(ZEROTH_I32, {15, 16}, kCpu), p.qzeros, g, f);
    } catch (const Error& e) {
      msg = e.what();
    }
    check(msg.find(stem + ".qweight") != std::string::npos && msg.find("[in/4, out]") != std::string::npos,
          "a malformed 8-bit qweight names the tensor and its 8-bit shape: " + msg);
  }
  // Asymmetric: one zero 127 (v1 field 126), or every zero 0x11 + 1.
  for (uint32_t field : {126u, 0x11u, 255u}) {
    std::vector<int32_t> qz(static_cast<size_t>(p.qzeros->numel));
    std::memcpy(qz.data(), p.qzeros->data(), qz.size() * 4);
    qz[1] = static_cast<int32_t>((static_cast<uint32_t>(qz[1]) & ~(255u << 16)) | (field << 16));  // output 6, group 0
    TensorPtr bad = tensor_from_host(ZEROTH_I32, p.qzeros->shape, kCpu, qz.data(), qz.size() * 4);
    std::string msg;
    zeroth_status code = ZEROTH_OK;
    try {
      load(p.qweight, bad, g, f);
    } catch (const Error& e) {
      msg = e.what();
      code = e.code();
    }
    check(code == ZEROTH_E_UNSUPPORTED && msg.find(stem) != std::string::npos && msg.find("asymmetric") != std::string::npos &&
              msg.find("output 6, group 0") != std::string::npos,
          "asymmetric 8-bit (v1 field " + std::to_string(field) + "): E_UNSUPPORTED naming the layer and why: " + msg);
  }
  // v2 reads the fields as the zeros: the v1 layer's 127s are then asymmetric.
  GptqFormat fv2 = f;
  fv2.v2 = true;
  expect_error(ZEROTH_E_UNSUPPORTED, "v1 8-bit fields read as v2 (zero 127)", [&] { load(p.qweight, p.qzeros, g, fv2); });
  // Saving.
  TensorPtr q = model::gptq_to_quantized(stem, *p.qweight, *p.qzeros, *p.scales, g, f);
  GptqFormat f4 = f;
  f4.bits = 4;
  expect_error(ZEROTH_E_UNSUPPORTED, "save an int8 weight as 4-bit", [&] { model::quantized_to_gptq(stem, *q, f4); });
  QuantizeOptions qo;
  qo.bits = 8;
  qo.symmetric = true;
  qo.group_size = 0;
  TensorPtr odd = quantize(*tensor_zeros(ZEROTH_F32, {3, 10}, kCpu), qo);
  expect_error(ZEROTH_E_UNSUPPORTED, "save int8: in = 10 is not a multiple of 4", [&] { model::quantized_to_gptq("l", *odd); });
}

// 6: dynamic resolution and exact-name keys.
void test_dynamic() {
  GptqFormat base;
  base.bits = 4;
  base.group_size = 32;
  base.desc_act = true;
  base.sym = false;
  auto entry = [](const std::string& key, std::optional<int> bits, std::optional<int64_t> gs) {
    model::GptqOverride o;
    o.key = key;
    o.bits = bits;
    o.group_size = gs;
    return o;
  };
  GptqFormat f = base;
  f.dynamic = {entry("-:.*\\.mlp\\.down_proj", std::nullopt, std::nullopt),
               entry("+:model\\.layers\\.1\\.", 8, -1),
               entry("model\\.layers\\.[0-9]+\\.mlp\\.", std::nullopt, 64),
               entry("mlp", 8, 16),  // re.match: never matches a name that does not start with "mlp"
               entry("+:.*", 8, 128)};
  auto resolve = [&](const std::string& m) { return model::gptq_layer_format(f, m); };
  check(!resolve("model.layers.0.mlp.down_proj").has_value(), "dynamic: '-:' excludes its module (first match)");
  {
    auto r = resolve("model.layers.1.self_attn.q_proj");
    check(r && r->bits == 8 && r->group_size == -1 && r->desc_act && !r->sym && r->dynamic.empty(),
          "dynamic: '+:' overrides bits and group_size, keeps the other base fields");
  }
  {
    auto r = resolve("model.layers.1.mlp.up_proj");  // the layer-1 key comes first
    check(r && r->bits == 8 && r->group_size == -1, "dynamic: the first matching key wins");
  }
  {
    auto r = resolve("model.layers.10.mlp.up_proj");  // "model\.layers\.1\." does not match "10."
    check(r && r->bits == 4 && r->group_size == 64, "dynamic: a key without prefix applies; only its fields change");
  }
  {
    auto r = resolve("model.layers.0.self_attn.o_proj");  // "mlp" anchored at the start: no match
    check(r && r->bits == 8 && r->group_size == 128, "dynamic: matching is anchored at the start (re.match), not a search");
  }
  {
    GptqFormat none = base;
    auto r = model::gptq_layer_format(none, "x");
    check(r && r->bits == 4 && r->group_size == 32, "dynamic: no entries -> the base format");
  }
  // Exact-name keys.
  const std::string key = model::gptq_exact_key("a.b[0]+c", false);
  check(key == "+:^a\\.b\\[0\\]\\+c$", "exact key escapes metacharacters: " + key);
  check(model::gptq_exact_key("transformer.h.0.mlp.c_fc", true) == "-:^transformer\\.h\\.0\\.mlp\\.c_fc$", "exact '-:' key");
  GptqFormat fx = base;
  fx.dynamic = {entry(key, 8, -1)};
  check(model::gptq_layer_format(fx, "a.b[0]+c")->bits == 8, "exact key matches its name");
  check(model::gptq_layer_format(fx, "a.b[0]+cd")->bits == 4 && model::gptq_layer_format(fx, "aXb[0]+c")->bits == 4,
        "exact key matches no other name");
  GptqFormat fbad = base;
  fbad.dynamic = {entry("+:(?P<x>q)_proj", 8, -1)};
  expect_error(ZEROTH_E_UNSUPPORTED, "a Python-only regex key", [&] { model::gptq_layer_format(fbad, "q_proj"); });
}

// 6: the checkpoint format of mixed weights, and each layer's resolved format writes it.
void test_checkpoint_format() {
  Rng rng{77};
  auto weight = [&](int bits, int64_t gs, int64_t out, int64_t in) {
    TensorPtr w = tensor_empty(ZEROTH_F32, {out, in}, kCpu);
    for (int64_t k = 0; k < out * in; ++k) w->as<float>()[k] = rng.uniform();
    QuantizeOptions o;
    o.bits = bits;
    o.group_size = gs;
    o.symmetric = bits == 8;
    return quantize(*w, o);
  };
  std::vector<model::Weight> ws = {
      {"h.0.a.weight", weight(4, 32, 8, 64), false, 1},  {"h.0.b.weight", weight(4, 32, 8, 96), false, 1},
      {"h.0.c.weight", weight(4, 16, 8, 64), false, 1},  {"h.1.a.weight", weight(8, 0, 8, 64), false, 1},
      {"h.1.b.weight", weight(4, 64, 8, 64), false, 1},  // one group per row: fits group_size 32? no (64 > 32)
      {"h.1.c.weight", weight(8, 32, 8, 64), false, 1},
  };
  std::vector<const model::Weight*> ptrs;
  for (const auto& w : ws) ptrs.push_back(&w);
  const GptqFormat f = model::gptq_checkpoint_format(ptrs, {"h.1.d.weight"});
  check(f.bits == 4 && f.group_size == 32 && !f.sym && !f.desc_act, "checkpoint format: base = int4, group 32 (the most common)");
  std::vector<std::string> keys;
  for (const auto& d : f.dynamic) keys.push_back(d.key);
  const std::vector<std::string> want = {"+:^h\\.0\\.c$", "+:^h\\.1\\.a$", "+:^h\\.1\\.b$", "+:^h\\.1\\.c$", "-:^h\\.1\\.d$"};
  check(keys == want, "checkpoint format: exact-name entries for the int8 / other-group layers and the float layer");
  const std::vector<std::pair<int, int64_t>> own = {{4, 32}, {4, 32}, {4, 16}, {8, -1}, {4, -1}, {8, 32}};
  for (size_t i = 0; i < ws.size(); ++i) {
    const std::string stem = ws[i].name.substr(0, ws[i].name.size() - 7);
    auto r = model::gptq_layer_format(f, stem);
    check(r && r->bits == own[i].first && r->group_size == own[i].second, "checkpoint format: " + stem + " resolves to its own format");
    const GptqTensors t = model::quantized_to_gptq(stem, *ws[i].tensor, *r);
    TensorPtr back = model::gptq_to_quantized(stem, *t.qweight, *t.qzeros, *t.scales, t.g_idx.get(), *r);
    check(same_bytes(*back, *ws[i].tensor), "checkpoint format: " + stem + " round-trips its codes");
  }
  check(!model::gptq_layer_format(f, "h.1.d").has_value(), "checkpoint format: the float layer is excluded");
  // Only int8 layers: base bits 8, no entries.
  std::vector<const model::Weight*> only8 = {&ws[3]};
  const GptqFormat f8 = model::gptq_checkpoint_format(only8);
  check(f8.bits == 8 && f8.group_size == -1 && f8.sym && f8.dynamic.empty(), "checkpoint format: all int8 -> bits 8, group_size -1");
}

}  // namespace

int main() {
  set_num_threads(2);
  std::vector<std::pair<Layer, TensorPtr>> perm_layers;
  uint64_t seed = 1;
  for (bool v2 : {false, true})
    for (bool desc_act : {false, true})
      for (int64_t gs : {32, -1})
        for (int64_t out : {40, 43}) {
          const int64_t in = gs == 32 ? 32 * 4 + 8 : 96;  // 136: the last group holds 8
          const Layer L = make_layer(seed++, out, in, gs, desc_act, v2);
          TensorPtr q = test_load(L, desc_act, true);
          if (desc_act && gs == 32) perm_layers.emplace_back(L, q);
        }
  test_load(make_layer(seed++, 40, 64, 32, false, false), false, false);   // g_idx absent
  test_load(make_layer(seed++, 16, 128, 64, true, false, true), true, true);  // f32 scales
  test_load(make_layer(seed++, 8, 64, 128, true, true), true, true);  // group_size > in: one group
  // 8 bits: group 32 / -1, act order or not, v1 / v2, out 40 / 43 (a partly used qzeros word),
  // in 100 (a multiple of 4 only; the last group of 32 holds 4).
  for (bool v2 : {false, true})
    for (bool desc_act : {false, true})
      for (int64_t gs : {32, -1})
        for (int64_t out : {40, 43}) {
          const Layer L = make_layer(seed++, out, gs == 32 ? 100 : 96, gs, desc_act, v2, false, 8);
          TensorPtr q = test_load8(L, desc_act);
          if (desc_act && gs == 32) perm_layers.emplace_back(L, q);
        }
  test_load8(make_layer(seed++, 16, 64, 32, false, false, true, 8), false);  // f32 scales
  {
    const Layer L = make_layer(seed++, 300, 1024, 128, true, false, false, 8);
    perm_layers.emplace_back(L, test_load8(L, true));
  }
  // A layer big enough for several GEMM panels and threads, act order, group 128.
  {
    const Layer L = make_layer(seed++, 300, 1024, 128, true, false);
    perm_layers.emplace_back(L, test_load(L, true, true));
  }

  const SimdLevel best = simd_level();
  for (SimdLevel l : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}) {
    if (l > best) continue;
    set_simd_level(l);
    for (const auto& [L, q] : perm_layers)
      for (int64_t M : {1, 5}) test_matmul(L, q, M);
  }
  set_simd_level(best);

  for (bool sym : {false, true})
    for (zeroth_dtype sdt : {ZEROTH_F32, ZEROTH_F16}) test_from_quantize(sym, sdt);
  test_errors();
  test_from_quantize8();
  test_errors8();
  test_dynamic();
  test_checkpoint_format();
  return report();
}
