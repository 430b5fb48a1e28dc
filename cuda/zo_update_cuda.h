// zo_update_cuda.h — the CUDA twin of native/cpu/zo_update.h (momentum, Adam, sign,
// preconditioned updates, accumulate_z, QZO's hold_floor) and of perturb_precond.cpp's
// hessian_diag_update, callable from plain C++ (no CUDA types here). Only declared when the
// build has the CUDA backend; the CPU entry points dispatch here:
//
//   #ifdef ZEROTH_WITH_CUDA
//   #include "../../cuda/zo_update_cuda.h"
//   if (cuda::zo_on_cuda(targets, {&m, &v})) return cuda::adam_update(targets, m, v, g, p);
//   #endif
//
// Contract: the same as zo_update.h, element for element and bit for bit. Every rule is a pure
// function of one element's values (weight, state, z, the call's scalars): there is no
// reduction anywhere, so nothing depends on the launch shape and the GPU writes the CPU's bits
// (z from philox.h, one correctly rounded operation per CPU operation in the CPU's order —
// rng::fmul/fadd/fdiv/fsqrt, never a fused multiply-add — f16/bf16 through half.h).
// Scalars derived once per call (Adam's bias corrections 1/(1 - β^t), 1 - β, 1 - decay) are
// computed on the host by the same expressions as the CPU.
// CUDA specifics:
//  - every target, mask, state buffer, scratch buffer, preconditioner and Hessian tensor of one
//    call must sit on the same CUDA device as its target (targets may be on different GPUs);
//  - the work is queued on each device's stream and the calls return once it is queued (later
//    work and reads of the tensors are ordered after it on that stream).
#pragma once
#ifdef ZEROTH_WITH_CUDA
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "core/philox.h"
#include "core/tensor.h"
#include "cpu/perturb.h"
#include "cpu/zo_update.h"

namespace zeroth {
namespace cuda {

// True when the targets (and every tensor of `state`, a list of per-target tensor lists; null
// lists are skipped) live on CUDA devices, false when all of them are on the CPU. A mix of CPU
// and CUDA tensors in one call is E_DEVICE (with how many sit on each).
bool zo_on_cuda(const std::vector<PerturbTarget>& targets, std::initializer_list<const std::vector<TensorPtr>*> state);

// hold_floor's lists are plain tensors: the same test for them.
bool tensors_on_cuda(std::initializer_list<const std::vector<TensorPtr>*> lists);

void accumulate_z(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& buffers, uint64_t seed,
                  rng::Distribution dist, float beta, float c);
void momentum_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& m, const GradSource& g,
                     float beta, float lr, float decay);
void adam_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& m,
                 const std::vector<TensorPtr>& v, const GradSource& g, const AdamParams& p);
void sign_update(const std::vector<PerturbTarget>& targets, const GradSource& g, float lr, float decay);
void preconditioned_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& precond,
                           uint64_t seed, rng::Distribution dist, float step, float decay);
void hold_floor(const std::vector<TensorPtr>& x, const std::vector<TensorPtr>& floors);

// perturb_precond.cpp's HiZOO Hessian update: h and each target's precond (p = 1/√h) on the
// target's device. The targets themselves are only read for their numel, stream and mask.
void hessian_diag_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& h, uint64_t seed,
                         rng::Distribution dist, const DiagHessianUpdate& u);

}  // namespace cuda
}  // namespace zeroth
#endif  // ZEROTH_WITH_CUDA
