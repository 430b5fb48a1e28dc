// zo_update.cu — the CUDA twin of native/cpu/zo_update.cpp (the readable reference) and of
// perturb_precond.cpp's hessian_diag_update (contract: cuda/zo_update_cuda.h).
//
// One kernel shape serves every rule: a thread takes a group of four consecutive elements
// starting at a multiple of 4 of the tensor (one Philox call gives its four normals, as
// common.cuh's z4 draws them, bit-identical to rng::normal_at / rademacher_at), checks the
// mask bits, and applies the rule's element formula to each trainable element. A grid-stride
// loop covers any size. The rules are small structs whose operator() is the CPU loop body,
// written with rng::fmul / fadd / fdiv / fsqrt (the _rn intrinsics: no fused multiply-add,
// which nvcc would otherwise form) in the CPU's order of operations, so results are bits.
#include <cuda_runtime.h>

#include <cmath>
#include <string>
#include <vector>

#include "common.cuh"
#include "zo_update_cuda.h"

namespace zeroth {
namespace cuda {
namespace {

constexpr unsigned kThreads = 256;

// ---- element rules (each the body of the CPU loop it names) --------------------------------

// decayed(w) of zo_update.cpp: w·(1 - decay), skipped when decay == 0 (so -0 stays -0).
__device__ __forceinline__ float decayed(float w, bool use_keep, float keep) { return use_keep ? rng::fmul(w, keep) : w; }

// grad_at of zo_update.cpp: ĝ_i from the scratch buffer, or c·z.
struct Grad {
  const float* scratch;
  float c;
  __device__ __forceinline__ float at(uint64_t i, float z) const { return scratch ? scratch[i] : rng::fmul(c, z); }
};

struct AccumulateRule {  // accumulate_z: buf = beta·buf + c·z (the weight is not written)
  static constexpr bool kWritesWeight = false;
  float* buf;
  float beta, c;
  __device__ __forceinline__ float operator()(float w, uint64_t i, float z) const {
    buf[i] = rng::fadd(rng::fmul(beta, buf[i]), rng::fmul(c, z));
    return w;
  }
};

struct MomentumRule {  // momentum_update: m = beta·m + ĝ;  w = decayed(w) - lr·m
  static constexpr bool kWritesWeight = true;
  float* m;
  Grad g;
  float beta, lr;
  bool use_keep;
  float keep;
  __device__ __forceinline__ float operator()(float w, uint64_t i, float z) const {
    const float mi = rng::fadd(rng::fmul(beta, m[i]), g.at(i, z));
    m[i] = mi;
    return rng::fadd(decayed(w, use_keep, keep), -rng::fmul(lr, mi));
  }
};

struct AdamRule {  // adam_update (c1, c2: the bias corrections; b1c = 1 - b1, b2c = 1 - b2)
  static constexpr bool kWritesWeight = true;
  float* m;
  float* v;
  Grad g;
  float b1, b1c, b2, b2c, c1, c2, lr, eps;
  bool use_keep;
  float keep;
  __device__ __forceinline__ float operator()(float w, uint64_t i, float z) const {
    const float gi = g.at(i, z);
    const float mi = rng::fadd(rng::fmul(b1, m[i]), rng::fmul(b1c, gi));
    const float vi = rng::fadd(rng::fmul(b2, v[i]), rng::fmul(b2c, rng::fmul(gi, gi)));
    m[i] = mi;
    v[i] = vi;
    // lr·(m·c1) / (sqrt(v·c2) + eps), as the CPU groups it.
    const float step = rng::fdiv(rng::fmul(lr, rng::fmul(mi, c1)), rng::fadd(rng::fsqrt(rng::fmul(vi, c2)), eps));
    return rng::fadd(decayed(w, use_keep, keep), -step);
  }
};

struct SignRule {  // sign_update: w = decayed(w) - lr·sign(ĝ), sign(0) = 0
  static constexpr bool kWritesWeight = true;
  Grad g;
  float lr;
  bool use_keep;
  float keep;
  __device__ __forceinline__ float operator()(float w, uint64_t i, float z) const {
    const float gi = g.at(i, z);
    const float s = gi > 0.0f ? 1.0f : (gi < 0.0f ? -1.0f : 0.0f);
    return rng::fadd(decayed(w, use_keep, keep), -rng::fmul(lr, s));
  }
};

struct PrecondRule {  // preconditioned_update: w = decayed(w) - step·(z·p)
  static constexpr bool kWritesWeight = true;
  const float* p;
  float step;
  bool use_keep;
  float keep;
  __device__ __forceinline__ float operator()(float w, uint64_t i, float z) const {
    return rng::fadd(decayed(w, use_keep, keep), -rng::fmul(step, rng::fmul(z, p[i])));
  }
};

struct HessianRule {  // hessian_diag_update (perturb_precond.cpp); keep = 1 - alpha
  static constexpr bool kWritesWeight = false;
  float* h;
  float* p;
  float coeff, alpha, keep, h_min, h_max;
  __device__ __forceinline__ float operator()(float w, uint64_t i, float z) const {
    const float old = h[i];
    const float est = rng::fmul(rng::fmul(coeff, old), rng::fadd(rng::fmul(z, z), -1.0f));
    float v = rng::fadd(rng::fmul(keep, old), rng::fmul(alpha, fabsf(est)));
    if (isnan(v)) v = old;  // inf·0 from an overflowed coefficient: keep the old value
    v = v < h_min ? h_min : (v > h_max ? h_max : v);
    h[i] = v;
    p[i] = rng::fdiv(1.0f, rng::fsqrt(v));
    return w;
  }
};

// The one kernel: groups of four elements at absolute multiples of 4; `draw` false leaves z 0
// (the rule reads ĝ from a scratch buffer and never looks at z).
template <typename E, typename Rule>
__global__ void __launch_bounds__(kThreads) rule_kernel(typename E::Storage* w, const uint8_t* mask, uint64_t numel,
                                                        uint64_t seed, uint64_t stream, rng::Distribution dist,
                                                        bool draw, Rule rule) {
  const uint64_t groups = (numel + 3) / 4;
  for (uint64_t gi = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; gi < groups;
       gi += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    const uint64_t first = 4 * gi;
    const int n_valid = numel - first >= 4 ? 4 : static_cast<int>(numel - first);
    const uint32_t allow =
        (mask == nullptr ? 0xfu : (static_cast<uint32_t>(mask[first >> 3]) >> (first & 7)) & 0xfu) &
        ((1u << n_valid) - 1u);
    if (allow == 0) continue;
    float z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (draw) z4(seed, stream, dist, first, z);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (!((allow >> j) & 1u)) continue;
      const uint64_t i = first + static_cast<uint64_t>(j);
      if (Rule::kWritesWeight) {
        w[i] = E::from_f32(rule(E::to_f32(w[i]), i, z[j]));
      } else {
        rule(0.0f, i, z[j]);
      }
    }
  }
}

// hold_floor: x = max(x, f) where f > 0, min(x, f) where f < 0, as std::max / std::min do it
// (a NaN x stays NaN: std::max(x, f) returns x unless x < f).
__global__ void __launch_bounds__(kThreads) hold_floor_kernel(float* x, const float* lo, uint64_t n) {
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    const float f = lo[i];
    const float v = x[i];
    if (f > 0.0f) x[i] = v < f ? f : v;
    else if (f < 0.0f) x[i] = f < v ? f : v;
  }
}

// ---- host side ---------------------------------------------------------------------------------

struct Target {
  const Tensor* tensor;
  int device;
  uint64_t stream;
  const uint8_t* mask;
};

std::string where(const Tensor& t) { return device_string(t.device()); }

// zo_update.cpp's check_targets for CUDA tensors: the target list, and `buffers` (when given)
// f32 of each target's numel on the target's device.
std::vector<Target> check_targets(const std::vector<PerturbTarget>& targets, const std::vector<const std::vector<TensorPtr>*>& buffers,
                                  const char* what) {
  std::vector<Target> out;
  out.reserve(targets.size());
  for (size_t k = 0; k < targets.size(); ++k) {
    const TensorPtr& t = targets[k].tensor;
    const std::string name = std::string(what) + ": target " + std::to_string(k);
    ZCHECK(t != nullptr, ZEROTH_E_INVALID_ARG, name + " has no tensor");
    require_dtype(*t, {ZEROTH_F32, ZEROTH_F16, ZEROTH_BF16}, name.c_str());
    const int dev = cuda_index_of(*t, name.c_str());
    const uint8_t* mask = nullptr;
    if (targets[k].mask) {
      const Tensor& m = *targets[k].mask;
      ZCHECK(m.dtype == ZEROTH_U8 && m.numel == (t->numel + 7) / 8, ZEROTH_E_SHAPE,
             name + ": a mask must be u8 with ceil(numel / 8) bytes");
      ZCHECK(m.device().type == ZEROTH_DEVICE_CUDA && m.device().index == dev, ZEROTH_E_DEVICE,
             name + "'s mask is on " + where(m) + " but the tensor is on cuda:" + std::to_string(dev) +
                 "; move the mask to the tensor's device");
      mask = static_cast<const uint8_t*>(m.data());
    }
    for (const std::vector<TensorPtr>* list : buffers) {
      ZCHECK(list->size() == targets.size(), ZEROTH_E_INVALID_ARG, std::string(what) + ": one buffer per target");
      const TensorPtr& b = (*list)[k];
      ZCHECK(b && b->dtype == ZEROTH_F32 && b->numel == t->numel, ZEROTH_E_SHAPE,
             std::string(what) + ": state buffers must be f32 tensors of the parameter's size");
      ZCHECK(b->device().type == ZEROTH_DEVICE_CUDA && b->device().index == dev, ZEROTH_E_DEVICE,
             name + "'s state buffer is on " + where(*b) + " but the parameter is on cuda:" + std::to_string(dev) +
                 "; allocate optimizer state on the parameter's device");
    }
    out.push_back(Target{t.get(), dev, targets[k].stream, mask});
  }
  return out;
}

template <typename Rule>
struct Launch {
  template <typename E>
  static void run(const Target& t, uint64_t seed, rng::Distribution dist, bool draw, const Rule& rule) {
    const uint64_t numel = static_cast<uint64_t>(t.tensor->numel);
    if (numel == 0) return;
    cudaStream_t st = stream_for(t.device);
    rule_kernel<E, Rule><<<grid_for((numel + 3) / 4, kThreads), kThreads, 0, st>>>(
        static_cast<typename E::Storage*>(t.tensor->data()), t.mask, numel, seed, t.stream, dist, draw, rule);
    check_launch(t.device, "zo rule_kernel");
  }
};

template <typename Rule>
void launch(const Target& t, uint64_t seed, rng::Distribution dist, bool draw, const Rule& rule) {
  switch (t.tensor->dtype) {
    case ZEROTH_F32: Launch<Rule>::template run<F32>(t, seed, dist, draw, rule); break;
    case ZEROTH_F16: Launch<Rule>::template run<F16>(t, seed, dist, draw, rule); break;
    case ZEROTH_BF16: Launch<Rule>::template run<BF16>(t, seed, dist, draw, rule); break;
    default: fail(ZEROTH_E_DTYPE, "ZO update targets are f32, f16 or bf16");
  }
}

float* f32(const TensorPtr& t) { return static_cast<float*>(t->data()); }

Grad grad_of(const GradSource& g, size_t k) { return Grad{g.scratch ? f32((*g.scratch)[k]) : nullptr, g.c}; }

// The gradient source's scratch buffers, when it has them, are checked like state buffers.
std::vector<const std::vector<TensorPtr>*> with_scratch(std::vector<const std::vector<TensorPtr>*> lists,
                                                        const GradSource& g) {
  if (g.scratch) lists.push_back(g.scratch);
  return lists;
}

void count_devices(const Tensor* t, size_t& on_cpu, size_t& on_gpu) {
  if (t) ++(t->on_cpu() ? on_cpu : on_gpu);
}

bool decide(size_t on_cpu, size_t on_gpu, const char* what) {
  if (on_gpu == 0) return false;
  ZCHECK(on_cpu == 0, ZEROTH_E_DEVICE,
         std::string(what) + " are on different devices (" + std::to_string(on_cpu) + " on the CPU, " +
             std::to_string(on_gpu) + " on CUDA); parameters, masks and optimizer state must share one device");
  return true;
}

}  // namespace

// ---- entry points --------------------------------------------------------------------------------

bool zo_on_cuda(const std::vector<PerturbTarget>& targets, std::initializer_list<const std::vector<TensorPtr>*> state) {
  size_t on_cpu = 0, on_gpu = 0;
  for (const PerturbTarget& t : targets) {
    count_devices(t.tensor.get(), on_cpu, on_gpu);
    count_devices(t.mask.get(), on_cpu, on_gpu);
    count_devices(t.precond.get(), on_cpu, on_gpu);
  }
  for (const std::vector<TensorPtr>* list : state)
    if (list)
      for (const TensorPtr& t : *list) count_devices(t.get(), on_cpu, on_gpu);
  return decide(on_cpu, on_gpu, "the parameters and optimizer state of this update");
}

bool tensors_on_cuda(std::initializer_list<const std::vector<TensorPtr>*> lists) {
  size_t on_cpu = 0, on_gpu = 0;
  for (const std::vector<TensorPtr>* list : lists)
    if (list)
      for (const TensorPtr& t : *list) count_devices(t.get(), on_cpu, on_gpu);
  return decide(on_cpu, on_gpu, "the tensors and their floors");
}

void accumulate_z(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& buffers, uint64_t seed,
                  rng::Distribution dist, float beta, float c) {
  const std::vector<Target> ts = check_targets(targets, {&buffers}, "accumulate_z");
  for (size_t k = 0; k < ts.size(); ++k) launch(ts[k], seed, dist, true, AccumulateRule{f32(buffers[k]), beta, c});
}

void momentum_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& m, const GradSource& g,
                     float beta, float lr, float decay) {
  const std::vector<Target> ts = check_targets(targets, with_scratch({&m}, g), "momentum_update");
  for (size_t k = 0; k < ts.size(); ++k)
    launch(ts[k], g.seed, g.dist, !g.scratch,
           MomentumRule{f32(m[k]), grad_of(g, k), beta, lr, decay != 0.0f, 1.0f - decay});
}

void adam_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& m,
                 const std::vector<TensorPtr>& v, const GradSource& g, const AdamParams& p) {
  const std::vector<Target> ts = check_targets(targets, with_scratch({&m, &v}, g), "adam_update");
  ZCHECK(p.t >= 1, ZEROTH_E_INVALID_ARG, "adam step count must be >= 1");
  // zo_update.cpp's expressions, evaluated on the host as there.
  const float c1 = 1.0f / static_cast<float>(1.0 - std::pow(static_cast<double>(p.beta1), static_cast<double>(p.t)));
  const float c2 = 1.0f / static_cast<float>(1.0 - std::pow(static_cast<double>(p.beta2), static_cast<double>(p.t)));
  for (size_t k = 0; k < ts.size(); ++k)
    launch(ts[k], g.seed, g.dist, !g.scratch,
           AdamRule{f32(m[k]), f32(v[k]), grad_of(g, k), p.beta1, 1.0f - p.beta1, p.beta2, 1.0f - p.beta2, c1, c2, p.lr,
                    p.eps, p.decay != 0.0f, 1.0f - p.decay});
}

void sign_update(const std::vector<PerturbTarget>& targets, const GradSource& g, float lr, float decay) {
  const std::vector<Target> ts = check_targets(targets, with_scratch({}, g), "sign_update");
  for (size_t k = 0; k < ts.size(); ++k)
    launch(ts[k], g.seed, g.dist, !g.scratch, SignRule{grad_of(g, k), lr, decay != 0.0f, 1.0f - decay});
}

void preconditioned_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& precond,
                           uint64_t seed, rng::Distribution dist, float step, float decay) {
  const std::vector<Target> ts = check_targets(targets, {&precond}, "preconditioned_update");
  for (size_t k = 0; k < ts.size(); ++k)
    launch(ts[k], seed, dist, true, PrecondRule{f32(precond[k]), step, decay != 0.0f, 1.0f - decay});
}

void hold_floor(const std::vector<TensorPtr>& x, const std::vector<TensorPtr>& floors) {
  ZCHECK(x.size() == floors.size(), ZEROTH_E_INVALID_ARG, "hold_floor: one floor tensor per tensor");
  for (size_t k = 0; k < x.size(); ++k) {
    ZCHECK(x[k] && floors[k], ZEROTH_E_INVALID_ARG, "hold_floor: missing tensor");
    const Tensor& t = *x[k];
    const Tensor& f = *floors[k];
    require_dtype(t, {ZEROTH_F32}, "hold_floor: tensor");
    require_dtype(f, {ZEROTH_F32}, "hold_floor: floor");
    ZCHECK(t.numel == f.numel, ZEROTH_E_SHAPE,
           "hold_floor: the floor has " + std::to_string(f.numel) + " elements, the tensor " + std::to_string(t.numel));
    const int dev = cuda_index_of(t, "hold_floor: tensor");
    ZCHECK(f.device().type == ZEROTH_DEVICE_CUDA && f.device().index == dev, ZEROTH_E_DEVICE,
           "hold_floor: the floor is on " + where(f) + " but the tensor is on cuda:" + std::to_string(dev));
  }
  for (size_t k = 0; k < x.size(); ++k) {
    const uint64_t n = static_cast<uint64_t>(x[k]->numel);
    if (n == 0) continue;
    const int dev = x[k]->device().index;
    hold_floor_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_for(dev)>>>(f32(x[k]), f32(floors[k]), n);
    check_launch(dev, "hold_floor_kernel");
  }
}

void hessian_diag_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& h, uint64_t seed,
                         rng::Distribution dist, const DiagHessianUpdate& u) {
  // The options and counts were checked by perturb_precond.cpp before dispatching here; these
  // are the device tensors' checks (perturb_precond.cpp's check_diag_tensors on the CPU).
  std::vector<TensorPtr> precond;
  for (size_t k = 0; k < targets.size(); ++k) {
    ZCHECK(targets[k].precond != nullptr, ZEROTH_E_INVALID_ARG,
           "target " + std::to_string(k) + " has no precond tensor to receive 1/sqrt(H)");
    precond.push_back(targets[k].precond);
  }
  const std::vector<Target> ts = check_targets(targets, {&h, &precond}, "hessianDiagUpdate");
  for (size_t k = 0; k < ts.size(); ++k)
    ZCHECK(ts[k].tensor->numel == 0 || h[k]->data() != precond[k]->data(), ZEROTH_E_INVALID_ARG,
           "target " + std::to_string(k) + ": the Hessian and precond tensors must be distinct");
  const float keep = 1.0f - u.alpha;
  for (size_t k = 0; k < ts.size(); ++k)
    launch(ts[k], seed, dist, true, HessianRule{f32(h[k]), f32(precond[k]), u.coeff, u.alpha, keep, u.h_min, u.h_max});
}

}  // namespace cuda
}  // namespace zeroth
