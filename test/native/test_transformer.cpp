// test_transformer.cpp — the C++ forward against the reference fixtures in ../shared/fixtures
// (logits within 1e-4 where the mask is 1, per-row losses within 1e-5), on every SIMD level
// this CPU runs; the perturbed forward against a forward on weights perturbed in place; greedy
// generation against argmax of full forwards; and config / input errors.
//
// Run: /tmp/build-<name>/Release/test_transformer [fixtures dir]
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <unordered_map>

#include "core/cpu_features.h"
#include "core/errors.h"
#include "cpu/perturb.h"
#include "model/safetensors.h"
#include "model/transformer.h"
#include "check.h"
#include "fixtures.h"

using namespace zeroth;
using namespace zeroth::model;
using namespace zeroth_test;

// Max |a - b| over positions where mask is 1, logits [B, T, V].
static double masked_max_diff(const Tensor& a, const Tensor& b, const Tensor& mask) {
  const int64_t B = a.shape[0], T = a.shape[1], V = a.shape[2];
  double worst = 0;
  for (int64_t i = 0; i < B * T; ++i) {
    if (!mask.as<int32_t>()[i]) continue;
    for (int64_t j = 0; j < V; ++j) {
      const double d = std::fabs(static_cast<double>(a.as<float>()[i * V + j]) - b.as<float>()[i * V + j]);
      if (!(d <= worst)) worst = d;  // NaN propagates as a failure
    }
  }
  return worst;
}

static void check_fixture(const std::string& dir, const std::string& name) {
  Fixture f = load_fixture(dir, name);
  Model model(f.config, f.weights);
  const SimdLevel levels[] = {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512};
  for (SimdLevel l : levels) {
    set_simd_level(l);
    if (simd_level() != l) continue;  // this CPU lacks it
    const std::string tag = name + " [" + simd_level_name(l) + "]";
    TensorPtr logits = model.forward(*f.ids, f.mask.get());
    const double diff = masked_max_diff(*logits, *f.logits, *f.mask);
    std::printf("%s: max |logits - reference| = %.3g\n", tag.c_str(), diff);
    check(diff <= 1e-4, tag + " logits within 1e-4");
    TensorPtr loss = model.loss(*f.ids, f.mask.get());
    for (int64_t b = 0; b < f.loss->numel; ++b) {
      const double d = std::fabs(loss->as<double>()[b] - f.loss->as<double>()[b]);
      check(d <= 1e-5, tag + " loss row " + std::to_string(b) + " within 1e-5 (diff " + std::to_string(d) + ")");
    }
    // The LM head in chunks of 5 rows (pairs span several chunks and rows) gives the same losses,
    // up to float rounding: a chunk of at most 4 rows takes the few-rows GEMV (cpu/gemv.h),
    // which sums in another order than the blocked GEMM.
    model.set_loss_chunk_rows(5);
    TensorPtr chunked = model.loss(*f.ids, f.mask.get());
    model.set_loss_chunk_rows(0);
    for (int64_t b = 0; b < f.loss->numel; ++b)
      check(std::fabs(chunked->as<double>()[b] - loss->as<double>()[b]) <= 1e-6, tag + " chunked loss row " + std::to_string(b));
    // The head read in vocabulary chunks (an online logsumexp across them; 64 and an uneven 100
    // of the 320 entries), alone and with row chunks, clean and perturbed (z of a head slice is
    // indexed from the whole tensor): the losses of one whole-vocabulary chunk, up to rounding.
    ForwardPerturbation pert;
    pert.seed = 77;
    pert.scale = 1e-2f;
    pert.dist = rng::Distribution::Normal;
    for (const auto& w : model.weights()) pert.streams[w.name] = rng::stream_id(w.name.data(), w.name.size());
    TensorPtr perturbed = model.loss(*f.ids, f.mask.get(), &pert);
    for (int64_t vc : {64, 100}) {
      for (int64_t rows : {0, 5}) {
        model.set_loss_vocab_chunk(vc);
        model.set_loss_chunk_rows(rows);
        TensorPtr v = model.loss(*f.ids, f.mask.get());
        TensorPtr vp = model.loss(*f.ids, f.mask.get(), &pert);
        model.set_loss_vocab_chunk(0);
        model.set_loss_chunk_rows(0);
        const std::string what = tag + " vocab chunk " + std::to_string(vc) + ", row chunk " + std::to_string(rows);
        for (int64_t b = 0; b < f.loss->numel; ++b) {
          check(std::fabs(v->as<double>()[b] - loss->as<double>()[b]) <= 1e-6, what + " loss row " + std::to_string(b));
          check(std::fabs(vp->as<double>()[b] - perturbed->as<double>()[b]) <= 1e-6,
                what + " perturbed loss row " + std::to_string(b));
        }
      }
    }
  }
  set_simd_level(SimdLevel::Avx512);  // back to the best this CPU has
}

// Perturbing on the fly must read exactly what perturbing in place writes.
static void check_perturbation(const std::string& dir, const std::string& name, rng::Distribution dist) {
  Fixture f = load_fixture(dir, name);
  Model clean(f.config, f.weights);
  ForwardPerturbation p;
  p.seed = 1234;
  p.scale = 1e-2f;
  p.dist = dist;
  std::unordered_map<std::string, TensorPtr> moved;
  std::vector<PerturbTarget> targets;
  for (const auto& kv : f.weights) {
    TensorPtr copy = tensor_copy(*kv.second, ZEROTH_F32, kv.second->device());
    moved[kv.first] = copy;
    // Every other weight trains: frozen ones must stay unperturbed on both sides.
    if (std::hash<std::string>{}(kv.first) % 2 == 0 || kv.first.find("embed") != std::string::npos ||
        kv.first.find("wte") != std::string::npos) {
      const uint64_t stream = rng::stream_id(kv.first.data(), kv.first.size());
      p.streams[kv.first] = stream;
      targets.push_back(PerturbTarget{copy, stream, nullptr});
    }
  }
  perturb(targets, p.seed, p.scale, dist);
  Model moved_model(f.config, moved);
  TensorPtr a = clean.forward(*f.ids, f.mask.get(), &p);
  TensorPtr b = moved_model.forward(*f.ids, f.mask.get());
  TensorPtr base = clean.forward(*f.ids, f.mask.get());
  const double diff = masked_max_diff(*a, *b, *f.mask);
  const double moved_by = masked_max_diff(*a, *base, *f.mask);
  std::printf("%s perturbed (%s): on-the-fly vs in-place max diff %.3g (perturbation moved logits by %.3g)\n",
              name.c_str(), dist == rng::Distribution::Normal ? "normal" : "rademacher", diff, moved_by);
  check(diff <= 1e-6, name + " perturbed forward equals the forward on weights perturbed in place");
  check(moved_by > 1e-3, name + " the perturbation changes the logits");
  TensorPtr la = clean.loss(*f.ids, f.mask.get(), &p);
  TensorPtr lb = moved_model.loss(*f.ids, f.mask.get());
  for (int64_t i = 0; i < la->numel; ++i)
    check(std::fabs(la->as<double>()[i] - lb->as<double>()[i]) <= 1e-9, name + " perturbed loss equals in-place loss");
}

// Greedy generation with the KV cache equals argmax of a full forward per step.
static void check_generation(const std::string& dir, const std::string& name) {
  Fixture f = load_fixture(dir, name);
  Model model(f.config, f.weights);
  SamplingOptions o;
  o.max_new_tokens = 6;
  TensorPtr gen = model.generate(*f.ids, f.mask.get(), o);
  const int64_t B = f.ids->shape[0], T = f.ids->shape[1], V = f.config.vocab_size;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> seq;
    for (int64_t t = 0; t < T; ++t)
      if (f.mask->as<int32_t>()[b * T + t]) seq.push_back(f.ids->as<int32_t>()[b * T + t]);
    bool same = true;
    for (int64_t s = 0; s < o.max_new_tokens; ++s) {
      const int64_t L = static_cast<int64_t>(seq.size());
      TensorPtr ids = tensor_from_host(ZEROTH_I32, {1, L}, {ZEROTH_DEVICE_CPU, 0}, seq.data(), seq.size() * 4);
      TensorPtr logits = model.forward(*ids, nullptr);
      const float* z = logits->as<float>() + (L - 1) * V;
      int32_t best = 0;
      for (int64_t j = 1; j < V; ++j)
        if (z[j] > z[best]) best = static_cast<int32_t>(j);
      same = same && best == gen->as<int32_t>()[b * o.max_new_tokens + s];
      seq.push_back(best);
    }
    check(same, name + " row " + std::to_string(b) + ": greedy with KV cache equals full-forward argmax");
  }
  // top_k = 1 sampling at any temperature is greedy.
  o.temperature = 0.7f;
  o.top_k = 1;
  TensorPtr topk1 = model.generate(*f.ids, f.mask.get(), o);
  bool same = true;
  for (int64_t i = 0; i < gen->numel; ++i) same = same && gen->as<int32_t>()[i] == topk1->as<int32_t>()[i];
  check(same, name + " top-k 1 sampling equals greedy");
}

static void check_errors(const std::string& dir) {
  Fixture f = load_fixture(dir, "llama-tiny");
  TransformerConfig bad = f.config;
  bad.n_kv_head = 3;
  expect_error(ZEROTH_E_INVALID_ARG, "heads not a multiple of kv heads", [&] { Model m(bad, f.weights); });
  auto missing = f.weights;
  missing.erase("model.norm.weight");
  expect_error(ZEROTH_E_FORMAT, "missing weight", [&] { Model m(f.config, missing); });
  auto extra = f.weights;
  extra["model.layers.9.foo"] = f.weights["model.norm.weight"];
  expect_error(ZEROTH_E_FORMAT, "unexpected weight", [&] { Model m(f.config, extra); });
  auto misshaped = f.weights;
  misshaped["model.norm.weight"] = tensor_zeros(ZEROTH_F32, {63}, {ZEROTH_DEVICE_CPU, 0});
  expect_error(ZEROTH_E_FORMAT, "misshaped weight", [&] { Model m(f.config, misshaped); });
  Model m(f.config, f.weights);
  TensorPtr oov = tensor_copy(*f.ids, ZEROTH_I32, {ZEROTH_DEVICE_CPU, 0});
  oov->as<int32_t>()[3] = 320;
  expect_error(ZEROTH_E_INVALID_ARG, "token outside the vocabulary", [&] { m.forward(*oov, nullptr); });
  TensorPtr short_mask = tensor_zeros(ZEROTH_I32, {3, 11}, {ZEROTH_DEVICE_CPU, 0});
  expect_error(ZEROTH_E_SHAPE, "mask shape", [&] { m.forward(*f.ids, short_mask.get()); });
  // A row with no real token: loss NaN, logits finite.
  TensorPtr empty_row = tensor_copy(*f.mask, ZEROTH_I32, {ZEROTH_DEVICE_CPU, 0});
  for (int64_t t = 0; t < 12; ++t) empty_row->as<int32_t>()[2 * 12 + t] = 0;
  TensorPtr l = m.loss(*f.ids, empty_row.get());
  check(std::isnan(l->as<double>()[2]) && std::isfinite(l->as<double>()[0]), "row with no pair has NaN loss");
  Fixture g = load_fixture(dir, "gpt2-tiny");
  Model gm(g.config, g.weights);
  TensorPtr long_ids = tensor_zeros(ZEROTH_I32, {1, 65}, {ZEROTH_DEVICE_CPU, 0});
  expect_error(ZEROTH_E_INVALID_ARG, "longer than n_positions", [&] { gm.forward(*long_ids, nullptr); });
}

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "";
  if (dir.empty()) {
    const std::string here = __FILE__;  // <repo>/test/native/test_transformer.cpp
    dir = here.substr(0, here.rfind("/test/native/")) + "/../shared/fixtures";
  }
  if (!std::ifstream(dir + "/gpt2-tiny/config.json")) {
    std::printf("SKIP: reference fixtures not found at %s (pass their folder as the first argument)\n", dir.c_str());
    std::printf("0 passed, 0 failed\n");
    return 0;
  }
  try {
    for (const char* name : {"gpt2-tiny", "opt-tiny", "llama-tiny"}) {
      check_fixture(dir, name);
      check_perturbation(dir, name, rng::Distribution::Normal);
      check_generation(dir, name);
    }
    check_perturbation(dir, "llama-tiny", rng::Distribution::Rademacher);
    check_errors(dir);
  } catch (const Error& e) {
    std::printf("FAIL: unexpected error %s: %s\n", status_name(e.code()), e.what());
    ++g_failed;
  }
  return report();
}
