// gptq.cpp — GPTQ checkpoint tensors <-> zeroth int4 / int8 weights (conventions in gptq.h).
#include "model/gptq.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <regex>
#include <vector>

#include "core/errors.h"
#include "core/half.h"
#include "core/parallel.h"
#include "cpu/quant.h"

namespace zeroth::model {
namespace {

constexpr zeroth_device kCpu{ZEROTH_DEVICE_CPU, 0};

std::string dims(const Shape& s) { return shape_string(s); }

// dtype and device of one checkpoint tensor; a wrong dtype is a malformed checkpoint (E_FORMAT).
void require_file_dtype(const Tensor& t, const std::string& name, std::initializer_list<zeroth_dtype> allowed,
                        const char* expected) {
  bool ok = false;
  for (zeroth_dtype d : allowed) ok = ok || t.dtype == d;
  ZCHECK(ok, ZEROTH_E_FORMAT,
         name + " has dtype " + std::string(dtype_traits(t.dtype).name) + " but GPTQ stores it as " + expected);
  require_cpu(t, name.c_str());
}

float read_scale(const Tensor& s, int64_t i) {
  return s.dtype == ZEROTH_F16 ? f16_to_f32(s.as<uint16_t>()[i]) : s.as<float>()[i];
}

}  // namespace

std::optional<GptqFormat> gptq_layer_format(const GptqFormat& f, const std::string& module) {
  GptqFormat out = f;
  out.dynamic.clear();
  for (const GptqOverride& d : f.dynamic) {
    const bool skip = d.key.compare(0, 2, "-:") == 0;
    const std::string pattern = skip || d.key.compare(0, 2, "+:") == 0 ? d.key.substr(2) : d.key;
    std::regex re;
    try {
      re = std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw Error(ZEROTH_E_UNSUPPORTED,
                  "quantization_config.dynamic key '" + d.key + "' is not a regular expression zeroth can read (" +
                      e.what() + "); zeroth evaluates them as ECMAScript, without Python-only syntax such as (?P<name>...)");
    }
    // match_continuous: the match must begin at the first character, as Python's re.match.
    if (!std::regex_search(module, re, std::regex_constants::match_continuous)) continue;
    if (skip) return std::nullopt;
    if (d.bits) out.bits = *d.bits;
    if (d.group_size) out.group_size = *d.group_size;
    if (d.desc_act) out.desc_act = *d.desc_act;
    if (d.sym) out.sym = *d.sym;
    return out;
  }
  return out;
}

std::string gptq_exact_key(const std::string& module, bool skip) {
  std::string key = skip ? "-:^" : "+:^";
  for (char c : module) {
    if (std::strchr("\\^$.|?*+()[]{}", c) != nullptr && c != '\0') key += '\\';
    key += c;
  }
  return key + "$";
}

TensorPtr gptq_to_quantized(const std::string& stem, const Tensor& qweight, const Tensor& qzeros,
                            const Tensor& scales, const Tensor* g_idx, const GptqFormat& f) {
  const std::string nq = stem + ".qweight", nz = stem + ".qzeros", ns = stem + ".scales", ng = stem + ".g_idx";
  ZCHECK(f.bits == 4 || f.bits == 8, ZEROTH_E_UNSUPPORTED,
         stem + ": GPTQ quantization_config 'bits' is " + std::to_string(f.bits) + "; zeroth reads 4- and 8-bit GPTQ only");
  ZCHECK(f.group_size == -1 || f.group_size >= 1, ZEROTH_E_FORMAT,
         stem + ": GPTQ quantization_config 'group_size' must be -1 (one group) or >= 1, got " +
             std::to_string(f.group_size));
  require_file_dtype(qweight, nq, {ZEROTH_I32}, "I32");
  require_file_dtype(qzeros, nz, {ZEROTH_I32}, "I32");
  require_file_dtype(scales, ns, {ZEROTH_F16, ZEROTH_F32}, "F16 (or F32)");
  if (g_idx) require_file_dtype(*g_idx, ng, {ZEROTH_I32}, "I32");

  // Sizes: out from qweight's columns, in from qweight's rows (`per` inputs per word); g_idx, when
  // present, must list exactly those inputs.
  const int bits = f.bits;
  const int64_t per = 32 / bits;
  const uint32_t mask = (1u << bits) - 1u;
  const std::string per_s = std::to_string(per);
  ZCHECK(qweight.ndim() == 2 && qweight.shape[0] >= 1 && qweight.shape[1] >= 1, ZEROTH_E_FORMAT,
         nq + " must be 2-D [in/" + per_s + ", out] and non-empty, got " + dims(qweight.shape));
  const int64_t in = qweight.shape[0] * per, out = qweight.shape[1];
  if (g_idx) {
    ZCHECK(g_idx->ndim() == 1, ZEROTH_E_FORMAT, ng + " must be 1-D [in], got " + dims(g_idx->shape));
    ZCHECK(g_idx->shape[0] == in, ZEROTH_E_FORMAT,
           nq + " has shape " + dims(qweight.shape) + ", which packs " + std::to_string(in) + " input features (" + per_s +
               " per row at " + std::to_string(bits) + " bits), but " + ng + " lists " + std::to_string(g_idx->shape[0]) +
               " (qweight must be [in/" + per_s + ", out])");
  } else {
    ZCHECK(!f.desc_act, ZEROTH_E_FORMAT,
           ng + " is missing but desc_act is true: the input features of each group are unknown without it");
  }
  const int64_t gs = f.group_size == -1 ? in : f.group_size;
  const int64_t groups = (in + gs - 1) / gs;
  ZCHECK(scales.shape == (Shape{groups, out}), ZEROTH_E_FORMAT,
         ns + " has shape " + dims(scales.shape) + " but " + std::to_string(in) + " inputs in groups of " +
             std::to_string(gs) + " and " + std::to_string(out) + " outputs need " + dims({groups, out}));
  const int64_t zwords = (out + per - 1) / per;
  ZCHECK(qzeros.shape == (Shape{groups, zwords}), ZEROTH_E_FORMAT,
         nz + " has shape " + dims(qzeros.shape) + " but " + std::to_string(groups) + " groups and " +
             std::to_string(out) + " outputs (" + per_s + " per word) need " + dims({groups, zwords}));

  // Stored column order: inputs sorted by group, stably. pos[i] is input i's stored column.
  std::vector<int32_t> perm(static_cast<size_t>(in)), pos(static_cast<size_t>(in));
  bool identity = true;
  if (g_idx) {
    const int32_t* gi = g_idx->as<int32_t>();
    std::vector<int64_t> start(static_cast<size_t>(groups) + 1, 0);
    for (int64_t i = 0; i < in; ++i) {
      ZCHECK(gi[i] >= 0 && gi[i] < groups, ZEROTH_E_FORMAT,
             ng + "[" + std::to_string(i) + "] is " + std::to_string(gi[i]) + ", outside [0, " + std::to_string(groups) +
                 ") (" + std::to_string(groups) + " groups)");
      ++start[static_cast<size_t>(gi[i]) + 1];
    }
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t n = start[static_cast<size_t>(g) + 1], want = std::min(gs, in - g * gs);
      ZCHECK(n == want, ZEROTH_E_UNSUPPORTED,
             stem + ": group " + std::to_string(g) + " of " + ng + " holds " + std::to_string(n) + " input features; zeroth " +
                 "needs every group to hold exactly group_size = " + std::to_string(gs) + " (the last one: the remaining " +
                 std::to_string(want) + ")");
      start[static_cast<size_t>(g) + 1] += start[static_cast<size_t>(g)];
    }
    for (int64_t i = 0; i < in; ++i) {
      const int64_t j = start[static_cast<size_t>(gi[i])]++;
      perm[static_cast<size_t>(j)] = static_cast<int32_t>(i);
      pos[static_cast<size_t>(i)] = static_cast<int32_t>(j);
      identity = identity && j == i;
    }
  } else {
    for (int64_t i = 0; i < in; ++i) perm[static_cast<size_t>(i)] = pos[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  }

  const uint32_t* qz = reinterpret_cast<const uint32_t*>(qzeros.as<int32_t>());
  const uint32_t offset = f.v2 ? 0u : 1u;  // v1 stored zero − 1
  auto zero_at = [&](int64_t g, int64_t o) {
    return ((qz[g * zwords + o / per] >> (bits * (o % per))) & mask) + offset;
  };
  if (bits == 8) {
    // zeroth's int8 is symmetric: every zero must be 128 (GPTQ's sym), else the layer is refused
    // before any work.
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t o = 0; o < out; ++o) {
        const uint32_t z = zero_at(g, o);
        ZCHECK(z == 128u, ZEROTH_E_UNSUPPORTED,
               stem + ": this 8-bit GPTQ layer is asymmetric (zero point " + std::to_string(z) + " at output " +
                   std::to_string(o) + ", group " + std::to_string(g) + " in " + nz + "); zeroth's int8 weights are " +
                   "symmetric, so it reads 8-bit layers quantized with sym: true only (every zero point 128" +
                   (f.v2 ? std::string(")") : std::string(", stored as 127 in checkpoint_format gptq)")));
      }
  }

  // Codes: word (k, o) holds inputs per·k .. per·k + per − 1 of output o. Threads own rows; an
  // int4 row starts on a byte (in is a multiple of 8), so no two threads share a byte.
  const uint32_t* qw = reinterpret_cast<const uint32_t*>(qweight.as<int32_t>());
  TensorPtr q = tensor_zeros(bits == 4 ? ZEROTH_INT4 : ZEROTH_I8, {out, in}, kCpu);
  if (bits == 4) {
    uint8_t* codes = q->as<uint8_t>();
    const int64_t row_bytes = in / 2;
    parallel_for(out, 16, [&](int64_t o0, int64_t o1) {
      for (int64_t k = 0; k < in / 8; ++k) {
        const uint32_t* words = qw + k * out;
        const int32_t* p = pos.data() + k * 8;
        for (int64_t o = o0; o < o1; ++o) {
          uint32_t w = words[o];
          uint8_t* row = codes + o * row_bytes;
          for (int b = 0; b < 8; ++b, w >>= 4) row[p[b] >> 1] |= static_cast<uint8_t>((w & 15u) << ((p[b] & 1) * 4));
        }
      }
    });
  } else {
    int8_t* codes = q->as<int8_t>();
    parallel_for(out, 16, [&](int64_t o0, int64_t o1) {
      for (int64_t k = 0; k < in / 4; ++k) {
        const uint32_t* words = qw + k * out;
        const int32_t* p = pos.data() + k * 4;
        for (int64_t o = o0; o < o1; ++o) {
          uint32_t w = words[o];
          int8_t* row = codes + o * in;
          // q − 128 for q in 0..255: −128..127, the int8 range quant.h accepts.
          for (int b = 0; b < 4; ++b, w >>= 8) row[p[b]] = static_cast<int8_t>(static_cast<int>(w & 255u) - 128);
        }
      }
    });
  }

  // Scales (and int4 zeros), transposed to [out, groups] f32 (f16 -> f32 is exact).
  auto info = std::make_shared<QuantInfo>();
  info->group_size = gs;
  info->symmetric = bits == 8;  // int4: GPTQ stores a zero point per group even for sym
  info->scales = tensor_empty(ZEROTH_F32, {out, groups}, kCpu);
  if (bits == 4) info->zeros = tensor_empty(ZEROTH_F32, {out, groups}, kCpu);
  float* sd = info->scales->as<float>();
  float* zd = bits == 4 ? info->zeros->as<float>() : nullptr;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t o = 0; o < out; ++o) {
      sd[o * groups + g] = read_scale(scales, g * out + o);
      if (zd) zd[o * groups + g] = static_cast<float>(zero_at(g, o));
    }
  if (!identity) info->perm = tensor_from_host(ZEROTH_I32, {in}, kCpu, perm.data(), perm.size() * sizeof(int32_t));
  q->quant = info;
  return q;
}

namespace {

// Zero points of one int4 layer: all integers in 0..16 (else E_UNSUPPORTED), and which of 0 / 16
// occur. An int8 layer has none (its zero is 128 in GPTQ terms, written by quantized_to_gptq).
struct ZeroRange {
  bool has0 = false, has16 = false, all8 = true;
};

ZeroRange zero_range(const std::string& stem, const QuantMatrix& m) {
  ZeroRange z;
  if (m.bits == 8) return z;
  for (int64_t o = 0; o < m.rows; ++o)
    for (int64_t g = 0; g < m.groups; ++g) {
      const float v = m.zero(o, g);
      ZCHECK(v >= 0.0f && v <= 16.0f && v == std::nearbyint(v), ZEROTH_E_UNSUPPORTED,
             stem + ": zero point " + std::to_string(v) + " at (" + std::to_string(o) + ", group " + std::to_string(g) +
                 ") is not an integer in 0..16; GPTQ stores 4-bit integer zero points");
      z.has0 = z.has0 || v == 0.0f;
      z.has16 = z.has16 || v == 16.0f;
      z.all8 = z.all8 && v == 8.0f;
    }
  ZCHECK(!(z.has0 && z.has16), ZEROTH_E_UNSUPPORTED,
         stem + ": the zero points include both 0 (needs checkpoint_format gptq_v2) and 16 (needs gptq v1); "
                "no GPTQ format holds both in one checkpoint");
  return z;
}

QuantMatrix export_view(const std::string& stem, const Tensor& q, std::vector<float>& storage) {
  require_dtype(q, {ZEROTH_INT4, ZEROTH_I8}, (stem + ": GPTQ export").c_str());
  const QuantMatrix m = quant_matrix(q, storage);
  const int64_t per = 32 / m.bits;
  ZCHECK(m.cols >= per && m.cols % per == 0 && m.rows >= 1, ZEROTH_E_UNSUPPORTED,
         stem + ": a " + std::to_string(m.bits) + "-bit GPTQ checkpoint packs " + std::to_string(per) +
             " input features per int32, so the weight's " + std::to_string(m.cols) + " input features must be a positive "
             "multiple of " + std::to_string(per) + " (weight " + dims(q.shape) + ")");
  return m;
}

}  // namespace

GptqTensors quantized_to_gptq(const std::string& stem, const Tensor& q) {
  std::vector<float> storage;
  const QuantMatrix m = export_view(stem, q, storage);
  GptqFormat f;
  f.bits = m.bits;
  f.group_size = m.group_size;
  f.v2 = zero_range(stem, m).has0;
  return quantized_to_gptq(stem, q, f);
}

GptqTensors quantized_to_gptq(const std::string& stem, const Tensor& q, const GptqFormat& f) {
  std::vector<float> storage;
  const QuantMatrix m = export_view(stem, q, storage);
  const int64_t out = m.rows, in = m.cols, gs = m.group_size, groups = m.groups;
  const int bits = m.bits;
  const int64_t per = 32 / bits;
  ZCHECK(f.bits == bits, ZEROTH_E_UNSUPPORTED,
         stem + ": GPTQ 'bits' " + std::to_string(f.bits) + " requested for an " + (bits == 4 ? "int4" : "int8") +
             " weight, which is written as " + std::to_string(bits) + "-bit GPTQ");
  // The checkpoint's group_size must cut this layer into the groups it has: the same size, or one
  // group per row when the layer has a single group (-1, or a size >= in).
  const int64_t want_groups = f.group_size == -1 ? 1 : f.group_size >= 1 ? (in + f.group_size - 1) / f.group_size : -1;
  ZCHECK(want_groups == groups && (groups == 1 || f.group_size == gs), ZEROTH_E_UNSUPPORTED,
         stem + ": the weight has groups of " + std::to_string(gs) + " over " + std::to_string(in) +
             " inputs, which the checkpoint's group_size " + std::to_string(f.group_size) + " does not describe");
  const ZeroRange zr = zero_range(stem, m);
  ZCHECK(!(f.v2 && zr.has16), ZEROTH_E_UNSUPPORTED,
         stem + ": a zero point is 16, which checkpoint_format gptq_v2 (4-bit zeros 0..15) cannot hold");
  ZCHECK(f.v2 || !zr.has0, ZEROTH_E_UNSUPPORTED,
         stem + ": a zero point is 0, which checkpoint_format gptq (v1, stores zero - 1) cannot hold; write gptq_v2");
  const bool v2 = f.v2;
  const uint32_t sub = v2 ? 0u : 1u;

  GptqTensors t;
  t.v2 = v2;
  t.bits = bits;
  t.group_size = gs;
  t.sym = bits == 8 || zr.all8;
  const int64_t zwords = (out + per - 1) / per;
  t.qweight = tensor_zeros(ZEROTH_I32, {in / per, out}, kCpu);
  t.qzeros = tensor_zeros(ZEROTH_I32, {groups, zwords}, kCpu);
  t.scales = tensor_empty(ZEROTH_F16, {groups, out}, kCpu);
  t.g_idx = tensor_empty(ZEROTH_I32, {in}, kCpu);

  uint16_t* sh = t.scales->as<uint16_t>();
  uint32_t* qz = reinterpret_cast<uint32_t*>(t.qzeros->as<int32_t>());
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t o = 0; o < out; ++o) {
      const float s = m.scale(o, g);
      const uint16_t h = f32_to_f16(s);  // round to nearest, ties to even
      ZCHECK((h & 0x7c00u) != 0x7c00u, ZEROTH_E_UNSUPPORTED,
             stem + ": scale " + std::to_string(s) + " at (" + std::to_string(o) + ", group " + std::to_string(g) +
                 ") is not finite in f16, GPTQ's scale dtype (|scale| must stay below 65520)");
      sh[g * out + o] = h;
      // int8: code c is GPTQ's q − 128, so the zero is 128 (GPTQ's symmetric 8-bit zero).
      const uint32_t zero = bits == 8 ? 128u : static_cast<uint32_t>(m.zero(o, g));
      qz[g * zwords + o / per] |= (zero - sub) << (bits * (o % per));
    }

  // pos[i]: the stored column holding input i; g_idx[i] is that column's group.
  std::vector<int32_t> pos(static_cast<size_t>(in));
  for (int64_t j = 0; j < in; ++j) pos[static_cast<size_t>(m.perm ? m.perm[j] : j)] = static_cast<int32_t>(j);
  int32_t* gi = t.g_idx->as<int32_t>();
  for (int64_t i = 0; i < in; ++i) gi[i] = static_cast<int32_t>(pos[static_cast<size_t>(i)] / gs);

  uint32_t* qw = reinterpret_cast<uint32_t*>(t.qweight->as<int32_t>());
  // int4 codes are 0..15 as stored; int8 codes c (−128..127) become q = c + 128 (0..255).
  const int bias = bits == 8 ? 128 : 0;
  parallel_for(out, 16, [&](int64_t o0, int64_t o1) {
    for (int64_t k = 0; k < in / per; ++k) {
      const int32_t* p = pos.data() + k * per;
      for (int64_t o = o0; o < o1; ++o) {
        uint32_t w = 0;
        for (int64_t b = 0; b < per; ++b) w |= static_cast<uint32_t>(m.code(o, p[b]) + bias) << (bits * b);
        qw[k * out + o] = w;
      }
    }
  });
  return t;
}

}  // namespace zeroth::model
