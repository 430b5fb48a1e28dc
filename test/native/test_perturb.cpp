// test_perturb.cpp — the perturbation kernels of native/cpu/perturb.h.
//
//  1. Every SIMD kernel table (AVX2, AVX-512 where the CPU has them) gives the same bits as the
//     scalar table, and fill_z gives the bits of rng::normal_at / rademacher_at element by
//     element (unaligned starts, tails, a block counter that crosses 2^32).
//  2. The journal guarantees on adversarial values (±0, subnormals, |w| << |d|, values just
//     below binade tops, huge values, ±inf, NaN payloads), for f32, f16 and bf16, with masks:
//     restore returns the original bits; perturb_to leaves fl(w + fl(s·z)); the update is
//     fl(fl(w·(1-decay)) - fl(step·z)) computed here from normal_at; masked elements keep
//     their bits.
//  3. Results and journal sizes do not depend on the thread count.
//  4. Stochastic rounding hits the two neighbours with the right probabilities (within 5
//     standard errors sqrt(p(1-p)/n)), in the bf16, f16-normal and f16-subnormal paths.
//  5. Magnitude masks against a brute-force count; argument errors.
//  6. The accuracy of the normal transform (philox.h) against float64: rng::box_muller over
//     10^7 normals against the same Box–Muller computed in double from the same Philox words,
//     and its two polynomial pieces over every input the generator gives them (all 2^24
//     uniforms for -2·ln u, all 2^23 + 1 octant positions for sin/cos). Bounds: the measured
//     maxima (printed) rounded up; philox.h states them.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/errors.h"
#include "core/half.h"
#include "core/parallel.h"
#include "core/philox.h"
#include "cpu/perturb.h"
#include "cpu/perturb_kernels.h"
#include "check.h"

using namespace zeroth;
using perturb_detail::Kernels;

using namespace zeroth_test;

namespace {

uint32_t bits(float f) { return rng::fbits(f); }
float from_bits(uint32_t u) { return rng::ffrombits(u); }

const zeroth_device kCpu{ZEROTH_DEVICE_CPU, 0};

std::vector<SimdLevel> levels() {
  std::vector<SimdLevel> out;
  for (SimdLevel l : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}) {
    set_simd_level(l);
    if (simd_level() == l) out.push_back(l);
  }
  set_simd_level(SimdLevel::Avx512);
  return out;
}

// f32 values that stress exact inversion, then random values of mixed magnitude.
std::vector<float> adversarial_f32(int64_t n, uint64_t seed) {
  std::vector<float> v;
  const float specials[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 1.17549435e-38f, 3e-39f, 1e-30f, -1e-20f, 1e-9f,
                            std::nextafter(1.0f, 0.0f), std::nextafter(2.0f, 0.0f), -std::nextafter(4.0f, 0.0f),
                            std::nextafter(0.5f, 0.0f), 1.0f, -1.0f, 3e38f, -3.4e38f,
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            from_bits(0x7fc00001u), from_bits(0xffa00003u) /* NaN payloads */};
  for (float s : specials) v.push_back(s);
  Rng r{seed};
  while (static_cast<int64_t>(v.size()) < n) {
    const uint64_t kind = r.next() % 4;
    float x = r.uniform();
    if (kind == 1) x *= 1e-4f;                                   // |w| << |d|
    else if (kind == 2) x = std::nextafter(std::ldexp(1.0f, static_cast<int>(r.next() % 20) - 10), 0.0f);  // binade tops
    else if (kind == 3) x *= 4.0f;
    v.push_back(x);
  }
  v.resize(static_cast<size_t>(n));
  return v;
}

TensorPtr make_tensor(zeroth_dtype dt, const std::vector<float>& values) {
  const int64_t n = static_cast<int64_t>(values.size());
  TensorPtr t = tensor_empty(dt, Shape{n}, kCpu);
  convert_host(ZEROTH_F32, values.data(), dt, t->data(), n);
  if (dt == ZEROTH_F32) std::memcpy(t->data(), values.data(), values.size() * 4);  // keep NaN payloads
  return t;
}

std::vector<uint8_t> raw(const TensorPtr& t) {
  std::vector<uint8_t> out(t->nbytes());
  std::memcpy(out.data(), t->data(), out.size());
  return out;
}

TensorPtr random_mask(int64_t n, uint64_t seed) {
  TensorPtr m = tensor_zeros(ZEROTH_U8, Shape{(n + 7) / 8}, kCpu);
  Rng r{seed};
  for (int64_t i = 0; i < m->numel; ++i) m->as<uint8_t>()[i] = static_cast<uint8_t>(r.next());
  return m;
}

bool mask_bit(const TensorPtr& m, int64_t i) { return !m || ((m->as<uint8_t>()[i >> 3] >> (i & 7)) & 1u); }

// ---- 1. SIMD tables and fill_z ----------------------------------------------------------------

void test_tables() {
  const Kernels& ref = perturb_detail::kernels_for(SimdLevel::Scalar);
  Rng r{1};
  for (SimdLevel l : levels()) {
    const Kernels& k = perturb_detail::kernels_for(l);
    const std::string name = simd_level_name(l);
    for (int64_t nb : {1, 7, 8, 15, 16, 17, 40, 63, 64, 100, 512}) {
      for (uint64_t block0 : {0ull, 5ull, 0xfffffff8ull, 0xfffffffffffffff0ull}) {
        std::vector<uint32_t> a(4 * nb), b(4 * nb);
        ref.philox_words(11, 0xdeadbeefcafeull, block0, nb, a.data());
        k.philox_words(11, 0xdeadbeefcafeull, block0, nb, b.data());
        check(a == b, name + " philox_words nb=" + std::to_string(nb));
        std::vector<float> za(4 * nb), zb(4 * nb);
        std::vector<float> weights(4 * nb, 1.0f);  // a prefetch hint changes nothing
        ref.normal_blocks(12, 3, block0, nb, za.data(), nullptr);
        k.normal_blocks(12, 3, block0, nb, zb.data(), weights.data());
        check(std::memcmp(za.data(), zb.data(), za.size() * 4) == 0, name + " normal_blocks nb=" + std::to_string(nb));
      }
    }
    std::vector<uint32_t> words(64);
    for (auto& w : words) w = static_cast<uint32_t>(r.next());
    std::vector<float> sa(2048), sb(2048);
    ref.expand_signs(words.data(), 2048, sa.data());
    k.expand_signs(words.data(), 2048, sb.data());
    check(sa == sb, name + " expand_signs");

    // Element kernels on adversarial data, masks and tails.
    for (int64_t n : {1, 15, 16, 63, 100, 2048}) {
      std::vector<float> w = adversarial_f32(n, 3 + n), z(n), pa(n), pb(n), wa(n), wb(n);
      for (auto& x : z) x = r.uniform() * 3.0f;
      TensorPtr m = random_mask(n, 9 + n);
      for (const uint8_t* mask : {static_cast<const uint8_t*>(nullptr), static_cast<const uint8_t*>(m->data())}) {
        std::vector<uint64_t> fa((n + 63) / 64), fb((n + 63) / 64);
        std::fill(pa.begin(), pa.end(), 7.0f);
        std::fill(pb.begin(), pb.end(), 7.0f);
        std::vector<float> sa(n), sb(n);
        ref.perturb(pa.data(), w.data(), z.data(), 1e-3f, mask, fa.data(), sa.data(), n);
        k.perturb(pb.data(), w.data(), z.data(), 1e-3f, mask, fb.data(), sb.data(), n);
        bool saved_ok = true;
        for (int64_t i = 0; i < n; ++i)
          if ((fb[i >> 6] >> (i & 63)) & 1u) saved_ok = saved_ok && bits(sb[i]) == bits(w[i]) && bits(sa[i]) == bits(w[i]);
        check(std::memcmp(pa.data(), pb.data(), n * 4) == 0 && fa == fb && saved_ok,
              name + " perturb n=" + std::to_string(n));
        ref.unperturb(pa.data(), z.data(), 1e-3f, wa.data(), n);
        k.unperturb(pa.data(), z.data(), 1e-3f, wb.data(), n);
        check(std::memcmp(wa.data(), wb.data(), n * 4) == 0, name + " unperturb n=" + std::to_string(n));
        ref.update(pa.data(), w.data(), z.data(), true, 0.999f, 2e-3f, mask, n);
        k.update(pb.data(), w.data(), z.data(), true, 0.999f, 2e-3f, mask, n);
        check(std::memcmp(pa.data(), pb.data(), n * 4) == 0, name + " update n=" + std::to_string(n));
      }
    }
  }
  // fill_z on every level equals normal_at / rademacher_at element by element.
  for (SimdLevel l : levels()) {
    set_simd_level(l);
    for (auto dist : {rng::Distribution::Normal, rng::Distribution::Rademacher}) {
      for (uint64_t first : {0ull, 3ull, 130ull, 4ull * 0xffffffffull - 9ull}) {
        const int64_t n = 5000;
        std::vector<float> z(n);
        fill_z(42, 0xabcdef, dist, first, n, z.data());
        bool same = true;
        for (int64_t i = 0; i < n; ++i) {
          const float want = dist == rng::Distribution::Normal ? rng::normal_at(42, 0xabcdef, first + i)
                                                               : rng::rademacher_at(42, 0xabcdef, first + i);
          same = same && bits(z[i]) == bits(want);
        }
        check(same, std::string("fill_z matches the scalar rng on ") + simd_level_name(l) + " from " +
                        std::to_string(first));
      }
    }
  }
  set_simd_level(SimdLevel::Avx512);
}

// ---- 2. the journal guarantees ----------------------------------------------------------------

float load(zeroth_dtype dt, const TensorPtr& t, int64_t i) {
  if (dt == ZEROTH_F32) return t->as<float>()[i];
  const uint16_t h = t->as<uint16_t>()[i];
  return dt == ZEROTH_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}
uint32_t elem_bits(zeroth_dtype dt, const TensorPtr& t, int64_t i) {
  return dt == ZEROTH_F32 ? t->as<uint32_t>()[i] : t->as<uint16_t>()[i];
}
uint32_t round_to(zeroth_dtype dt, float v) {
  if (dt == ZEROTH_F32) return bits(v);
  return dt == ZEROTH_F16 ? f32_to_f16(v) : f32_to_bf16(v);
}
float from_elem(zeroth_dtype dt, uint32_t b) {
  if (dt == ZEROTH_F32) return from_bits(b);
  return dt == ZEROTH_F16 ? f16_to_f32(static_cast<uint16_t>(b)) : bf16_to_f32(static_cast<uint16_t>(b));
}
bool same_bits(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) { return a == b; }

void test_journal(zeroth_dtype dt, rng::Distribution dist, bool masked) {
  const std::string name = std::string(dtype_traits(dt).name) + (dist == rng::Distribution::Normal ? " normal" : " rademacher") +
                           (masked ? " masked" : "");
  // Two targets, the second spanning several chunks with a ragged end.
  const int64_t n0 = 1000, n1 = 2 * kJournalChunk + 777;
  std::vector<PerturbTarget> targets;
  std::vector<std::vector<uint8_t>> original;
  std::vector<std::vector<uint32_t>> clean;
  for (int64_t n : {n0, n1}) {
    TensorPtr t = make_tensor(dt, adversarial_f32(n, 100 + n));
    PerturbTarget target{t, rng::stream_id(n == n0 ? "a" : "b.weight", n == n0 ? 1 : 8),
                         masked ? random_mask(n, 7 + n) : nullptr};
    targets.push_back(target);
    original.push_back(raw(t));
    std::vector<uint32_t> c(n);
    for (int64_t i = 0; i < n; ++i) c[i] = elem_bits(dt, t, i);
    clean.push_back(c);
  }
  const uint64_t seed = 0x5eed;
  // The scale is large for f32 so that many elements need the journal; a sequence of moves.
  const float scales[] = {1e-3f, -1e-3f, 0.5f, -2.0f, 0.0f, 3e-3f};
  PerturbJournal journal;
  for (float s : scales) {
    perturb_to(targets, journal, seed, s, dist);
    bool at = true, untouched = true;
    for (size_t t = 0; t < targets.size(); ++t) {
      for (int64_t i = 0; i < targets[t].tensor->numel; ++i) {
        const uint32_t got = elem_bits(dt, targets[t].tensor, i);
        if (!mask_bit(targets[t].mask, i)) {
          untouched = untouched && got == clean[t][i];
          continue;
        }
        const float z = dist == rng::Distribution::Normal ? rng::normal_at(seed, targets[t].stream, i)
                                                          : rng::rademacher_at(seed, targets[t].stream, i);
        const uint32_t want = s == 0.0f ? clean[t][i] : round_to(dt, from_elem(dt, clean[t][i]) + s * z);
        at = at && got == want;
      }
    }
    check(at, name + ": perturb_to(" + std::to_string(s) + ") leaves fl(w + fl(s*z))");
    check(untouched, name + ": masked elements untouched by perturb_to");
  }
  const size_t entries = journal.entry_count();
  check(dt == ZEROTH_BF16 || entries > 0, name + ": the adversarial values needed the journal");
  // Exact restore.
  restore_and_update(targets, journal, UpdateOptions{});
  for (size_t t = 0; t < targets.size(); ++t)
    check(same_bits(raw(targets[t].tensor), original[t]), name + ": restore returns the original bits, target " +
                                                              std::to_string(t));
  check(journal.entry_count() == 0, name + ": restore clears the journal");

  // Update in the same pass as restore.
  perturb_to(targets, journal, seed + 1, 1e-3f, dist);
  perturb_to(targets, journal, seed + 1, -1e-3f, dist);
  UpdateOptions up;
  up.step_scale = 0.25f;
  up.decay = 1e-2f;
  restore_and_update(targets, journal, up);
  bool updated = true, untouched = true;
  const float keep = 1.0f - up.decay;
  for (size_t t = 0; t < targets.size(); ++t) {
    for (int64_t i = 0; i < targets[t].tensor->numel; ++i) {
      const uint32_t got = elem_bits(dt, targets[t].tensor, i);
      if (!mask_bit(targets[t].mask, i)) {
        untouched = untouched && got == clean[t][i];
        continue;
      }
      const float z = dist == rng::Distribution::Normal ? rng::normal_at(seed + 1, targets[t].stream, i)
                                                        : rng::rademacher_at(seed + 1, targets[t].stream, i);
      const float w = from_elem(dt, clean[t][i]);
      const uint32_t want = round_to(dt, w * keep - up.step_scale * z);
      updated = updated && (got == want || (std::isnan(from_elem(dt, got)) && std::isnan(from_elem(dt, want))));
    }
  }
  check(updated, name + ": restore_and_update writes fl(fl(w*(1-decay)) - fl(step*z))");
  check(untouched, name + ": masked elements untouched by the update");
  // apply_update from the same base reproduces it (replay).
  std::vector<uint8_t> after = raw(targets[1].tensor);
  std::memcpy(targets[1].tensor->data(), original[1].data(), original[1].size());
  apply_update({targets[1]}, seed + 1, dist, up);
  check(raw(targets[1].tensor) == after, name + ": apply_update replays restore_and_update bit for bit");
}

// ---- 2b. z in registers: the packing pieces and the plain update ------------------------------

// add_scaled_z_pieces and the fused plain update against the element-wise definition
// fl(w + fl(s · z(i))) with z from the scalar rng, on every SIMD level (the AVX-512 table writes
// them from registers, the others stage them), and the pieces kernel itself where a table has it.
void test_pieces_and_fused_update() {
  Rng r{2024};
  for (SimdLevel l : levels()) {
    set_simd_level(l);
    const std::string level = simd_level_name(l);
    for (auto dist : {rng::Distribution::Normal, rng::Distribution::Rademacher}) {
      auto z_at = [&](uint64_t i) {
        return dist == rng::Distribution::Normal ? rng::normal_at(5, 77, i) : rng::rademacher_at(5, 77, i);
      };
      for (int64_t piece : {8, 16, 32}) {
        for (uint64_t first : {0ull, 4ull, 3ull, 4096ull * 4 + 8}) {
          for (int64_t pieces : {1, 3, 4, 5, 9, 70}) {
            const int64_t n = pieces * piece, stride = piece + 13;
            std::vector<float> src(n), out(pieces * stride, -1.0f);
            for (float& x : src) x = r.uniform();
            for (float scale : {1e-3f, -0.5f}) {
              add_scaled_z_pieces(5, 77, dist, scale, first, n, src.data(), piece, out.data(), stride);
              bool same = true, gaps = true;
              for (int64_t p = 0; p < pieces; ++p) {
                for (int64_t j = 0; j < piece; ++j) {
                  const int64_t i = p * piece + j;
                  same = same && bits(out[p * stride + j]) == bits(src[i] + scale * z_at(first + i));
                }
                for (int64_t j = piece; j < stride; ++j) gaps = gaps && out[p * stride + j] == -1.0f;
              }
              check(same && gaps, "add_scaled_z_pieces " + level + " piece " + std::to_string(piece) + " first " +
                                      std::to_string(first) + " pieces " + std::to_string(pieces));
            }
          }
        }
      }
    }
    // The plain update (no decay, mask or preconditioner) of a tensor spanning several journal
    // chunks with a ragged end: fl(w - fl(step · z)), the fused path on AVX-512.
    for (auto dist : {rng::Distribution::Normal, rng::Distribution::Rademacher}) {
      const int64_t n = 2 * kJournalChunk + 2048 + 37;
      TensorPtr t = tensor_empty(ZEROTH_F32, {n}, kCpu);
      std::vector<float> w(n);
      for (int64_t i = 0; i < n; ++i) w[i] = t->as<float>()[i] = r.uniform();
      UpdateOptions up;
      up.step_scale = 3e-2f;
      apply_update({PerturbTarget{t, 99, nullptr}}, 11, dist, up);
      bool same = true;
      for (int64_t i = 0; i < n; ++i) {
        const float z = dist == rng::Distribution::Normal ? rng::normal_at(11, 99, i) : rng::rademacher_at(11, 99, i);
        same = same && bits(t->as<float>()[i]) == bits(w[i] - up.step_scale * z);
      }
      check(same, "apply_update without decay on " + level + " writes fl(w - fl(step*z))");
    }
  }
  set_simd_level(SimdLevel::Avx512);
  expect_error(ZEROTH_E_INVALID_ARG, "add_scaled_z_pieces: n not a multiple of the piece", [] {
    float x[64] = {};
    add_scaled_z_pieces(1, 2, rng::Distribution::Normal, 1.0f, 0, 40, x, 32, x, 32);
  });
}

// ---- 3. thread-count independence ------------------------------------------------------------

void test_threads() {
  const int64_t n = 5 * kJournalChunk + 3;
  std::vector<uint8_t> results[2];
  size_t entries[2];
  const int saved = num_threads();
  for (int run = 0; run < 2; ++run) {
    set_num_threads(run == 0 ? 1 : 3);
    TensorPtr t = make_tensor(ZEROTH_F32, adversarial_f32(n, 5));
    std::vector<PerturbTarget> targets{{t, 9, nullptr}};
    PerturbJournal j;
    perturb_to(targets, j, 77, 0.3f, rng::Distribution::Normal);
    entries[run] = j.entry_count();
    UpdateOptions up;
    up.step_scale = 0.1f;
    restore_and_update(targets, j, up);
    results[run] = raw(t);
  }
  set_num_threads(saved);
  check(results[0] == results[1] && entries[0] == entries[1], "1 and 3 threads give the same bits and journal");
}

// ---- 4. stochastic rounding ------------------------------------------------------------------

// Elements start at w; a Rademacher step moves them to w ∓ step, between two representable
// neighbours; the fraction rounded away from w must be p_down (z = +1) / p_up (z = -1).
void check_sr(zeroth_dtype dt, float w, float step, double p_minus, double p_plus, const std::string& name) {
  const int64_t n = 200000;
  TensorPtr t = make_tensor(dt, std::vector<float>(n, w));
  UpdateOptions up;
  up.step_scale = step;
  up.stochastic_rounding = true;
  up.rounding_seed = 1234;
  apply_update({{t, 5, nullptr}}, 99, rng::Distribution::Rademacher, up);
  int64_t count[2] = {0, 0}, moved[2] = {0, 0};
  bool neighbours = true;
  for (int64_t i = 0; i < n; ++i) {
    const int side = rng::rademacher_at(99, 5, i) > 0 ? 0 : 1;  // 0: w - step, 1: w + step
    const float v = load(dt, t, i);
    ++count[side];
    if (v != w) ++moved[side];
    const float exact = side == 0 ? w - step : w + step;
    neighbours = neighbours && (v == w || (side == 0 ? v < exact : v > exact));
  }
  check(neighbours, name + ": results are the two neighbours of the exact value");
  for (int side = 0; side < 2; ++side) {
    const double p = side == 0 ? p_minus : p_plus;
    const double got = static_cast<double>(moved[side]) / count[side];
    const double se = std::sqrt(p * (1 - p) / count[side]);
    check(std::fabs(got - p) <= 5 * se, name + ": rounding probability " + std::to_string(got) + " vs " +
                                            std::to_string(p));
  }
}

void test_stochastic_rounding() {
  // bf16 at 1: ulp above 2^-7, below 2^-8; step 2^-10.
  check_sr(ZEROTH_BF16, 1.0f, 0x1p-10f, 0.25, 0.125, "bf16 SR");
  // f16 at 1: ulp above 2^-10, below 2^-11; step 2^-12.
  check_sr(ZEROTH_F16, 1.0f, 0x1p-12f, 0.5, 0.25, "f16 SR");
  // f16 subnormal: unit 2^-24; step 2^-26 from 0.
  check_sr(ZEROTH_F16, 0.0f, 0x1p-26f, 0.25, 0.25, "f16 subnormal SR");
}

// ---- 5. masks and errors ----------------------------------------------------------------------

void test_masks_and_errors() {
  const std::vector<float> w = {0.5f, -0.125f, 0.125f, 2.0f, -3.0f, std::nanf(""), 0.125f, 0.0f, -0.125f, 1.0f};
  TensorPtr t = make_tensor(ZEROTH_F32, w);
  auto bitsof = [&](const TensorPtr& m) {
    std::string s;
    for (int64_t i = 0; i < t->numel; ++i) s += mask_bit(m, i) ? '1' : '0';
    return s;
  };
  check(bitsof(mask_from_magnitude(*t, MagnitudeRule::AtMost, 0.125)) == "0110001110", "AtMost 0.125");
  check(bitsof(mask_from_magnitude(*t, MagnitudeRule::Smallest, 0.3)) == "0110000100", "Smallest 30% (ties by index)");
  check(bitsof(mask_from_magnitude(*t, MagnitudeRule::Largest, 0.2)) == "0001100000", "Largest 20%");
  check(bitsof(mask_from_magnitude(*t, MagnitudeRule::Largest, 1.0)) == "1111101111", "Largest 100% skips NaN");

  auto throws = [](auto fn, zeroth_status code) {
    try {
      fn();
    } catch (const Error& e) {
      return e.code() == code;
    }
    return false;
  };
  TensorPtr i32 = tensor_zeros(ZEROTH_I32, Shape{4}, kCpu);
  check(throws([&] { perturb({{i32, 1, nullptr}}, 1, 1.0f, rng::Distribution::Normal); }, ZEROTH_E_DTYPE),
        "an i32 target is E_DTYPE");
  TensorPtr bad_mask = tensor_zeros(ZEROTH_U8, Shape{3}, kCpu);
  check(throws([&] { perturb({{t, 1, bad_mask}}, 1, 1.0f, rng::Distribution::Normal); }, ZEROTH_E_SHAPE),
        "a mask of the wrong size is E_SHAPE");
  check(throws([&] { perturb({{t, 1, nullptr}, {t, 2, nullptr}}, 1, 1.0f, rng::Distribution::Normal); },
               ZEROTH_E_INVALID_ARG),
        "the same tensor twice is E_INVALID_ARG");
  PerturbJournal j;
  std::vector<PerturbTarget> ts{{make_tensor(ZEROTH_F32, {1, 2, 3}), 1, nullptr}};
  perturb_to(ts, j, 1, 0.1f, rng::Distribution::Normal);
  check(throws([&] { perturb_to(ts, j, 2, 0.1f, rng::Distribution::Normal); }, ZEROTH_E_INVALID_ARG),
        "a new seed while perturbed is E_INVALID_ARG");
  check(throws([&] { perturb_to(ts, j, 1, NAN, rng::Distribution::Normal); }, ZEROTH_E_INVALID_ARG),
        "a NaN scale is E_INVALID_ARG");
  restore_and_update(ts, j, UpdateOptions{});
  UpdateOptions up;
  up.step_scale = 1.0f;
  check(throws([&] { restore_and_update(ts, j, up); }, ZEROTH_E_INVALID_ARG), "a second update without perturbTo");
  std::vector<float> out(4);
  check(throws([&] { fill_z(~0ull - 2, 0, rng::Distribution::Normal, ~0ull - 1, 4, out.data()); }, ZEROTH_E_INVALID_ARG),
        "fill_z range overflow");
}


// ---- 6. accuracy of the normal transform ------------------------------------------------------

// Distance from the float64 value `want` in units of the float spacing at |want| (at max(1, |want|)
// when `floor1`): the error measure the bounds below use.
double ulps(double got, double want, bool floor1) {
  const double mag = floor1 ? std::fmax(1.0, std::fabs(want)) : std::fabs(want);
  const float f = static_cast<float>(mag);
  const double spacing = static_cast<double>(std::nextafter(f, std::numeric_limits<float>::infinity())) - f;
  return std::fabs(got - want) / spacing;
}

void test_transform_accuracy() {
  // Box–Muller on Philox words: z against r·cos / r·sin in double from the same a and b.
  double worst = 0, worst_ulp = 0;
  for (uint64_t block = 0; block < 2500000; ++block) {
    const rng::U32x4 r = rng::philox_block(0x5eed, 0x57ea4, block);
    for (int pair = 0; pair < 2; ++pair) {
      const uint32_t a = r.v[2 * pair], b = r.v[2 * pair + 1];
      float z0, z1;
      rng::box_muller(a, b, &z0, &z1);
      const double radius = std::sqrt(-2.0 * std::log(static_cast<double>((a >> 8) + 1u) / 16777216.0));
      const double angle =
          1.5707963267948966 * (static_cast<double>(b >> 30) + static_cast<double>((b >> 6) & 0xffffffu) / 16777216.0);
      const std::pair<float, double> outs[] = {{z0, radius * std::cos(angle)}, {z1, radius * std::sin(angle)}};
      for (const auto& [got, want] : outs) {
        worst = std::fmax(worst, std::fabs(got - want) / std::fmax(1.0, std::fabs(want)));
        worst_ulp = std::fmax(worst_ulp, ulps(got, want, true));
      }
    }
  }
  check(worst <= 2.5e-7, "box_muller vs float64: max |z - z64| / max(1, |z64|) = " + std::to_string(worst));
  // -2·ln u for every u = k·2^-24 the generator produces (k = 1 .. 2^24; u = 1 gives exactly 0).
  double worst_log = 0;
  for (uint32_t k = 1; k <= (1u << 24); ++k) {
    const float u = rng::uniform_open0((k - 1u) << 8);
    const float got = rng::minus_two_log(u);
    if (k == (1u << 24)) check(got == 0.0f, "minus_two_log(1) == 0");
    else worst_log = std::fmax(worst_log, ulps(got, -2.0 * std::log(static_cast<double>(u)), false));
  }
  check(worst_log <= 3.0, "minus_two_log error " + std::to_string(worst_log) + " ulp");
  // sin and cos of (pi/4)·x at every position x = p·2^-23 (p = 0 .. 2^23), relative to the value.
  double worst_trig = 0;
  for (uint32_t p = 0; p <= (1u << 23); ++p) {
    const float x = static_cast<float>(p) * 1.1920928955078125e-7f;
    float s, c;
    rng::sincos_octant(x, &s, &c);
    const double angle = static_cast<double>(x) * 0.78539816339744831;
    if (p > 0) worst_trig = std::fmax(worst_trig, ulps(s, std::sin(angle), false));
    else check(s == 0.0f, "sin(0) == 0");
    worst_trig = std::fmax(worst_trig, ulps(c, std::cos(angle), false));
  }
  check(worst_trig <= 2.0, "sincos_octant error " + std::to_string(worst_trig) + " ulp");
  std::printf("normal transform vs float64: box_muller %.3g of max(1,|z|) (%.2f ulp) over 1e7 normals; "
              "-2 ln u %.2f ulp; sin/cos %.2f ulp\n", worst, worst_ulp, worst_log, worst_trig);
}

}  // namespace

int main() {
  test_tables();
  for (zeroth_dtype dt : {ZEROTH_F32, ZEROTH_F16, ZEROTH_BF16})
    for (auto dist : {rng::Distribution::Normal, rng::Distribution::Rademacher})
      for (bool masked : {false, true})
        for (SimdLevel l : levels()) {
          set_simd_level(l);
          test_journal(dt, dist, masked);
        }
  set_simd_level(SimdLevel::Avx512);
  test_pieces_and_fused_update();
  test_threads();
  test_stochastic_rounding();
  test_masks_and_errors();
  test_transform_accuracy();
  return report();
}
