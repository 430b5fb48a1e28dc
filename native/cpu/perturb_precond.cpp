// perturb_precond.cpp — the diagonal preconditioner of HiZOO (perturb.h, guarantee 5).
//
// HiZOO perturbs along ε·z/√H and steps along g·z/√H, H a running estimate of the Hessian's
// diagonal. perturb.cpp applies any per-element multiplier p through scale_by_precond; this
// file also keeps (H, p = 1/√H) up to date from the three losses of a step.
//
// Why the centred estimate: with u ~ N(0, I) and B = P·A·P (P = diag(p), A the Hessian),
// (L+ + L− − 2·L0)/ε² ≈ uᵀBu, and E[uᵀBu · (u_i² − 1)] = 2·B_ii, so
// coeff·(u_i² − 1)/p_i² (coeff = ΔL/(2ε²), 1/p_i² = h_i) is unbiased for A_ii. The uncentred
// u_i² alone has mean B_ii + tr(B)/2: every entry is biased by half the trace.
#include <algorithm>
#include <cmath>
#include <string>

#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/perturb.h"

#ifdef ZEROTH_WITH_CUDA
#include "../../cuda/zo_update_cuda.h"
#endif

namespace zeroth {

namespace perturb_detail {

// Plain loop, one rounding per operation (host code builds with -ffp-contract=off, so the
// compiler may vectorize it but never fuses the two products): the same bits at any SIMD level.
void scale_by_precond(const float* z, float s, const float* p, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = (s * z[i]) * p[i];
}

}  // namespace perturb_detail

namespace {

constexpr int64_t kDiagChunk = 1 << 16;  // fixed work unit: results do not depend on threads
constexpr int64_t kDiagBlock = 2048;     // z drawn per block into an L1 buffer

// The options and counts, checked before the device dispatch (both backends rely on them).
void check_diag_options(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& h,
                        rng::Distribution dist, const DiagHessianUpdate& u) {
  ZCHECK(dist == rng::Distribution::Normal, ZEROTH_E_INVALID_ARG,
         "the diagonal Hessian estimate needs normal z: with Rademacher z every z² − 1 is 0");
  ZCHECK(std::isfinite(u.coeff), ZEROTH_E_INVALID_ARG, "the curvature coefficient must be finite");
  ZCHECK(u.alpha >= 0.0f && u.alpha <= 1.0f, ZEROTH_E_INVALID_ARG, "alpha (the EMA weight) must be in [0, 1]");
  ZCHECK(std::isfinite(u.h_min) && std::isfinite(u.h_max) && u.h_min > 0.0f && u.h_min <= u.h_max,
         ZEROTH_E_INVALID_ARG, "the Hessian clip range needs 0 < hMin <= hMax, both finite");
  ZCHECK(h.size() == targets.size(), ZEROTH_E_INVALID_ARG,
         "hessianDiagUpdate: pass one Hessian tensor per target (" + std::to_string(targets.size()) + "), got " +
             std::to_string(h.size()));
}

// The CPU tensors of each target.
void check_diag_tensors(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& h) {
  for (size_t k = 0; k < targets.size(); ++k) {
    const std::string what = "target " + std::to_string(k);
    const PerturbTarget& t = targets[k];
    ZCHECK(t.tensor != nullptr, ZEROTH_E_INVALID_ARG, what + " has no tensor");
    ZCHECK(t.precond != nullptr, ZEROTH_E_INVALID_ARG, what + " has no precond tensor to receive 1/sqrt(H)");
    ZCHECK(h[k] != nullptr, ZEROTH_E_INVALID_ARG, what + " has no Hessian tensor");
    for (const Tensor* x : {t.precond.get(), h[k].get()}) {
      const char* name = x == t.precond.get() ? "precond" : "Hessian";
      require_cpu(*x, name);
      require_dtype(*x, {ZEROTH_F32}, name);
      ZCHECK(x->numel == t.tensor->numel, ZEROTH_E_SHAPE,
             what + "'s " + name + " has " + std::to_string(x->numel) + " elements; the target has " +
                 std::to_string(t.tensor->numel));
    }
    ZCHECK(t.tensor->numel == 0 || h[k]->data() != t.precond->data(), ZEROTH_E_INVALID_ARG,
           what + ": the Hessian and precond tensors must be distinct");
    if (t.mask) {
      require_dtype(*t.mask, {ZEROTH_U8}, "mask");
      ZCHECK(t.mask->numel == (t.tensor->numel + 7) / 8, ZEROTH_E_SHAPE, what + "'s mask has the wrong size");
    }
  }
}

}  // namespace

void hessian_diag_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& h, uint64_t seed,
                         rng::Distribution dist, const DiagHessianUpdate& u) {
  check_diag_options(targets, h, dist, u);
#ifdef ZEROTH_WITH_CUDA
  // Hessian and preconditioner on the parameters' GPU: the twin in cuda/zo_update.cu (same bits).
  if (cuda::zo_on_cuda(targets, {&h})) return cuda::hessian_diag_update(targets, h, seed, dist, u);
#endif
  check_diag_tensors(targets, h);
  std::vector<int64_t> first(targets.size() + 1, 0);
  for (size_t t = 0; t < targets.size(); ++t)
    first[t + 1] = first[t] + (targets[t].tensor->numel + kDiagChunk - 1) / kDiagChunk;
  const float keep = 1.0f - u.alpha;
  parallel_for(first.back(), 1, [&](int64_t cb, int64_t ce) {
    alignas(64) float z[kDiagBlock];
    for (int64_t k = cb; k < ce; ++k) {
      const size_t t = static_cast<size_t>(std::upper_bound(first.begin(), first.end(), k) - first.begin() - 1);
      const PerturbTarget& target = targets[t];
      float* hv = h[t]->as<float>();
      float* pv = target.precond->as<float>();
      const uint8_t* mask = target.mask ? target.mask->as<uint8_t>() : nullptr;
      const int64_t begin = (k - first[t]) * kDiagChunk;
      const int64_t end = std::min(target.tensor->numel, begin + kDiagChunk);
      for (int64_t b = begin; b < end; b += kDiagBlock) {
        const int64_t n = std::min(kDiagBlock, end - b);
        fill_z(seed, target.stream, dist, static_cast<uint64_t>(b), n, z);
        for (int64_t j = 0; j < n; ++j) {
          const int64_t i = b + j;
          if (mask && !((mask[i >> 3] >> (i & 7)) & 1u)) continue;
          const float old = hv[i];
          const float est = (u.coeff * old) * (z[j] * z[j] - 1.0f);
          float v = keep * old + u.alpha * std::fabs(est);
          if (std::isnan(v)) v = old;  // inf·0 from an overflowed coefficient: keep the old value
          v = v < u.h_min ? u.h_min : (v > u.h_max ? u.h_max : v);
          hv[i] = v;
          pv[i] = 1.0f / std::sqrt(v);
        }
      }
    }
  });
}

}  // namespace zeroth
