// test_cuda_gemm.cpp — the CUDA GEMMs (cuda/gemm.cu) and forward kernels (cuda/ops.cu) against
// their CPU references and float64 references written here, without Node.
//
// Everywhere (no GPU needed): the host-side plan of the GEMMs (cuda/gemm_plan.h): argument
// checks and their statuses, the tile grid, the vector-load decision.
// On a GPU (prints "SKIP ..." for this part when the build or the machine has none):
//  - gemm_f32, every transpose, alpha/beta (beta = 0 over NaN), padded and misaligned leading
//    dimensions, shapes on and off the 128 × 128 × 8 tile: within the K-aware bound
//    |C - C_exact| <= 2·(K + 3)·2^-24·(|alpha|·Σ|a||b| + |beta·c|) of a float64 reference, and of
//    the CPU's gemm_f32 (twice that); A/B padding holds NaN (reading it poisons C), C's padding a
//    sentinel that must survive;
//  - the perturbed GEMM (normal and Rademacher, both layouts of B, aligned and ldb % 4 != 0) has
//    the same BITS as the plain GEMM on a copy of B perturbed in place by the CPU kernel
//    (zeroth::perturb), for f32 and for bf16 (perturbed in f32, rounded to nearest even);
//  - gemm_bf16 / gemm_f16 within (K + 3)·2^-22·Σ|a||b| of a float64 reference on the same 16-bit
//    inputs (products of 16-bit values are exact in f32; the bound allows the tensor cores'
//    accumulation order and rounding);
//  - layer_norm / rms_norm (perturbed weight and bias) against the CPU row kernels within
//    4·2^-24 relative (row statistics in double both sides, summed in another order);
//    gelu_tanh / gelu_erf / swiglu against the scalar CPU references within 2 ulp; rope within
//    2^-22·(|a| + |b|); embedding (perturbed, plain and accumulated) bit for bit; attention
//    (causal, padding, GQA, cached prefix) within 1e-5·max|V| of a float64 softmax reference;
//    cross entropy per row within 1e-6·max(1, |nll|) of float64 and its mean within 1e-6
//    relative of ops::cross_entropy.
//
// `test_cuda_gemm --bench` prints one JSON object instead (bench/cuda.mjs runs it): GEMM TFLOP/s
// on LLM shapes (f32 SIMT plain and perturbed, bf16 tensor cores) and the perturbation kernels'
// bytes/s next to a device-to-device copy of the same tensor, or {"skipped": ...} without a GPU.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "../../cuda/gemm_plan.h"
#include "check.h"
#include "cuda_test.h"
#include "core/backend.h"
#include "core/cpu_features.h"
#include "core/errors.h"
#include "core/half.h"
#include "core/philox.h"
#include "core/tensor.h"
#include "cpu/gemm.h"
#include "cpu/ops.h"
#include "cpu/perturb.h"
#include "model/transformer_internal.h"

#ifdef ZEROTH_WITH_CUDA
#include "../../cuda/gemm_cuda.h"
#include "../../cuda/ops_cuda.h"
#include "../../cuda/perturb_cuda.h"
#endif

using namespace zeroth;

using zeroth_test::check;
using zeroth_test::download;
using zeroth_test::expect_status;
using zeroth_test::kGpu;
using zeroth_test::perturb_desc;
using zeroth_test::seconds_of;
using zeroth_test::upload;

namespace {

// ---- host plan (runs everywhere) ----------------------------------------------------------

void test_plan() {
  using namespace cuda::gemm_plan;
  float dummy[16] = {};  // only its address is used
  // Valid problems pass.
  check_problem(false, false, 3, 4, 5, dummy, 5, dummy, 4, dummy, 4);
  check_problem(true, true, 3, 4, 5, dummy, 3, dummy, 5, dummy, 4);
  check_problem(false, false, 0, 0, 0, nullptr, 1, nullptr, 1, nullptr, 1);
  check(true, "valid gemm problems pass the plan's checks");
  expect_status(ZEROTH_E_SHAPE, [&] { check_problem(false, false, -1, 4, 5, dummy, 5, dummy, 4, dummy, 4); },
                "negative M");
  expect_status(ZEROTH_E_SHAPE, [&] { check_problem(false, false, 3, 4, 5, dummy, 4, dummy, 4, dummy, 4); },
                "lda < K");
  expect_status(ZEROTH_E_SHAPE, [&] { check_problem(false, true, 3, 4, 5, dummy, 5, dummy, 4, dummy, 4); },
                "ldb < K with trans_b");
  expect_status(ZEROTH_E_SHAPE, [&] { check_problem(true, false, 3, 4, 5, dummy, 2, dummy, 4, dummy, 4); },
                "lda < M with trans_a");
  expect_status(ZEROTH_E_INVALID_ARG, [&] { check_problem(false, false, 3, 4, 5, nullptr, 5, dummy, 4, dummy, 4); },
                "null A");
  expect_status(ZEROTH_E_SHAPE,
                [&] {
                  check_problem(false, false, int64_t{1} << 40, 4, 5, dummy, int64_t{1} << 40, dummy, 4, dummy, 4);
                },
                "offset overflow");
  const Grid g = tile_grid(129, 257, 128, 128);
  check(g.x == 3 && g.y == 2, "tile grid of 129 x 257 is 3 x 2");
  const Grid g1 = tile_grid(1, 1, 128, 128);
  check(g1.x == 1 && g1.y == 1, "tile grid of 1 x 1");
  expect_status(ZEROTH_E_SHAPE, [] { tile_grid(int64_t{65536} * 128, 4, 128, 128); }, "too many tile rows");
  alignas(16) float buf[8];
  check(quads_aligned(buf, 8, 4), "aligned f32 quads");
  check(!quads_aligned(buf + 1, 8, 4), "misaligned f32 pointer");
  check(!quads_aligned(buf, 6, 4), "ld % 4 != 0");
  check(quads_aligned(reinterpret_cast<uint16_t*>(buf) + 4, 12, 2), "aligned 16-bit quads");
  check(!quads_aligned(reinterpret_cast<uint16_t*>(buf) + 2, 12, 2), "misaligned 16-bit pointer");
}

#ifdef ZEROTH_WITH_CUDA

const zeroth_device kCpu{ZEROTH_DEVICE_CPU, 0};
constexpr double kU = 5.9604644775390625e-8;  // 2^-24
const float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Rng : zeroth_test::Rng {  // check.h's generator, uniform in [-1, 1)
  float f() { return uniform(); }
};

// A rows × cols matrix stored with leading dimension ld (padding NaN) plus `shift` leading
// elements (to misalign the data pointer); returns the storage, the matrix starts at `shift`.
std::vector<float> matrix(Rng& r, int64_t rows, int64_t cols, int64_t ld, int64_t shift) {
  std::vector<float> m(static_cast<size_t>(shift + std::max<int64_t>(rows * ld, 1)), kNaN);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) m[static_cast<size_t>(shift + i * ld + j)] = r.f();
  return m;
}

struct GemmCase {
  bool ta, tb;
  int64_t M, N, K, pad, shift;
  float alpha, beta;
};

// C_exact in double and the bound's scale |alpha|·Σ|a||b| + |beta·c| per element.
void reference(const GemmCase& c, const float* A, int64_t lda, const float* B, int64_t ldb, const float* C0,
               int64_t ldc, std::vector<double>& ref, std::vector<double>& mag) {
  ref.assign(static_cast<size_t>(c.M * c.N), 0.0);
  mag.assign(ref.size(), 0.0);
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      double s = 0, a_s = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double a = c.ta ? A[k * lda + i] : A[i * lda + k];
        const double b = c.tb ? B[j * ldb + k] : B[k * ldb + j];
        s += a * b;
        a_s += std::fabs(a * b);
      }
      const double prior = c.beta == 0.0f ? 0.0 : static_cast<double>(c.beta) * C0[i * ldc + j];
      ref[static_cast<size_t>(i * c.N + j)] = c.alpha * s + prior;
      mag[static_cast<size_t>(i * c.N + j)] = std::fabs(c.alpha) * a_s + std::fabs(prior);
    }
}

std::string name_of(const GemmCase& c) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "ta=%d tb=%d M=%lld N=%lld K=%lld pad=%lld shift=%lld alpha=%g beta=%g", c.ta, c.tb,
                static_cast<long long>(c.M), static_cast<long long>(c.N), static_cast<long long>(c.K),
                static_cast<long long>(c.pad), static_cast<long long>(c.shift), c.alpha, c.beta);
  return buf;
}

void test_gemm_f32() {
  std::vector<GemmCase> cases;
  const int64_t shapes[][3] = {{1, 1, 1},    {7, 13, 5},   {128, 128, 8},  {129, 130, 17},
                               {64, 300, 33}, {257, 129, 200}, {96, 1000, 768}};
  for (const auto& s : shapes)
    for (int t = 0; t < 4; ++t) cases.push_back({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 0, 0, 1.0f, 0.0f});
  cases.push_back({false, true, 130, 131, 67, 3, 1, 0.5f, 0.0f});   // odd ld, misaligned pointers
  cases.push_back({true, false, 70, 140, 29, 1, 3, -1.25f, 0.75f});
  cases.push_back({false, false, 200, 72, 40, 4, 0, 2.0f, 1.0f});  // beta = 1 accumulates
  cases.push_back({true, true, 33, 65, 129, 2, 2, 1.0f, -0.5f});
  Rng r{42};
  for (const GemmCase& c : cases) {
    const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
    const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
    const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
    const std::vector<float> A = matrix(r, a_rows, a_cols, lda, c.shift);
    const std::vector<float> B = matrix(r, b_rows, b_cols, ldb, c.shift);
    std::vector<float> C0 = matrix(r, c.M, c.N, ldc, c.shift);
    const float sentinel = 12345.0f;
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = c.N; j < ldc; ++j) C0[static_cast<size_t>(c.shift + i * ldc + j)] = sentinel;
    if (c.beta == 0.0f)
      for (int64_t i = 0; i < c.M; ++i) C0[static_cast<size_t>(c.shift + i * ldc)] = kNaN;  // must be ignored
    TensorPtr gA = upload(ZEROTH_F32, A), gB = upload(ZEROTH_F32, B), gC = upload(ZEROTH_F32, C0);
    cuda::gemm_f32(c.ta, c.tb, c.M, c.N, c.K, c.alpha, gA->as<float>() + c.shift, lda, gB->as<float>() + c.shift, ldb,
                   c.beta, gC->as<float>() + c.shift, ldc);
    const std::vector<float> out = download<float>(*gC);
    std::vector<float> cpu = C0;
    gemm_f32(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data() + c.shift, lda, B.data() + c.shift, ldb, c.beta,
             cpu.data() + c.shift, ldc);
    std::vector<double> ref, mag;
    reference(c, A.data() + c.shift, lda, B.data() + c.shift, ldb, C0.data() + c.shift, ldc, ref, mag);
    int bad_ref = 0, bad_cpu = 0, bad_pad = 0;
    for (int64_t i = 0; i < c.M; ++i) {
      for (int64_t j = 0; j < c.N; ++j) {
        const size_t o = static_cast<size_t>(c.shift + i * ldc + j), e = static_cast<size_t>(i * c.N + j);
        const double tol = 2.0 * static_cast<double>(c.K + 3) * kU * mag[e] + 1e-30;
        if (!(std::fabs(out[o] - ref[e]) <= tol)) ++bad_ref;
        if (!(std::fabs(static_cast<double>(out[o]) - cpu[o]) <= 2.0 * tol)) ++bad_cpu;
      }
      for (int64_t j = c.N; j < ldc; ++j)
        if (out[static_cast<size_t>(c.shift + i * ldc + j)] != sentinel) ++bad_pad;
    }
    check(bad_ref == 0, "gemm_f32 vs float64 (" + std::to_string(bad_ref) + " elements off) " + name_of(c));
    check(bad_cpu == 0, "gemm_f32 vs CPU gemm_f32 (" + std::to_string(bad_cpu) + " elements off) " + name_of(c));
    check(bad_pad == 0, "gemm_f32 leaves C's padding alone " + name_of(c));
  }
  // K == 0 and alpha == 0 only scale C; beta == 0 then writes zeros.
  std::vector<float> c0(12, 2.0f);
  TensorPtr gC = upload(ZEROTH_F32, c0);
  TensorPtr gA = upload(ZEROTH_F32, std::vector<float>(12, 1.0f));
  cuda::gemm_f32(false, false, 3, 4, 0, 1.0f, gA->as<float>(), 1, gA->as<float>(), 4, 0.5f, gC->as<float>(), 4);
  check(download<float>(*gC) == std::vector<float>(12, 1.0f), "gemm_f32 with K = 0 scales C by beta");
  cuda::gemm_f32(false, false, 3, 4, 1, 0.0f, gA->as<float>(), 1, gA->as<float>(), 4, 0.0f, gC->as<float>(), 4);
  check(download<float>(*gC) == std::vector<float>(12, 0.0f), "gemm_f32 with alpha = 0, beta = 0 writes zeros");
  // Host memory is refused with E_DEVICE, bad sizes with E_SHAPE, before any launch.
  expect_status(ZEROTH_E_DEVICE,
                [&] { cuda::gemm_f32(false, false, 3, 4, 1, 1.0f, c0.data(), 1, gA->as<float>(), 4, 0.0f, gC->as<float>(), 4); },
                "gemm_f32 with a host pointer");
  expect_status(ZEROTH_E_SHAPE,
                [&] { cuda::gemm_f32(false, false, 3, 4, 2, 1.0f, gA->as<float>(), 1, gA->as<float>(), 4, 0.0f, gC->as<float>(), 4); },
                "gemm_f32 with lda < K");
}

// B perturbed in place by the CPU kernel (zeroth::perturb over B's whole storage, so element
// (r, c) gets z(r·ldb + c)), multiplied plainly, must equal the fused perturbed product bit for bit.
void test_perturbed_gemm() {
  Rng r{7};
  struct PCase {
    bool tb;
    int64_t M, N, K, pad;
    rng::Distribution dist;
  };
  const PCase cases[] = {{true, 70, 150, 96, 0, rng::Distribution::Normal},
                         {false, 70, 150, 96, 0, rng::Distribution::Normal},
                         {true, 33, 61, 45, 3, rng::Distribution::Normal},  // ldb % 4 != 0: per-element z
                         {false, 129, 77, 200, 1, rng::Distribution::Rademacher},
                         {true, 40, 300, 128, 0, rng::Distribution::Rademacher}};
  for (const PCase& c : cases) {
    const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N, ldb = b_cols + c.pad;
    const std::vector<float> A = matrix(r, c.M, c.K, c.K, 0);
    std::vector<float> B = matrix(r, b_rows, b_cols, ldb, 0);
    for (float& v : B)
      if (std::isnan(v)) v = 0.25f;  // padding is perturbed in place too; keep it finite
    PerturbDesc pd;
    pd.active = true;
    pd.seed = 0x1234abcdull;
    pd.stream = rng::stream_id("layer.weight", 12);
    pd.scale = 1e-3f;
    pd.dist = c.dist;
    const std::string what = std::string(c.tb ? "[N, K]" : "[K, N]") + " B, " +
                             (c.dist == rng::Distribution::Normal ? "normal" : "rademacher") + ", ldb " +
                             std::to_string(ldb) + ", M " + std::to_string(c.M);
    for (int half = 0; half < 2; ++half) {
      TensorPtr gA, gB, gBp;
      TensorPtr cpuB;
      if (half == 0) {
        cpuB = tensor_from_host(ZEROTH_F32, Shape{static_cast<int64_t>(B.size())}, kCpu, B.data(), B.size() * 4);
        gA = upload(ZEROTH_F32, A);
      } else {
        std::vector<uint16_t> b16(B.size()), a16(A.size());
        for (size_t i = 0; i < B.size(); ++i) b16[i] = f32_to_bf16(B[i]);
        for (size_t i = 0; i < A.size(); ++i) a16[i] = f32_to_bf16(A[i]);
        cpuB = tensor_from_host(ZEROTH_BF16, Shape{static_cast<int64_t>(B.size())}, kCpu, b16.data(), b16.size() * 2);
        gA = upload(ZEROTH_BF16, a16);
      }
      gB = tensor_copy(*cpuB, cpuB->dtype, kGpu);
      perturb({PerturbTarget{cpuB, pd.stream, nullptr}}, pd.seed, pd.scale, pd.dist);  // the CPU kernel
      gBp = tensor_copy(*cpuB, cpuB->dtype, kGpu);
      TensorPtr c1 = tensor_zeros(ZEROTH_F32, Shape{c.M * c.N}, kGpu), c2 = tensor_zeros(ZEROTH_F32, Shape{c.M * c.N}, kGpu);
      if (half == 0) {
        cuda::gemm_f32(false, c.tb, c.M, c.N, c.K, 1.0f, gA->as<float>(), c.K, gB->as<float>(), ldb, 0.0f,
                       c1->as<float>(), c.N, pd);
        cuda::gemm_f32(false, c.tb, c.M, c.N, c.K, 1.0f, gA->as<float>(), c.K, gBp->as<float>(), ldb, 0.0f,
                       c2->as<float>(), c.N);
      } else {
        cuda::gemm_bf16(false, c.tb, c.M, c.N, c.K, 1.0f, gA->as<uint16_t>(), c.K, gB->as<uint16_t>(), ldb, 0.0f,
                        c1->as<float>(), c.N, pd);
        cuda::gemm_bf16(false, c.tb, c.M, c.N, c.K, 1.0f, gA->as<uint16_t>(), c.K, gBp->as<uint16_t>(), ldb, 0.0f,
                        c2->as<float>(), c.N);
      }
      const std::vector<float> o1 = download<float>(*c1), o2 = download<float>(*c2);
      check(std::memcmp(o1.data(), o2.data(), o1.size() * 4) == 0,
            std::string(half ? "gemm_bf16" : "gemm_f32") + " perturbed in the tile load == product of B perturbed "
                                                           "by the CPU kernel (bits), " + what);
      // And the perturbation did something (a test that cannot fail is no test).
      TensorPtr c3 = tensor_zeros(ZEROTH_F32, Shape{c.M * c.N}, kGpu);
      if (half == 0)
        cuda::gemm_f32(false, c.tb, c.M, c.N, c.K, 1.0f, gA->as<float>(), c.K, gB->as<float>(), ldb, 0.0f,
                       c3->as<float>(), c.N);
      else
        cuda::gemm_bf16(false, c.tb, c.M, c.N, c.K, 1.0f, gA->as<uint16_t>(), c.K, gB->as<uint16_t>(), ldb, 0.0f,
                        c3->as<float>(), c.N);
      check(download<float>(*c3) != o1, "the perturbed product differs from the clean one, " + what);
    }
  }
}

// bf16 / f16 tensor-core GEMM against float64 on the same 16-bit inputs.
void test_gemm_half() {
  Rng r{99};
  struct HCase {
    bool ta, tb;
    int64_t M, N, K, pad;
  };
  const HCase cases[] = {{false, true, 128, 128, 32, 0}, {false, false, 200, 136, 96, 0}, {true, false, 65, 70, 40, 0},
                         {true, true, 31, 260, 100, 0},  {false, true, 130, 129, 77, 3},  {false, false, 17, 9, 3, 1}};
  for (int type = 0; type < 2; ++type) {
    for (const HCase& c : cases) {
      const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
      const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
      const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad;
      std::vector<float> A = matrix(r, a_rows, a_cols, lda, 0), B = matrix(r, b_rows, b_cols, ldb, 0);
      std::vector<uint16_t> a16(A.size()), b16(B.size());
      auto to16 = [&](float v) { return type == 0 ? f32_to_bf16(v) : f32_to_f16(v); };
      auto from16 = [&](uint16_t v) { return type == 0 ? bf16_to_f32(v) : f16_to_f32(v); };
      for (size_t i = 0; i < A.size(); ++i) A[i] = from16(a16[i] = to16(A[i]));
      for (size_t i = 0; i < B.size(); ++i) B[i] = from16(b16[i] = to16(B[i]));
      TensorPtr gA = upload(type == 0 ? ZEROTH_BF16 : ZEROTH_F16, a16), gB = upload(type == 0 ? ZEROTH_BF16 : ZEROTH_F16, b16);
      const std::vector<float> c0(static_cast<size_t>(c.M * c.N), 0.5f);
      TensorPtr gC = upload(ZEROTH_F32, c0);
      const float alpha = 1.5f, beta = -1.0f;
      if (type == 0)
        cuda::gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, alpha, gA->as<uint16_t>(), lda, gB->as<uint16_t>(), ldb, beta,
                        gC->as<float>(), c.N);
      else
        cuda::gemm_f16(c.ta, c.tb, c.M, c.N, c.K, alpha, gA->as<uint16_t>(), lda, gB->as<uint16_t>(), ldb, beta,
                       gC->as<float>(), c.N);
      const std::vector<float> out = download<float>(*gC);
      const GemmCase gc{c.ta, c.tb, c.M, c.N, c.K, c.pad, 0, alpha, beta};
      std::vector<double> ref, mag;
      reference(gc, A.data(), lda, B.data(), ldb, c0.data(), c.N, ref, mag);
      int bad = 0;
      for (size_t e = 0; e < ref.size(); ++e)
        if (!(std::fabs(out[e] - ref[e]) <= static_cast<double>(c.K + 3) * 4.0 * kU * mag[e] + 1e-30)) ++bad;
      check(bad == 0, std::string(type == 0 ? "gemm_bf16" : "gemm_f16") + " vs float64 (" + std::to_string(bad) +
                          " elements off) " + name_of(gc));
    }
  }
}

// ---- ops ------------------------------------------------------------------------------------

bool close_rel(const std::vector<float>& got, const std::vector<float>& want, double rel, double abs, std::string* where) {
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(d <= rel * std::fabs(want[i]) + abs)) {
      *where = "element " + std::to_string(i) + ": " + std::to_string(got[i]) + " vs " + std::to_string(want[i]);
      return false;
    }
  }
  return true;
}

std::vector<float> randoms(Rng& r, size_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (float& x : v) x = scale * r.f();
  return v;
}

std::vector<float> perturbed_copy(const std::vector<float>& w, const PerturbDesc& d) {
  std::vector<float> out = w;
  add_scaled_z(d.seed, d.stream, d.dist, d.scale, 0, static_cast<int64_t>(out.size()), out.data());
  return out;
}

void test_norms() {
  Rng r{5};
  const int64_t rows = 37, d = 768;
  const std::vector<float> x = randoms(r, rows * d, 3.0f), w = randoms(r, d), b = randoms(r, d, 0.1f);
  const PerturbDesc wp = perturb_desc(11, "ln.weight", 1e-2f, rng::Distribution::Normal);
  const PerturbDesc bp = perturb_desc(11, "ln.bias", 1e-2f, rng::Distribution::Rademacher);
  TensorPtr gx = upload(ZEROTH_F32, x), gw = upload(ZEROTH_F32, w), gb = upload(ZEROTH_F32, b);
  TensorPtr go = tensor_empty(ZEROTH_F32, Shape{rows * d}, kGpu);
  std::string where;

  cuda::layer_norm(0, gx->as<float>(), rows, d, gw->as<float>(), wp, gb->as<float>(), bp, 1e-5f, go->as<float>());
  std::vector<float> want(static_cast<size_t>(rows * d));
  const std::vector<float> wq = perturbed_copy(w, wp), bq = perturbed_copy(b, bp);
  model::layer_norm_rows(x.data(), rows, d, wq.data(), bq.data(), 1e-5f, want.data());
  check(close_rel(download<float>(*go), want, 4 * kU, 1e-7, &where), "layer_norm (perturbed w, b) vs CPU: " + where);

  cuda::layer_norm(0, gx->as<float>(), rows, d, nullptr, {}, nullptr, {}, 1e-5f, go->as<float>());
  model::layer_norm_rows(x.data(), rows, d, nullptr, nullptr, 1e-5f, want.data());
  check(close_rel(download<float>(*go), want, 4 * kU, 1e-7, &where), "layer_norm (no affine) vs CPU: " + where);

  cuda::rms_norm(0, gx->as<float>(), rows, d, gw->as<float>(), wp, 1e-6f, go->as<float>());
  model::rms_norm_rows(x.data(), rows, d, wq.data(), 1e-6f, want.data());
  check(close_rel(download<float>(*go), want, 4 * kU, 1e-7, &where), "rms_norm (perturbed w) vs CPU: " + where);
}

void test_activations() {
  Rng r{6};
  const int64_t n = 100003;
  std::vector<float> x = randoms(r, static_cast<size_t>(n), 8.0f);
  x[0] = 0.0f, x[1] = -0.0f, x[2] = 30.0f, x[3] = -30.0f;
  const std::vector<float> up = randoms(r, static_cast<size_t>(n), 2.0f);
  TensorPtr gx = upload(ZEROTH_F32, x), gu = upload(ZEROTH_F32, up);
  TensorPtr gy = tensor_empty(ZEROTH_F32, Shape{n}, kGpu);
  std::string where;
  // The CPU's scalar path is the reference (the SIMD paths are polynomials of their own).
  const SimdLevel prev = simd_level();
  set_simd_level(SimdLevel::Scalar);
  std::vector<float> want = x;
  cuda::gelu_tanh(0, gx->as<float>(), gy->as<float>(), n);
  model::activation_inplace(model::Activation::GeluTanh, want.data(), n);
  check(close_rel(download<float>(*gy), want, 2 * 2 * kU, 1e-37, &where), "gelu_tanh vs CPU scalar: " + where);
  want = x;
  cuda::gelu_erf(0, gx->as<float>(), gy->as<float>(), n);
  model::activation_inplace(model::Activation::GeluErf, want.data(), n);
  check(close_rel(download<float>(*gy), want, 2 * 2 * kU, 1e-37, &where), "gelu_erf vs CPU scalar: " + where);
  want = x;
  cuda::swiglu(0, gx->as<float>(), gu->as<float>(), n);  // in place into gx
  model::swiglu_inplace(want.data(), up.data(), n);
  check(close_rel(download<float>(*gx), want, 2 * 2 * kU, 1e-37, &where), "swiglu vs CPU scalar: " + where);
  set_simd_level(prev);
}

void test_rope() {
  Rng r{8};
  const int64_t rows = 19, heads = 3, hd = 64;
  const std::vector<float> x = randoms(r, rows * heads * hd);
  std::vector<int64_t> pos(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) pos[static_cast<size_t>(i)] = i * 37 + (i % 3 == 0 ? 4000 : 0);
  TensorPtr gx = upload(ZEROTH_F32, x);
  // No int64 dtype: the positions travel as their bytes.
  TensorPtr gp = tensor_from_host(ZEROTH_U8, Shape{rows * 8}, kGpu, pos.data(), pos.size() * 8);
  cuda::rope(0, gx->as<float>(), rows, heads, hd, gp->as<int64_t>(), 10000.0);
  std::vector<float> want = x;
  model::rope_rows(want.data(), rows, heads, hd, pos.data(), 10000.0);
  const std::vector<float> got = download<float>(*gx);
  bool ok = true;
  for (int64_t rr = 0; rr < rows * heads && ok; ++rr)
    for (int64_t i = 0; i < hd / 2 && ok; ++i) {
      const size_t a = static_cast<size_t>(rr * hd + i), b = a + static_cast<size_t>(hd / 2);
      const double tol = 4 * kU * (std::fabs(x[a]) + std::fabs(x[b]));
      ok = std::fabs(got[a] - want[a]) <= tol && std::fabs(got[b] - want[b]) <= tol;
      if (!ok) check(false, "rope vs CPU at row-head " + std::to_string(rr) + " pair " + std::to_string(i));
    }
  if (ok) check(true, "rope vs CPU");
}

void test_embedding() {
  Rng r{9};
  const int64_t vocab = 300, width = 96, n = 50;
  const std::vector<float> table = randoms(r, vocab * width);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919) % vocab);
  TensorPtr gt = upload(ZEROTH_F32, table), gi = upload(ZEROTH_I32, ids);
  TensorPtr go = tensor_empty(ZEROTH_F32, Shape{n * width}, kGpu);
  for (int dist = 0; dist < 2; ++dist) {
    const PerturbDesc pd = perturb_desc(3, "wte", 1e-3f, dist ? rng::Distribution::Rademacher : rng::Distribution::Normal);
    cuda::embedding(0, gt->as<float>(), vocab, width, pd, gi->as<int32_t>(), n, false, go->as<float>());
    std::vector<float> want(static_cast<size_t>(n * width));
    for (int64_t i = 0; i < n; ++i) {
      float* o = want.data() + i * width;
      std::memcpy(o, table.data() + ids[static_cast<size_t>(i)] * width, static_cast<size_t>(width) * 4);
      add_scaled_z(pd.seed, pd.stream, pd.dist, pd.scale, static_cast<uint64_t>(ids[static_cast<size_t>(i)] * width),
                   width, o);
    }
    check(download<float>(*go) == want, std::string("embedding (perturbed, ") + (dist ? "rademacher" : "normal") +
                                            ") == Resolved::row's values, bit for bit");
    // Accumulate: out += row (a positional embedding added to the token embedding).
    cuda::embedding(0, gt->as<float>(), vocab, width, pd, gi->as<int32_t>(), n, true, go->as<float>());
    std::vector<float> twice = want;
    for (size_t k = 0; k < twice.size(); ++k) twice[k] = want[k] + want[k];
    check(download<float>(*go) == twice, "embedding accumulate adds the row");
  }
  std::vector<int32_t> bad = {0, static_cast<int32_t>(vocab), -1};
  TensorPtr gbad = upload(ZEROTH_I32, bad);
  cuda::embedding(0, gt->as<float>(), vocab, width, {}, gbad->as<int32_t>(), 3, false, go->as<float>());
  const std::vector<float> got = download<float>(*go);
  check(!std::isnan(got[0]) && std::isnan(got[static_cast<size_t>(width)]) && std::isnan(got[static_cast<size_t>(2 * width)]),
        "embedding writes NaN rows for ids outside the vocabulary");
}

// Attention against a float64 softmax written here: query s of row b sees valid slots j <= length + s.
void test_attention() {
  Rng r{10};
  struct ACase {
    int64_t B, S, length, n_head, n_kv, hd;
  };
  const ACase cases[] = {{2, 37, 0, 4, 4, 64}, {3, 20, 5, 6, 2, 32}, {1, 50, 0, 2, 1, 128}, {2, 9, 3, 4, 2, 80},
                         {1, 5, 0, 1, 1, 256}};
  for (const ACase& c : cases) {
    const int64_t cap = c.length + c.S + 3, width = c.n_head * c.hd;
    const std::vector<float> q = randoms(r, c.B * c.S * width);
    const std::vector<float> K = randoms(r, c.B * c.n_kv * cap * c.hd), V = randoms(r, c.B * c.n_kv * cap * c.hd);
    std::vector<uint8_t> valid(static_cast<size_t>(c.B * cap), 1);
    for (int64_t b = 0; b < c.B; ++b) {
      valid[static_cast<size_t>(b * cap + (b + 1) % (c.length + c.S))] = 0;  // a padding slot per row
      if (b == 1) valid[static_cast<size_t>(b * cap)] = 0;                   // row 1: slot 0 is padding too
    }
    TensorPtr gq = upload(ZEROTH_F32, q), gk = upload(ZEROTH_F32, K), gv = upload(ZEROTH_F32, V),
              gvalid = upload(ZEROTH_U8, valid);
    TensorPtr go = tensor_empty(ZEROTH_F32, Shape{c.B * c.S * width}, kGpu);
    cuda::attention(0, gq->as<float>(), gk->as<float>(), gv->as<float>(), gvalid->as<uint8_t>(), c.B, c.S, c.length,
                    cap, c.n_head, c.n_kv, c.hd, go->as<float>());
    const std::vector<float> got = download<float>(*go);
    const double scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.hd)));
    int bad = 0;
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t h = 0; h < c.n_head; ++h) {
        const int64_t kvh = h / (c.n_head / c.n_kv);
        const float* Kp = K.data() + (b * c.n_kv + kvh) * cap * c.hd;
        const float* Vp = V.data() + (b * c.n_kv + kvh) * cap * c.hd;
        for (int64_t s = 0; s < c.S; ++s) {
          const float* qs = q.data() + (b * c.S + s) * width + h * c.hd;
          std::vector<double> p;
          std::vector<int64_t> slot;
          double mx = -INFINITY;
          for (int64_t j = 0; j <= c.length + s; ++j) {
            if (!valid[static_cast<size_t>(b * cap + j)]) continue;
            double dot = 0;
            for (int64_t d = 0; d < c.hd; ++d) dot += static_cast<double>(qs[d]) * Kp[j * c.hd + d];
            p.push_back(scale * dot);
            slot.push_back(j);
            mx = std::max(mx, p.back());
          }
          double sum = 0;
          for (double& v : p) sum += (v = std::exp(v - mx));
          for (int64_t d = 0; d < c.hd; ++d) {
            double o = 0, vmax = 0;
            for (size_t k = 0; k < p.size(); ++k) {
              o += p[k] / sum * Vp[slot[k] * c.hd + d];
              vmax = std::max(vmax, std::fabs(static_cast<double>(Vp[slot[k] * c.hd + d])));
            }
            const float g = got[static_cast<size_t>((b * c.S + s) * width + h * c.hd + d)];
            if (!(std::fabs(g - o) <= 1e-5 * vmax + (p.empty() ? 0.0 : 1e-30))) ++bad;
          }
        }
      }
    check(bad == 0, "attention vs float64 (" + std::to_string(bad) + " outputs off) B=" + std::to_string(c.B) +
                        " S=" + std::to_string(c.S) + " length=" + std::to_string(c.length) + " heads=" +
                        std::to_string(c.n_head) + "/" + std::to_string(c.n_kv) + " hd=" + std::to_string(c.hd));
  }
  expect_status(ZEROTH_E_SHAPE,
                [] { cuda::attention(0, nullptr, nullptr, nullptr, nullptr, 1, 4, 0, 4, 3, 2, 64, nullptr); },
                "attention with n_head not a multiple of n_kv");
  expect_status(ZEROTH_E_SHAPE,
                [] { cuda::attention(0, nullptr, nullptr, nullptr, nullptr, 1, 4, 2, 5, 2, 2, 64, nullptr); },
                "attention past the cache capacity");
}

void test_cross_entropy() {
  Rng r{12};
  const int64_t rows = 45, classes = 5003;
  std::vector<float> logits = randoms(r, rows * classes, 6.0f);
  std::vector<int32_t> targets(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) targets[static_cast<size_t>(i)] = static_cast<int32_t>((i * 104729) % classes);
  targets[3] = -100;
  targets[17] = -100;
  TensorPtr gl = upload(ZEROTH_F32, logits), gt = upload(ZEROTH_I32, targets);
  TensorPtr gn = tensor_empty(ZEROTH_F64, Shape{rows}, kGpu), gm = tensor_empty(ZEROTH_F64, Shape{1}, kGpu);
  cuda::cross_entropy_rows(0, gl->as<float>(), rows, classes, gt->as<int32_t>(), true, -100, gn->as<double>());
  cuda::mean_rows(0, gn->as<double>(), gt->as<int32_t>(), rows, true, -100, gm->as<double>());
  const std::vector<double> nll = download<double>(*gn);
  int bad = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const int32_t t = targets[static_cast<size_t>(i)];
    if (t == -100) {
      if (nll[static_cast<size_t>(i)] != 0.0) ++bad;
      continue;
    }
    const float* z = logits.data() + i * classes;
    double mx = -INFINITY, s = 0;
    for (int64_t k = 0; k < classes; ++k) mx = std::max(mx, static_cast<double>(z[k]));
    for (int64_t k = 0; k < classes; ++k) s += std::exp(z[k] - mx);
    const double want = mx + std::log(s) - z[t];
    if (!(std::fabs(nll[static_cast<size_t>(i)] - want) <= 1e-6 * std::max(1.0, std::fabs(want)))) ++bad;
  }
  check(bad == 0, "cross_entropy_rows vs float64 (" + std::to_string(bad) + " rows off)");
  TensorPtr cl = tensor_from_host(ZEROTH_F32, Shape{rows, classes}, kCpu, logits.data(), logits.size() * 4);
  TensorPtr ct = tensor_from_host(ZEROTH_I32, Shape{rows}, kCpu, targets.data(), targets.size() * 4);
  const double cpu_mean = *ops::cross_entropy(cl, ct, true, -100)->as<double>();
  const double gpu_mean = download<double>(*gm)[0];
  check(std::fabs(gpu_mean - cpu_mean) <= 1e-6 * std::fabs(cpu_mean),
        "mean cross entropy vs ops::cross_entropy: " + std::to_string(gpu_mean) + " vs " + std::to_string(cpu_mean));
  // The mean is reduced in a fixed order: the same bits on every run.
  cuda::mean_rows(0, gn->as<double>(), gt->as<int32_t>(), rows, true, -100, gm->as<double>());
  check(download<double>(*gm)[0] == gpu_mean, "mean_rows is deterministic");
}

// perturb.cpp's device dispatch: zeroth::perturb_to & co. on CUDA tensors run the CUDA twin and
// give the CPU's bits; a mixed list, a GPU preconditioner and a journal restored on the other
// device are E_DEVICE.
void test_dispatch() {
  Rng r{13};
  const std::vector<float> w = randoms(r, 10007, 0.05f);
  TensorPtr cw = tensor_from_host(ZEROTH_F32, Shape{10007}, kCpu, w.data(), w.size() * 4);
  TensorPtr gw = tensor_copy(*cw, ZEROTH_F32, kGpu);
  const uint64_t stream = rng::stream_id("dispatch.w", 10);
  const std::vector<PerturbTarget> ct = {PerturbTarget{cw, stream, nullptr}}, gt = {PerturbTarget{gw, stream, nullptr}};
  PerturbJournal cj, gj;
  perturb_to(ct, cj, 21, 1e-2f, rng::Distribution::Normal);
  perturb_to(gt, gj, 21, 1e-2f, rng::Distribution::Normal);
  check(download<float>(*gw) == download<float>(*cw), "perturb_to on a CUDA tensor (dispatched) == CPU bits");
  check(gj.entry_count() == cj.entry_count() && gj.entry_count() > 0,
        "entry_count of a CUDA journal counts its device entries (" + std::to_string(gj.entry_count()) + " vs " +
            std::to_string(cj.entry_count()) + ")");
  expect_status(ZEROTH_E_DEVICE, [&] { restore_and_update(ct, gj, UpdateOptions{}); },
                "restoring a journal perturbed on the GPU with CPU targets");
  expect_status(ZEROTH_E_DEVICE, [&] { perturb_to(gt, cj, 21, 1e-2f, rng::Distribution::Normal); },
                "moving a journal perturbed on the CPU with GPU targets");
  UpdateOptions o;
  o.step_scale = 1e-3f;
  o.decay = 1e-4f;
  restore_and_update(ct, cj, o);
  restore_and_update(gt, gj, o);
  check(download<float>(*gw) == download<float>(*cw), "restore_and_update on a CUDA tensor (dispatched) == CPU bits");
  check(gj.entry_count() == 0, "a restored CUDA journal is empty");
  apply_update(ct, 22, rng::Distribution::Rademacher, o);
  apply_update(gt, 22, rng::Distribution::Rademacher, o);
  perturb(ct, 23, 1e-3f, rng::Distribution::Normal);
  perturb(gt, 23, 1e-3f, rng::Distribution::Normal);
  check(download<float>(*gw) == download<float>(*cw), "apply_update and perturb on a CUDA tensor (dispatched) == CPU bits");
  cuda::release_journal(gj);
  const std::vector<PerturbTarget> mixed = {ct[0], PerturbTarget{gw, stream + 1, nullptr}};
  PerturbJournal mj;
  expect_status(ZEROTH_E_DEVICE, [&] { perturb_to(mixed, mj, 1, 1e-3f, rng::Distribution::Normal); },
                "perturb_to with CPU and CUDA targets in one list");
  expect_status(ZEROTH_E_DEVICE, [&] { perturb(mixed, 1, 1e-3f, rng::Distribution::Normal); },
                "perturb with CPU and CUDA targets in one list");
  TensorPtr pc = tensor_zeros(ZEROTH_F32, Shape{10007}, kGpu);
  expect_status(ZEROTH_E_DEVICE,
                [&] { apply_update({PerturbTarget{gw, stream, nullptr, pc}}, 1, rng::Distribution::Normal, o); },
                "a preconditioned CUDA target");
}

// ---- benchmark mode -------------------------------------------------------------------------

void bench() {
  const DeviceInfo info = device_info(kGpu);
  std::printf("{\"bench\": \"cuda\", \"device\": \"%s\", \"gemm\": [", info.name.c_str());
  // y[M, N] = x[M, K]·Wᵀ with W stored [N, K] (nn.Linear), M = batch 16 × 256 tokens.
  const int64_t M = 4096;
  const int64_t shapes[][2] = {{768, 768}, {3072, 768}, {768, 3072}, {2048, 2048}, {8192, 2048}, {2048, 8192}, {50272, 2048}};
  bool first = true;
  for (const auto& nk : shapes) {
    const int64_t N = nk[0], K = nk[1];
    TensorPtr x = tensor_zeros(ZEROTH_F32, Shape{M * K}, kGpu), w = tensor_zeros(ZEROTH_F32, Shape{N * K}, kGpu);
    TensorPtr y = tensor_empty(ZEROTH_F32, Shape{M * N}, kGpu);
    TensorPtr xh = tensor_zeros(ZEROTH_BF16, Shape{M * K}, kGpu), wh = tensor_zeros(ZEROTH_BF16, Shape{N * K}, kGpu);
    const PerturbDesc pd = perturb_desc(1, "bench.weight", 1e-3f, rng::Distribution::Normal);
    const PerturbDesc pr = perturb_desc(1, "bench.weight", 1e-3f, rng::Distribution::Rademacher);
    const double flop = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
    const int reps = 5;
    const double f32 = seconds_of([&] { cuda::gemm_f32(false, true, M, N, K, 1.0f, x->as<float>(), K, w->as<float>(), K, 0.0f, y->as<float>(), N); }, reps);
    const double f32n = seconds_of([&] { cuda::gemm_f32(false, true, M, N, K, 1.0f, x->as<float>(), K, w->as<float>(), K, 0.0f, y->as<float>(), N, pd); }, reps);
    const double f32r = seconds_of([&] { cuda::gemm_f32(false, true, M, N, K, 1.0f, x->as<float>(), K, w->as<float>(), K, 0.0f, y->as<float>(), N, pr); }, reps);
    const double bf = seconds_of([&] { cuda::gemm_bf16(false, true, M, N, K, 1.0f, xh->as<uint16_t>(), K, wh->as<uint16_t>(), K, 0.0f, y->as<float>(), N); }, reps);
    const double bfn = seconds_of([&] { cuda::gemm_bf16(false, true, M, N, K, 1.0f, xh->as<uint16_t>(), K, wh->as<uint16_t>(), K, 0.0f, y->as<float>(), N, pd); }, reps);
    std::printf("%s{\"M\": %lld, \"N\": %lld, \"K\": %lld, \"f32_tflops\": %.3f, \"f32_perturbed_normal_tflops\": %.3f, "
                "\"f32_perturbed_rademacher_tflops\": %.3f, \"bf16_tflops\": %.3f, \"bf16_perturbed_normal_tflops\": %.3f}",
                first ? "" : ", ", static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K),
                flop / f32 / 1e12, flop / f32n / 1e12, flop / f32r / 1e12, flop / bf / 1e12, flop / bfn / 1e12);
    first = false;
  }
  // Perturbation kernels on 1e8 f32 weights (bytes = 4 read + 4 written per element) against a
  // device-to-device copy of the same tensor.
  const int64_t n = 100000000;
  TensorPtr t = tensor_zeros(ZEROTH_F32, Shape{n}, kGpu);
  const double bytes = 8.0 * static_cast<double>(n);
  const double copy = seconds_of([&] { tensor_copy(*t, ZEROTH_F32, kGpu); }, 5);
  const std::vector<PerturbTarget> targets = {PerturbTarget{t, rng::stream_id("bench.w", 7), nullptr}};
  PerturbJournal j;
  const uint64_t seed = 5;
  auto step_time = [&](rng::Distribution dist, double* to_s, double* move_s, double* restore_s) {
    *to_s = *move_s = *restore_s = 1e30;
    for (int r = 0; r < 4; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      perturb_to(targets, j, seed, 1e-3f, dist);
      backend_for(kGpu).synchronize(0);
      auto t1 = std::chrono::steady_clock::now();
      perturb_to(targets, j, seed, -1e-3f, dist);
      backend_for(kGpu).synchronize(0);
      auto t2 = std::chrono::steady_clock::now();
      UpdateOptions o;
      o.step_scale = 1e-6f;
      restore_and_update(targets, j, o);
      backend_for(kGpu).synchronize(0);
      auto t3 = std::chrono::steady_clock::now();
      if (r == 0) continue;  // warm-up round
      *to_s = std::min(*to_s, std::chrono::duration<double>(t1 - t0).count());
      *move_s = std::min(*move_s, std::chrono::duration<double>(t2 - t1).count());
      *restore_s = std::min(*restore_s, std::chrono::duration<double>(t3 - t2).count());
    }
  };
  std::printf("], \"perturb\": {\"elements\": %lld, \"copy_GBps\": %.1f", static_cast<long long>(n), bytes / copy / 1e9);
  for (int d = 0; d < 2; ++d) {
    double a, b, c;
    step_time(d ? rng::Distribution::Rademacher : rng::Distribution::Normal, &a, &b, &c);
    const char* name = d ? "rademacher" : "normal";
    std::printf(", \"%s\": {\"perturb_to_GBps\": %.1f, \"perturb_move_GBps\": %.1f, \"restore_update_GBps\": %.1f, "
                "\"perturb_to_vs_copy\": %.3f}",
                name, bytes / a / 1e9, bytes / b / 1e9, bytes / c / 1e9, copy / a);
  }
  cuda::release_journal(j);
  std::printf("}}\n");
}

#endif  // ZEROTH_WITH_CUDA

}  // namespace

int main(int argc, char** argv) {
  return zeroth_test::cuda_test_main("test_cuda_gemm", argc, argv, test_plan,
#ifdef ZEROTH_WITH_CUDA
                                     [] {
                                       test_gemm_f32();
                                       test_perturbed_gemm();
                                       test_gemm_half();
                                       test_norms();
                                       test_activations();
                                       test_rope();
                                       test_embedding();
                                       test_attention();
                                       test_cross_entropy();
                                       test_dispatch();
                                     },
                                     bench);
#else
                                     [] {}, [] {});
#endif
}
