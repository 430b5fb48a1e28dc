// zo_update.h — the stateful update rules of the ZO optimizers (momentum, Adam, sign), over the
// same targets as perturb.h. Plain ZO-SGD needs none of this: restore_and_update fuses its update.
//
// The estimated gradient is ĝ = Σ_k c_k·z_k over the step's queries k (c_k = g_k / q). For one
// query it is regenerated from the seed inside the update pass; for several, it is accumulated
// first into a scratch buffer with accumulate_z. Every formula is elementwise and fixed, so a
// replay that makes the same calls on the same base weights reproduces the same bits.
#pragma once
#include <cstdint>
#include <vector>

#include "cpu/perturb.h"

namespace zeroth {

// buf = beta·buf + c·z(seed) for each target's buffer (f32, same numel as the target).
// Masked elements of the target leave their buffer entry unchanged.
void accumulate_z(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& buffers, uint64_t seed,
                  rng::Distribution dist, float beta, float c);

// Where the step's gradient estimate comes from: a single (seed, c) pair, or scratch buffers.
struct GradSource {
  const std::vector<TensorPtr>* scratch = nullptr;  // when set, ĝ is read from here
  uint64_t seed = 0;
  rng::Distribution dist = rng::Distribution::Normal;
  float c = 0.0f;  // ĝ = c·z(seed) when scratch is null
};

// Momentum SGD: m = beta·m + ĝ;  w = w·(1 - decay) - lr·m.
void momentum_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& m, const GradSource& g,
                     float beta, float lr, float decay);

// Adam (bias-corrected, step t >= 1): m = b1·m + (1-b1)·ĝ; v = b2·v + (1-b2)·ĝ²;
// w = w·(1 - decay) - lr·(m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
struct AdamParams {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, lr = 1e-3f, decay = 0.0f;
  int64_t t = 1;
};
void adam_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& m,
                 const std::vector<TensorPtr>& v, const GradSource& g, const AdamParams& p);

// Sign SGD: w = w·(1 - decay) - lr·sign(ĝ) (sign(0) = 0).
void sign_update(const std::vector<PerturbTarget>& targets, const GradSource& g, float lr, float decay);

// Diagonal-preconditioned SGD (HiZOO): w = w·(1 - decay) - lr·ĝ / sqrt(h), ĝ = c·z(seed) / sqrt(h)
// is the caller's choice; this applies w -= lr·c·z·p where p = precond[i] (f32 per element).
void preconditioned_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& precond,
                           uint64_t seed, rng::Distribution dist, float step, float decay);

// Keeps each element of f32 tensor x on the far side of its floor: x = max(x, f) where f > 0,
// min(x, f) where f < 0, unchanged where f = 0. QZO's scale floor: quantization scales may
// shrink but never reach zero or change sign (which would flip a whole group of weights).
void hold_floor(const std::vector<TensorPtr>& x, const std::vector<TensorPtr>& floors);

}  // namespace zeroth
