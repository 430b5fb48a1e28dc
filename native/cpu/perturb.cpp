// perturb.cpp — the perturbation drivers: argument checks, the fixed chunking that makes
// results independent of the thread count, the undo journal, and the per-dtype element loops.
// The SIMD work (drawing z, the f32 element passes) lives in the kernel tables of
// perturb_{scalar,avx2,avx512}.cpp; f16/bf16 element loops are scalar over SIMD-drawn z.
#include "cpu/perturb.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <unordered_set>

#include "core/errors.h"
#include "core/half.h"
#include "core/parallel.h"
#include "cpu/perturb_kernels.h"

#ifdef ZEROTH_WITH_CUDA
#include "../../cuda/perturb_cuda.h"
#endif

namespace zeroth {

namespace perturb_detail {

const Kernels& kernels_for(SimdLevel level) {
  switch (level) {
    case SimdLevel::Avx512: return kAvx512Kernels;
    case SimdLevel::Avx2: return kAvx2Kernels;
    default: return kScalarKernels;
  }
}

const Kernels& kernels() { return kernels_for(simd_level()); }

}  // namespace perturb_detail

using perturb_detail::Kernels;
using perturb_detail::kPerturbBlock;
using perturb_detail::kNormalPiece;

PerturbJournal::~PerturbJournal() {
#ifdef ZEROTH_WITH_CUDA
  try {
    cuda::release_journal(*this);
  } catch (...) {
    // The device is gone: nothing left to free.
  }
#endif
}

size_t PerturbJournal::entry_count() const {
  size_t n = 0;
  for (const auto& target : entries)
    for (const auto& chunk : target) n += chunk.size();
#ifdef ZEROTH_WITH_CUDA
  n += static_cast<size_t>(cuda::journal_entry_count(*this));  // a journal used on a GPU keeps it there
#endif
  return n;
}

namespace {

// ---- drawing z ------------------------------------------------------------------------------

// out[0 .. n) = z of elements first .. first+n-1. `prefetch` (nullable): n floats the caller
// reads and writes next, requested while the normals are computed (Kernels::normal_blocks).
void fill_normal(const Kernels& k, uint64_t seed, uint64_t stream, uint64_t first, int64_t n, float* out,
                 const float* prefetch = nullptr) {
  int64_t i = 0;
  uint64_t idx = first;
  float four[4];
  if (idx & 3) {  // head: the rest of a partly used block
    rng::normal4(seed, stream, idx >> 2, four);
    for (; (idx & 3) && i < n; ++i, ++idx) out[i] = four[idx & 3];
  }
  const int64_t blocks = (n - i) / 4;
  if (blocks > 0) k.normal_blocks(seed, stream, idx >> 2, blocks, out + i, prefetch ? prefetch + i : nullptr);
  i += 4 * blocks;
  idx += static_cast<uint64_t>(4 * blocks);
  if (i < n) {  // tail: the start of a block
    rng::normal4(seed, stream, idx >> 2, four);
    for (int j = 0; i < n; ++i, ++j) out[i] = four[j];
  }
}

void fill_rademacher(const Kernels& k, uint64_t seed, uint64_t stream, uint64_t first, int64_t n, float* out) {
  constexpr int64_t kBlocks = 64;  // 8192 elements of words per round
  alignas(64) uint32_t words[4 * kBlocks];
  int64_t i = 0;
  uint64_t idx = first;
  while (i < n) {
    const int64_t offset = static_cast<int64_t>(idx & 127);  // element inside its Philox block
    const int64_t blocks = std::min<int64_t>(kBlocks, (offset + (n - i) + 127) / 128);
    k.philox_words(seed, stream, idx >> 7, blocks, words);
    const int64_t take = std::min<int64_t>(blocks * 128 - offset, n - i);
    int64_t j = 0;
    if (offset % 32 == 0) {
      const int64_t whole = take & ~int64_t{31};
      k.expand_signs(words + offset / 32, whole, out + i);
      j = whole;
    }
    for (; j < take; ++j) {
      const int64_t bit = offset + j;
      out[i + j] = ((words[bit >> 5] >> (bit & 31)) & 1u) ? 1.0f : -1.0f;
    }
    i += take;
    idx += static_cast<uint64_t>(take);
  }
}

// z of elements first .. first+n-1 into out. The f32 block loops pass their block of weights
// as `prefetch`: a normal draw (~0.4 ns an element) then hides the block's loads; a Rademacher
// draw is too short to matter.
void draw(const Kernels& k, uint64_t seed, uint64_t stream, rng::Distribution dist, uint64_t first, int64_t n,
          float* out, const float* prefetch = nullptr) {
  if (dist == rng::Distribution::Rademacher) fill_rademacher(k, seed, stream, first, n, out);
  else fill_normal(k, seed, stream, first, n, out, prefetch);
}

// ---- f16 / bf16 rounding ---------------------------------------------------------------------

// Stochastic rounding: round |v| up to the next representable magnitude with probability
// (distance from the lower one) / (gap), using the random word r. Finite values never become
// infinite; NaN and infinities convert as with round-to-nearest.
uint16_t bf16_stochastic(float v, uint32_t r) {
  const uint32_t u = f32_bits(v);
  if ((u & 0x7fffffffu) >= 0x7f800000u) return f32_to_bf16(v);
  uint32_t t = (u + (r & 0xffffu)) >> 16;
  if ((t & 0x7f80u) == 0x7f80u) t = u >> 16;  // would round to infinity: keep the largest finite
  return static_cast<uint16_t>(t);
}

uint16_t f16_stochastic(float v, uint32_t r) {
  const uint32_t u = f32_bits(v);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x477ff000u) return f32_to_f16(v);  // inf, NaN, or beyond what nearest rounding keeps finite
  if (abs >= 0x38800000u) {                       // a normal f16: 13 bits below the kept mantissa
    uint32_t t = (abs - 0x38000000u + (r & 0x1fffu)) >> 13;
    if (t >= 0x7c00u) t = 0x7bffu;
    return static_cast<uint16_t>(sign | t);
  }
  // Subnormal f16 (units of 2^-24): value = mant >> shift plus a fraction rem / 2^shift.
  const uint32_t exp = abs >> 23;
  if (exp == 0) return static_cast<uint16_t>(sign);  // f32 subnormal: far below 2^-24 / 2^32
  const uint32_t shift = 126u - exp;                  // 14 and up
  if (shift > 56u) return static_cast<uint16_t>(sign);
  const uint64_t mant = (abs & 0x7fffffu) | 0x800000u;
  uint64_t t = shift >= 64u ? 0 : (mant >> shift);
  const uint64_t rem = mant & ((uint64_t{1} << shift) - 1u);
  const uint64_t frac32 = shift <= 32u ? rem << (32u - shift) : rem >> (shift - 32u);  // rem / 2^shift in 2^-32
  if (static_cast<uint64_t>(r) < frac32) ++t;
  return static_cast<uint16_t>(sign | t);
}

struct F16 {
  static float load(uint16_t h) { return f16_to_f32(h); }
  static uint16_t nearest(float v) { return f32_to_f16(v); }
  static uint16_t stochastic(float v, uint32_t r) { return f16_stochastic(v, r); }
};
struct BF16 {
  static float load(uint16_t h) { return bf16_to_f32(h); }
  static uint16_t nearest(float v) { return f32_to_bf16(v); }
  static uint16_t stochastic(float v, uint32_t r) { return bf16_stochastic(v, r); }
};

// ---- targets and chunks ----------------------------------------------------------------------

void validate(const std::vector<PerturbTarget>& targets) {
  std::unordered_set<const void*> seen;
  for (size_t i = 0; i < targets.size(); ++i) {
    const PerturbTarget& t = targets[i];
    const std::string what = "perturbation target " + std::to_string(i);
    ZCHECK(t.tensor != nullptr, ZEROTH_E_INVALID_ARG, what + " has no tensor");
    require_cpu(*t.tensor, what.c_str());
    require_dtype(*t.tensor, {ZEROTH_F32, ZEROTH_F16, ZEROTH_BF16}, what.c_str());
    ZCHECK(t.tensor->numel == 0 || seen.insert(t.tensor->data()).second, ZEROTH_E_INVALID_ARG,
           what + " shares its storage with an earlier target; pass each tensor once");
    if (t.mask) {
      const std::string mwhat = what + "'s mask";
      require_cpu(*t.mask, mwhat.c_str());
      require_dtype(*t.mask, {ZEROTH_U8}, mwhat.c_str());
      const int64_t need = (t.tensor->numel + 7) / 8;
      ZCHECK(t.mask->numel == need, ZEROTH_E_SHAPE,
             mwhat + " has " + std::to_string(t.mask->numel) + " bytes; a bitmask of " +
                 std::to_string(t.tensor->numel) + " elements needs " + std::to_string(need));
    }
    if (t.precond) {
      const std::string pwhat = what + "'s preconditioner";
      require_cpu(*t.precond, pwhat.c_str());
      require_dtype(*t.precond, {ZEROTH_F32}, pwhat.c_str());
      ZCHECK(t.precond->numel == t.tensor->numel, ZEROTH_E_SHAPE,
             pwhat + " has " + std::to_string(t.precond->numel) + " elements; it needs one per element of the target (" +
                 std::to_string(t.tensor->numel) + ")");
      ZCHECK(t.tensor->numel == 0 || t.precond->data() != t.tensor->data(), ZEROTH_E_INVALID_ARG,
             pwhat + " is the target itself; pass a separate f32 tensor");
    }
  }
}

int64_t chunks_of(int64_t numel) { return (numel + kJournalChunk - 1) / kJournalChunk; }

// Calls fn(target, chunk) for every chunk of every target, spread over the thread pool. The
// chunks are fixed, so results do not depend on the number of threads.
template <typename Fn>
void for_each_chunk(const std::vector<PerturbTarget>& targets, const Fn& fn) {
  std::vector<int64_t> first(targets.size() + 1, 0);
  for (size_t t = 0; t < targets.size(); ++t) first[t + 1] = first[t] + chunks_of(targets[t].tensor->numel);
  parallel_for(first.back(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const size_t t = static_cast<size_t>(std::upper_bound(first.begin(), first.end(), k) - first.begin() - 1);
      fn(t, k - first[t]);
    }
  });
}

const uint8_t* mask_bytes(const PerturbTarget& t) { return t.mask ? t.mask->as<uint8_t>() : nullptr; }
const float* precond_of(const PerturbTarget& t) { return t.precond ? t.precond->as<float>() : nullptr; }

// The scaled z of one block as the element kernels take it, (z, s): with a preconditioner the
// product fl(fl(s·z)·p) is formed in `buf` and handed on with s = 1 (fl(1·d) = d exactly), so
// the kernels stay the same and the journal sees the values actually added.
struct Scaled {
  const float* z;
  float s;
};
Scaled scaled(const float* z, float s, const float* pc, float* buf, int64_t n) {
  if (!pc || s == 0.0f) return {z, s};
  perturb_detail::scale_by_precond(z, s, pc, buf, n);
  return {buf, 1.0f};
}
// The same for one element of an f16/bf16 target: fl(s·z), times p[i] when preconditioned.
inline float scaled_one(float s, float z, const float* pc, int64_t i) {
  const float d = s * z;
  return pc ? d * pc[i] : d;
}
inline bool allowed(const uint8_t* mask, int64_t i) { return !mask || ((mask[i >> 3] >> (i & 7)) & 1u); }

// What one pass does to one chunk. s0: the perturbation now applied (0: clean). For a
// perturb_to pass, s1 is the new scale; for an update pass, the update fields apply.
struct Pass {
  const Kernels* k;
  uint64_t seed;
  rng::Distribution dist;
  float s0;
  float s1;
  bool use_keep;
  float keep;
  float step;
  bool stochastic;
  uint64_t rounding_seed;
};

struct ChunkView {
  const PerturbTarget* target;
  int64_t begin;  // first element of the chunk
  int64_t end;
  const std::vector<JournalEntry>* old;  // entries of the perturbation now applied
  std::vector<JournalEntry>* fresh;      // entries of the new perturbation (perturb_to only)
};

// Applies the old journal's entries that fall in [block, block + n) to the clean values w.
void patch(const ChunkView& c, size_t* oi, int64_t block, int64_t n, float* w) {
  if (!c.old) return;
  const auto& old = *c.old;
  while (*oi < old.size() && c.begin + old[*oi].offset < block + n) {
    w[c.begin + old[*oi].offset - block] = rng::ffrombits(old[*oi].bits);
    ++*oi;
  }
}

// The clean values of block [b, b + n): p − s0·z patched from the old journal, written to w;
// or, when the weights are clean, p itself — copied to w when `stage` is set. (perturb_to stages
// masked targets only: reading p in place while masked stores write it back ran at half the
// speed of the buffered path on AMD Zen, the loads waiting on the stores; without a mask the
// kernels store whole vectors and in place is faster than the extra copy.)
const float* clean_block(const Pass& ps, const ChunkView& c, size_t* oi, const float* p, int64_t b, int64_t n,
                         const float* z, const float* pc, float* d0, float* w, bool stage) {
  if (ps.s0 != 0.0f) {
    const Scaled old = scaled(z, ps.s0, pc ? pc + b : nullptr, d0, n);
    ps.k->unperturb(p + b, old.z, old.s, w, n);
    patch(c, oi, b, n, w);
    return w;
  }
  if (!stage) return p + b;
  std::memcpy(w, p + b, static_cast<size_t>(n) * sizeof(float));
  return w;
}

// f32 perturb_to: w = clean values (journal or p - s0·z), p = w + s1·z, journal what won't invert.
void perturb_to_f32(const Pass& ps, const ChunkView& c) {
  float* p = c.target->tensor->as<float>();
  const uint8_t* mask = mask_bytes(*c.target);
  const float* pc = precond_of(*c.target);
  alignas(64) float z[kPerturbBlock];
  alignas(64) float w[kPerturbBlock];
  alignas(64) float d0[kPerturbBlock];
  alignas(64) float d1[kPerturbBlock];
  uint64_t flags[kPerturbBlock / 64];
  size_t oi = 0;
  for (int64_t b = c.begin; b < c.end; b += kPerturbBlock) {
    const int64_t n = std::min(kPerturbBlock, c.end - b);
    const uint8_t* mb = mask ? mask + (b >> 3) : nullptr;
    draw(*ps.k, ps.seed, c.target->stream, ps.dist, static_cast<uint64_t>(b), n, z, p + b);
    const float* clean = clean_block(ps, c, &oi, p, b, n, z, pc, d0, w, mask != nullptr);
    if (ps.s1 == 0.0f) {
      ps.k->update(p + b, clean, nullptr, false, 1.0f, 0.0f, mb, n);
      continue;
    }
    const Scaled now = scaled(z, ps.s1, pc ? pc + b : nullptr, d1, n);
    ps.k->perturb(p + b, clean, now.z, now.s, mb, flags, w, n);  // flagged clean values land in w
    for (int64_t word = 0; word < (n + 63) / 64; ++word) {
      for (uint64_t bits = flags[word]; bits; bits &= bits - 1) {
        const int64_t j = word * 64 + __builtin_ctzll(bits);
        c.fresh->push_back({static_cast<uint32_t>(b + j - c.begin), rng::fbits(w[j])});
      }
    }
  }
}

// f32 restore and update: w = clean values, p = fl(fl(w·keep) - fl(step·z)).
void update_f32(const Pass& ps, const ChunkView& c) {
  float* p = c.target->tensor->as<float>();
  const uint8_t* mask = mask_bytes(*c.target);
  const float* pc = precond_of(*c.target);
  alignas(64) float z[kPerturbBlock];
  alignas(64) float w[kPerturbBlock];
  alignas(64) float d0[kPerturbBlock];
  alignas(64) float d1[kPerturbBlock];
  size_t oi = 0;
  const bool need_z = ps.s0 != 0.0f || ps.step != 0.0f;
  // The plain SGD update of clean weights (what every fused ZO step ends with) is
  // p = fl(p − fl(step·z)) = fl(p + fl((−step)·z)): the pieces kernel writes it with z kept in
  // registers, no z buffer (whole pieces of normal z, no mask, preconditioner or decay). Blocks
  // start at multiples of kPerturbBlock, so every piece is block-aligned.
  const bool fused = ps.k->add_normal_pieces && ps.dist == rng::Distribution::Normal && ps.s0 == 0.0f &&
                     ps.step != 0.0f && !ps.use_keep && !mask && !pc;
  auto general = [&](int64_t b, int64_t n) {
    const uint8_t* mb = mask ? mask + (b >> 3) : nullptr;
    if (need_z) draw(*ps.k, ps.seed, c.target->stream, ps.dist, static_cast<uint64_t>(b), n, z, p + b);
    const float* clean = clean_block(ps, c, &oi, p, b, n, z, pc, d0, w, false);
    const Scaled step = scaled(z, ps.step, pc ? pc + b : nullptr, d1, n);
    ps.k->update(p + b, clean, step.z, ps.use_keep, ps.keep, step.s, mb, n);
  };
  for (int64_t b = c.begin; b < c.end; b += kPerturbBlock) {
    const int64_t n = std::min(kPerturbBlock, c.end - b);
    if (!fused) {
      general(b, n);
      continue;
    }
    const int64_t whole = n / kNormalPiece * kNormalPiece;
    ps.k->add_normal_pieces(ps.seed, c.target->stream, static_cast<uint64_t>(b) / 4, whole / kNormalPiece, -ps.step,
                            p + b, p + b, kNormalPiece);
    if (whole < n) general(b + whole, n - whole);  // a tensor's last few elements
  }
}

// f32 plain perturbation: p = p + s1·z.
void add_f32(const Pass& ps, const ChunkView& c) {
  float* p = c.target->tensor->as<float>();
  const uint8_t* mask = mask_bytes(*c.target);
  const float* pc = precond_of(*c.target);
  alignas(64) float z[kPerturbBlock];
  alignas(64) float d[kPerturbBlock];
  for (int64_t b = c.begin; b < c.end; b += kPerturbBlock) {
    const int64_t n = std::min(kPerturbBlock, c.end - b);
    draw(*ps.k, ps.seed, c.target->stream, ps.dist, static_cast<uint64_t>(b), n, z, p + b);
    const Scaled now = scaled(z, ps.s1, pc ? pc + b : nullptr, d, n);
    ps.k->perturb(p + b, p + b, now.z, now.s, mask ? mask + (b >> 3) : nullptr, nullptr, nullptr, n);
  }
}

// The clean f16/bf16 bits of element i while perturbed by s0 (d0 = its scaled z, fl(s0·z)[·p]).
template <typename H>
uint16_t clean_half(const uint16_t* p, int64_t i, float s0, float d0, const ChunkView& c, size_t* oi) {
  if (s0 == 0.0f) return p[i];
  const uint32_t offset = static_cast<uint32_t>(i - c.begin);
  const auto& old = *c.old;
  while (*oi < old.size() && old[*oi].offset < offset) ++*oi;
  if (*oi < old.size() && old[*oi].offset == offset) return static_cast<uint16_t>(old[*oi].bits);
  return H::nearest(H::load(p[i]) - d0);
}

template <typename H>
void perturb_to_half(const Pass& ps, const ChunkView& c) {
  uint16_t* p = c.target->tensor->as<uint16_t>();
  const uint8_t* mask = mask_bytes(*c.target);
  const float* pc = precond_of(*c.target);
  alignas(64) float z[kPerturbBlock];
  size_t oi = 0;
  for (int64_t b = c.begin; b < c.end; b += kPerturbBlock) {
    const int64_t n = std::min(kPerturbBlock, c.end - b);
    draw(*ps.k, ps.seed, c.target->stream, ps.dist, static_cast<uint64_t>(b), n, z);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = b + j;
      if (!allowed(mask, i)) continue;
      const uint16_t clean = clean_half<H>(p, i, ps.s0, scaled_one(ps.s0, z[j], pc, i), c, &oi);
      if (ps.s1 == 0.0f) {
        p[i] = clean;
        continue;
      }
      const float d = scaled_one(ps.s1, z[j], pc, i);
      const uint16_t v = H::nearest(H::load(clean) + d);
      p[i] = v;
      if (H::nearest(H::load(v) - d) != clean) c.fresh->push_back({static_cast<uint32_t>(i - c.begin), clean});
    }
  }
}

template <typename H>
void update_half(const Pass& ps, const ChunkView& c) {
  uint16_t* p = c.target->tensor->as<uint16_t>();
  const uint8_t* mask = mask_bytes(*c.target);
  const float* pc = precond_of(*c.target);
  alignas(64) float z[kPerturbBlock];
  alignas(64) uint32_t random[kPerturbBlock + 4];
  size_t oi = 0;
  const bool need_z = ps.s0 != 0.0f || ps.step != 0.0f;
  const bool changes = ps.use_keep || ps.step != 0.0f;
  for (int64_t b = c.begin; b < c.end; b += kPerturbBlock) {
    const int64_t n = std::min(kPerturbBlock, c.end - b);
    if (need_z) draw(*ps.k, ps.seed, c.target->stream, ps.dist, static_cast<uint64_t>(b), n, z);
    // Rounding word of element i: word i & 3 of block i >> 2 of (rounding_seed, stream).
    if (changes && ps.stochastic)
      ps.k->philox_words(ps.rounding_seed, c.target->stream, static_cast<uint64_t>(b) >> 2, (n + 3) / 4, random);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = b + j;
      if (!allowed(mask, i)) continue;
      const uint16_t clean = clean_half<H>(p, i, ps.s0, ps.s0 != 0.0f ? scaled_one(ps.s0, z[j], pc, i) : 0.0f, c, &oi);
      if (!changes) {
        p[i] = clean;
        continue;
      }
      float v = H::load(clean);
      if (ps.use_keep) v = v * ps.keep;
      if (ps.step != 0.0f) v = v - scaled_one(ps.step, z[j], pc, i);
      p[i] = ps.stochastic ? H::stochastic(v, random[j]) : H::nearest(v);
    }
  }
}

template <typename H>
void add_half(const Pass& ps, const ChunkView& c) {
  uint16_t* p = c.target->tensor->as<uint16_t>();
  const uint8_t* mask = mask_bytes(*c.target);
  const float* pc = precond_of(*c.target);
  alignas(64) float z[kPerturbBlock];
  for (int64_t b = c.begin; b < c.end; b += kPerturbBlock) {
    const int64_t n = std::min(kPerturbBlock, c.end - b);
    draw(*ps.k, ps.seed, c.target->stream, ps.dist, static_cast<uint64_t>(b), n, z);
    for (int64_t j = 0; j < n; ++j)
      if (allowed(mask, b + j)) p[b + j] = H::nearest(H::load(p[b + j]) + scaled_one(ps.s1, z[j], pc, b + j));
  }
}

enum class PassKind { PerturbTo, Update, Add };

void run_chunk(PassKind kind, const Pass& ps, const ChunkView& c) {
  const zeroth_dtype dt = c.target->tensor->dtype;
  switch (kind) {
    case PassKind::PerturbTo:
      if (dt == ZEROTH_F32) perturb_to_f32(ps, c);
      else if (dt == ZEROTH_F16) perturb_to_half<F16>(ps, c);
      else perturb_to_half<BF16>(ps, c);
      break;
    case PassKind::Update:
      if (dt == ZEROTH_F32) update_f32(ps, c);
      else if (dt == ZEROTH_F16) update_half<F16>(ps, c);
      else update_half<BF16>(ps, c);
      break;
    case PassKind::Add:
      if (dt == ZEROTH_F32) add_f32(ps, c);
      else if (dt == ZEROTH_F16) add_half<F16>(ps, c);
      else add_half<BF16>(ps, c);
      break;
  }
}

ChunkView chunk_view(const std::vector<PerturbTarget>& targets, size_t t, int64_t chunk) {
  const int64_t begin = chunk * kJournalChunk;
  return ChunkView{&targets[t], begin, std::min(targets[t].tensor->numel, begin + kJournalChunk), nullptr, nullptr};
}

void check_same_layout(const std::vector<PerturbTarget>& targets, const PerturbJournal& j, const char* op) {
  bool same = j.numels.size() == targets.size();
  for (size_t t = 0; same && t < targets.size(); ++t)
    same = j.numels[t] == targets[t].tensor->numel && j.streams[t] == targets[t].stream;
  ZCHECK(same, ZEROTH_E_INVALID_ARG,
         std::string(op) + ": the parameters are perturbed with a different list of tensors; pass the same list "
                           "until restoreAndUpdate has restored them");
  for (size_t t = 0; t < targets.size(); ++t) {
    const void* pc = targets[t].precond ? targets[t].precond->data() : nullptr;
    ZCHECK(j.preconds[t] == pc, ZEROTH_E_INVALID_ARG,
           std::string(op) + ": target " + std::to_string(t) +
               " was perturbed with a different preconditioner (or none); pass the same precond tensors until "
               "restoreAndUpdate has restored them");
  }
}

// Empties the journal and sets its layout to `targets`. The chunks' entry vectors keep their
// storage: every step perturbs the same tensors, so the next perturbation refills them without
// allocating (the storage is what the journal holds while perturbed anyway).
void reset_layout(const std::vector<PerturbTarget>& targets, PerturbJournal& j) {
  j.numels.clear();
  j.streams.clear();
  j.preconds.clear();
  j.entries.resize(targets.size());
  for (size_t t = 0; t < targets.size(); ++t) {
    j.numels.push_back(targets[t].tensor->numel);
    j.streams.push_back(targets[t].stream);
    j.preconds.push_back(targets[t].precond ? targets[t].precond->data() : nullptr);
    j.entries[t].resize(static_cast<size_t>(chunks_of(targets[t].tensor->numel)));
    for (auto& chunk : j.entries[t]) chunk.clear();
  }
}

void check_update(const UpdateOptions& o) {
  ZCHECK(std::isfinite(o.step_scale), ZEROTH_E_INVALID_ARG, "the update's step scale must be finite");
  ZCHECK(std::isfinite(o.decay), ZEROTH_E_INVALID_ARG, "the update's decay (lr * weight decay) must be finite");
}

void check_range(uint64_t first, int64_t n) {
  ZCHECK(n >= 0, ZEROTH_E_INVALID_ARG, "element count must be non-negative");
  ZCHECK(first <= std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(n), ZEROTH_E_INVALID_ARG,
         "element range overflows 64-bit indices");
}

}  // namespace

// ---- device dispatch -------------------------------------------------------------------------
#ifdef ZEROTH_WITH_CUDA
// True when the targets live on CUDA devices (the CUDA twin, cuda/perturb.cu, runs them), false
// when they live on the CPU. One call works on one kind of device: a mix is E_DEVICE.
bool targets_on_cuda(const std::vector<PerturbTarget>& targets) {
  size_t on_gpu = 0, on_cpu = 0;
  for (const PerturbTarget& t : targets)
    if (t.tensor) ++(t.tensor->on_cpu() ? on_cpu : on_gpu);
  if (on_gpu == 0) return false;
  ZCHECK(on_cpu == 0, ZEROTH_E_DEVICE,
         "the perturbation targets are on different devices (" + std::to_string(on_cpu) + " on the CPU, " +
             std::to_string(on_gpu) + " on CUDA); move them all to one device first");
  return true;
}

// A perturbed journal belongs to the device that perturbed it: the CPU keeps one entry list per
// target, the CUDA twin keeps its entries on the GPU and none here. Restoring on the other
// device would lose the journal, so it is an error.
void check_journal_device(const PerturbJournal& j, bool cuda) {
  if (j.scale == 0.0f) return;
  const bool journal_on_cuda = j.entries.size() != j.numels.size();
  ZCHECK(journal_on_cuda == cuda, ZEROTH_E_DEVICE,
         std::string("the parameters were perturbed on ") + (journal_on_cuda ? "a CUDA device" : "the CPU") +
             " but these targets are on " + (cuda ? "a CUDA device" : "the CPU") +
             "; restore them (restoreAndUpdate) with the same tensors before moving them");
}
#endif

// ---- public entry points --------------------------------------------------------------------

void perturb_to(const std::vector<PerturbTarget>& targets, PerturbJournal& journal, uint64_t seed, float scale,
                rng::Distribution dist) {
#ifdef ZEROTH_WITH_CUDA
  const bool cuda = targets_on_cuda(targets);
  check_journal_device(journal, cuda);
  if (cuda) return cuda::perturb_to(targets, journal, seed, scale, dist);
  if (journal.scale == 0.0f) cuda::release_journal(journal);  // a clean journal moving to the CPU
#endif
  validate(targets);
  ZCHECK(std::isfinite(scale), ZEROTH_E_INVALID_ARG, "the perturbation scale must be finite");
  if (journal.scale != 0.0f) {
    ZCHECK(journal.seed == seed && journal.dist == dist, ZEROTH_E_INVALID_ARG,
           "perturbTo: the parameters are perturbed with another seed or distribution; restore them "
           "(restoreAndUpdate) before drawing a new perturbation");
    check_same_layout(targets, journal, "perturbTo");
  } else {
    reset_layout(targets, journal);
  }
  if (journal.scale != 0.0f || scale != 0.0f) {
    const Pass ps{&perturb_detail::kernels(), seed, dist, journal.scale, scale, false, 1.0f, 0.0f, false, 0};
    for_each_chunk(targets, [&](size_t t, int64_t chunk) {
      ChunkView c = chunk_view(targets, t, chunk);
      std::vector<JournalEntry>& slot = journal.entries[t][static_cast<size_t>(chunk)];
      std::vector<JournalEntry> old = std::move(slot);
      // The new entries collect in a per-thread buffer that keeps its capacity (at most one
      // chunk's worth), then are copied into the old entries' storage, which is about the right
      // size from one perturbation to the next (reset_layout keeps it across steps): no vector
      // growing entry by entry in every chunk (with the frees, ~5% of a pass in malloc).
      thread_local std::vector<JournalEntry> fresh;
      fresh.clear();
      c.old = &old;
      c.fresh = &fresh;
      run_chunk(PassKind::PerturbTo, ps, c);
      old.assign(fresh.begin(), fresh.end());
      slot = std::move(old);
    });
  }
  journal.scale = scale;
  journal.seed = seed;
  journal.dist = dist;
  journal.seeded = true;
}

void restore_and_update(const std::vector<PerturbTarget>& targets, PerturbJournal& journal, const UpdateOptions& opts) {
#ifdef ZEROTH_WITH_CUDA
  const bool cuda = targets_on_cuda(targets);
  check_journal_device(journal, cuda);
  if (cuda) return cuda::restore_and_update(targets, journal, opts);
#endif
  validate(targets);
  check_update(opts);
  if (journal.scale != 0.0f) check_same_layout(targets, journal, "restoreAndUpdate");
  ZCHECK(opts.step_scale == 0.0f || journal.seeded, ZEROTH_E_INVALID_ARG,
         "restoreAndUpdate with a nonzero step needs the seed of a perturbTo since the last update");
  const bool use_keep = opts.decay != 0.0f;
  if (journal.scale != 0.0f || use_keep || opts.step_scale != 0.0f) {
    const Pass ps{&perturb_detail::kernels(), journal.seed, journal.dist, journal.scale, 0.0f, use_keep,
                  1.0f - opts.decay, opts.step_scale, opts.stochastic_rounding, opts.rounding_seed};
    const bool perturbed = journal.scale != 0.0f;
    for_each_chunk(targets, [&](size_t t, int64_t chunk) {
      ChunkView c = chunk_view(targets, t, chunk);
      if (perturbed) c.old = &journal.entries[t][static_cast<size_t>(chunk)];
      run_chunk(PassKind::Update, ps, c);
    });
  }
  journal.scale = 0.0f;
  journal.seeded = false;
  reset_layout(targets, journal);
}

void apply_update(const std::vector<PerturbTarget>& targets, uint64_t seed, rng::Distribution dist,
                  const UpdateOptions& opts) {
#ifdef ZEROTH_WITH_CUDA
  if (targets_on_cuda(targets)) return cuda::apply_update(targets, seed, dist, opts);
#endif
  validate(targets);
  check_update(opts);
  const bool use_keep = opts.decay != 0.0f;
  if (!use_keep && opts.step_scale == 0.0f) return;
  const Pass ps{&perturb_detail::kernels(), seed, dist, 0.0f, 0.0f, use_keep, 1.0f - opts.decay,
                opts.step_scale, opts.stochastic_rounding, opts.rounding_seed};
  for_each_chunk(targets, [&](size_t t, int64_t chunk) { run_chunk(PassKind::Update, ps, chunk_view(targets, t, chunk)); });
}

void perturb(const std::vector<PerturbTarget>& targets, uint64_t seed, float scale, rng::Distribution dist) {
#ifdef ZEROTH_WITH_CUDA
  if (targets_on_cuda(targets)) return cuda::perturb(targets, seed, scale, dist);
#endif
  validate(targets);
  ZCHECK(std::isfinite(scale), ZEROTH_E_INVALID_ARG, "the perturbation scale must be finite");
  if (scale == 0.0f) return;
  const Pass ps{&perturb_detail::kernels(), seed, dist, 0.0f, scale, false, 1.0f, 0.0f, false, 0};
  for_each_chunk(targets, [&](size_t t, int64_t chunk) { run_chunk(PassKind::Add, ps, chunk_view(targets, t, chunk)); });
}

void fill_z(uint64_t seed, uint64_t stream, rng::Distribution dist, uint64_t first, int64_t n, float* out) {
  check_range(first, n);
  draw(perturb_detail::kernels(), seed, stream, dist, first, n, out);
}

void add_scaled_z(uint64_t seed, uint64_t stream, rng::Distribution dist, float scale, uint64_t first, int64_t n,
                  float* out) {
  add_scaled_z_from(seed, stream, dist, scale, first, n, out, out);
}

void add_scaled_z_from(uint64_t seed, uint64_t stream, rng::Distribution dist, float scale, uint64_t first, int64_t n,
                       const float* src, float* out) {
  check_range(first, n);
  const Kernels& k = perturb_detail::kernels();
  alignas(64) float z[kPerturbBlock];
  for (int64_t i = 0; i < n; i += kPerturbBlock) {
    const int64_t m = std::min(kPerturbBlock, n - i);
    draw(k, seed, stream, dist, first + static_cast<uint64_t>(i), m, z);
    k.perturb(out + i, src + i, z, scale, nullptr, nullptr, nullptr, m);
  }
}

void add_scaled_z_pieces(uint64_t seed, uint64_t stream, rng::Distribution dist, float scale, uint64_t first, int64_t n,
                         const float* src, int64_t piece, float* out, int64_t out_stride) {
  ZCHECK(piece > 0 && piece <= kPerturbBlock && n >= 0 && n % piece == 0, ZEROTH_E_INVALID_ARG,
         "add_scaled_z_pieces: n = " + std::to_string(n) + " must be a multiple of the piece " + std::to_string(piece) +
             " (1 to " + std::to_string(kPerturbBlock) + " elements)");
  check_range(first, n);
  const Kernels& k = perturb_detail::kernels();
  if (k.add_normal_pieces && dist == rng::Distribution::Normal && piece == kNormalPiece && first % 4 == 0) {
    k.add_normal_pieces(seed, stream, first / 4, n / piece, scale, src, out, out_stride);
    return;
  }
  // Staged: as many whole pieces as an L1 run holds at a time.
  alignas(64) float run[kPerturbBlock];
  const int64_t chunk = kPerturbBlock / piece * piece;
  for (int64_t i = 0; i < n; i += chunk) {
    const int64_t m = std::min(chunk, n - i);
    add_scaled_z_from(seed, stream, dist, scale, first + static_cast<uint64_t>(i), m, src + i, run);
    for (int64_t q = 0; q < m; q += piece)
      std::memcpy(out + (i + q) / piece * out_stride, run + q, static_cast<size_t>(piece) * sizeof(float));
  }
}

}  // namespace zeroth
