// test_gemm.cpp — gemm_f32 against a float64 reference written here, on every SIMD path.
//
// Tolerance: the packed kernel sums K products in f32 (fused or not), then applies alpha and beta,
// so |C - C_exact| <= (K + 3)·eps·(|alpha|·Σ_k |a_ik||b_kj| + |beta|·|c_ij|) with eps = 2^-23
// (twice the textbook bound γ_{K+3} with unit roundoff 2^-24). A wrong index, a missed edge, a
// skipped depth chunk or a stale beta gives errors of order |a||b|, far above it.
//
// Padding of A and B (lda > K etc.) is filled with NaN, so reading outside the matrices poisons C;
// the padding of C holds a sentinel that must survive, so writing outside it is caught too.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/errors.h"
#include "core/parallel.h"
#include "core/philox.h"
#include "cpu/gemm.h"
#include "check.h"

using namespace zeroth;

using namespace zeroth_test;

namespace {

constexpr float kSentinel = 12345.0f;

// A row-major rows × cols matrix stored with leading dimension ld; padding is NaN.
struct Mat {
  int64_t rows = 0, cols = 0, ld = 1;
  std::vector<float> v;
  Mat() = default;
  Mat(int64_t r, int64_t c, int64_t pad, Rng& rng, float fill_pad = NAN) : rows(r), cols(c), ld(c + pad) {
    if (ld < 1) ld = 1;
    v.assign(static_cast<size_t>(std::max<int64_t>(r * ld, 1)), fill_pad);
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) v[i * ld + j] = rng.uniform();
  }
  float& at(int64_t i, int64_t j) { return v[i * ld + j]; }
  float at(int64_t i, int64_t j) const { return v[i * ld + j]; }
};

struct Case {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  bool c_nan;  // C starts as NaN (only with beta == 0)
};

std::string describe(const Case& c, const char* extra = "") {
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s M=%lld N=%lld K=%lld ta=%d tb=%d alpha=%g beta=%g %s", simd_level_name(simd_level()),
                (long long)c.M, (long long)c.N, (long long)c.K, c.ta, c.tb, c.alpha, c.beta, extra);
  return buf;
}

// Runs one case through gemm_f32 (or the naive loop) and checks it against the float64 reference.
void run_case(const Case& cs, Rng& rng, bool naive = false, const char* extra = "") {
  const int64_t pad_a = rng.below(4), pad_b = rng.below(4), pad_c = rng.below(4);
  Mat A(cs.ta ? cs.K : cs.M, cs.ta ? cs.M : cs.K, pad_a, rng);
  Mat B(cs.tb ? cs.N : cs.K, cs.tb ? cs.K : cs.N, pad_b, rng);
  Mat C(cs.M, cs.N, pad_c, rng, kSentinel);
  if (cs.c_nan)
    for (int64_t i = 0; i < cs.M; ++i)
      for (int64_t j = 0; j < cs.N; ++j) C.at(i, j) = NAN;
  const Mat C0 = C;
  if (naive)
    gemm_f32_naive(cs.ta, cs.tb, cs.M, cs.N, cs.K, cs.alpha, A.v.data(), A.ld, B.v.data(), B.ld, cs.beta, C.v.data(),
                   C.ld);
  else
    gemm_f32(cs.ta, cs.tb, cs.M, cs.N, cs.K, cs.alpha, A.v.data(), A.ld, B.v.data(), B.ld, cs.beta, C.v.data(), C.ld);

  const double eps = std::ldexp(1.0, -23);
  double worst = 0.0;  // error / tolerance
  bool pad_ok = true;
  for (int64_t i = 0; i < cs.M; ++i) {
    for (int64_t j = 0; j < cs.N; ++j) {
      double sum = 0.0, mag = 0.0;
      for (int64_t k = 0; k < cs.K; ++k) {
        const double a = cs.ta ? A.at(k, i) : A.at(i, k);
        const double b = cs.tb ? B.at(j, k) : B.at(k, j);
        sum += a * b;
        mag += std::fabs(a * b);
      }
      const double c0 = cs.beta == 0.0f ? 0.0 : C0.at(i, j);
      const double ref = cs.alpha * sum + cs.beta * c0;
      const double tol = (cs.K + 3) * eps * (std::fabs(cs.alpha) * mag + std::fabs(cs.beta * c0)) + 1e-30;
      const double err = std::fabs(C.at(i, j) - ref);
      const double ratio = std::isfinite(C.at(i, j)) ? err / tol : INFINITY;
      if (!(ratio <= worst)) worst = ratio;
    }
    for (int64_t j = cs.N; j < C.ld; ++j) pad_ok &= C.at(i, j) == kSentinel;
  }
  char msg[64];
  std::snprintf(msg, sizeof msg, " (worst err/tol %.3g)", worst);
  check(worst <= 1.0, describe(cs, extra) + msg);
  check(pad_ok, describe(cs, extra) + " wrote into C's padding");
}

std::vector<SimdLevel> levels() { return {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512}; }

void test_shapes(Rng& rng) {
  // Sizes around every tile edge: 4/8 (scalar), 6/16 (avx2), 14/32 (avx512), and 1..130.
  const int64_t sizes[] = {1, 2, 3, 5, 6, 7, 8, 13, 14, 15, 16, 17, 29, 31, 32, 33, 47, 63, 64, 65, 97, 127, 128, 130};
  const int64_t n_sizes = sizeof sizes / sizeof sizes[0];
  const float alphas[] = {1.0f, 0.5f, -1.5f, 2.0f};
  const float betas[] = {0.0f, 1.0f, 0.25f, -2.0f};
  for (SimdLevel level : levels()) {
    set_simd_level(level);
    for (int rep = 0; rep < 40; ++rep) {
      Case cs{};
      cs.ta = rep & 1;
      cs.tb = (rep >> 1) & 1;
      cs.M = sizes[rng.below(n_sizes)];
      cs.N = sizes[rng.below(n_sizes)];
      cs.K = sizes[rng.below(n_sizes)];
      cs.alpha = alphas[rng.below(4)];
      cs.beta = betas[rng.below(4)];
      cs.c_nan = cs.beta == 0.0f && rng.below(2);
      run_case(cs, rng);
    }
    // Deep enough for several kc chunks with the default blocking, and big enough to go parallel.
    for (int t = 0; t < 4; ++t) run_case(Case{bool(t & 1), bool(t & 2), 130, 129, 600, 1.0f, 0.5f, false}, rng);
    run_case(Case{false, true, 200, 300, 70, 1.0f, 0.0f, true}, rng);
  }
  set_simd_level(SimdLevel::Avx512);
}

// Tiny blocks: many jc / pc / ic iterations and partial blocks on small matrices.
void test_small_blocking(Rng& rng) {
  for (SimdLevel level : levels()) {
    set_simd_level(level);
    const int64_t blockings[][3] = {{1, 1, 1}, {7, 20, 40}, {16, 30, 33}, {33, 64, 96}};
    for (const auto& bl : blockings) {
      gemm_f32_set_blocking(bl[0], bl[1], bl[2]);
      for (int t = 0; t < 4; ++t) {
        Case cs{bool(t & 1), bool(t & 2), 1 + rng.below(100), 1 + rng.below(100), 1 + rng.below(100), 1.0f, 0.0f,
                true};
        if (t == 3) cs.beta = 0.5f, cs.c_nan = false;
        char extra[64];
        std::snprintf(extra, sizeof extra, "blocking kc=%lld mc=%lld nc=%lld", (long long)bl[0], (long long)bl[1],
                      (long long)bl[2]);
        run_case(cs, rng, false, extra);
      }
    }
    gemm_f32_set_blocking(0, 0, 0);
  }
  set_simd_level(SimdLevel::Avx512);
}

void test_degenerate(Rng& rng) {
  for (SimdLevel level : levels()) {
    set_simd_level(level);
    run_case(Case{false, false, 5, 7, 0, 1.0f, 0.5f, false}, rng, false, "K=0");
    run_case(Case{false, false, 5, 7, 0, 1.0f, 0.0f, true}, rng, false, "K=0 beta=0");
    run_case(Case{true, true, 9, 3, 4, 0.0f, 2.0f, false}, rng, false, "alpha=0");
    run_case(Case{false, true, 0, 7, 4, 1.0f, 0.0f, false}, rng, false, "M=0");
    run_case(Case{false, true, 3, 0, 4, 1.0f, 0.0f, false}, rng, false, "N=0");
    run_case(Case{false, false, 1, 1, 1, 1.0f, 0.0f, false}, rng, false, "1x1x1");
    run_case(Case{false, true, 1, 300, 257, 1.0f, 1.0f, false}, rng, false, "row vector");
    run_case(Case{true, false, 300, 1, 257, 1.0f, 1.0f, false}, rng, false, "column vector");
  }
  set_simd_level(SimdLevel::Avx512);
}

void test_naive(Rng& rng) {
  for (int t = 0; t < 4; ++t) run_case(Case{bool(t & 1), bool(t & 2), 17, 33, 65, -1.5f, 0.25f, false}, rng, true, "naive");
  run_case(Case{false, false, 9, 10, 11, 1.0f, 0.0f, true}, rng, true, "naive");
}

// The result does not depend on the thread count (the task split never moves a kc boundary).
void test_thread_independence(Rng& rng) {
  const int64_t M = 157, N = 301, K = 290;
  for (SimdLevel level : levels()) {
    set_simd_level(level);
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      Mat A(ta ? K : M, ta ? M : K, 1, rng), B(tb ? N : K, tb ? K : N, 2, rng);
      std::vector<float> c1(M * N), c2(M * N);
      set_num_threads(1);
      gemm_f32(ta, tb, M, N, K, 1.0f, A.v.data(), A.ld, B.v.data(), B.ld, 0.0f, c1.data(), N);
      set_num_threads(2);
      gemm_f32(ta, tb, M, N, K, 1.0f, A.v.data(), A.ld, B.v.data(), B.ld, 0.0f, c2.data(), N);
      check(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0,
            std::string(simd_level_name(level)) + " 1 vs 2 threads differ");
    }
  }
  set_num_threads(2);
  set_simd_level(SimdLevel::Avx512);
}

// GEMM with a perturbation descriptor == GEMM on B perturbed in place with fl(b + fl(scale·z)),
// z indexed by the element's offset in B's storage (ld included). Bitwise, on every path.
void test_perturbation(Rng& rng) {
  struct P {
    bool ta, tb;
    int64_t M, N, K;
    float scale;
    rng::Distribution dist;
    int64_t kc, mc, nc;
  };
  const P cases[] = {
      {false, true, 37, 45, 53, 1e-3f, rng::Distribution::Normal, 0, 0, 0},
      {false, false, 37, 45, 53, 0.5f, rng::Distribution::Normal, 0, 0, 0},
      {true, true, 64, 100, 300, -0.25f, rng::Distribution::Rademacher, 0, 0, 0},
      {true, false, 29, 71, 300, 1e-2f, rng::Distribution::Rademacher, 0, 0, 0},
      {false, true, 60, 90, 70, 0.75f, rng::Distribution::Normal, 9, 20, 33},
      {false, false, 60, 90, 70, 0.75f, rng::Distribution::Normal, 9, 20, 33},
      {false, true, 150, 520, 300, 1e-3f, rng::Distribution::Normal, 0, 0, 0},  // parallel
      {false, false, 150, 520, 300, 1e-3f, rng::Distribution::Rademacher, 0, 0, 0},
  };
  for (SimdLevel level : levels()) {
    set_simd_level(level);
    for (const P& pc : cases) {
      gemm_f32_set_blocking(pc.kc, pc.mc, pc.nc);
      Mat A(pc.ta ? pc.K : pc.M, pc.ta ? pc.M : pc.K, 1, rng);
      Mat B(pc.tb ? pc.N : pc.K, pc.tb ? pc.K : pc.N, 3, rng);
      PerturbDesc d;
      d.active = true;
      d.seed = rng.next();
      d.stream = rng.next();
      d.scale = pc.scale;
      d.dist = pc.dist;
      Mat Bp = B;
      for (int64_t r = 0; r < B.rows; ++r)
        for (int64_t c = 0; c < B.cols; ++c) {
          const uint64_t off = static_cast<uint64_t>(r * B.ld + c);
          const float z = d.dist == rng::Distribution::Normal ? rng::normal_at(d.seed, d.stream, off)
                                                              : rng::rademacher_at(d.seed, d.stream, off);
          const float dz = d.scale * z;
          Bp.at(r, c) = B.at(r, c) + dz;
        }
      std::vector<float> c_desc(pc.M * pc.N), c_inplace(pc.M * pc.N), c_clean(pc.M * pc.N);
      gemm_f32(pc.ta, pc.tb, pc.M, pc.N, pc.K, 1.0f, A.v.data(), A.ld, B.v.data(), B.ld, 0.0f, c_desc.data(), pc.N, d);
      gemm_f32(pc.ta, pc.tb, pc.M, pc.N, pc.K, 1.0f, A.v.data(), A.ld, Bp.v.data(), Bp.ld, 0.0f, c_inplace.data(),
               pc.N);
      gemm_f32(pc.ta, pc.tb, pc.M, pc.N, pc.K, 1.0f, A.v.data(), A.ld, B.v.data(), B.ld, 0.0f, c_clean.data(), pc.N);
      char what[160];
      std::snprintf(what, sizeof what, "%s perturbed M=%lld N=%lld K=%lld ta=%d tb=%d scale=%g", simd_level_name(level),
                    (long long)pc.M, (long long)pc.N, (long long)pc.K, pc.ta, pc.tb, pc.scale);
      check(std::memcmp(c_desc.data(), c_inplace.data(), c_desc.size() * sizeof(float)) == 0,
            std::string(what) + ": descriptor and in-place results differ");
      check(std::memcmp(c_desc.data(), c_clean.data(), c_desc.size() * sizeof(float)) != 0,
            std::string(what) + ": the perturbation changed nothing");
    }
    gemm_f32_set_blocking(0, 0, 0);
  }
  set_simd_level(SimdLevel::Avx512);
}

// A slice of a perturbed tensor, read with PerturbDesc::base = the slice's first index, draws the
// same z as the whole tensor: a GEMM over columns [c0, c1) of op(B) equals those columns of the
// full perturbed GEMM, bit for bit, for both storage layouts (the LM head read a vocabulary
// chunk at a time).
void test_perturbed_slice(Rng& rng) {
  const int64_t M = 23, N = 150, K = 70, c0 = 37, c1 = 121;
  for (bool tb : {false, true}) {
    Mat A(M, K, 0, rng);
    Mat B(tb ? N : K, tb ? K : N, 0, rng);
    PerturbDesc d;
    d.active = true;
    d.seed = rng.next();
    d.stream = rng.next();
    d.scale = 0.1f;
    std::vector<float> full(M * N), part(M * (c1 - c0));
    gemm_f32(false, tb, M, N, K, 1.0f, A.v.data(), A.ld, B.v.data(), B.ld, 0.0f, full.data(), N, d);
    PerturbDesc s = d;
    s.base = static_cast<uint64_t>(tb ? c0 * B.ld : c0);
    const float* slice = tb ? B.v.data() + c0 * B.ld : B.v.data() + c0;
    gemm_f32(false, tb, M, c1 - c0, K, 1.0f, A.v.data(), A.ld, slice, B.ld, 0.0f, part.data(), c1 - c0, s);
    bool same = true;
    for (int64_t i = 0; i < M; ++i)
      same = same && std::memcmp(part.data() + i * (c1 - c0), full.data() + i * N + c0, (c1 - c0) * sizeof(float)) == 0;
    check(same, std::string("a perturbed slice with base reads the whole tensor's z, tb=") + (tb ? "1" : "0"));
  }
}

void test_errors() {
  std::vector<float> a(64, 1.0f), b(64, 1.0f), c(64, 0.0f);
  expect_error(ZEROTH_E_SHAPE, "negative M",
               [&] { gemm_f32(false, false, -1, 2, 2, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2); });
  expect_error(ZEROTH_E_SHAPE, "lda < K",
               [&] { gemm_f32(false, false, 2, 2, 3, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2); });
  expect_error(ZEROTH_E_SHAPE, "ldb < K with trans_b",
               [&] { gemm_f32(false, true, 2, 2, 3, 1.0f, a.data(), 3, b.data(), 2, 0.0f, c.data(), 2); });
  expect_error(ZEROTH_E_SHAPE, "ldc < N",
               [&] { gemm_f32(false, false, 2, 4, 2, 1.0f, a.data(), 2, b.data(), 4, 0.0f, c.data(), 3); });
  expect_error(ZEROTH_E_SHAPE, "offset overflow", [&] {
    gemm_f32(false, false, 3, 2, 2, 1.0f, a.data(), INT64_MAX / 2 + 1, b.data(), 2, 0.0f, c.data(), 2);
  });
  expect_error(ZEROTH_E_INVALID_ARG, "null A",
               [&] { gemm_f32(false, false, 2, 2, 2, 1.0f, nullptr, 2, b.data(), 2, 0.0f, c.data(), 2); });
  PerturbDesc bad;
  bad.active = true;
  bad.dist = static_cast<rng::Distribution>(7);
  expect_error(ZEROTH_E_INVALID_ARG, "unknown distribution",
               [&] { gemm_f32(false, false, 2, 2, 2, 1.0f, a.data(), 2, b.data(), 2, 0.0f, c.data(), 2, bad); });
}

}  // namespace

int main() {
  Rng rng{20240611};
  set_num_threads(2);
  try {
    test_shapes(rng);
    test_small_blocking(rng);
    test_degenerate(rng);
    test_naive(rng);
    test_thread_independence(rng);
    test_perturbation(rng);
    test_perturbed_slice(rng);
    test_errors();
  } catch (const std::exception& e) {
    std::printf("FAIL: unexpected exception: %s\n", e.what());
    ++g_failed;
  }
  std::printf("test_gemm: kernel %s\n", gemm_f32_kernel_name());
  return report();
}
