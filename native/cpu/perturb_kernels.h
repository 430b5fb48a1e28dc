// perturb_kernels.h — the per-ISA building blocks of perturb.cpp (internal to native/cpu).
//
// One table per SIMD level (scalar, AVX2, AVX-512), chosen at run time. Every entry computes
// exactly the same bits on every level: the generators follow philox.h operation by operation
// (explicit fma, IEEE div/sqrt), and the f32 element kernels use one rounding per operation.
//
// Element kernels work on one block of at most kPerturbBlock elements whose z sits in an L1
// buffer. `mask` (nullable) is the target's bitmask advanced to the block's first element
// (blocks start at multiples of 64 elements); a clear bit means the element is neither
// written nor flagged.
#pragma once
#include <cstdint>

#include "core/cpu_features.h"

namespace zeroth::perturb_detail {

constexpr int64_t kPerturbBlock = 2048;  // elements per L1 block (multiple of 2048 Rademacher bits)

struct Kernels {
  // out[0 .. 4*nblocks): the Philox words of blocks block0 .. block0+nblocks-1, word k of block
  // b at out[4*(b - block0) + k].
  void (*philox_words)(uint64_t seed, uint64_t stream, uint64_t block0, int64_t nblocks, uint32_t* out);
  // out[0 .. 4*nblocks): the standard normals of those blocks (rng::normal4). When `prefetch` is
  // not null, the cache lines of its 16*nblocks bytes (the weights the caller combines with
  // these normals next) are requested for writing a few at a time while the normals are
  // computed: the loads overlap the arithmetic, and a few misses in flight at a time do not
  // stall it the way one burst of 128 prefetches did (SIMD tables; the scalar one ignores it).
  void (*normal_blocks)(uint64_t seed, uint64_t stream, uint64_t block0, int64_t nblocks, float* out,
                        const void* prefetch);
  // out[i] = bit i of words (little-endian) ? +1 : -1, for i < n (n a multiple of 32).
  void (*expand_signs)(const uint32_t* words, int64_t n, float* out);

  // w[i] = fl(p[i] - fl(s * z[i]))  — the clean value of an element that is not journaled.
  void (*unperturb)(const float* p, const float* z, float s, float* w, int64_t n);
  // p[i] = fl(w[i] + fl(s * z[i])) where the mask allows; w may alias p. When flags is not
  // null, bit i of flags (64 per word, n rounded up) is set where the element was written
  // and fl(p[i] - fl(s * z[i])) differs from w[i] in its bits (so w must be journaled), and
  // saved[i] receives w[i] for those elements (other saved[] entries are unspecified).
  void (*perturb)(float* p, const float* w, const float* z, float s, const uint8_t* mask, uint64_t* flags,
                  float* saved, int64_t n);
  // p[i] = fl(fl(w[i] * keep) - fl(step * z[i])) where the mask allows; the product is skipped
  // when !use_keep and the difference when step == 0 (z may then be null). w may alias p.
  void (*update)(float* p, const float* w, const float* z, bool use_keep, float keep, float step,
                 const uint8_t* mask, int64_t n);
  // The GEMM packing hook with z kept in registers: for each piece p < npieces of kNormalPiece
  // elements, dst + p·dst_stride receives fl(src[kNormalPiece·p + j] + fl(s · z)), z the normal
  // of element 4·block0 + kNormalPiece·p + j (rng::normal4). No z buffer and no staging run: the
  // perturbed weights go straight into the packed panel. Null where a table lacks it (callers
  // then stage through add_scaled_z_from).
  void (*add_normal_pieces)(uint64_t seed, uint64_t stream, uint64_t block0, int64_t npieces, float s,
                            const float* src, float* dst, int64_t dst_stride);
};

// Elements per piece of add_normal_pieces: 8 Philox blocks, the AVX-512 GEMM's panel width.
constexpr int64_t kNormalPiece = 32;

const Kernels& kernels_for(SimdLevel level);
const Kernels& kernels();  // for the current simd_level()

// The implementations, one table per level (perturb_scalar.cpp, perturb_avx2.cpp,
// perturb_avx512.cpp). The SIMD tables are only used when the CPU supports them.
extern const Kernels kScalarKernels;
extern const Kernels kAvx2Kernels;
extern const Kernels kAvx512Kernels;

}  // namespace zeroth::perturb_detail
