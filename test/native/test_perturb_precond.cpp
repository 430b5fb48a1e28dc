// test_perturb_precond.cpp — preconditioned perturbation (perturb.h, guarantee 5) and HiZOO's
// diagonal update (perturb_precond.cpp), against references written here from rng::normal_at.
//
//  1. perturb_to with a precond p leaves fl(w + fl(fl(s·z)·p)) (f16/bf16: that f32 sum rounded
//     to nearest); moving between scales and restoring returns the original bits, for
//     adversarial w and p (0, subnormal, huge, inf p), with masks, at every SIMD level and
//     with 1 or 2 threads (same bits, same journal size).
//  2. restore_and_update / apply_update with a step subtract fl(fl(step·z)·p).
//  3. The journal rejects a different precond (or none) while perturbed.
//  4. hessian_diag_update matches an element-by-element reference; Rademacher is rejected.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/errors.h"
#include "core/half.h"
#include "core/parallel.h"
#include "core/philox.h"
#include "cpu/perturb.h"
#include "check.h"

using namespace zeroth;

using namespace zeroth_test;

namespace {

const zeroth_device kCpu{ZEROTH_DEVICE_CPU, 0};
const float kInf = std::numeric_limits<float>::infinity();

std::vector<SimdLevel> levels() {
  std::vector<SimdLevel> out;
  for (SimdLevel l : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}) {
    set_simd_level(l);
    if (simd_level() == l) out.push_back(l);
  }
  set_simd_level(SimdLevel::Avx512);
  return out;
}

std::vector<float> weights(int64_t n, uint64_t seed) {
  std::vector<float> v = {0.0f, -0.0f, 1e-45f, 3e-39f, 1e-30f, std::nextafter(1.0f, 0.0f), -std::nextafter(4.0f, 0.0f),
                          3e38f, -3.4e38f, kInf, -kInf, rng::ffrombits(0x7fc00001u)};
  Rng r{seed};
  while (static_cast<int64_t>(v.size()) < n) {
    const uint64_t kind = r.next() % 3;
    float x = r.uniform();
    if (kind == 1) x *= 1e-4f;
    else if (kind == 2) x = std::nextafter(std::ldexp(1.0f, static_cast<int>(r.next() % 20) - 10), 0.0f);
    v.push_back(x);
  }
  v.resize(static_cast<size_t>(n));
  return v;
}

// Preconditioner values: ordinary positive scales, plus 0, subnormal, huge and infinite ones.
std::vector<float> preconds(int64_t n, uint64_t seed) {
  std::vector<float> v = {0.0f, 1e-40f, 1e30f, kInf, 1.0f, 0.5f};
  Rng r{seed};
  while (static_cast<int64_t>(v.size()) < n) v.push_back(std::ldexp(1.0f + 0.5f * r.uniform(), static_cast<int>(r.next() % 9) - 4));
  v.resize(static_cast<size_t>(n));
  return v;
}

TensorPtr make(zeroth_dtype dt, const std::vector<float>& values) {
  const int64_t n = static_cast<int64_t>(values.size());
  TensorPtr t = tensor_empty(dt, Shape{n}, kCpu);
  convert_host(ZEROTH_F32, values.data(), dt, t->data(), n);
  if (dt == ZEROTH_F32) std::memcpy(t->data(), values.data(), values.size() * 4);
  return t;
}

std::vector<uint8_t> raw(const TensorPtr& t) {
  std::vector<uint8_t> out(t->nbytes());
  std::memcpy(out.data(), t->data(), out.size());
  return out;
}

float load(const TensorPtr& t, int64_t i) {
  if (t->dtype == ZEROTH_F32) return t->as<float>()[i];
  const uint16_t h = t->as<uint16_t>()[i];
  return t->dtype == ZEROTH_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

// The bits an element must hold: f32 value v stored in the target's dtype.
uint32_t stored(zeroth_dtype dt, float v) {
  if (dt == ZEROTH_F32) return rng::fbits(v);
  return dt == ZEROTH_F16 ? f32_to_f16(v) : f32_to_bf16(v);
}
uint32_t bits_at(const TensorPtr& t, int64_t i) {
  return t->dtype == ZEROTH_F32 ? rng::fbits(t->as<float>()[i]) : t->as<uint16_t>()[i];
}
bool same_value(zeroth_dtype dt, uint32_t a, uint32_t b) {
  // NaN results may differ in payload between the kernel and this reference; compare NaN-ness.
  const float fa = dt == ZEROTH_F32 ? rng::ffrombits(a) : (dt == ZEROTH_F16 ? f16_to_f32(a) : bf16_to_f32(a));
  const float fb = dt == ZEROTH_F32 ? rng::ffrombits(b) : (dt == ZEROTH_F16 ? f16_to_f32(b) : bf16_to_f32(b));
  return a == b || (std::isnan(fa) && std::isnan(fb));
}

bool mask_bit(const TensorPtr& m, int64_t i) { return !m || ((m->as<uint8_t>()[i >> 3] >> (i & 7)) & 1u); }

void test_perturb_and_restore() {
  const int64_t n = 70000;  // more than one journal chunk
  const uint64_t seed = 77, stream = 0xabcdef;
  for (zeroth_dtype dt : {ZEROTH_F32, ZEROTH_F16, ZEROTH_BF16}) {
    for (rng::Distribution dist : {rng::Distribution::Normal, rng::Distribution::Rademacher}) {
      for (bool masked : {false, true}) {
        std::vector<uint8_t> first_bits;
        size_t first_entries = 0;
        for (SimdLevel l : levels()) {
          for (int threads : {1, 2}) {
            set_simd_level(l);
            set_num_threads(threads);
            const std::string name = std::string(dtype_traits(dt).name) + (dist == rng::Distribution::Normal ? " normal" : " rademacher") +
                                     (masked ? " masked " : " ") + simd_level_name(l) + " t" + std::to_string(threads);
            PerturbTarget t{make(dt, weights(n, 5)), stream, nullptr, make(ZEROTH_F32, preconds(n, 6))};
            if (masked) {
              t.mask = tensor_zeros(ZEROTH_U8, Shape{(n + 7) / 8}, kCpu);
              Rng r{9};
              for (int64_t i = 0; i < t.mask->numel; ++i) t.mask->as<uint8_t>()[i] = static_cast<uint8_t>(r.next());
            }
            const std::vector<uint8_t> before = raw(t.tensor);
            std::vector<float> clean(static_cast<size_t>(n));
            for (int64_t i = 0; i < n; ++i) clean[i] = load(t.tensor, i);
            const std::vector<PerturbTarget> ts{t};
            PerturbJournal j;
            const float p_of[] = {0.03f, -0.03f, 0.015f};
            for (float s : p_of) {
              perturb_to(ts, j, seed, s, dist);
              int64_t bad = 0;
              const std::vector<uint8_t> orig = before;
              for (int64_t i = 0; i < n; ++i) {
                const float z = dist == rng::Distribution::Normal ? rng::normal_at(seed, stream, i) : rng::rademacher_at(seed, stream, i);
                const float d = (s * z) * t.precond->as<float>()[i];
                uint32_t want;
                if (!mask_bit(t.mask, i)) {
                  want = dt == ZEROTH_F32 ? rng::fbits(reinterpret_cast<const float*>(orig.data())[i])
                                          : reinterpret_cast<const uint16_t*>(orig.data())[i];
                } else {
                  want = stored(dt, clean[i] + d);
                }
                if (!same_value(dt, bits_at(t.tensor, i), want)) ++bad;
              }
              check(bad == 0, name + " perturb_to(" + std::to_string(s) + ") = fl(w + fl(fl(s z) p)), bad " + std::to_string(bad));
            }
            if (first_bits.empty()) {
              first_bits = raw(t.tensor);
              first_entries = j.entry_count();
            } else {
              check(raw(t.tensor) == first_bits && j.entry_count() == first_entries, name + " same bits and journal everywhere");
            }
            restore_and_update(ts, j, UpdateOptions{});
            check(raw(t.tensor) == before, name + " restore is bit-exact");
          }
        }
      }
    }
  }
  set_num_threads(2);
}

void test_update_step() {
  const int64_t n = 5000;
  const uint64_t seed = 3, stream = 11;
  for (zeroth_dtype dt : {ZEROTH_F32, ZEROTH_F16, ZEROTH_BF16}) {
    for (SimdLevel l : levels()) {
      set_simd_level(l);
      const std::string name = std::string(dtype_traits(dt).name) + " " + simd_level_name(l);
      std::vector<float> w(static_cast<size_t>(n)), pv(static_cast<size_t>(n));
      Rng r{21};
      for (int64_t i = 0; i < n; ++i) {
        w[i] = r.uniform();
        pv[i] = std::ldexp(1.0f + 0.5f * r.uniform(), static_cast<int>(r.next() % 7) - 3);
      }
      PerturbTarget t{make(dt, w), stream, nullptr, make(ZEROTH_F32, pv)};
      std::vector<float> clean(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) clean[i] = load(t.tensor, i);
      const std::vector<PerturbTarget> ts{t};
      PerturbJournal j;
      perturb_to(ts, j, seed, 0.01f, rng::Distribution::Normal);
      perturb_to(ts, j, seed, -0.01f, rng::Distribution::Normal);
      UpdateOptions o;
      o.step_scale = 0.25f;
      restore_and_update(ts, j, o);
      int64_t bad = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float d = (0.25f * rng::normal_at(seed, stream, i)) * pv[i];
        if (bits_at(t.tensor, i) != stored(dt, clean[i] - d)) ++bad;
      }
      check(bad == 0, name + " fused restore + step subtracts fl(fl(step z) p), bad " + std::to_string(bad));
      // apply_update on clean weights gives the same bits as the fused pass.
      PerturbTarget u{make(dt, w), stream, nullptr, t.precond};
      apply_update({u}, seed, rng::Distribution::Normal, o);
      check(raw(u.tensor) == raw(t.tensor), name + " apply_update == fused restore + step");
    }
  }
}

void test_journal_checks() {
  const int64_t n = 100;
  PerturbTarget t{make(ZEROTH_F32, weights(n, 1)), 5, nullptr, make(ZEROTH_F32, preconds(n, 2))};
  PerturbJournal j;
  perturb_to({t}, j, 1, 0.1f, rng::Distribution::Normal);
  auto code_of = [](auto fn) {
    try {
      fn();
    } catch (const Error& e) {
      return static_cast<int>(e.code());
    }
    return 0;
  };
  PerturbTarget none = t;
  none.precond = nullptr;
  check(code_of([&] { perturb_to({none}, j, 1, -0.1f, rng::Distribution::Normal); }) == ZEROTH_E_INVALID_ARG,
        "perturb_to without the precond it was perturbed with is rejected");
  PerturbTarget other = t;
  other.precond = make(ZEROTH_F32, preconds(n, 2));
  check(code_of([&] { restore_and_update({other}, j, UpdateOptions{}); }) == ZEROTH_E_INVALID_ARG,
        "restore with another precond tensor is rejected");
  restore_and_update({t}, j, UpdateOptions{});
  PerturbTarget wrong = t;
  wrong.precond = make(ZEROTH_F32, std::vector<float>(static_cast<size_t>(n - 1), 1.0f));
  check(code_of([&] { perturb_to({wrong}, j, 1, 0.1f, rng::Distribution::Normal); }) == ZEROTH_E_SHAPE,
        "a precond of the wrong size is rejected");
  PerturbTarget self = t;
  self.precond = t.tensor;
  check(code_of([&] { perturb_to({self}, j, 1, 0.1f, rng::Distribution::Normal); }) == ZEROTH_E_INVALID_ARG,
        "a precond aliasing its target is rejected");
}

void test_diag_update() {
  const int64_t n = 70000;
  const uint64_t seed = 99, stream = 1234;
  std::vector<float> h0(static_cast<size_t>(n));
  Rng r{4};
  for (auto& v : h0) v = std::ldexp(1.0f + 0.5f * r.uniform(), static_cast<int>(r.next() % 5) - 2);
  DiagHessianUpdate u;
  u.coeff = 3.5f;
  u.alpha = 0.1f;
  u.h_min = 0.3f;
  u.h_max = 3.0f;
  std::vector<uint8_t> first;
  for (SimdLevel l : levels()) {
    set_simd_level(l);
    PerturbTarget t{make(ZEROTH_F32, std::vector<float>(static_cast<size_t>(n), 0.0f)), stream, nullptr,
                    make(ZEROTH_F32, std::vector<float>(static_cast<size_t>(n), -1.0f))};
    t.mask = tensor_zeros(ZEROTH_U8, Shape{(n + 7) / 8}, kCpu);
    for (int64_t i = 0; i < t.mask->numel; ++i) t.mask->as<uint8_t>()[i] = static_cast<uint8_t>(0xf7);
    TensorPtr h = make(ZEROTH_F32, h0);
    hessian_diag_update({t}, {h}, seed, rng::Distribution::Normal, u);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float z = rng::normal_at(seed, stream, i);
      float want = h0[i], want_p = -1.0f;
      if (mask_bit(t.mask, i)) {
        want = 0.9f * h0[i] + 0.1f * std::fabs((3.5f * h0[i]) * (z * z - 1.0f));
        want = std::min(3.0f, std::max(0.3f, want));
        want_p = 1.0f / std::sqrt(want);
      }
      if (rng::fbits(h->as<float>()[i]) != rng::fbits(want) || rng::fbits(t.precond->as<float>()[i]) != rng::fbits(want_p)) ++bad;
    }
    check(bad == 0, std::string(simd_level_name(l)) + " hessian_diag_update matches the reference, bad " + std::to_string(bad));
    if (first.empty()) first = raw(h);
    else check(raw(h) == first, "hessian_diag_update: same bits at every SIMD level");
    bool threw = false;
    try {
      hessian_diag_update({t}, {h}, seed, rng::Distribution::Rademacher, u);
    } catch (const Error& e) {
      threw = e.code() == ZEROTH_E_INVALID_ARG;
    }
    check(threw, "hessian_diag_update rejects Rademacher z");
  }
}

}  // namespace

int main() {
  test_perturb_and_restore();
  test_update_step();
  test_journal_checks();
  test_diag_update();
  return report();
}
