// zo_update.cpp — momentum / Adam / sign / preconditioned updates (see zo_update.h).
//
// On CUDA tensors every entry point hands the call to its twin in cuda/zo_update.cu (same
// element math, same bits); a call mixing CPU and CUDA tensors is E_DEVICE.
//
// Each kernel walks a target in blocks: z for the block is drawn by the SIMD generator
// (fill_z, bit-identical to rng::normal_at), then the block is updated in one pass. Weights
// of dtype f16/bf16 are read into f32 and rounded back to nearest even.
#include "cpu/zo_update.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/errors.h"
#include "core/half.h"
#include "core/parallel.h"

#ifdef ZEROTH_WITH_CUDA
#include "../../cuda/zo_update_cuda.h"
#endif

namespace zeroth {
namespace {

constexpr int64_t kBlock = 2048;

float load_w(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case ZEROTH_F32: return t.as<float>()[i];
    case ZEROTH_F16: return f16_to_f32(t.as<uint16_t>()[i]);
    default: return bf16_to_f32(t.as<uint16_t>()[i]);
  }
}

void store_w(const Tensor& t, int64_t i, float v) {
  switch (t.dtype) {
    case ZEROTH_F32: t.as<float>()[i] = v; break;
    case ZEROTH_F16: t.as<uint16_t>()[i] = f32_to_f16(v); break;
    default: t.as<uint16_t>()[i] = f32_to_bf16(v); break;
  }
}

bool trains(const PerturbTarget& p, int64_t i) {
  return !p.mask || ((p.mask->as<uint8_t>()[i >> 3] >> (i & 7)) & 1);
}

void check_targets(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>* buffers, const char* what) {
  for (size_t k = 0; k < targets.size(); ++k) {
    const TensorPtr& t = targets[k].tensor;
    ZCHECK(t != nullptr, ZEROTH_E_INVALID_ARG, std::string(what) + ": missing tensor");
    require_cpu(*t, what);
    require_dtype(*t, {ZEROTH_F32, ZEROTH_F16, ZEROTH_BF16}, what);
    if (targets[k].mask) {
      ZCHECK(targets[k].mask->dtype == ZEROTH_U8 && targets[k].mask->numel == (t->numel + 7) / 8, ZEROTH_E_SHAPE,
             std::string(what) + ": a mask must be u8 with ceil(numel / 8) bytes");
    }
    if (buffers) {
      ZCHECK(buffers->size() == targets.size(), ZEROTH_E_INVALID_ARG, std::string(what) + ": one buffer per target");
      const TensorPtr& b = (*buffers)[k];
      ZCHECK(b && b->dtype == ZEROTH_F32 && b->numel == t->numel && b->on_cpu(), ZEROTH_E_SHAPE,
             std::string(what) + ": state buffers must be f32 CPU tensors of the parameter's size");
    }
  }
}

// Calls body(target index, first element, count, z) over fixed blocks of every target, in
// parallel; z holds ĝ's z (or nothing when the source is a scratch buffer).
void for_blocks(const std::vector<PerturbTarget>& targets, const GradSource* g,
                const std::function<void(size_t, int64_t, int64_t, const float*)>& body) {
  std::vector<int64_t> starts(targets.size() + 1, 0);
  for (size_t k = 0; k < targets.size(); ++k)
    starts[k + 1] = starts[k] + (targets[k].tensor->numel + kBlock - 1) / kBlock;
  parallel_for(starts.back(), 8, [&](int64_t b0, int64_t b1) {
    alignas(64) float z[kBlock];
    size_t k = 0;
    for (int64_t b = b0; b < b1; ++b) {
      while (starts[k + 1] <= b) ++k;
      const int64_t first = (b - starts[k]) * kBlock;
      const int64_t n = std::min(kBlock, targets[k].tensor->numel - first);
      if (g && !g->scratch) fill_z(g->seed, targets[k].stream, g->dist, static_cast<uint64_t>(first), n, z);
      body(k, first, n, z);
    }
  });
}

float grad_at(const GradSource& g, size_t k, int64_t i, const float* z, int64_t j) {
  return g.scratch ? (*g.scratch)[k]->as<float>()[i] : g.c * z[j];
}

float decayed(float w, float decay) { return decay != 0.0f ? w * (1.0f - decay) : w; }

}  // namespace

void accumulate_z(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& buffers, uint64_t seed,
                  rng::Distribution dist, float beta, float c) {
#ifdef ZEROTH_WITH_CUDA
  if (cuda::zo_on_cuda(targets, {&buffers})) return cuda::accumulate_z(targets, buffers, seed, dist, beta, c);
#endif
  check_targets(targets, &buffers, "accumulate_z");
  GradSource g;
  g.seed = seed;
  g.dist = dist;
  g.c = c;
  for_blocks(targets, &g, [&](size_t k, int64_t first, int64_t n, const float* z) {
    float* buf = buffers[k]->as<float>();
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = first + j;
      if (!trains(targets[k], i)) continue;
      buf[i] = beta * buf[i] + c * z[j];
    }
  });
}

void momentum_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& m, const GradSource& g,
                     float beta, float lr, float decay) {
#ifdef ZEROTH_WITH_CUDA
  if (cuda::zo_on_cuda(targets, {&m, g.scratch})) return cuda::momentum_update(targets, m, g, beta, lr, decay);
#endif
  check_targets(targets, &m, "momentum_update");
  if (g.scratch) check_targets(targets, g.scratch, "momentum_update scratch");
  for_blocks(targets, &g, [&](size_t k, int64_t first, int64_t n, const float* z) {
    const Tensor& w = *targets[k].tensor;
    float* mb = m[k]->as<float>();
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = first + j;
      if (!trains(targets[k], i)) continue;
      mb[i] = beta * mb[i] + grad_at(g, k, i, z, j);
      store_w(w, i, decayed(load_w(w, i), decay) - lr * mb[i]);
    }
  });
}

void adam_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& m,
                 const std::vector<TensorPtr>& v, const GradSource& g, const AdamParams& p) {
#ifdef ZEROTH_WITH_CUDA
  if (cuda::zo_on_cuda(targets, {&m, &v, g.scratch})) return cuda::adam_update(targets, m, v, g, p);
#endif
  check_targets(targets, &m, "adam_update");
  check_targets(targets, &v, "adam_update");
  if (g.scratch) check_targets(targets, g.scratch, "adam_update scratch");
  ZCHECK(p.t >= 1, ZEROTH_E_INVALID_ARG, "adam step count must be >= 1");
  const float c1 = 1.0f / static_cast<float>(1.0 - std::pow(static_cast<double>(p.beta1), static_cast<double>(p.t)));
  const float c2 = 1.0f / static_cast<float>(1.0 - std::pow(static_cast<double>(p.beta2), static_cast<double>(p.t)));
  for_blocks(targets, &g, [&](size_t k, int64_t first, int64_t n, const float* z) {
    const Tensor& w = *targets[k].tensor;
    float* mb = m[k]->as<float>();
    float* vb = v[k]->as<float>();
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = first + j;
      if (!trains(targets[k], i)) continue;
      const float gi = grad_at(g, k, i, z, j);
      mb[i] = p.beta1 * mb[i] + (1.0f - p.beta1) * gi;
      vb[i] = p.beta2 * vb[i] + (1.0f - p.beta2) * (gi * gi);
      const float step = p.lr * (mb[i] * c1) / (std::sqrt(vb[i] * c2) + p.eps);
      store_w(w, i, decayed(load_w(w, i), p.decay) - step);
    }
  });
}

void sign_update(const std::vector<PerturbTarget>& targets, const GradSource& g, float lr, float decay) {
#ifdef ZEROTH_WITH_CUDA
  if (cuda::zo_on_cuda(targets, {g.scratch})) return cuda::sign_update(targets, g, lr, decay);
#endif
  check_targets(targets, nullptr, "sign_update");
  if (g.scratch) check_targets(targets, g.scratch, "sign_update scratch");
  for_blocks(targets, &g, [&](size_t k, int64_t first, int64_t n, const float* z) {
    const Tensor& w = *targets[k].tensor;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = first + j;
      if (!trains(targets[k], i)) continue;
      const float gi = grad_at(g, k, i, z, j);
      const float s = gi > 0.0f ? 1.0f : (gi < 0.0f ? -1.0f : 0.0f);
      store_w(w, i, decayed(load_w(w, i), decay) - lr * s);
    }
  });
}

void preconditioned_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& precond,
                           uint64_t seed, rng::Distribution dist, float step, float decay) {
#ifdef ZEROTH_WITH_CUDA
  if (cuda::zo_on_cuda(targets, {&precond})) return cuda::preconditioned_update(targets, precond, seed, dist, step, decay);
#endif
  check_targets(targets, &precond, "preconditioned_update");
  GradSource g;
  g.seed = seed;
  g.dist = dist;
  g.c = 1.0f;
  for_blocks(targets, &g, [&](size_t k, int64_t first, int64_t n, const float* z) {
    const Tensor& w = *targets[k].tensor;
    const float* p = precond[k]->as<float>();
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = first + j;
      if (!trains(targets[k], i)) continue;
      store_w(w, i, decayed(load_w(w, i), decay) - step * (z[j] * p[i]));
    }
  });
}

void hold_floor(const std::vector<TensorPtr>& x, const std::vector<TensorPtr>& floors) {
#ifdef ZEROTH_WITH_CUDA
  if (cuda::tensors_on_cuda({&x, &floors})) return cuda::hold_floor(x, floors);
#endif
  ZCHECK(x.size() == floors.size(), ZEROTH_E_INVALID_ARG, "hold_floor: one floor tensor per tensor");
  for (size_t k = 0; k < x.size(); ++k) {
    const Tensor& t = *x[k];
    const Tensor& f = *floors[k];
    require_cpu(t, "hold_floor: tensor");
    require_cpu(f, "hold_floor: floor");
    require_dtype(t, {ZEROTH_F32}, "hold_floor: tensor");
    require_dtype(f, {ZEROTH_F32}, "hold_floor: floor");
    ZCHECK(t.numel == f.numel, ZEROTH_E_SHAPE,
           "hold_floor: the floor has " + std::to_string(f.numel) + " elements, the tensor " + std::to_string(t.numel));
    float* v = t.as<float>();
    const float* lo = f.as<float>();
    for (int64_t i = 0; i < t.numel; ++i) {
      if (lo[i] > 0.0f) v[i] = std::max(v[i], lo[i]);
      else if (lo[i] < 0.0f) v[i] = std::min(v[i], lo[i]);
    }
  }
}

}  // namespace zeroth
