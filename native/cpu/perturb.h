// perturb.h — the in-place perturbation kernels of the ZO optimizers (DESIGN principle 2's
// fallback for closures over user tensors; built-in models perturb on the fly instead).
//
// Exactness. Floating-point addition is not invertible: fl(fl(w + d) - d) != w for some
// elements (those whose perturbed value lands in a coarser binade, and any |w| much smaller
// than |d|). zeroth still restores weights to the bit: every perturbation is taken from the
// clean weights, and `perturb_to` records in a journal the original value of each element
// whose perturbed value would not round back exactly. The journal is small (a few percent of
// the elements, 8 bytes each) and is consulted by the next perturb_to / restore_and_update.
//
// Guarantees (tested in test/native/test_perturb.cpp and test/perturb.test.ts):
//  1. After any sequence of perturb_to calls, restore (restore_and_update with step 0 and
//     weight decay 0) returns every element's original bits (f32, f16, bf16; -0, NaN payloads,
//     subnormals and infinities included).
//  2. perturb_to(scale s) leaves each element at fl(w + fl(s * z)) (f16/bf16: that f32 sum
//     rounded to nearest even), for journaled elements too (the journal only stores w).
//     perturb_to(0) writes w itself.
//  3. restore_and_update writes w_new = fl(fl(w * (1 - decay)) - fl(step * z)) from the exact
//     clean w, elementwise and independent of thread count and SIMD level: replaying the same
//     calls on the same base weights gives the same bits. A zero decay skips the product and a
//     zero step skips the difference (so -0 stays -0). f16/bf16 compute in f32 and round once:
//     to nearest even, or stochastically from the word rng(rounding_seed, stream, i) (finite
//     values never round to infinity).
//  4. Masked elements (mask bit clear) are never written.
//  5. Preconditioned targets (PerturbTarget::precond, an f32 tensor p of the target's numel):
//     every scaled z above becomes fl(fl(s * z) * p[i]) — perturb_to leaves fl(w + fl(fl(s·z)·p)),
//     the update subtracts fl(fl(step·z)·p) — and guarantees 1-4 hold unchanged (the journal
//     checks the actual rounding of each element, whatever p holds). A target must keep the same
//     precond tensor, and its values unchanged, from a perturb_to until the restore: the journal
//     records which tensor was used and rejects another (HiZOO's ε·z/√H, perturb_precond.cpp).
//
// z is rng::normal_at / rng::rademacher_at(seed, target.stream, element index).
//
// Work is split into fixed chunks of kJournalChunk elements per target (independent of the
// thread count); inside a chunk, blocks of a few thousand elements are drawn into an L1
// buffer by the SIMD generator and applied in the same pass over the weights.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/philox.h"
#include "core/tensor.h"

namespace zeroth {

struct PerturbTarget {
  TensorPtr tensor;  // f32, f16 or bf16, on the CPU (the CUDA twin handles device tensors)
  uint64_t stream;   // rng::stream_id(name)
  TensorPtr mask;    // optional u8 bitmask of ceil(numel / 8) bytes, bit (i & 7) of byte i >> 3;
                     // a set bit means element i is trainable. nullptr: all elements train.
  TensorPtr precond = nullptr;  // optional f32 multiplier per element (guarantee 5); nullptr: none
};

// One journaled element: its offset inside its chunk and its original bits (f16/bf16 in the
// low 16 bits).
struct JournalEntry {
  uint32_t offset;
  uint32_t bits;
};

// The undo journal of one parameter set: the perturbation currently applied to it and the
// original values that cannot be recomputed from the perturbed ones.
struct PerturbJournal {
  PerturbJournal() = default;
  PerturbJournal(const PerturbJournal&) = delete;
  PerturbJournal& operator=(const PerturbJournal&) = delete;
  ~PerturbJournal();  // gives back device-side journal memory (CUDA builds)

  float scale = 0.0f;  // the perturbation scale currently applied (0: clean)
  uint64_t seed = 0;
  rng::Distribution dist = rng::Distribution::Normal;
  bool seeded = false;  // a perturb_to set seed/dist that restore_and_update has not consumed yet
  std::vector<int64_t> numels;    // per target: the layout the entries belong to ...
  std::vector<uint64_t> streams;  // ... and its streams (checked while perturbed)
  std::vector<const void*> preconds;  // ... and the storage of its preconditioners (nullptr: none)
  // Per target, per fixed-size chunk of elements: entries sorted by offset.
  std::vector<std::vector<std::vector<JournalEntry>>> entries;
  size_t entry_count() const;
};

constexpr int64_t kJournalChunk = 1 << 16;

struct UpdateOptions {
  float step_scale = 0.0f;    // w -= step_scale * z   (lr * projected gradient)
  float decay = 0.0f;         // w *= (1 - decay)       (lr * weight decay)
  bool stochastic_rounding = false;  // f16/bf16 only: round the new value stochastically (QuZO)
  uint64_t rounding_seed = 0;        // the rng seed of stochastic rounding
};

// Moves every target from its current perturbation (journal.scale, 0 when clean) to `scale`
// around the clean weights, for the given seed. Changing seed, distribution or the target
// list while perturbed is an E_INVALID_ARG error: restore first.
void perturb_to(const std::vector<PerturbTarget>& targets, PerturbJournal& journal, uint64_t seed, float scale,
                rng::Distribution dist);

// Restores the clean weights and applies the update with z of the journal's seed in the same
// pass; clears the journal. With opts.step_scale == 0 and opts.decay == 0 this is an exact
// restore. A nonzero step needs a perturb_to since the last restore_and_update (its seed).
void restore_and_update(const std::vector<PerturbTarget>& targets, PerturbJournal& journal, const UpdateOptions& opts);

// A plain update of clean weights from a seed (no journal): what replay applies per step.
void apply_update(const std::vector<PerturbTarget>& targets, uint64_t seed, rng::Distribution dist,
                  const UpdateOptions& opts);

// Convenience without a journal: t += scale * z (inexact to invert; the C ABI's zeroth_perturb).
void perturb(const std::vector<PerturbTarget>& targets, uint64_t seed, float scale, rng::Distribution dist);

// Fills out[0..n) with z for elements [first, first + n) of a stream (the naive reference and
// the GEMM packing path use it). SIMD inside; bit-identical to rng::normal_at / rademacher_at.
void fill_z(uint64_t seed, uint64_t stream, rng::Distribution dist, uint64_t first, int64_t n, float* out);
// out[i] += scale * z(first + i): the weight-read hook of DESIGN principle 2 (GEMM packing,
// embedding rows). Each element is fl(x + fl(scale * z)), the same value perturb_to writes.
void add_scaled_z(uint64_t seed, uint64_t stream, rng::Distribution dist, float scale, uint64_t first, int64_t n,
                  float* out);
// out[i] = src[i] + scale * z(first + i), the same values without a copy first (src may be out).
void add_scaled_z_from(uint64_t seed, uint64_t stream, rng::Distribution dist, float scale, uint64_t first, int64_t n,
                       const float* src, float* out);
// The same values cut into pieces of `piece` elements (n a multiple of it), piece p going to
// out + p·out_stride: how the GEMM packs a perturbed row of B into NR-wide panels. With normal
// z, 32-wide pieces and a block-aligned `first` (a multiple of 4), the AVX-512 table writes
// them from registers, with no z buffer and no staging copy (about a quarter of a perturbed GEMM's
// extra cost on GPT-2 shapes); otherwise they are staged through add_scaled_z_from.
void add_scaled_z_pieces(uint64_t seed, uint64_t stream, rng::Distribution dist, float scale, uint64_t first, int64_t n,
                         const float* src, int64_t piece, float* out, int64_t out_stride);

// Sparse MeZO masks from weight magnitudes: a u8 bitmask tensor in PerturbTarget::mask's
// layout. AtMost: |w| <= value trains. Smallest / Largest: exactly round(value * numel)
// elements of smallest / largest |w| train (value in [0, 1]; ties broken by lower index).
// NaN weights never train.
enum class MagnitudeRule { AtMost, Smallest, Largest };
TensorPtr mask_from_magnitude(const Tensor& weights, MagnitudeRule rule, double value);

// HiZOO's diagonal curvature state (perturb_precond.cpp). For each target k and trainable
// element i, with z = z(seed, stream, i) of `dist` (which must be Normal: the centred estimate
// vanishes for Rademacher z):
//   est  = coeff · h[i] · (z² − 1)          coeff = (L+ + L− − 2·L0) / (2ε²), from the caller
//   h[i] = clamp((1 − alpha)·h[i] + alpha·|est|, h_min, h_max)
//   p[i] = 1 / sqrt(h[i])                  p = targets[k].precond, the perturbation multiplier
// all in f32 with one rounding per operation (no fma), so the result is the same on every
// SIMD level and thread count. Masked elements keep h and p.
struct DiagHessianUpdate {
  float coeff = 0.0f;
  float alpha = 0.0f;
  float h_min = 1e-8f;
  float h_max = 1e8f;
};
void hessian_diag_update(const std::vector<PerturbTarget>& targets, const std::vector<TensorPtr>& h, uint64_t seed,
                         rng::Distribution dist, const DiagHessianUpdate& u);

namespace perturb_detail {
// out[i] = fl(fl(s * z[i]) * p[i]): the scaled z of a preconditioned target (perturb_precond.cpp).
void scale_by_precond(const float* z, float s, const float* p, float* out, int64_t n);
}  // namespace perturb_detail

}  // namespace zeroth
