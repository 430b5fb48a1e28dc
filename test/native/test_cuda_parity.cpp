// test_cuda_parity.cpp — the CUDA backend against independent host references, without Node.
//
// Prints "SKIP ..." and exits 0 when the build has no CUDA backend or the machine no usable GPU.
// On a GPU it checks (every comparison is on bits unless a tolerance is stated):
//  - host -> cuda -> host round trips of many sizes (crossing the 8 MiB staging chunks), device
//    copies, zeros, the allocator's alignment and reuse, E_OOM (with the bytes asked) for an
//    impossible allocation, E_DEVICE for a device index that does not exist;
//  - cuda::fill_z against rng::normal_at / rademacher_at for many (seed, stream, first), large
//    and unaligned indices included;
//  - cuda::perturb, apply_update, perturb_to and restore_and_update for f32/f16/bf16, with and
//    without a mask, against a naive host reference written here from perturb.h's formulas
//    (z from philox.h, f16/bf16 through half.h, one rounding per operation);
//  - the same calls on the CPU backend (perturb.cpp) and on CUDA give the same bits, stochastic
//    rounding of f16/bf16 included;
//  - the exact restore after several perturb_to calls, on weights with -0, NaN, inf, subnormals
//    and values far below the perturbation (most of those must be journaled), including a case
//    that outgrows the journal's first capacity (the grow-and-rerun path).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/errors.h"
#include "core/half.h"
#include "core/philox.h"
#include "core/tensor.h"

#ifdef ZEROTH_WITH_CUDA
#include "../../cuda/perturb_cuda.h"
#endif
#include "check.h"

using namespace zeroth;

using namespace zeroth_test;

namespace {

#ifdef ZEROTH_WITH_CUDA

const zeroth_device kGpu{ZEROTH_DEVICE_CUDA, 0};
const zeroth_device kCpu{ZEROTH_DEVICE_CPU, 0};

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(gen());
  return v;
}

std::vector<uint8_t> read_back(const Tensor& t) {
  std::vector<uint8_t> out(t.nbytes());
  tensor_to_host(t, out.data(), out.size());
  return out;
}

// ---- backend ------------------------------------------------------------------------------

void test_roundtrip() {
  const size_t sizes[] = {1, 3, 255, 256, 4097, (size_t(8) << 20) - 1, (size_t(8) << 20) + 123, size_t(21) << 20};
  uint32_t seed = 1;
  for (size_t n : sizes) {
    const std::vector<uint8_t> host = random_bytes(n, seed++);
    TensorPtr g = tensor_from_host(ZEROTH_U8, Shape{static_cast<int64_t>(n)}, kGpu, host.data(), n);
    check(reinterpret_cast<uintptr_t>(g->data()) % 256 == 0, "allocation of " + std::to_string(n) + " is 256-aligned");
    check(read_back(*g) == host, "round trip of " + std::to_string(n) + " bytes");
    TensorPtr g2 = tensor_copy(*g, ZEROTH_U8, kGpu);  // device-to-device
    check(read_back(*g2) == host, "device copy of " + std::to_string(n) + " bytes");
    TensorPtr c = tensor_copy(*g2, ZEROTH_U8, kCpu);
    check(std::memcmp(c->data(), host.data(), n) == 0, "copy to cpu of " + std::to_string(n) + " bytes");
  }
  // f32 round trip keeps NaN payloads and -0.
  const uint32_t specials[] = {0x80000000u, 0x7fc00001u, 0xffbfffffu, 0x7f800000u, 0x00000001u, 0x3f800000u};
  TensorPtr s = tensor_from_host(ZEROTH_F32, Shape{6}, kGpu, specials, sizeof specials);
  check(std::memcmp(read_back(*s).data(), specials, sizeof specials) == 0, "f32 specials round trip");
  TensorPtr z = tensor_zeros(ZEROTH_F32, Shape{1000, 37}, kGpu);
  const std::vector<uint8_t> zb = read_back(*z);
  bool all_zero = true;
  for (uint8_t b : zb) all_zero = all_zero && b == 0;
  check(all_zero, "tensor_zeros on cuda");
  // The cache hands a freed block out again for the same size class.
  void* first = nullptr;
  {
    TensorPtr a = tensor_empty(ZEROTH_F32, Shape{12345}, kGpu);
    first = a->data();
  }
  TensorPtr b = tensor_empty(ZEROTH_F32, Shape{12340}, kGpu);
  check(b->data() == first, "a freed block is reused for the same size class");
}

void test_errors() {
  try {
    tensor_empty(ZEROTH_U8, Shape{int64_t(1) << 52}, kGpu);
    check(false, "a 4 PiB allocation must fail");
  } catch (const Error& e) {
    check(e.code() == ZEROTH_E_OOM, std::string("4 PiB allocation gives E_OOM: ") + e.what());
    check(std::string(e.what()).find("asked 4503599627370496 bytes") != std::string::npos,
          std::string("E_OOM names the bytes asked: ") + e.what());
  }
  try {
    tensor_empty(ZEROTH_F32, Shape{4}, zeroth_device{ZEROTH_DEVICE_CUDA, device_count(ZEROTH_DEVICE_CUDA)});
    check(false, "a device index past the last GPU must fail");
  } catch (const Error& e) {
    check(e.code() == ZEROTH_E_DEVICE, std::string("missing device gives E_DEVICE: ") + e.what());
  }
  // The device still works after the failed allocation.
  const std::vector<uint8_t> host = random_bytes(1000, 99);
  TensorPtr g = tensor_from_host(ZEROTH_U8, Shape{1000}, kGpu, host.data(), host.size());
  check(read_back(*g) == host, "round trip after E_OOM");
}

// ---- z -------------------------------------------------------------------------------------

void test_fill_z() {
  const uint64_t seeds[] = {0, 1, 0xdeadbeefcafebabeull};
  const uint64_t streams[] = {0, rng::stream_id("layers.0.attn.q.weight", 22), ~0ull};
  const uint64_t firsts[] = {0, 1, 3, 127, 129, (1ull << 32) - 5, (1ull << 40) + 7, ~0ull - 5000};
  const int64_t n = 5000;
  TensorPtr out = tensor_empty(ZEROTH_F32, Shape{n}, kGpu);
  for (int d = 0; d < 2; ++d) {
    const rng::Distribution dist = d == 0 ? rng::Distribution::Normal : rng::Distribution::Rademacher;
    for (uint64_t seed : seeds)
      for (uint64_t stream : streams)
        for (uint64_t first : firsts) {
          cuda::fill_z(*out, seed, stream, dist, first);
          std::vector<float> got(n);
          tensor_to_host(*out, got.data(), got.size() * 4);
          int64_t bad = 0, first_bad = -1;
          for (int64_t i = 0; i < n; ++i) {
            const uint64_t idx = first + static_cast<uint64_t>(i);
            const float want = d == 0 ? rng::normal_at(seed, stream, idx) : rng::rademacher_at(seed, stream, idx);
            if (rng::fbits(got[i]) != rng::fbits(want)) {
              if (first_bad < 0) first_bad = i;
              ++bad;
            }
          }
          check(bad == 0, std::string(d == 0 ? "normal" : "rademacher") + " z bits, seed " + std::to_string(seed) +
                              " stream " + std::to_string(stream) + " first " + std::to_string(first) + ": " +
                              std::to_string(bad) + " differ, first at " + std::to_string(first_bad));
        }
  }
}

// ---- perturbation: a naive host reference of perturb.h ------------------------------------

struct Kind {
  zeroth_dtype dtype;
  const char* name;
};
const Kind kKinds[] = {{ZEROTH_F32, "f32"}, {ZEROTH_F16, "f16"}, {ZEROTH_BF16, "bf16"}};

// Weights as f32 bit patterns or 16-bit patterns, with the hard cases sprinkled in.
std::vector<uint32_t> make_weights(zeroth_dtype dt, int64_t n, uint32_t seed, float spread) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, spread);
  std::vector<uint32_t> w(n);
  for (int64_t i = 0; i < n; ++i) {
    float v = nd(gen);
    switch (i % 97) {
      case 3: v = -0.0f; break;
      case 5: v = 0.0f; break;
      case 7: v = 1e-30f; break;                       // far below any perturbation
      case 11: v = std::ldexp(1.0f, -140); break;      // f32 subnormal
      case 13: v = -std::numeric_limits<float>::infinity(); break;
      case 17: v = std::numeric_limits<float>::quiet_NaN(); break;
      case 19: v = 1.0f; break;                        // binade edges
      case 23: v = -0.9999999f; break;
      default: break;
    }
    if (dt == ZEROTH_F32) w[i] = rng::fbits(v);
    else if (dt == ZEROTH_F16) w[i] = f32_to_f16(v);
    else w[i] = f32_to_bf16(v);
  }
  return w;
}

float to_f32(zeroth_dtype dt, uint32_t b) {
  if (dt == ZEROTH_F32) return rng::ffrombits(b);
  return dt == ZEROTH_F16 ? f16_to_f32(static_cast<uint16_t>(b)) : bf16_to_f32(static_cast<uint16_t>(b));
}
uint32_t from_f32(zeroth_dtype dt, float v) {
  if (dt == ZEROTH_F32) return rng::fbits(v);
  return dt == ZEROTH_F16 ? f32_to_f16(v) : f32_to_bf16(v);
}

TensorPtr upload(zeroth_dtype dt, const std::vector<uint32_t>& w) {
  const int64_t n = static_cast<int64_t>(w.size());
  if (dt == ZEROTH_F32) return tensor_from_host(dt, Shape{n}, kGpu, w.data(), w.size() * 4);
  std::vector<uint16_t> h(w.begin(), w.end());
  return tensor_from_host(dt, Shape{n}, kGpu, h.data(), h.size() * 2);
}
std::vector<uint32_t> download(const Tensor& t) {
  std::vector<uint32_t> out(t.numel);
  if (t.dtype == ZEROTH_F32) {
    tensor_to_host(t, out.data(), out.size() * 4);
  } else {
    std::vector<uint16_t> h(t.numel);
    tensor_to_host(t, h.data(), h.size() * 2);
    for (int64_t i = 0; i < t.numel; ++i) out[i] = h[i];
  }
  return out;
}

float z_ref(uint64_t seed, uint64_t stream, rng::Distribution dist, uint64_t i) {
  return dist == rng::Distribution::Normal ? rng::normal_at(seed, stream, i) : rng::rademacher_at(seed, stream, i);
}
bool allowed(const std::vector<uint8_t>& mask, int64_t i) { return mask.empty() || ((mask[i >> 3] >> (i & 7)) & 1u); }

// perturb.h guarantee 2: fl(w + fl(s * z)), rounded to the storage type.
uint32_t ref_perturbed(zeroth_dtype dt, uint32_t w, float s, float z) {
  const float d = s * z;
  return from_f32(dt, to_f32(dt, w) + d);
}
// perturb.h guarantee 3: fl(fl(w * (1 - decay)) - fl(step * z)), skipping the zero parts.
uint32_t ref_updated(zeroth_dtype dt, uint32_t w, float step, float decay, float z) {
  if (step == 0.0f && decay == 0.0f) return w;
  float v = to_f32(dt, w);
  if (decay != 0.0f) v = v * (1.0f - decay);
  if (step != 0.0f) v = v - step * z;
  return from_f32(dt, v);
}

int64_t count_diff(const std::vector<uint32_t>& got, const std::vector<uint32_t>& want, int64_t* first_bad) {
  int64_t bad = 0;
  *first_bad = -1;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i]) {
      if (*first_bad < 0) *first_bad = static_cast<int64_t>(i);
      ++bad;
    }
  return bad;
}

void expect_same(const std::vector<uint32_t>& got, const std::vector<uint32_t>& want, const std::string& what) {
  int64_t first_bad;
  const int64_t bad = count_diff(got, want, &first_bad);
  std::string msg = what + ": " + std::to_string(bad) + " of " + std::to_string(got.size()) + " elements differ";
  if (bad) msg += " (first at " + std::to_string(first_bad) + ")";
  check(bad == 0, msg);
}

void test_perturb_kernels() {
  const int64_t sizes[] = {1, 5, 4096, 4099, 100003};
  const uint64_t seed = 0x1234567887654321ull;
  const uint64_t stream = rng::stream_id("h.3.mlp.c_fc.weight", 19);
  for (const Kind& k : kKinds)
    for (int64_t n : sizes)
      for (int masked = 0; masked < 2; ++masked)
        for (int d = 0; d < 2; ++d) {
          const rng::Distribution dist = d ? rng::Distribution::Rademacher : rng::Distribution::Normal;
          const std::string tag = std::string(k.name) + " n=" + std::to_string(n) + (masked ? " masked" : "") +
                                  (d ? " rademacher" : " normal");
          const std::vector<uint32_t> w = make_weights(k.dtype, n, static_cast<uint32_t>(n + d), 0.02f);
          std::vector<uint8_t> mask;
          TensorPtr mask_t;
          if (masked) {
            mask = random_bytes(static_cast<size_t>((n + 7) / 8), 7);
            mask_t = tensor_from_host(ZEROTH_U8, Shape{static_cast<int64_t>(mask.size())}, kGpu, mask.data(), mask.size());
          }
          std::vector<float> z(n);
          for (int64_t i = 0; i < n; ++i) z[i] = z_ref(seed, stream, dist, static_cast<uint64_t>(i));

          // perturb: t += s * z
          TensorPtr t = upload(k.dtype, w);
          const float s = 1e-3f;
          cuda::perturb({PerturbTarget{t, stream, mask_t}}, seed, s, dist);
          std::vector<uint32_t> want(w);
          for (int64_t i = 0; i < n; ++i)
            if (allowed(mask, i)) want[i] = ref_perturbed(k.dtype, w[i], s, z[i]);
          expect_same(download(*t), want, "perturb " + tag);

          // apply_update: step and decay from clean weights
          t = upload(k.dtype, w);
          UpdateOptions opts;
          opts.step_scale = 3e-4f;
          opts.decay = 1e-2f;
          cuda::apply_update({PerturbTarget{t, stream, mask_t}}, seed, dist, opts);
          for (int64_t i = 0; i < n; ++i)
            want[i] = allowed(mask, i) ? ref_updated(k.dtype, w[i], opts.step_scale, opts.decay, z[i]) : w[i];
          expect_same(download(*t), want, "apply_update " + tag);

          // perturb_to +s, -s, +2s (checked after each), then restore and update in one pass.
          t = upload(k.dtype, w);
          PerturbJournal journal;
          std::vector<PerturbTarget> targets{PerturbTarget{t, stream, mask_t}};
          for (float sc : {s, -s, 2 * s}) {
            cuda::perturb_to(targets, journal, seed, sc, dist);
            for (int64_t i = 0; i < n; ++i) want[i] = allowed(mask, i) ? ref_perturbed(k.dtype, w[i], sc, z[i]) : w[i];
            expect_same(download(*t), want, "perturb_to " + std::to_string(sc) + " " + tag);
          }
          check(cuda::journal_entry_count(journal) > 0 || n < 97, "journal holds the hard elements " + tag);
          cuda::restore_and_update(targets, journal, opts);
          for (int64_t i = 0; i < n; ++i)
            want[i] = allowed(mask, i) ? ref_updated(k.dtype, w[i], opts.step_scale, opts.decay, z[i]) : w[i];
          expect_same(download(*t), want, "restore_and_update " + tag);

          // An exact restore after perturbing: the original bits.
          cuda::perturb_to(targets, journal, seed, -s, dist);
          cuda::restore_and_update(targets, journal, UpdateOptions{});
          expect_same(download(*t), want, "exact restore " + tag);
          cuda::perturb_to(targets, journal, seed, s, dist);
          cuda::perturb_to(targets, journal, seed, 0.0f, dist);
          expect_same(download(*t), want, "perturb_to(0) restores " + tag);
          cuda::release_journal(journal);
        }
}

// Weights far below the perturbation: nearly every element must be journaled, more than the
// journal's first guess (numel / 64), so the grow-and-rerun path runs.
void test_journal_growth() {
  for (const Kind& k : kKinds) {
    const int64_t n = 1 << 20;
    const std::vector<uint32_t> w = make_weights(k.dtype, n, 5, 1e-7f);
    TensorPtr t = upload(k.dtype, w);
    PerturbJournal journal;
    std::vector<PerturbTarget> targets{PerturbTarget{t, 42, nullptr}};
    cuda::perturb_to(targets, journal, 9, 0.5f, rng::Distribution::Normal);
    check(cuda::journal_entry_count(journal) > static_cast<uint64_t>(n / 64),
          std::string(k.name) + " tiny weights outgrow the first journal capacity (" +
              std::to_string(cuda::journal_entry_count(journal)) + " entries)");
    std::vector<uint32_t> want(n);
    for (int64_t i = 0; i < n; ++i) want[i] = ref_perturbed(k.dtype, w[i], 0.5f, rng::normal_at(9, 42, i));
    expect_same(download(*t), want, std::string(k.name) + " perturbed after journal growth");
    cuda::perturb_to(targets, journal, 9, -0.25f, rng::Distribution::Normal);
    cuda::restore_and_update(targets, journal, UpdateOptions{});
    expect_same(download(*t), w, std::string(k.name) + " exact restore after journal growth");
    cuda::release_journal(journal);
  }
}

// The same calls on the CPU backend (native/cpu/perturb.cpp, the reference) and on CUDA give
// the same bits, stochastic rounding of f16/bf16 included.
// The same calls on both devices leave the same bits, with and without a preconditioner (HiZOO's
// per-element multiplier of the scaled z: fl(fl(s·z)·p) on both).
void test_cpu_parity() {
  const int64_t n = 70001;
  const uint64_t seed = 77, stream = rng::stream_id("wte.weight", 10);
  std::vector<float> pvals(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pvals[static_cast<size_t>(i)] = 0.5f + static_cast<float>((i * 7919) % 1000) / 666.0f;
  TensorPtr pc_cpu = tensor_from_host(ZEROTH_F32, Shape{n}, kCpu, pvals.data(), pvals.size() * sizeof(float));
  TensorPtr pc_gpu = tensor_copy(*pc_cpu, ZEROTH_F32, kGpu);
  for (int pre = 0; pre < 2; ++pre)
  for (const Kind& k : kKinds)
    for (int d = 0; d < 2; ++d) {
      const rng::Distribution dist = d ? rng::Distribution::Rademacher : rng::Distribution::Normal;
      const std::string tag = std::string(k.name) + (d ? " rademacher" : " normal") + (pre ? " preconditioned" : "");
      const std::vector<uint32_t> w = make_weights(k.dtype, n, 3, 0.05f);
      TensorPtr g = upload(k.dtype, w);
      TensorPtr c = tensor_copy(*g, k.dtype, kCpu);
      std::vector<PerturbTarget> gt{PerturbTarget{g, stream, nullptr, pre ? pc_gpu : nullptr}},
          ct{PerturbTarget{c, stream, nullptr, pre ? pc_cpu : nullptr}};
      PerturbJournal gj, cj;
      for (float s : {1e-3f, -1e-3f, 0.25f}) {
        cuda::perturb_to(gt, gj, seed, s, dist);
        perturb_to(ct, cj, seed, s, dist);
        expect_same(download(*g), download(*c), "cpu parity perturb_to " + tag);
      }
      UpdateOptions opts;
      opts.step_scale = 2e-3f;
      opts.decay = 1e-3f;
      opts.stochastic_rounding = true;
      opts.rounding_seed = 4321;
      cuda::restore_and_update(gt, gj, opts);
      restore_and_update(ct, cj, opts);
      expect_same(download(*g), download(*c), "cpu parity stochastic update " + tag);
      cuda::apply_update(gt, seed + 1, dist, opts);
      apply_update(ct, seed + 1, dist, opts);
      expect_same(download(*g), download(*c), "cpu parity apply_update " + tag);
      cuda::perturb(gt, seed + 2, 0.01f, dist);
      perturb(ct, seed + 2, 0.01f, dist);
      expect_same(download(*g), download(*c), "cpu parity perturb " + tag);
      cuda::release_journal(gj);
    }
}

void test_contract_errors() {
  TensorPtr t = upload(ZEROTH_F32, make_weights(ZEROTH_F32, 100, 1, 0.02f));
  PerturbJournal journal;
  std::vector<PerturbTarget> targets{PerturbTarget{t, 1, nullptr}};
  cuda::perturb_to(targets, journal, 5, 1e-3f, rng::Distribution::Normal);
  try {
    cuda::perturb_to(targets, journal, 6, 1e-3f, rng::Distribution::Normal);
    check(false, "changing the seed while perturbed must fail");
  } catch (const Error& e) {
    check(e.code() == ZEROTH_E_INVALID_ARG, std::string("seed change while perturbed: ") + e.what());
  }
  cuda::restore_and_update(targets, journal, UpdateOptions{});
  TensorPtr cpu = tensor_zeros(ZEROTH_F32, Shape{4}, kCpu);
  try {
    cuda::perturb({PerturbTarget{cpu, 1, nullptr}}, 1, 1.0f, rng::Distribution::Normal);
    check(false, "a CPU tensor must be refused by the CUDA kernels");
  } catch (const Error& e) {
    check(e.code() == ZEROTH_E_DEVICE, std::string("cpu tensor to cuda::perturb: ") + e.what());
  }
  // A preconditioner on another device, of the wrong size, or the target itself.
  TensorPtr gpu = tensor_zeros(ZEROTH_F32, Shape{4}, kGpu);
  TensorPtr short_pc = tensor_zeros(ZEROTH_F32, Shape{3}, kGpu);
  const std::pair<PerturbTarget, zeroth_status> bad[] = {
      {PerturbTarget{gpu, 1, nullptr, cpu}, ZEROTH_E_DEVICE},
      {PerturbTarget{gpu, 1, nullptr, short_pc}, ZEROTH_E_SHAPE},
      {PerturbTarget{gpu, 1, nullptr, gpu}, ZEROTH_E_INVALID_ARG},
  };
  for (const auto& [target, code] : bad) {
    try {
      cuda::perturb({target}, 1, 1.0f, rng::Distribution::Normal);
      check(false, "a bad preconditioner must be refused");
    } catch (const Error& e) {
      check(e.code() == code, std::string("bad preconditioner: ") + e.what());
    }
  }
  // The same tensor twice; restoring with another preconditioner than the one perturbed with.
  TensorPtr pc = tensor_zeros(ZEROTH_F32, Shape{4}, kGpu);
  const auto expect_invalid = [](const char* what, const std::function<void()>& fn) {
    try {
      fn();
      check(false, std::string(what) + " must be refused");
    } catch (const Error& e) {
      check(e.code() == ZEROTH_E_INVALID_ARG, std::string(what) + ": " + e.what());
    }
  };
  expect_invalid("a target passed twice", [&] {
    cuda::perturb({PerturbTarget{gpu, 1, nullptr}, PerturbTarget{gpu, 2, nullptr}}, 1, 1.0f, rng::Distribution::Normal);
  });
  PerturbJournal pj;
  cuda::perturb_to({PerturbTarget{gpu, 1, nullptr, pc}}, pj, 3, 1e-3f, rng::Distribution::Normal);
  expect_invalid("restore without the preconditioner perturbed with",
                 [&] { cuda::restore_and_update({PerturbTarget{gpu, 1, nullptr}}, pj, UpdateOptions{}); });
  cuda::restore_and_update({PerturbTarget{gpu, 1, nullptr, pc}}, pj, UpdateOptions{});
  cuda::release_journal(pj);
  // A zero scale writes nothing: -0 keeps its sign bit (fl(-0 + 0·z) would be +0).
  const std::vector<uint32_t> minus_zero(4, 0x80000000u);
  TensorPtr mz = upload(ZEROTH_F32, minus_zero);
  cuda::perturb({PerturbTarget{mz, 1, nullptr}}, 1, 0.0f, rng::Distribution::Normal);
  expect_same(download(*mz), minus_zero, "perturb with scale 0 leaves the bits");
  cuda::release_journal(journal);
}

#endif  // ZEROTH_WITH_CUDA

}  // namespace

int main() {
#ifndef ZEROTH_WITH_CUDA
  std::printf("SKIP test_cuda_parity: this build of zeroth has no CUDA backend\n0 passed, 0 failed\n");
  return 0;
#else
  const int n = device_count(ZEROTH_DEVICE_CUDA);
  if (n == 0) {
    std::printf("SKIP test_cuda_parity: no usable CUDA device or driver on this machine (the CUDA-built library "
                "loads and reports 0 devices)\n0 passed, 0 failed\n");
    return 0;
  }
  try {
    const DeviceInfo info = device_info(kGpu);
    std::printf("device: %s, %.1f GiB\n", info.name.c_str(), static_cast<double>(info.total_memory) / (1 << 30));
    test_roundtrip();
    test_errors();
    test_fill_z();
    test_perturb_kernels();
    test_journal_growth();
    test_cpu_parity();
    test_contract_errors();
  } catch (const Error& e) {
    check(false, std::string("unexpected error ") + status_name(e.code()) + ": " + e.what());
  }
  return report();
#endif
}
