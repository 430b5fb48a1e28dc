// perturb_cuda.h — the CUDA twin of native/cpu/perturb.h, callable from plain C++ (no CUDA
// types here). Only declared when the build has the CUDA backend, so CPU-only builds cannot
// reference it by accident:
//
//   #ifdef ZEROTH_WITH_CUDA
//   #include "../cuda/perturb_cuda.h"   // or "cuda/perturb_cuda.h" with the repo root on the path
//   if (!targets[0].tensor->on_cpu()) return cuda::perturb_to(targets, journal, seed, scale, dist);
//   #endif
//
// Contract: the same as perturb.h, element for element and bit for bit (z from philox.h, the
// same rounding of every operation, f16/bf16 through half.h), with these CUDA specifics:
//  - every target of one call must be on a CUDA device (targets may be on different GPUs);
//    a mask must be a u8 tensor of ceil(numel / 8) bytes on the target's device.
//  - the undo journal lives on the GPU, in device memory owned by this module and keyed by the
//    PerturbJournal's address; journal.scale / seed / dist / seeded / numels / streams are
//    kept exactly as the CPU keeps them, journal.entries stays empty (see journal_entry_count).
//    release_journal() gives the device memory back; a journal that is clean (scale 0) when it
//    is destroyed leaves only its capacity cached until its address is reused or released.
//  - the work is queued on each device's stream; perturb_to waits for it (it reads back how
//    many journal entries were needed), the others return once the kernels are queued.
//  - stochastic rounding (f16/bf16) uses perturb.cpp's recipe and random words, so it gives the
//    CPU's bits too (cuda/common.cuh holds the device copy of the rounding functions).
#pragma once
#ifdef ZEROTH_WITH_CUDA
#include <cstdint>
#include <vector>

#include "core/philox.h"
#include "core/tensor.h"
#include "cpu/perturb.h"

namespace zeroth {
namespace cuda {

// out (f32, CUDA) [0, n) = z of elements [first, first + n) of (seed, stream); n = out.numel.
void fill_z(const Tensor& out, uint64_t seed, uint64_t stream, rng::Distribution dist, uint64_t first);

// t += scale * z, in place, no journal (inexact to invert).
void perturb(const std::vector<PerturbTarget>& targets, uint64_t seed, float scale, rng::Distribution dist);

// perturb.h's perturb_to / restore_and_update / apply_update on CUDA tensors.
void perturb_to(const std::vector<PerturbTarget>& targets, PerturbJournal& journal, uint64_t seed, float scale,
                rng::Distribution dist);
void restore_and_update(const std::vector<PerturbTarget>& targets, PerturbJournal& journal, const UpdateOptions& opts);
void apply_update(const std::vector<PerturbTarget>& targets, uint64_t seed, rng::Distribution dist,
                  const UpdateOptions& opts);

// How many elements the device journal of `journal` holds (0 when clean or unknown).
uint64_t journal_entry_count(const PerturbJournal& journal);
// Frees the device memory of a journal (call before destroying a PerturbJournal used on CUDA).
void release_journal(const PerturbJournal& journal);

}  // namespace cuda
}  // namespace zeroth
#endif  // ZEROTH_WITH_CUDA
