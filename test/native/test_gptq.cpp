// test_gptq.cpp — GPTQ checkpoint tensors <-> zeroth int4 (model/gptq.h), and the column
// permutation of quantized weights (cpu/quant.h) that act-order checkpoints need.
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

Layer make_layer(uint64_t seed, int64_t out, int64_t in, int64_t gs, bool desc_act, bool v2, bool f32_scales = false) {
  Rng rng{seed};
  Layer L;
  L.out = out, L.in = in, L.gs = gs, L.v2 = v2, L.f32_scales = f32_scales;
  const int64_t g_eff = gs == -1 ? in : gs;
  L.groups = (in + g_eff - 1) / g_eff;
  L.codes.resize(static_cast<size_t>(out * in));
  for (int& c : L.codes) c = static_cast<int>(rng.below(16));
  L.zeros.resize(static_cast<size_t>(L.groups * out));
  // v1 holds zeros 1..16 (16: the field 15 that AutoGPTQ's zero − 1 wrapped to), v2 0..15.
  for (int& z : L.zeros) z = static_cast<int>(rng.below(16)) + (v2 ? 0 : 1);
  L.zeros[0] = v2 ? 0 : 16;
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

// Own GPTQ packing: 8 codes per int32 along the input dimension, zeros along the output one,
// low bits first; v1 stores zero − 1 (4-bit field).
Packed pack(const Layer& L) {
  const int64_t zw = (L.out + 7) / 8;
  std::vector<uint32_t> qw(static_cast<size_t>(L.in / 8 * L.out), 0), qz(static_cast<size_t>(L.groups * zw), 0);
  for (int64_t o = 0; o < L.out; ++o)
    for (int64_t i = 0; i < L.in; ++i)
      qw[static_cast<size_t>((i / 8) * L.out + o)] |= static_cast<uint32_t>(L.codes[o * L.in + i]) << (4 * (i % 8));
  for (int64_t g = 0; g < L.groups; ++g)
    for (int64_t o = 0; o < L.out; ++o) {
      const uint32_t field = static_cast<uint32_t>(L.zeros[g * L.out + o] - (L.v2 ? 0 : 1)) & 15u;
      qz[static_cast<size_t>(g * zw + o / 8)] |= field << (4 * (o % 8));
    }
  Packed p;
  p.qweight = tensor_from_host(ZEROTH_I32, {L.in / 8, L.out}, kCpu, qw.data(), qw.size() * 4);
  p.qzeros = tensor_from_host(ZEROTH_I32, {L.groups, zw}, kCpu, qz.data(), qz.size() * 4);
  if (L.f32_scales) p.scales = tensor_from_host(ZEROTH_F32, {L.groups, L.out}, kCpu, L.scales32.data(), L.scales32.size() * 4);
  else p.scales = tensor_from_host(ZEROTH_F16, {L.groups, L.out}, kCpu, L.scales16.data(), L.scales16.size() * 2);
  p.g_idx = tensor_from_host(ZEROTH_I32, {L.in}, kCpu, L.g_idx.data(), L.g_idx.size() * 4);
  return p;
}

GptqFormat format_of(const Layer& L, bool desc_act) {
  GptqFormat f;
  f.group_size = L.gs;
  f.desc_act = desc_act;
  f.v2 = L.v2;
  return f;
}

std::string name(const Layer& L, bool desc_act, bool with_gidx) {
  return "[" + std::to_string(L.out) + "x" + std::to_string(L.in) + "] gs " + std::to_string(L.gs) +
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
  return report();
}
