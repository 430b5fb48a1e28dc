// transformer_norms.cpp — the elementwise and per-row kernels of a block: LayerNorm, RMSNorm,
// activations, SwiGLU, bias and residual adds. Row statistics are accumulated in double (one
// pass of the row is cheap next to the GEMMs, and it keeps us within rounding of PyTorch's
// f32 reductions whatever the width). Rows run in parallel over the pool.
#include <cmath>

#include "core/parallel.h"
#include "cpu/ops_util.h"
#include "model/transformer_internal.h"

namespace zeroth::model {
namespace {

// Rows of width d per parallel chunk: about 16K elements, so small tensors stay on one thread.
int64_t row_grain(int64_t d) { return d >= 16384 ? 1 : 16384 / (d > 0 ? d : 1); }
constexpr int64_t kElemGrain = 1 << 15;

}  // namespace

void layer_norm_rows(const float* x, int64_t rows, int64_t d, const float* w, const float* b, float eps, float* out) {
  parallel_for(rows, row_grain(d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * d;
      float* o = out + r * d;
      double sum = 0.0;
      for (int64_t i = 0; i < d; ++i) sum += xr[i];
      const double mean = sum / static_cast<double>(d);
      double sq = 0.0;
      for (int64_t i = 0; i < d; ++i) {
        const double c = xr[i] - mean;
        sq += c * c;
      }
      const float inv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(d) + eps));
      const float m = static_cast<float>(mean);
      for (int64_t i = 0; i < d; ++i) {
        float y = (xr[i] - m) * inv;
        if (w) y *= w[i];
        if (b) y += b[i];
        o[i] = y;
      }
    }
  });
}

void rms_norm_rows(const float* x, int64_t rows, int64_t d, const float* w, float eps, float* out) {
  parallel_for(rows, row_grain(d), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * d;
      float* o = out + r * d;
      double sq = 0.0;
      for (int64_t i = 0; i < d; ++i) sq += static_cast<double>(xr[i]) * xr[i];
      const float inv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(d) + eps));
      for (int64_t i = 0; i < d; ++i) o[i] = w ? w[i] * (xr[i] * inv) : xr[i] * inv;
    }
  });
}

// GELU and SiLU use the SIMD polynomials of the ops library (run-time dispatched, scalar
// reference inside); ReLU is a plain loop the compiler vectorizes.
void activation_inplace(Activation a, float* x, int64_t n) {
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
    switch (a) {
      case Activation::GeluTanh:  // GPT-2's gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        ops::vec_gelu_tanh(x + i0, x + i0, i1 - i0);
        break;
      case Activation::GeluErf:
        ops::vec_gelu_erf(x + i0, x + i0, i1 - i0);
        break;
      case Activation::Relu:
        for (int64_t i = i0; i < i1; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
      case Activation::Silu:
        ops::vec_silu(x + i0, x + i0, i1 - i0);
        break;
    }
  });
}

void swiglu_inplace(float* gate, const float* up, int64_t n) {
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
    ops::vec_silu(gate + i0, gate + i0, i1 - i0);
    for (int64_t i = i0; i < i1; ++i) gate[i] *= up[i];
  });
}

void add_bias_rows(float* x, int64_t rows, int64_t n, const float* b) {
  if (!b) return;
  parallel_for(rows, row_grain(n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* xr = x + r * n;
      for (int64_t i = 0; i < n; ++i) xr[i] += b[i];
    }
  });
}

void add_inplace(float* x, const float* y, int64_t n) {
  parallel_for(n, kElemGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) x[i] += y[i];
  });
}

}  // namespace zeroth::model
