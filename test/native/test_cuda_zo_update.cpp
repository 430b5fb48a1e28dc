// test_cuda_zo_update.cpp — the stateful ZO update rules (native/cpu/zo_update.h and HiZOO's
// hessian_diag_update) on CUDA against the CPU, without Node.
//
// Host checks (every build): the CPU rules against a naive reference written here from
// zo_update.h's formulas (z from rng::normal_at / rademacher_at, one rounding per operation in
// the header's order, f16/bf16 through half.h) — bits. This pins the reference the GPU is held to.
// GPU checks (CUDA build + device): for every rule (accumulate_z, momentum, Adam at t = 1 and 7,
// sign, preconditioned, hold_floor, hessian_diag_update), f32 / f16 / bf16 weights, normal and
// Rademacher z, with and without a mask, with and without decay, ĝ from a seed and from scratch
// buffers (2 queries accumulated), several targets of odd sizes in one call:
//  - the CUDA twin writes the CPU's bits in weights and every state buffer. Tolerance: none. Every
//    rule is a pure function of one element (no reduction), and both sides round each operation
//    once in the same order (the CPU builds with -ffp-contract=off, the device uses _rn
//    intrinsics), so bit equality is the contract (cuda/zo_update_cuda.h);
//  - masked elements keep their bits (weights and state);
//  - a call mixing CPU and CUDA tensors (target vs state buffer, target vs mask, tensor vs floor)
//    is E_DEVICE; a wrong-sized device buffer is E_SHAPE.
// --bench: one JSON line, Adam / momentum / sign over 16M f32 weights in ns per weight, with the
// plain ZO-SGD apply_update of the same weights measured in the same run as the reference.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/half.h"
#include "core/philox.h"
#include "core/tensor.h"
#include "cpu/perturb.h"
#include "cpu/zo_update.h"
#include "cuda_test.h"

using namespace zeroth;
using namespace zeroth_test;

namespace {

const zeroth_device kCpu{ZEROTH_DEVICE_CPU, 0};

enum class Rule { Accumulate, Momentum, Adam, Sign, Precond, Hessian, HoldFloor };
const char* rule_name(Rule r) {
  switch (r) {
    case Rule::Accumulate: return "accumulate_z";
    case Rule::Momentum: return "momentum";
    case Rule::Adam: return "adam";
    case Rule::Sign: return "sign";
    case Rule::Precond: return "preconditioned";
    case Rule::Hessian: return "hessian_diag";
    default: return "hold_floor";
  }
}

size_t esize(zeroth_dtype dt) { return dt == ZEROTH_F32 ? 4 : 2; }

float load(zeroth_dtype dt, const std::vector<uint8_t>& b, int64_t i) {
  if (dt == ZEROTH_F32) {
    float v;
    std::memcpy(&v, b.data() + 4 * i, 4);
    return v;
  }
  uint16_t h;
  std::memcpy(&h, b.data() + 2 * i, 2);
  return dt == ZEROTH_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

void store(zeroth_dtype dt, std::vector<uint8_t>& b, int64_t i, float v) {
  if (dt == ZEROTH_F32) {
    std::memcpy(b.data() + 4 * i, &v, 4);
    return;
  }
  const uint16_t h = dt == ZEROTH_F16 ? f32_to_f16(v) : f32_to_bf16(v);
  std::memcpy(b.data() + 2 * i, &h, 2);
}

// One call's inputs and outputs, as host bytes: per target its weights, mask and f32 state.
struct World {
  zeroth_dtype dt = ZEROTH_F32;
  std::vector<int64_t> numel;
  std::vector<uint64_t> stream;
  std::vector<std::vector<uint8_t>> w, mask;                 // mask empty: all train
  std::vector<std::vector<float>> m, v, scratch, precond, h;  // f32 per element
};

World make_world(zeroth_dtype dt, const std::vector<int64_t>& sizes, bool masked, uint64_t seed) {
  Rng r{seed};
  World wd;
  wd.dt = dt;
  for (size_t k = 0; k < sizes.size(); ++k) {
    const int64_t n = sizes[k];
    const std::string name = "layer." + std::to_string(k) + ".weight";
    wd.numel.push_back(n);
    wd.stream.push_back(rng::stream_id(name.c_str(), name.size()));
    std::vector<uint8_t> w(static_cast<size_t>(n) * esize(dt));
    for (int64_t i = 0; i < n; ++i) store(dt, w, i, 0.5f * r.uniform());
    if (n > 2) store(dt, w, 1, -0.0f);  // -0 must survive decay and zero steps as the CPU keeps it
    wd.w.push_back(w);
    std::vector<uint8_t> mk;
    if (masked) {
      mk.resize(static_cast<size_t>((n + 7) / 8));
      for (auto& b : mk) b = static_cast<uint8_t>(r.next());
    }
    wd.mask.push_back(mk);
    auto vec = [&](float lo, float hi) {
      std::vector<float> x(static_cast<size_t>(n));
      for (auto& e : x) e = lo + (hi - lo) * 0.5f * (r.uniform() + 1.0f);
      return x;
    };
    wd.m.push_back(vec(-0.1f, 0.1f));
    wd.v.push_back(vec(0.0f, 0.01f));
    wd.scratch.push_back(vec(-2.0f, 2.0f));
    wd.precond.push_back(vec(0.5f, 2.0f));
    wd.h.push_back(vec(0.01f, 10.0f));
  }
  return wd;
}

// hold_floor's inputs: x in scratch (a NaN among them), floors in h with every sign (a floor of
// 0 leaves x alone, a negative one caps it).
void floorize(World& wd) {
  for (size_t k = 0; k < wd.numel.size(); ++k) {
    for (size_t i = 0; i < wd.h[k].size(); ++i) {
      if (i % 3 == 1) wd.h[k][i] = -wd.h[k][i] * 0.1f;
      else if (i % 3 == 2) wd.h[k][i] = 0.0f;
      else wd.h[k][i] *= 0.1f;
      if (i % 17 == 5) wd.scratch[k][i] = std::nanf("");
    }
  }
}

struct Call {
  Rule rule = Rule::Momentum;
  uint64_t seed = 7;
  rng::Distribution dist = rng::Distribution::Normal;
  bool use_scratch = false;
  float beta = 0.9f, c = 0.37f, lr = 1e-2f, decay = 0.0f, step = 3e-3f;
  AdamParams adam;
  DiagHessianUpdate hess;
};

bool trains(const World& wd, size_t k, int64_t i) {
  return wd.mask[k].empty() || ((wd.mask[k][static_cast<size_t>(i >> 3)] >> (i & 7)) & 1);
}

float z_at(const Call& c, uint64_t stream, int64_t i) {
  return c.dist == rng::Distribution::Normal ? rng::normal_at(c.seed, stream, static_cast<uint64_t>(i))
                                             : rng::rademacher_at(c.seed, stream, static_cast<uint64_t>(i));
}

// The naive reference: zo_update.h / perturb.h's formulas, element by element.
void reference(World& wd, const Call& c) {
  const float keep = 1.0f - c.decay;
  const float c1 = 1.0f / static_cast<float>(1.0 - std::pow(static_cast<double>(c.adam.beta1), static_cast<double>(c.adam.t)));
  const float c2 = 1.0f / static_cast<float>(1.0 - std::pow(static_cast<double>(c.adam.beta2), static_cast<double>(c.adam.t)));
  for (size_t k = 0; k < wd.numel.size(); ++k) {
    for (int64_t i = 0; i < wd.numel[k]; ++i) {
      const size_t u = static_cast<size_t>(i);
      if (c.rule == Rule::HoldFloor) {
        const float f = wd.h[k][u];
        float& x = wd.scratch[k][u];
        if (f > 0.0f && x < f) x = f;
        else if (f < 0.0f && f < x) x = f;
        continue;
      }
      if (!trains(wd, k, i)) continue;
      const float z = z_at(c, wd.stream[k], i);
      const float g = c.use_scratch ? wd.scratch[k][u] : c.c * z;
      float w = load(wd.dt, wd.w[k], i);
      if (c.decay != 0.0f) w = w * keep;
      switch (c.rule) {
        case Rule::Accumulate: wd.m[k][u] = c.beta * wd.m[k][u] + c.c * z; continue;
        case Rule::Momentum:
          wd.m[k][u] = c.beta * wd.m[k][u] + g;
          w = w - c.lr * wd.m[k][u];
          break;
        case Rule::Adam: {
          const AdamParams& p = c.adam;
          wd.m[k][u] = p.beta1 * wd.m[k][u] + (1.0f - p.beta1) * g;
          wd.v[k][u] = p.beta2 * wd.v[k][u] + (1.0f - p.beta2) * (g * g);
          w = w - p.lr * (wd.m[k][u] * c1) / (std::sqrt(wd.v[k][u] * c2) + p.eps);
          break;
        }
        case Rule::Sign: w = w - c.lr * (g > 0.0f ? 1.0f : (g < 0.0f ? -1.0f : 0.0f)); break;
        case Rule::Precond: w = w - c.step * (z * wd.precond[k][u]); break;
        case Rule::Hessian: {
          const DiagHessianUpdate& q = c.hess;
          const float old = wd.h[k][u];
          float x = (1.0f - q.alpha) * old + q.alpha * std::fabs((q.coeff * old) * (z * z - 1.0f));
          if (std::isnan(x)) x = old;
          x = x < q.h_min ? q.h_min : (x > q.h_max ? q.h_max : x);
          wd.h[k][u] = x;
          wd.precond[k][u] = 1.0f / std::sqrt(x);
          continue;
        }
        default: break;
      }
      store(wd.dt, wd.w[k], i, w);
    }
  }
}

TensorPtr put(zeroth_dtype dt, const void* data, int64_t n, zeroth_device dev) {
  return tensor_from_host(dt, Shape{n}, dev, data, static_cast<size_t>(n) * (dt == ZEROTH_U8 ? 1 : esize(dt)));
}

template <typename T>
void get(const TensorPtr& t, std::vector<T>& out) {
  tensor_to_host(*t, out.data(), out.size() * sizeof(T));
}

// Runs the call through the public entry points (zo_update.h / perturb.h) on `dev`.
void run_on(World& wd, const Call& c, zeroth_device dev) {
  std::vector<PerturbTarget> targets;
  std::vector<TensorPtr> m, v, s, p, h;
  for (size_t k = 0; k < wd.numel.size(); ++k) {
    const int64_t n = wd.numel[k];
    PerturbTarget t;
    t.tensor = put(wd.dt, wd.w[k].data(), n, dev);
    t.stream = wd.stream[k];
    if (!wd.mask[k].empty()) t.mask = put(ZEROTH_U8, wd.mask[k].data(), (n + 7) / 8, dev);
    m.push_back(put(ZEROTH_F32, wd.m[k].data(), n, dev));
    v.push_back(put(ZEROTH_F32, wd.v[k].data(), n, dev));
    s.push_back(put(ZEROTH_F32, wd.scratch[k].data(), n, dev));
    p.push_back(put(ZEROTH_F32, wd.precond[k].data(), n, dev));
    h.push_back(put(ZEROTH_F32, wd.h[k].data(), n, dev));
    targets.push_back(t);
  }
  GradSource g;
  g.seed = c.seed;
  g.dist = c.dist;
  g.c = c.c;
  if (c.use_scratch) g.scratch = &s;
  switch (c.rule) {
    case Rule::Accumulate: accumulate_z(targets, m, c.seed, c.dist, c.beta, c.c); break;
    case Rule::Momentum: momentum_update(targets, m, g, c.beta, c.lr, c.decay); break;
    case Rule::Adam: {
      AdamParams a = c.adam;
      a.decay = c.decay;
      adam_update(targets, m, v, g, a);
      break;
    }
    case Rule::Sign: sign_update(targets, g, c.lr, c.decay); break;
    case Rule::Precond: preconditioned_update(targets, p, c.seed, c.dist, c.step, c.decay); break;
    case Rule::Hessian:
      for (size_t k = 0; k < targets.size(); ++k) targets[k].precond = p[k];
      hessian_diag_update(targets, h, c.seed, c.dist, c.hess);
      break;
    case Rule::HoldFloor: hold_floor(s, h); break;
  }
  for (size_t k = 0; k < wd.numel.size(); ++k) {
    get(targets[k].tensor, wd.w[k]);
    get(m[k], wd.m[k]);
    get(v[k], wd.v[k]);
    get(s[k], wd.scratch[k]);
    get(p[k], wd.precond[k]);
    get(h[k], wd.h[k]);
  }
}

template <typename T>
int64_t diff_count(const std::vector<T>& a, const std::vector<T>& b, size_t elem, int64_t* first) {
  const size_t n = a.size() * sizeof(T) / elem;
  int64_t bad = 0;
  *first = -1;
  for (size_t i = 0; i < n; ++i) {
    if (std::memcmp(reinterpret_cast<const uint8_t*>(a.data()) + i * elem,
                    reinterpret_cast<const uint8_t*>(b.data()) + i * elem, elem) != 0) {
      if (bad++ == 0) *first = static_cast<int64_t>(i);
    }
  }
  return bad;
}

// Bits of every output of two runs of the same call.
void expect_same_world(const World& got, const World& want, const std::string& what) {
  for (size_t k = 0; k < got.numel.size(); ++k) {
    const std::string tk = what + " target " + std::to_string(k);
    int64_t first = -1;
    int64_t bad = diff_count(got.w[k], want.w[k], esize(got.dt), &first);
    check(bad == 0, tk + " weights: " + std::to_string(bad) + " elements differ (first " + std::to_string(first) + ")");
    const std::pair<const char*, std::pair<const std::vector<float>*, const std::vector<float>*>> state[] = {
        {"m", {&got.m[k], &want.m[k]}},           {"v", {&got.v[k], &want.v[k]}},
        {"scratch", {&got.scratch[k], &want.scratch[k]}}, {"precond", {&got.precond[k], &want.precond[k]}},
        {"h", {&got.h[k], &want.h[k]}}};
    for (const auto& [name, pair] : state) {
      bad = diff_count(*pair.first, *pair.second, 4, &first);
      check(bad == 0, tk + " " + name + ": " + std::to_string(bad) + " elements differ (first " + std::to_string(first) + ")");
    }
  }
}

const char* dtype_label(zeroth_dtype dt) { return dt == ZEROTH_F32 ? "f32" : dt == ZEROTH_F16 ? "f16" : "bf16"; }

// Every (rule, option) combination the checks sweep; `each(call, label)` runs one.
template <typename F>
void sweep(F&& each) {
  const Rule rules[] = {Rule::Accumulate, Rule::Momentum, Rule::Adam, Rule::Sign, Rule::Precond, Rule::Hessian, Rule::HoldFloor};
  for (Rule rule : rules) {
    for (int dist = 0; dist < 2; ++dist) {
      if (rule == Rule::Hessian && dist == 1) continue;  // the Hessian estimate needs normal z
      for (int variant = 0; variant < 3; ++variant) {
        Call c;
        c.rule = rule;
        c.seed = 1234567ull + static_cast<uint64_t>(variant);
        c.dist = dist ? rng::Distribution::Rademacher : rng::Distribution::Normal;
        c.decay = variant == 1 ? 1e-3f : 0.0f;
        c.use_scratch = variant == 2 && (rule == Rule::Momentum || rule == Rule::Adam || rule == Rule::Sign);
        c.adam.t = variant == 0 ? 1 : 7;
        c.adam.lr = 1e-3f;
        c.hess.coeff = variant == 2 ? 3.0e38f : 0.75f;  // an overflowing coefficient: inf·0 keeps the old h
        c.hess.alpha = 0.25f;
        c.hess.h_min = 0.05f;
        c.hess.h_max = 8.0f;
        each(c, std::string(rule_name(rule)) + (dist ? " rademacher" : " normal") + " variant " + std::to_string(variant));
      }
    }
  }
}

const std::vector<int64_t> kSizes = {1, 7, 4099, 70001};

void host_checks() {
  // The CPU rules against the naive reference: bits.
  for (zeroth_dtype dt : {ZEROTH_F32, ZEROTH_F16, ZEROTH_BF16}) {
    for (bool masked : {false, true}) {
      sweep([&](const Call& c, const std::string& label) {
        World want = make_world(dt, kSizes, masked, 99);
        if (c.rule == Rule::HoldFloor) floorize(want);
        World got = want;
        reference(want, c);
        run_on(got, c, kCpu);
        expect_same_world(got, want, std::string("cpu ") + dtype_label(dt) + (masked ? " masked " : " ") + label);
      });
    }
  }
}

#ifdef ZEROTH_WITH_CUDA
void gpu_checks() {
  for (zeroth_dtype dt : {ZEROTH_F32, ZEROTH_F16, ZEROTH_BF16}) {
    for (bool masked : {false, true}) {
      sweep([&](const Call& c, const std::string& label) {
        World start = make_world(dt, kSizes, masked, 99);
        if (c.rule == Rule::HoldFloor) floorize(start);
        World cpu = start;
        World gpu = start;
        run_on(cpu, c, kCpu);
        run_on(gpu, c, kGpu);
        const std::string what = std::string("cuda vs cpu ") + dtype_label(dt) + (masked ? " masked " : " ") + label;
        expect_same_world(gpu, cpu, what);
        if (masked && c.rule != Rule::HoldFloor) {
          // Masked elements kept their bits (the CPU does too; this checks the mask was read).
          int64_t moved = 0;
          for (size_t k = 0; k < start.numel.size(); ++k)
            for (int64_t i = 0; i < start.numel[k]; ++i)
              if (!trains(start, k, i))
                moved += std::memcmp(gpu.w[k].data() + i * esize(dt), start.w[k].data() + i * esize(dt), esize(dt)) != 0 ||
                         gpu.m[k][static_cast<size_t>(i)] != start.m[k][static_cast<size_t>(i)] ||
                         gpu.h[k][static_cast<size_t>(i)] != start.h[k][static_cast<size_t>(i)];
          check(moved == 0, what + ": " + std::to_string(moved) + " masked elements changed");
        }
      });
    }
  }

  // Two queries accumulated into scratch, then Adam from it: the optimizer's n-SPSA path.
  for (zeroth_dtype dt : {ZEROTH_F32, ZEROTH_BF16}) {
    World cpu = make_world(dt, kSizes, true, 5);
    World gpu = cpu;
    for (World* wd : {&cpu, &gpu}) {
      const zeroth_device dev = wd == &cpu ? kCpu : kGpu;
      Call acc;
      acc.rule = Rule::Accumulate;
      acc.beta = 0.0f;
      acc.c = 0.5f;
      acc.seed = 11;
      run_on(*wd, acc, dev);
      acc.beta = 1.0f;
      acc.c = -0.25f;
      acc.seed = 12;
      run_on(*wd, acc, dev);
      wd->scratch = wd->m;  // the accumulated ĝ becomes Adam's scratch source
      Call adam;
      adam.rule = Rule::Adam;
      adam.use_scratch = true;
      adam.adam.t = 3;
      run_on(*wd, adam, dev);
    }
    expect_same_world(gpu, cpu, std::string("2-query accumulate + adam ") + dtype_label(dt));
  }

  // Devices must match; sizes are checked on the device path too.
  auto w_gpu = upload<float>(ZEROTH_F32, std::vector<float>(100, 1.0f));
  auto w_cpu = put(ZEROTH_F32, std::vector<float>(100, 1.0f).data(), 100, kCpu);
  auto b_gpu = upload<float>(ZEROTH_F32, std::vector<float>(100, 0.0f));
  auto b_cpu = put(ZEROTH_F32, std::vector<float>(100, 0.0f).data(), 100, kCpu);
  auto short_gpu = upload<float>(ZEROTH_F32, std::vector<float>(99, 0.0f));
  auto mask_cpu = put(ZEROTH_U8, std::vector<uint8_t>(13, 0xff).data(), 13, kCpu);
  GradSource g;
  g.c = 1.0f;
  expect_status(ZEROTH_E_DEVICE, [&] { momentum_update({{w_gpu, 1, nullptr}}, {b_cpu}, g, 0.9f, 1e-3f, 0.0f); },
                "a GPU target with a CPU momentum buffer");
  expect_status(ZEROTH_E_DEVICE, [&] { adam_update({{w_cpu, 1, nullptr}}, {b_gpu}, {b_gpu}, g, AdamParams{}); },
                "a CPU target with GPU Adam state");
  expect_status(ZEROTH_E_DEVICE, [&] { sign_update({{w_gpu, 1, mask_cpu}}, g, 1e-3f, 0.0f); }, "a GPU target with a CPU mask");
  expect_status(ZEROTH_E_DEVICE, [&] { hold_floor({w_gpu}, {b_cpu}); }, "hold_floor of a GPU tensor with a CPU floor");
  expect_status(ZEROTH_E_SHAPE, [&] { accumulate_z({{w_gpu, 1, nullptr}}, {short_gpu}, 1, rng::Distribution::Normal, 0.0f, 1.0f); },
                "a device buffer of the wrong size");
  expect_status(ZEROTH_E_INVALID_ARG, [&] {
    AdamParams bad;
    bad.t = 0;
    adam_update({{w_gpu, 1, nullptr}}, {b_gpu}, {b_gpu}, g, bad);
  }, "adam step 0 on the device");
}

void bench() {
  const int64_t n = int64_t{1} << 24;
  auto w = tensor_zeros(ZEROTH_F32, Shape{n}, kGpu);
  auto m = tensor_zeros(ZEROTH_F32, Shape{n}, kGpu);
  auto v = tensor_zeros(ZEROTH_F32, Shape{n}, kGpu);
  const std::vector<PerturbTarget> targets = {{w, 42, nullptr}};
  GradSource g;
  g.seed = 3;
  g.c = 0.1f;
  UpdateOptions sgd;
  sgd.step_scale = 1e-6f;
  const double t_sgd = seconds_of([&] { apply_update(targets, 3, rng::Distribution::Normal, sgd); }, 10);
  const double t_mom = seconds_of([&] { momentum_update(targets, {m}, g, 0.9f, 1e-6f, 0.0f); }, 10);
  const double t_adam = seconds_of([&] { adam_update(targets, {m}, {v}, g, AdamParams{}); }, 10);
  const double t_sign = seconds_of([&] { sign_update(targets, g, 1e-6f, 0.0f); }, 10);
  const double per = 1e9 / static_cast<double>(n);
  std::printf("{\"device\": \"%s\", \"weights\": %lld, \"ns_per_weight\": {\"zosgd_apply_update\": %.4f, \"momentum\": %.4f, "
              "\"adam\": %.4f, \"sign\": %.4f}, \"adam_over_zosgd\": %.3f}\n",
              device_info(kGpu).name.c_str(), static_cast<long long>(n), t_sgd * per, t_mom * per, t_adam * per, t_sign * per,
              t_adam / t_sgd);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  return cuda_test_main(
      "test_cuda_zo_update", argc, argv, host_checks,
      [] {
#ifdef ZEROTH_WITH_CUDA
        gpu_checks();
#endif
      },
      [] {
#ifdef ZEROTH_WITH_CUDA
        bench();
#endif
      });
}
