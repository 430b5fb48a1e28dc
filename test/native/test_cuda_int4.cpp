// test_cuda_int4.cpp — the CUDA quantized GEMV / GEMM (cuda/int4_gemm.cu) against the CPU's
// quant_matmul (native/cpu/int4_gemm.h) and a float64 reference written here, without Node.
//
// Everywhere (no GPU needed): the host-side plan of cuda/int4_gemm_cuda.h (int4_plan): argument
// checks and their statuses, which kernel a shape gets (vector GEMV, generic GEMV, GEMV in passes
// of 8 x rows, tiled GEMM), its template and grid, and the vector-load decisions.
// On a GPU (prints "SKIP ..." for this part when the build or the machine has none):
//  - every kernel (forced and as the plan picks it) on int4 (symmetric, asymmetric, f16 scales)
//    and int8 (codes -128..127) weights of odd shapes: out not a multiple of the 16 rows of a
//    GEMV block or the 128 of a GEMM tile, in not a multiple of the 1024-column GEMV step, partial
//    last groups, odd in (rows starting in a high nibble), group sizes that split a 16-byte run,
//    one group per row, act-order perm, x with a padded / misaligned stride, y with padding:
//    |y − y_cpu| <= 1e-5·Σ_c |value·x| and |y − y_f64| <= 1e-5·Σ_c |value·x| per output (the
//    issue's "1e-5 relative"; only the summation order differs, whose f32 error is ~√K·2^-24 of
//    that sum; a wrong nibble, group, scale or zero is off by a whole weight). x's padding holds
//    NaN (reading it poisons y); y's padding holds a sentinel that must survive;
//  - the QZO scale perturbation: the product with scales perturbed in the kernel's read has the
//    same BITS as the product (same kernel) with the scales tensor perturbed in place on the CPU
//    by zeroth::perturb with the same descriptor — normal and Rademacher z, every kernel — and
//    differs from the clean product; it also agrees with the CPU's quant_matmul on the perturbed
//    scales within the bound above;
//  - repeated calls give the same bits; quant_matmul_on (no pointer queries) gives quant_matmul's
//    bits; in == 0 writes zeros; host pointers are E_DEVICE, bad strides E_SHAPE.
//
// `test_cuda_int4 --bench` prints one JSON object instead (bench/cuda.mjs runs it): int4 GEMV
// weight bytes/s (codes + scales) on 4096 x 4096, 4096 x 11008 and 11008 x 4096 (out x in, group
// 128), plain, with perturbed scales and at M = 8, each call on a different copy of the weight
// (>= 512 MiB in all) so that it streams from HBM, not L2, next to a device-to-device copy
// measured in the same run (copy_GBps counts bytes read + written; the target:
// gemv_vs_copy >= 0.7), the time of the pointer-checking entry point, and the tiled GEMM's TFLOP/s
// at M = 2048; {"skipped": ...} without a GPU.
#include <algorithm>
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

#include "../../cuda/int4_gemm_cuda.h"
#include "check.h"
#include "cuda_test.h"
#include "core/backend.h"
#include "core/errors.h"
#include "core/half.h"
#include "core/philox.h"
#include "core/tensor.h"
#include "cpu/gemm.h"
#include "cpu/int4_gemm.h"
#include "cpu/perturb.h"
#include "cpu/quant.h"

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

using cuda::QuantMatrixDevice;
using cuda::QuantPath;

// A weight description whose pointers are only looked at, never read (host memory).
QuantMatrixDevice fake(int bits, int64_t rows, int64_t cols, int64_t gs, const void* codes, const float* scales) {
  QuantMatrixDevice w;
  w.bits = bits;
  w.rows = rows;
  w.cols = cols;
  w.group_size = gs;
  w.groups = cols == 0 || gs < 1 ? 0 : (cols + gs - 1) / gs;
  if (bits == 4) w.codes4 = static_cast<const uint8_t*>(codes);
  else w.codes8 = static_cast<const int8_t*>(codes);
  w.scales = scales;
  w.fixed_zero = bits == 4 ? 8.0f : 0.0f;
  return w;
}

void test_plan() {
  using namespace cuda::int4_plan;
  alignas(64) static uint8_t codes[256];
  alignas(64) static float buf[64];
  const float* sc = buf;
  // check_matrix
  check_matrix(fake(4, 3, 64, 32, codes, sc));
  check_matrix(fake(8, 3, 64, 64, codes, sc));
  check_matrix(fake(4, 0, 64, 32, nullptr, nullptr));  // no elements: no pointers needed
  check_matrix(fake(4, 5, 0, 32, nullptr, nullptr));
  check(true, "valid quantized matrices pass check_matrix");
  QuantMatrixDevice w = fake(4, 3, 64, 32, codes, sc);
  w.bits = 5;
  expect_status(ZEROTH_E_INVALID_ARG, [&] { check_matrix(w); }, "bits 5");
  expect_status(ZEROTH_E_SHAPE, [&] { check_matrix(fake(4, -1, 64, 32, codes, sc)); }, "negative rows");
  expect_status(ZEROTH_E_INVALID_ARG, [&] { check_matrix(fake(4, 3, 64, 0, codes, sc)); }, "group size 0");
  w = fake(4, 3, 64, 32, codes, sc);
  w.groups = 3;
  expect_status(ZEROTH_E_SHAPE, [&] { check_matrix(w); }, "groups inconsistent with cols / group size");
  expect_status(ZEROTH_E_INVALID_ARG, [&] { check_matrix(fake(4, 3, 64, 32, nullptr, sc)); }, "null codes4");
  w = fake(8, 3, 64, 32, codes, sc);
  w.codes8 = nullptr;
  w.codes4 = codes;  // the other kind of codes does not count
  expect_status(ZEROTH_E_INVALID_ARG, [&] { check_matrix(w); }, "int8 weight with only codes4");
  expect_status(ZEROTH_E_INVALID_ARG, [&] { check_matrix(fake(4, 3, 64, 32, codes, nullptr)); }, "null scales");
  expect_status(ZEROTH_E_SHAPE, [&] { check_matrix(fake(4, 1, int64_t{1} << 31, 128, codes, sc)); },
                "2^31 columns");
  expect_status(ZEROTH_E_SHAPE, [&] { check_matrix(fake(4, int64_t{1} << 40, int64_t{1} << 30, 1 << 30, codes, sc)); },
                "rows x cols overflows");

  // check_problem
  const QuantMatrixDevice ok = fake(4, 10, 64, 32, codes, sc);
  check_problem(ok, 3, buf, 64, buf, 10);
  check_problem(ok, 0, nullptr, 64, nullptr, 10);
  check(true, "valid problems pass check_problem");
  expect_status(ZEROTH_E_SHAPE, [&] { check_problem(ok, -1, buf, 64, buf, 10); }, "negative M");
  expect_status(ZEROTH_E_SHAPE, [&] { check_problem(ok, 3, buf, 63, buf, 10); }, "ldx < in");
  expect_status(ZEROTH_E_SHAPE, [&] { check_problem(ok, 3, buf, 64, buf, 9); }, "ldy < out");
  expect_status(ZEROTH_E_INVALID_ARG, [&] { check_problem(ok, 3, nullptr, 64, buf, 10); }, "null x");
  expect_status(ZEROTH_E_INVALID_ARG, [&] { check_problem(ok, 3, buf, 64, nullptr, 10); }, "null y");
  expect_status(ZEROTH_E_SHAPE, [&] { check_problem(ok, int64_t{1} << 58, buf, 64, buf, 10); }, "x offset overflow");
  PerturbDesc bad;
  bad.active = true;
  bad.dist = static_cast<rng::Distribution>(7);
  expect_status(ZEROTH_E_INVALID_ARG, [&] { check_desc(bad); }, "unknown perturbation distribution");
  bad.active = false;
  check_desc(bad);
  check(true, "an inactive descriptor is not looked at");

  // make_plan: kernel choice
  const QuantMatrixDevice big = fake(4, 4096, 4096, 128, codes, sc);
  Plan p = make_plan(big, 1, buf, 4096);
  check(p.path == QuantPath::GemvVec && p.mt == 1 && p.passes == 1 && p.grid_x == 256 && p.x_vec && !p.gather,
        "M = 1, 4096 x 4096 int4 gs 128: vector GEMV, 256 blocks of 16 rows, float4 x");
  p = make_plan(big, 1, buf + 1, 4096);
  check(p.path == QuantPath::GemvVec && !p.x_vec, "misaligned x: vector GEMV with scalar x reads");
  p = make_plan(big, 2, buf, 4097);
  check(p.path == QuantPath::GemvVec && !p.x_vec && p.mt == 2, "ldx % 4 != 0: scalar x reads; M = 2 -> mt 2");
  check(make_plan(big, 3, buf, 4096).mt == 4 && make_plan(big, 5, buf, 4096).mt == 8 &&
            make_plan(big, 8, buf, 4096).mt == 8 && make_plan(big, 8, buf, 4096).passes == 1,
        "GEMV template rows: 3 -> 4, 5 -> 8, 8 -> 8 in one pass");
  p = make_plan(big, 20, buf, 4096);
  check(p.path == QuantPath::GemvVec && p.passes == 3 && p.mt == 8,
        "M = 20 on 4096 rows (32 GEMM tiles): GEMV in 3 passes of 8");
  p = make_plan(big, 384, buf, 4096);
  check(p.path == QuantPath::GemvVec && p.passes == 48, "M = 384 on 4096 rows (96 tiles): still GEMV passes");
  p = make_plan(big, 385, buf, 4096);
  check(p.path == QuantPath::Gemm && p.grid_x == 32 && p.grid_y == 4 && p.x_vec && p.w_vec,
        "M = 385 on 4096 rows (128 tiles): tiled GEMM, grid 32 x 4, vector loads");
  p = make_plan(fake(4, 4096, 4095, 128, codes, sc), 1, buf, 4096);
  check(p.path == QuantPath::GemvGeneric && p.grid_x == 1024, "odd in: generic GEMV, one row per warp");
  check(make_plan(fake(4, 64, 4800, 48, codes, sc), 1, buf, 4800).path == QuantPath::GemvGeneric,
        "int4 group 48 splits a 32-code run: generic GEMV");
  check(make_plan(fake(8, 64, 4800, 48, codes, sc), 1, buf, 4800).path == QuantPath::GemvVec,
        "int8 group 48 is whole 16-code runs: vector GEMV");
  check(make_plan(fake(4, 64, 96, 1000, codes, sc), 1, buf, 96).path == QuantPath::GemvVec,
        "one group per row (group 1000 > in 96): vector GEMV");
  check(make_plan(fake(4, 64, 4096, 128, codes + 8, sc), 1, buf, 4096).path == QuantPath::GemvGeneric,
        "codes not 16-byte aligned: generic GEMV");
  check(make_plan(fake(4, 64, 4096, 128, codes + 8, sc), 1, buf, 4096, QuantPath::Gemm).w_vec,
        "8-byte aligned int4 codes: the GEMM still loads them as vectors");
  check(!make_plan(fake(8, 64, 4096, 128, codes + 8, sc), 1, buf, 4096, QuantPath::Gemm).w_vec,
        "int8 codes need 16-byte alignment for the GEMM's vector load");
  check(!make_plan(fake(4, 64, 4104, 8, codes, sc), 1, buf, 4104, QuantPath::Gemm).w_vec,
        "in % 16 != 0: the GEMM reads codes one at a time");
  p = make_plan(big, 1, buf, 4096, QuantPath::Gemm);
  check(p.path == QuantPath::Gemm && p.grid_x == 32 && p.grid_y == 1, "forced GEMM at M = 1: grid 32 x 1");
  expect_status(ZEROTH_E_INVALID_ARG,
                [&] { make_plan(fake(4, 64, 4095, 128, codes, sc), 1, buf, 4095, QuantPath::GemvVec); },
                "forcing the vector GEMV on odd in");
  expect_status(ZEROTH_E_SHAPE, [&] { make_plan(big, int64_t{65536} * 128, buf, 4096, QuantPath::Gemm); },
                "more than 65535 GEMM tile rows");
  QuantMatrixDevice permuted = big;
  permuted.perm = reinterpret_cast<const int32_t*>(buf);
  p = make_plan(permuted, 1, buf + 1, 4099);
  check(p.gather && p.path == QuantPath::GemvVec && p.x_vec, "perm: x gathered into aligned scratch, float4 reads");
  check(make_plan(big, 0, nullptr, 4096).nothing, "M = 0: nothing to do");
  check(make_plan(fake(4, 0, 64, 32, nullptr, nullptr), 3, buf, 64).nothing, "out = 0: nothing to do");
  check(make_plan(fake(4, 5, 0, 32, nullptr, nullptr), 3, buf, 1).zero_fill, "in = 0: y = 0");
}

#ifdef ZEROTH_WITH_CUDA

const zeroth_device kCpu{ZEROTH_DEVICE_CPU, 0};
const float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kSentinel = 12345.0f;

using Rng = zeroth_test::Rng;

const char* path_name(QuantPath p) {
  switch (p) {
    case QuantPath::Auto: return "auto";
    case QuantPath::GemvVec: return "gemv-vec";
    case QuantPath::GemvGeneric: return "gemv-generic";
    case QuantPath::Gemm: return "gemm";
  }
  return "?";
}

struct Case {
  int bits;
  int64_t rows, cols, gs;
  bool sym, f16_scales, perm;
  int64_t M, ldx_pad, ldy_pad;
  QuantPath path;    // forced, or Auto
  QuantPath expect;  // what the plan must pick (Auto: the forced path)
  bool frac_zeros = false;  // every third zero point + 0.375: the kernels' two-subtraction path
};

std::string name_of(const Case& c) {
  char buf[220];
  std::snprintf(buf, sizeof buf, "int%d [%lld x %lld] gs %lld %s%s%s M=%lld ldx+%lld ldy+%lld %s", c.bits,
                static_cast<long long>(c.rows), static_cast<long long>(c.cols), static_cast<long long>(c.gs),
                c.sym ? "sym" : "asym", c.f16_scales ? " f16-scales" : "", c.perm ? " perm" : "",
                static_cast<long long>(c.M), static_cast<long long>(c.ldx_pad), static_cast<long long>(c.ldy_pad),
                path_name(c.path == QuantPath::Auto ? c.expect : c.path));
  return buf;
}

// A quantized weight for a case: quantize() of uniform weights, int8 with some codes forced to
// -128 (GPTQ's full range), perm a random permutation.
TensorPtr make_weight(const Case& c, Rng& r) {
  std::vector<float> w(static_cast<size_t>(c.rows * c.cols));
  for (float& v : w) v = r.uniform();
  TensorPtr wt = tensor_from_host(ZEROTH_F32, Shape{c.rows, c.cols}, kCpu, w.data(), w.size() * 4);
  QuantizeOptions o;
  o.bits = c.bits;
  o.group_size = c.gs;
  o.symmetric = c.sym;
  o.scale_dtype = c.f16_scales ? ZEROTH_F16 : ZEROTH_F32;
  TensorPtr q = quantize(*wt, o);
  if (c.bits == 8)
    for (int64_t i = 0; i < q->numel; i += 7) q->as<int8_t>()[i] = -128;
  if (c.frac_zeros) {  // still (code − zero)·scale, but 2^23 + zero is no longer exact
    Tensor& z = *q->quant->zeros;
    for (int64_t i = 0; i < z.numel; i += 3) {
      if (z.dtype == ZEROTH_F32) z.as<float>()[i] += 0.375f;
      else z.as<uint16_t>()[i] = f32_to_f16(f16_to_f32(z.as<uint16_t>()[i]) + 0.375f);
    }
  }
  if (c.perm) {
    std::vector<int32_t> p(static_cast<size_t>(c.cols));
    for (int64_t i = 0; i < c.cols; ++i) p[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    for (int64_t i = c.cols - 1; i > 0; --i) std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(r.below(i + 1))]);
    auto info = std::make_shared<QuantInfo>(*q->quant);
    info->perm = tensor_from_host(ZEROTH_I32, Shape{c.cols}, kCpu, p.data(), p.size() * 4);
    q->quant = info;
  }
  return q;
}

// x [M, cols] with row stride ldx, padding NaN.
std::vector<float> make_x(Rng& r, int64_t M, int64_t cols, int64_t ldx) {
  std::vector<float> x(static_cast<size_t>(std::max<int64_t>(M * ldx, 1)), kNaN);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < cols; ++k) x[static_cast<size_t>(m * ldx + k)] = r.uniform();
  return x;
}

// float64 y[m, r] = Σ_k W[r, k]·x[m, k] over input features (W = dequantize(q): quant.h's f32 values
// in input-feature order, perm applied), and the bound's scale Σ_k |W·x|.
void reference(const Tensor& q, int64_t M, const std::vector<float>& x, int64_t ldx, std::vector<double>& ref,
               std::vector<double>& mag) {
  TensorPtr d = dequantize(q);
  const int64_t rows = q.shape[0], cols = q.shape[1];
  const float* W = d->as<float>();
  ref.assign(static_cast<size_t>(M * rows), 0.0);
  mag.assign(ref.size(), 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0, a = 0;
      for (int64_t k = 0; k < cols; ++k) {
        const double t = static_cast<double>(W[r * cols + k]) * x[static_cast<size_t>(m * ldx + k)];
        s += t;
        a += std::fabs(t);
      }
      ref[static_cast<size_t>(m * rows + r)] = s;
      mag[static_cast<size_t>(m * rows + r)] = a;
    }
}

// Runs the GPU product on `w` and returns y with its padding ([M, ldy]).
std::vector<float> run_gpu(const QuantMatrixDevice& w, int64_t M, const TensorPtr& gx, int64_t ldx, int64_t ldy,
                           const PerturbDesc& pd, QuantPath path) {
  std::vector<float> y0(static_cast<size_t>(std::max<int64_t>(M * ldy, 1)), kSentinel);
  TensorPtr gy = upload(ZEROTH_F32, y0);
  cuda::quant_matmul_path(w, M, gx->as<float>(), ldx, gy->as<float>(), ldy, pd, path);
  return download<float>(*gy);
}

// Counts outputs outside 1e-5·Σ|W·x| of `want` and padding that changed.
void compare(const std::vector<float>& got, const std::vector<float>& want, const std::vector<double>& ref,
             const std::vector<double>& mag, int64_t M, int64_t rows, int64_t ldy, const std::string& what) {
  int bad_cpu = 0, bad_ref = 0, bad_pad = 0;
  std::string first;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t r = 0; r < rows; ++r) {
      const size_t o = static_cast<size_t>(m * ldy + r), e = static_cast<size_t>(m * rows + r);
      const double tol = 1e-5 * mag[e] + 1e-30;
      const bool ok_cpu = std::fabs(static_cast<double>(got[o]) - want[o]) <= tol;
      const bool ok_ref = std::fabs(got[o] - ref[e]) <= tol;
      if (!ok_cpu) ++bad_cpu;
      if (!ok_ref) ++bad_ref;
      if ((!ok_cpu || !ok_ref) && first.empty())
        first = " (first: m " + std::to_string(m) + " r " + std::to_string(r) + ": gpu " + std::to_string(got[o]) +
                ", cpu " + std::to_string(want[o]) + ", f64 " + std::to_string(ref[e]) + ")";
    }
    for (int64_t r = rows; r < ldy; ++r)
      if (got[static_cast<size_t>(m * ldy + r)] != kSentinel) ++bad_pad;
  }
  check(bad_cpu == 0, "vs CPU quant_matmul: " + std::to_string(bad_cpu) + " outputs off, " + what + first);
  check(bad_ref == 0, "vs float64: " + std::to_string(bad_ref) + " outputs off, " + what + first);
  check(bad_pad == 0, "y's padding untouched, " + what);
}

void run_case(const Case& c, Rng& r, bool perturbed) {
  const std::string what = name_of(c);
  TensorPtr q = make_weight(c, r);
  std::vector<float> storage;
  const QuantMatrix cm = quant_matrix(*q, storage);
  const int64_t ldx = c.cols + c.ldx_pad, ldy = c.rows + c.ldy_pad;
  const std::vector<float> x = make_x(r, c.M, c.cols, ldx);
  TensorPtr gx = upload(ZEROTH_F32, x);
  cuda::DeviceQuantWeight dw = cuda::upload_quant_matrix(*q, 0);

  // The plan picks the kernel this case is meant to exercise.
  const cuda::int4_plan::Plan plan = cuda::int4_plan::make_plan(dw.matrix, c.M, gx->as<float>(), ldx, c.path);
  check(plan.path == (c.path == QuantPath::Auto ? c.expect : c.path),
        std::string("plan picks ") + path_name(plan.path) + ", " + what);

  // Plain product.
  const std::vector<float> got = run_gpu(dw.matrix, c.M, gx, ldx, ldy, {}, c.path);
  std::vector<float> cpu(got.size(), kSentinel);
  quant_matmul(cm, c.M, x.data(), ldx, cpu.data(), ldy);
  std::vector<double> ref, mag;
  reference(*q, c.M, x, ldx, ref, mag);
  compare(got, cpu, ref, mag, c.M, c.rows, ldy, what);
  check(run_gpu(dw.matrix, c.M, gx, ldx, ldy, {}, c.path) == got, "repeated call gives the same bits, " + what);
  if (!perturbed) return;

  for (int d = 0; d < 2; ++d) {
    const rng::Distribution dist = d ? rng::Distribution::Rademacher : rng::Distribution::Normal;
    const PerturbDesc pd = perturb_desc(0x5eed0000ull + static_cast<uint64_t>(c.rows), "model.layers.0.mlp.up_proj.scales",
                                2e-3f, dist);
    const std::string pw = what + (d ? ", rademacher" : ", normal");
    const std::vector<float> fused = run_gpu(dw.matrix, c.M, gx, ldx, ldy, pd, c.path);
    // The scales perturbed in place by the CPU kernel (z of element r·groups + g), uploaded.
    TensorPtr ps = tensor_from_host(ZEROTH_F32, Shape{cm.rows, cm.groups}, kCpu, cm.scales,
                                    static_cast<size_t>(cm.rows * cm.groups) * 4);
    perturb({PerturbTarget{ps, pd.stream, nullptr}}, pd.seed, pd.scale, pd.dist);
    TensorPtr gps = tensor_copy(*ps, ZEROTH_F32, kGpu);
    QuantMatrixDevice wp = dw.matrix;
    wp.scales = gps->as<float>();
    const std::vector<float> plain = run_gpu(wp, c.M, gx, ldx, ldy, {}, c.path);
    check(std::memcmp(fused.data(), plain.data(), fused.size() * 4) == 0,
          "scales perturbed in the kernel's read == scales perturbed in place by the CPU (bits), " + pw);
    check(fused != got, "the perturbed product differs from the clean one, " + pw);
    QuantMatrix cmp = cm;
    cmp.scales = ps->as<float>();
    std::vector<float> cpu_p(got.size(), kSentinel);
    quant_matmul(cmp, c.M, x.data(), ldx, cpu_p.data(), ldy);
    // float64 reference on the perturbed weights: the CPU dequantization with the perturbed scales.
    auto info = std::make_shared<QuantInfo>(*q->quant);
    info->scales = ps;
    if (info->zeros && info->zeros->dtype != ZEROTH_F32)  // keep zeros in the scales' dtype (f32 now)
      info->zeros = tensor_from_host(ZEROTH_F32, info->zeros->shape, kCpu, cm.zeros,
                                     static_cast<size_t>(cm.rows * cm.groups) * 4);
    TensorPtr qp = tensor_empty(q->dtype, q->shape, kCpu);
    std::memcpy(qp->data(), q->data(), q->nbytes());
    qp->quant = info;
    reference(*qp, c.M, x, ldx, ref, mag);
    compare(fused, cpu_p, ref, mag, c.M, c.rows, ldy, "perturbed " + pw);
  }
}

void test_products() {
  Rng r{2024};
  const QuantPath A = QuantPath::Auto, V = QuantPath::GemvVec, G = QuantPath::GemvGeneric, T = QuantPath::Gemm;
  // bits rows cols gs sym f16 perm M ldx+ ldy+ path expect
  const Case cases[] = {
      // vector GEMV: every template (M 1, 2, 3 -> 4, 5 -> 8, 8), partial 1024-column steps
      {4, 37, 96, 32, false, false, false, 1, 0, 0, A, V},
      {4, 37, 96, 32, false, false, false, 2, 0, 3, A, V},
      {4, 37, 96, 32, true, false, false, 3, 4, 0, A, V},
      {4, 37, 96, 32, false, false, false, 5, 0, 0, A, V},
      {4, 37, 96, 32, false, false, false, 8, 0, 1, A, V},
      {4, 300, 4160, 128, true, false, false, 1, 0, 0, A, V},     // partial last group (64 of 128)
      {4, 129, 2112, 64, false, true, false, 2, 0, 0, A, V},      // f16 scales and zeros
      {4, 129, 2112, 64, false, true, false, 1, 0, 0, A, V, true},  // fractional zeros
      {4, 67, 4160, 128, false, false, false, 5, 0, 0, A, V, true},
      {4, 33, 352, 352, false, false, false, 1, 0, 0, A, V},      // one group per row
      {4, 40, 320, 1000, true, false, false, 4, 0, 0, A, V},      // group size > in
      {4, 51, 2080, 32, false, false, false, 3, 1, 0, A, V},      // ldx % 4 != 0: scalar x reads
      {4, 70, 256, 32, false, false, true, 1, 0, 0, A, V},        // perm
      {8, 50, 272, 0, true, false, false, 1, 0, 0, A, V},         // int8, one group per row
      {8, 50, 272, 0, true, false, false, 4, 0, 0, A, V},
      {8, 45, 1040, 48, true, false, false, 3, 0, 0, A, V},       // int8 group 48: whole 16-code runs
      {8, 45, 1040, 64, true, false, true, 2, 0, 0, A, V},        // int8 perm
      // generic GEMV
      {4, 21, 101, 32, false, false, false, 1, 0, 0, A, G},       // odd in: rows start in high nibbles
      {4, 21, 101, 32, false, false, false, 3, 2, 2, A, G},
      {4, 30, 480, 48, false, false, false, 2, 0, 0, A, G},       // group 48 splits a 32-code run
      {4, 30, 37, 5, true, false, true, 1, 0, 0, A, G},           // tiny groups, perm
      {8, 19, 100, 0, true, false, false, 5, 0, 0, A, G},         // int8, in % 16 != 0
      {4, 21, 101, 32, false, false, false, 2, 0, 0, A, G, true},  // fractional zeros
      {4, 37, 96, 32, false, false, false, 2, 0, 0, G, G},        // forced on a vector shape
      // GEMV passes of 8 x rows
      {4, 70, 256, 64, false, false, false, 20, 0, 0, A, V},
      {4, 23, 99, 32, false, false, false, 11, 1, 0, A, G},
      // tiled GEMM (forced: small shapes, then as the plan picks it)
      {4, 200, 300, 32, false, false, false, 130, 0, 0, T, T},    // in % 16 != 0: codes one by one
      {4, 131, 512, 128, true, false, false, 129, 0, 2, T, T},    // vector code loads
      {4, 131, 77, 16, false, false, false, 40, 3, 0, T, T},      // odd in, groups straddle a thread's 16
      {4, 131, 77, 16, false, false, false, 40, 3, 0, T, T, true},  // fractional zeros
      {4, 96, 200, 7, false, false, true, 33, 0, 0, T, T},        // group 7, perm
      {8, 70, 96, 32, true, false, false, 150, 0, 0, T, T},
      {8, 61, 100, 0, true, false, false, 9, 1, 1, T, T},         // int8 codes one by one
      {4, 37, 96, 32, false, false, false, 1, 0, 0, T, T},        // M = 1 through the GEMM
      {4, 8200, 64, 32, false, false, false, 200, 0, 0, A, T},    // 2 x 65 tiles: the plan's GEMM
  };
  int i = 0;
  for (const Case& c : cases) {
    // The perturbation check on a subset that covers every kernel, both bit widths and perm.
    const bool perturbed = i % 3 == 0 || c.perm || c.frac_zeros || c.path == T || c.expect == G;
    run_case(c, r, perturbed);
    ++i;
  }
}

void test_edges() {
  Rng r{77};
  // in == 0: y = 0 (the padding untouched).
  QuantMatrixDevice w;
  w.bits = 4;
  w.rows = 5;
  w.cols = 0;
  w.group_size = 32;
  w.groups = 0;
  TensorPtr gx = upload(ZEROTH_F32, std::vector<float>(4, 1.0f));
  std::vector<float> y = run_gpu(w, 3, gx, 1, 6, {}, QuantPath::Auto);
  bool zeros = true;
  for (int m = 0; m < 3; ++m)
    for (int j = 0; j < 6; ++j) zeros = zeros && y[static_cast<size_t>(m * 6 + j)] == (j < 5 ? 0.0f : kSentinel);
  check(zeros, "in = 0 writes zeros and leaves the padding alone");

  // Host memory and mismatched strides are refused before any launch.
  const Case c{4, 16, 64, 32, false, false, false, 2, 0, 0, QuantPath::Auto, QuantPath::GemvVec};
  TensorPtr q = make_weight(c, r);
  cuda::DeviceQuantWeight dw = cuda::upload_quant_matrix(*q, 0);
  std::vector<float> hx(128, 1.0f);
  TensorPtr gx2 = upload(ZEROTH_F32, hx);
  TensorPtr gy = tensor_zeros(ZEROTH_F32, Shape{32}, kGpu);
  expect_status(ZEROTH_E_DEVICE, [&] { cuda::quant_matmul(dw.matrix, 2, hx.data(), 64, gy->as<float>(), 16); },
                "x in host memory");
  QuantMatrixDevice host_scales = dw.matrix;
  std::vector<float> hs(static_cast<size_t>(16 * 2), 1.0f);
  host_scales.scales = hs.data();
  expect_status(ZEROTH_E_DEVICE,
                [&] { cuda::quant_matmul(host_scales, 2, gx2->as<float>(), 64, gy->as<float>(), 16); },
                "scales in host memory");
  expect_status(ZEROTH_E_SHAPE, [&] { cuda::quant_matmul(dw.matrix, 2, gx2->as<float>(), 63, gy->as<float>(), 16); },
                "ldx < in");
  expect_status(ZEROTH_E_DEVICE, [&] { cuda::quant_matmul_on(-1, dw.matrix, 2, gx2->as<float>(), 64, gy->as<float>(), 16); },
                "quant_matmul_on a negative device");
  // quant_matmul_on (no pointer queries) runs the same kernels.
  cuda::quant_matmul(dw.matrix, 2, gx2->as<float>(), 64, gy->as<float>(), 16);
  const std::vector<float> checked = download<float>(*gy);
  TensorPtr gy2 = tensor_zeros(ZEROTH_F32, Shape{32}, kGpu);
  cuda::quant_matmul_on(0, dw.matrix, 2, gx2->as<float>(), 64, gy2->as<float>(), 16);
  check(download<float>(*gy2) == checked, "quant_matmul_on == quant_matmul (bits)");
  TensorPtr q16 = tensor_zeros(ZEROTH_F32, Shape{4, 4}, kCpu);
  expect_status(ZEROTH_E_DTYPE, [&] { cuda::upload_quant_matrix(*q16, 0); }, "uploading an f32 tensor as quantized");
}

// ---- benchmark mode -------------------------------------------------------------------------

void bench() {
  const DeviceInfo info = device_info(kGpu);
  // The reference: a device-to-device copy of 512 MiB (bytes read + written per second).
  const int64_t copy_n = int64_t{128} << 20;
  TensorPtr big = tensor_zeros(ZEROTH_F32, Shape{copy_n}, kGpu);
  const double copy_s = seconds_of([&] { tensor_copy(*big, ZEROTH_F32, kGpu); }, 5);
  const double copy_GBps = 2.0 * 4.0 * static_cast<double>(copy_n) / copy_s / 1e9;
  big.reset();
  std::printf("{\"bench\": \"cuda_int4\", \"device\": \"%s\", \"copy_GBps\": %.1f, \"gemv\": [", info.name.c_str(),
              copy_GBps);
  const int64_t shapes[][2] = {{4096, 4096}, {4096, 11008}, {11008, 4096}};
  const int64_t gs = 128;
  Rng r{1};
  bool first = true;
  for (const auto& s : shapes) {
    const int64_t out = s[0], in = s[1], groups = in / gs;
    const int64_t code_bytes = out * in / 2, scale_bytes = out * groups * 4;
    const double weight_bytes = static_cast<double>(code_bytes + scale_bytes);
    std::vector<uint8_t> codes(static_cast<size_t>(code_bytes));
    for (uint8_t& b : codes) b = static_cast<uint8_t>(r.next());
    std::vector<float> scales(static_cast<size_t>(out * groups));
    for (float& v : scales) v = 0.01f + 0.001f * std::fabs(r.uniform());
    TensorPtr gc = upload(ZEROTH_U8, codes), gsc = upload(ZEROTH_F32, scales);
    // Enough distinct weights (>= 512 MiB) that L2 (50 MiB on an H100) holds none of them between
    // uses: each GEMV streams its weight from HBM, as in a model's forward.
    const int copies = static_cast<int>(std::max<double>(4.0, std::ceil(512.0 * 1048576.0 / weight_bytes)));
    std::vector<TensorPtr> keep;
    std::vector<QuantMatrixDevice> ws;
    for (int k = 0; k < copies; ++k) {
      keep.push_back(tensor_copy(*gc, ZEROTH_U8, kGpu));
      keep.push_back(tensor_copy(*gsc, ZEROTH_F32, kGpu));
      QuantMatrixDevice w;
      w.bits = 4;
      w.rows = out;
      w.cols = in;
      w.group_size = gs;
      w.groups = groups;
      w.codes4 = keep[keep.size() - 2]->as<uint8_t>();
      w.scales = keep.back()->as<float>();
      w.fixed_zero = 8.0f;
      ws.push_back(w);
    }
    TensorPtr x = upload(ZEROTH_F32, std::vector<float>(static_cast<size_t>(8 * in), 0.5f));
    TensorPtr y = tensor_zeros(ZEROTH_F32, Shape{8 * out}, kGpu);
    const PerturbDesc pn = perturb_desc(3, "bench.scales", 1e-3f, rng::Distribution::Normal);
    // quant_matmul_on: the kernels without the driver's pointer queries (the model forward's
    // call); `checked` adds them (quant_matmul), which host-bounds the smallest shape.
    auto per_gemv = [&](int64_t M, const PerturbDesc& pd, bool checked) {
      return seconds_of([&] {
               for (const QuantMatrixDevice& w : ws) {
                 if (checked) cuda::quant_matmul(w, M, x->as<float>(), in, y->as<float>(), out, pd);
                 else cuda::quant_matmul_on(0, w, M, x->as<float>(), in, y->as<float>(), out, pd);
               }
             }, 5) / static_cast<double>(copies);
    };
    const double t1 = per_gemv(1, {}, false), t1p = per_gemv(1, pn, false), t8 = per_gemv(8, {}, false);
    const double t1c = per_gemv(1, {}, true);
    std::printf("%s{\"out\": %lld, \"in\": %lld, \"group_size\": %lld, \"weight_bytes\": %.0f, \"gemv_us\": %.2f, "
                "\"gemv_GBps\": %.1f, \"gemv_vs_copy\": %.3f, \"gemv_perturbed_normal_GBps\": %.1f, "
                "\"gemv_perturbed_vs_copy\": %.3f, \"gemv_m8_GBps\": %.1f, \"gemv_checked_us\": %.2f}",
                first ? "" : ", ", static_cast<long long>(out), static_cast<long long>(in), static_cast<long long>(gs),
                weight_bytes, t1 * 1e6, weight_bytes / t1 / 1e9, weight_bytes / t1 / 1e9 / copy_GBps,
                weight_bytes / t1p / 1e9, weight_bytes / t1p / 1e9 / copy_GBps, weight_bytes / t8 / 1e9, t1c * 1e6);
    first = false;
  }
  // The tiled GEMM: y[M, out] = x[M, in]·Wᵀ at M = 2048 (prefill), int4 group 128.
  std::printf("], \"gemm\": [");
  first = true;
  for (const auto& s : shapes) {
    const int64_t out = s[0], in = s[1], groups = in / gs, M = 2048;
    std::vector<uint8_t> codes(static_cast<size_t>(out * in / 2));
    for (uint8_t& b : codes) b = static_cast<uint8_t>(r.next());
    TensorPtr gc = upload(ZEROTH_U8, codes);
    TensorPtr gsc = upload(ZEROTH_F32, std::vector<float>(static_cast<size_t>(out * groups), 0.01f));
    TensorPtr x = upload(ZEROTH_F32, std::vector<float>(static_cast<size_t>(M * in), 0.5f));
    TensorPtr y = tensor_zeros(ZEROTH_F32, Shape{M * out}, kGpu);
    QuantMatrixDevice w;
    w.bits = 4;
    w.rows = out;
    w.cols = in;
    w.group_size = gs;
    w.groups = groups;
    w.codes4 = gc->as<uint8_t>();
    w.scales = gsc->as<float>();
    w.fixed_zero = 8.0f;
    const double t = seconds_of([&] { cuda::quant_matmul(w, M, x->as<float>(), in, y->as<float>(), out); }, 5);
    const double tp = seconds_of([&] {
      cuda::quant_matmul(w, M, x->as<float>(), in, y->as<float>(), out,
                         perturb_desc(3, "bench.scales", 1e-3f, rng::Distribution::Normal));
    }, 5);
    const double flop = 2.0 * static_cast<double>(M) * static_cast<double>(out) * static_cast<double>(in);
    std::printf("%s{\"M\": %lld, \"out\": %lld, \"in\": %lld, \"gemm_tflops\": %.3f, \"gemm_perturbed_tflops\": %.3f}",
                first ? "" : ", ", static_cast<long long>(M), static_cast<long long>(out), static_cast<long long>(in),
                flop / t / 1e12, flop / tp / 1e12);
    first = false;
  }
  std::printf("]}\n");
}

#endif  // ZEROTH_WITH_CUDA

}  // namespace

int main(int argc, char** argv) {
  return zeroth_test::cuda_test_main("test_cuda_int4", argc, argv, test_plan,
#ifdef ZEROTH_WITH_CUDA
                                     [] {
                                       test_products();
                                       test_edges();
                                     },
                                     bench);
#else
                                     [] {}, [] {});
#endif
}
