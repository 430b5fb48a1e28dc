// quant.cpp — quantize / dequantize (the conventions are documented in quant.h).
#include "cpu/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "core/errors.h"
#include "core/half.h"
#include "core/parallel.h"

namespace zeroth {
namespace {

// Rounds a scale to the stored dtype, upwards when round-to-nearest made it smaller, so that the
// stored scale still spans the range it was computed for.
float store_scale(float s, zeroth_dtype dt) {
  if (dt == ZEROTH_F32) return s;
  uint16_t h = f32_to_f16(s);
  if (f16_to_f32(h) < s) ++h;  // positive finite: the next f16 up is the next bit pattern
  return f16_to_f32(h);
}

// One group's parameters and codes for a candidate range [lo, hi] (int4 asym / int4 sym / int8).
struct GroupFit {
  float scale, zero;
  double sq_err;
};

struct Quantizer {
  int bits;
  bool symmetric;
  zeroth_dtype sdt;
  int qmin() const { return bits == 8 ? -127 : 0; }
  int qmax() const { return bits == 8 ? 127 : 15; }

  // Scale and zero for the group values w[0..n) shrunk by factor f.
  void params(const float* w, int64_t n, float f, float* scale, float* zero) const {
    float lo = 0.0f, hi = 0.0f;  // 0 always in range (quant.h)
    for (int64_t i = 0; i < n; ++i) {
      lo = std::min(lo, w[i]);
      hi = std::max(hi, w[i]);
    }
    lo *= f;
    hi *= f;
    float s;
    if (bits == 8) s = std::max(-lo, hi) / 127.0f;
    else if (symmetric) s = std::max(-lo, hi) / 7.0f;
    else s = (hi - lo) / 15.0f;
    if (!(s > 0.0f) || !std::isfinite(s)) s = 1.0f;  // all-zero group (or a range that underflowed)
    s = store_scale(s, sdt);
    float z;
    if (bits == 8) z = 0.0f;
    else if (symmetric) z = 8.0f;
    else z = std::min(15.0f, std::max(0.0f, std::nearbyint(-lo / s)));
    *scale = s;
    *zero = z;
  }

  int code_of(float w, float s, float z) const {
    const float q = std::nearbyint(w / s) + z;
    return static_cast<int>(std::min(static_cast<float>(qmax()), std::max(static_cast<float>(qmin()), q)));
  }

  double sq_error(const float* w, int64_t n, float s, float z) const {
    double e = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double d = static_cast<double>((static_cast<float>(code_of(w[i], s, z)) - z) * s) - w[i];
      e += d * d;
    }
    return e;
  }
};

void store_float(zeroth_dtype dt, void* base, int64_t i, float v) {
  if (dt == ZEROTH_F32) static_cast<float*>(base)[i] = v;
  else static_cast<uint16_t*>(base)[i] = f32_to_f16(v);  // exact: v is already an f16 value
}

std::string rc(int64_t r, int64_t c) { return "(" + std::to_string(r) + ", " + std::to_string(c) + ")"; }

// The column permutation of a quantized weight: i32 [cols] holding every index 0..cols-1 once.
// O(cols) per call, negligible next to the O(rows·cols) work of any caller.
const int32_t* checked_perm(const Tensor& p, int64_t cols) {
  ZCHECK(p.dtype == ZEROTH_I32, ZEROTH_E_INVALID_ARG,
         "quantized weight: the column permutation must be i32, got " + std::string(dtype_traits(p.dtype).name));
  ZCHECK(p.on_cpu(), ZEROTH_E_INVALID_ARG, "quantized weight: the column permutation must be on the CPU");
  ZCHECK(p.shape == Shape{cols}, ZEROTH_E_INVALID_ARG,
         "quantized weight: the column permutation has shape " + shape_string(p.shape) + " but the weight has " +
             std::to_string(cols) + " columns");
  const int32_t* v = p.as<int32_t>();
  std::vector<uint8_t> seen(static_cast<size_t>(cols), 0);
  for (int64_t j = 0; j < cols; ++j) {
    ZCHECK(v[j] >= 0 && v[j] < cols && !seen[static_cast<size_t>(v[j])], ZEROTH_E_INVALID_ARG,
           "quantized weight: the column permutation is not a permutation of 0.." + std::to_string(cols - 1) +
               " (entry " + std::to_string(j) + " is " + std::to_string(v[j]) + ")");
    seen[static_cast<size_t>(v[j])] = 1;
  }
  return v;
}

}  // namespace

TensorPtr quantize(const Tensor& w, const QuantizeOptions& o) {
  require_dtype(w, {ZEROTH_F32}, "quantize: weight");
  require_cpu(w, "quantize: weight");
  ZCHECK(w.ndim() == 2, ZEROTH_E_SHAPE,
         "quantize: the weight must be 2-D [out, in], got shape " + shape_string(w.shape) + "; reshape it first");
  ZCHECK(o.bits == 4 || o.bits == 8, ZEROTH_E_INVALID_ARG,
         "quantize: bits must be 4 or 8, got " + std::to_string(o.bits));
  ZCHECK(o.scale_dtype == ZEROTH_F32 || o.scale_dtype == ZEROTH_F16, ZEROTH_E_DTYPE,
         "quantize: scaleDtype must be 'f32' or 'f16'");
  ZCHECK(o.bits == 4 || o.symmetric, ZEROTH_E_INVALID_ARG,
         "quantize: int8 is symmetric only (codes -127..127, no zero point); pass symmetric: true or leave it out");
  const int64_t rows = w.shape[0], cols = w.shape[1];
  ZCHECK(rows > 0 && cols > 0, ZEROTH_E_SHAPE, "quantize: the weight " + shape_string(w.shape) + " is empty");
  int64_t gs = o.group_size;
  if (o.bits == 8 && gs == 0) gs = cols;
  ZCHECK(gs >= 1, ZEROTH_E_INVALID_ARG, "quantize: groupSize must be >= 1, got " + std::to_string(gs));
  gs = std::min(gs, cols);
  const int64_t groups = (cols + gs - 1) / gs;

  const float* src = w.as<float>();
  for (int64_t i = 0; i < rows * cols; ++i)
    ZCHECK(std::isfinite(src[i]), ZEROTH_E_NAN,
           "quantize: the weight holds a NaN or infinity at " + rc(i / cols, i % cols) + "; fix the weight first");

  TensorPtr q = tensor_empty(o.bits == 4 ? ZEROTH_INT4 : ZEROTH_I8, w.shape, w.device());
  auto info = std::make_shared<QuantInfo>();
  info->group_size = gs;
  info->symmetric = o.bits == 8 || o.symmetric;
  info->scales = tensor_empty(o.scale_dtype, {rows, groups}, w.device());
  if (!info->symmetric) info->zeros = tensor_empty(o.scale_dtype, {rows, groups}, w.device());
  if (o.bits == 4) std::memset(q->data(), 0, q->nbytes());

  const Quantizer qz{o.bits, info->symmetric, o.scale_dtype};
  uint8_t* c4 = o.bits == 4 ? q->as<uint8_t>() : nullptr;
  int8_t* c8 = o.bits == 8 ? q->as<int8_t>() : nullptr;
  void* sbase = info->scales->data();
  void* zbase = info->zeros ? info->zeros->data() : nullptr;
  // Rows are independent; an int4 byte may hold codes of two rows when cols is odd, so chunks
  // write codes in a second, serial pass for int4 (below) and only parameters here.
  std::vector<uint8_t> codes4(o.bits == 4 ? static_cast<size_t>(rows * cols) : 0);
  parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t c0 = g * gs, n = std::min(gs, cols - c0);
        const float* x = src + r * cols + c0;
        float s, z;
        qz.params(x, n, 1.0f, &s, &z);
        if (o.clip) {
          double best = qz.sq_error(x, n, s, z);
          for (int k = 1; k <= 10; ++k) {
            float s2, z2;
            qz.params(x, n, 1.0f - 0.05f * static_cast<float>(k), &s2, &z2);
            const double e = qz.sq_error(x, n, s2, z2);
            if (e < best) best = e, s = s2, z = z2;
          }
        }
        store_float(o.scale_dtype, sbase, r * groups + g, s);
        if (zbase) store_float(o.scale_dtype, zbase, r * groups + g, z);
        for (int64_t i = 0; i < n; ++i) {
          const int code = qz.code_of(x[i], s, z);
          if (c8) c8[r * cols + c0 + i] = static_cast<int8_t>(code);
          else codes4[static_cast<size_t>(r * cols + c0 + i)] = static_cast<uint8_t>(code);
        }
      }
    }
  });
  if (c4) int4_pack(codes4.data(), rows * cols, c4);
  q->quant = info;
  return q;
}

QuantMatrix quant_matrix(const Tensor& q, std::vector<float>& storage) {
  require_dtype(q, {ZEROTH_INT4, ZEROTH_I8}, "quantized weight");
  require_cpu(q, "quantized weight");
  ZCHECK(q.quant && q.quant->scales, ZEROTH_E_INVALID_ARG,
         "this " + std::string(dtype_traits(q.dtype).name) +
             " tensor has no quantization scales; make quantized weights with zeroth.quantize");
  ZCHECK(q.ndim() == 2, ZEROTH_E_SHAPE, "a quantized weight must be 2-D [out, in], got " + shape_string(q.shape));
  const QuantInfo& qi = *q.quant;
  QuantMatrix m;
  m.bits = q.dtype == ZEROTH_INT4 ? 4 : 8;
  m.rows = q.shape[0];
  m.cols = q.shape[1];
  m.group_size = qi.group_size;
  ZCHECK(m.group_size >= 1, ZEROTH_E_INVALID_ARG, "quantized weight: group size must be >= 1");
  m.groups = m.cols == 0 ? 0 : (m.cols + m.group_size - 1) / m.group_size;
  const Shape sshape{m.rows, m.groups};
  require_dtype(*qi.scales, {ZEROTH_F32, ZEROTH_F16}, "quantization scales");
  require_cpu(*qi.scales, "quantization scales");
  ZCHECK(qi.scales->shape == sshape, ZEROTH_E_SHAPE,
         "quantization scales have shape " + shape_string(qi.scales->shape) + " but the weight needs " +
             shape_string(sshape));
  ZCHECK(qi.symmetric == !qi.zeros, ZEROTH_E_INVALID_ARG,
         "quantized weight: zero points must be present exactly when it is asymmetric");
  ZCHECK(m.bits == 4 || qi.symmetric, ZEROTH_E_INVALID_ARG, "int8 weights must be symmetric");
  if (qi.zeros) {
    require_cpu(*qi.zeros, "quantization zeros");
    ZCHECK(qi.zeros->dtype == qi.scales->dtype && qi.zeros->shape == sshape, ZEROTH_E_SHAPE,
           "quantization zeros must have the scales' dtype and shape " + shape_string(sshape));
  }
  const int64_t n = m.rows * m.groups;
  if (qi.scales->dtype == ZEROTH_F16) {
    storage.resize(static_cast<size_t>(qi.zeros ? 2 * n : n));
    convert_host(ZEROTH_F16, qi.scales->data(), ZEROTH_F32, storage.data(), n);
    if (qi.zeros) convert_host(ZEROTH_F16, qi.zeros->data(), ZEROTH_F32, storage.data() + n, n);
    m.scales = storage.data();
    m.zeros = qi.zeros ? storage.data() + n : nullptr;
  } else {
    m.scales = qi.scales->as<float>();
    m.zeros = qi.zeros ? qi.zeros->as<float>() : nullptr;
  }
  m.fixed_zero = m.bits == 4 ? 8.0f : 0.0f;
  if (qi.perm) m.perm = checked_perm(*qi.perm, m.cols);
  if (m.bits == 4) m.codes4 = q.as<uint8_t>();
  else m.codes8 = q.as<int8_t>();
  return m;
}

void dequantize_rows(const QuantMatrix& w, int64_t r0, int64_t r1, float* out, int64_t ld) {
  for (int64_t r = r0; r < r1; ++r) {
    float* o = out + (r - r0) * ld;
    for (int64_t g = 0; g < w.groups; ++g) {
      const int64_t c0 = g * w.group_size, c1 = std::min(c0 + w.group_size, w.cols);
      const float s = w.scale(r, g), z = w.zero(r, g);
      for (int64_t c = c0; c < c1; ++c) o[c] = (static_cast<float>(w.code(r, c)) - z) * s;
    }
  }
}

TensorPtr dequantize(const Tensor& q) {
  std::vector<float> storage;
  const QuantMatrix m = quant_matrix(q, storage);
  TensorPtr out = tensor_empty(ZEROTH_F32, q.shape, q.device());
  float* o = out->as<float>();
  if (!m.perm) {
    parallel_for(m.rows, 16, [&](int64_t r0, int64_t r1) { dequantize_rows(m, r0, r1, o + r0 * m.cols, m.cols); });
    return out;
  }
  // Stored order into a per-chunk row buffer, then scattered: out[r, perm[c]] = value(r, c).
  parallel_for(m.rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(m.cols));
    for (int64_t r = r0; r < r1; ++r) {
      dequantize_rows(m, r, r + 1, row.data(), m.cols);
      float* dst = o + r * m.cols;
      for (int64_t c = 0; c < m.cols; ++c) dst[m.perm[c]] = row[static_cast<size_t>(c)];
    }
  });
  return out;
}

}  // namespace zeroth
