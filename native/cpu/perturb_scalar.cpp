// perturb_scalar.cpp — the scalar kernel table: the readable reference every SIMD table must
// match bit for bit (test/native/test_perturb.cpp checks them against each other).
#include <cstring>

#include "core/philox.h"
#include "cpu/perturb_kernels.h"

namespace zeroth::perturb_detail {
namespace {

void philox_words(uint64_t seed, uint64_t stream, uint64_t block0, int64_t nblocks, uint32_t* out) {
  for (int64_t b = 0; b < nblocks; ++b) {
    const rng::U32x4 r = rng::philox_block(seed, stream, block0 + static_cast<uint64_t>(b));
    std::memcpy(out + 4 * b, r.v, 16);
  }
}

void normal_blocks(uint64_t seed, uint64_t stream, uint64_t block0, int64_t nblocks, float* out, const void*) {
  for (int64_t b = 0; b < nblocks; ++b) rng::normal4(seed, stream, block0 + static_cast<uint64_t>(b), out + 4 * b);
}

void expand_signs(const uint32_t* words, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = ((words[i >> 5] >> (i & 31)) & 1u) ? 1.0f : -1.0f;
}

inline bool allowed(const uint8_t* mask, int64_t i) { return !mask || ((mask[i >> 3] >> (i & 7)) & 1u); }

void unperturb(const float* p, const float* z, float s, float* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) w[i] = p[i] - s * z[i];
}

void perturb(float* p, const float* w, const float* z, float s, const uint8_t* mask, uint64_t* flags, float* saved,
             int64_t n) {
  if (flags) std::memset(flags, 0, static_cast<size_t>((n + 63) / 64) * 8);
  for (int64_t i = 0; i < n; ++i) {
    if (!allowed(mask, i)) continue;
    const float clean = w[i];
    const float d = s * z[i];
    const float v = clean + d;
    p[i] = v;
    if (flags && rng::fbits(v - d) != rng::fbits(clean)) {
      flags[i >> 6] |= uint64_t{1} << (i & 63);
      saved[i] = clean;
    }
  }
}

void update(float* p, const float* w, const float* z, bool use_keep, float keep, float step, const uint8_t* mask,
            int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!allowed(mask, i)) continue;
    float v = w[i];
    if (use_keep) v = v * keep;
    if (step != 0.0f) v = v - step * z[i];
    p[i] = v;
  }
}

}  // namespace

const Kernels kScalarKernels = {philox_words, normal_blocks, expand_signs, unperturb, perturb, update, nullptr};

}  // namespace zeroth::perturb_detail
