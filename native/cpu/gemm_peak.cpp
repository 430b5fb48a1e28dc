// gemm_peak.cpp — the machine's peak f32 multiply-add rate, the reference the GEMM benchmark is
// measured against. Each thread runs independent FMA chains (enough of them to cover the FMA
// latency on every pipe) entirely in registers, so nothing but the FMA units limits the loop.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/cpu_features.h"
#include "core/errors.h"
#include "gemm.h"

namespace zeroth {
namespace {

constexpr int64_t kItersPerCheck = 1 << 16;

// acc = acc·m + c keeps every value bounded (m < 1) and never lets the compiler fold the loop.
__attribute__((target("avx512f"))) double fma_loop_avx512(int64_t iters, float seed) {
  constexpr int kChains = 24;  // 2 FMA pipes × 4-cycle latency needs >= 8; 24 leaves slack
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(seed + static_cast<float>(i));
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, c);
  }
  alignas(64) float out[16];
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  _mm512_store_ps(out, s);
  double total = 0;
  for (float v : out) total += v;
  return total;
}

__attribute__((target("avx2,fma"))) double fma_loop_avx2(int64_t iters, float seed) {
  constexpr int kChains = 12;
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(seed + static_cast<float>(i));
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, c);
  }
  alignas(32) float out[8];
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, acc[i]);
  _mm256_store_ps(out, s);
  double total = 0;
  for (float v : out) total += v;
  return total;
}

double mul_add_loop_scalar(int64_t iters, float seed) {
  constexpr int kChains = 16;
  float acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = seed + static_cast<float>(i);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * 0.999999f + 1e-6f;
  double total = 0;
  for (float v : acc) total += v;
  return total;
}

}  // namespace

double measure_peak_gflops(double seconds, int threads) {
  ZCHECK(seconds > 0 && seconds <= 60, ZEROTH_E_INVALID_ARG, "measure_peak_gflops: seconds must be in (0, 60]");
  ZCHECK(threads >= 1 && threads <= 1024, ZEROTH_E_INVALID_ARG, "measure_peak_gflops: threads must be in [1, 1024]");
  const SimdLevel level = simd_level();
  double (*loop)(int64_t, float) = mul_add_loop_scalar;
  double flops_per_iter = 16 * 2;
  if (level == SimdLevel::Avx512) loop = fma_loop_avx512, flops_per_iter = 24 * 16 * 2;
  else if (level == SimdLevel::Avx2) loop = fma_loop_avx2, flops_per_iter = 12 * 8 * 2;

  // All threads start together and each stops after `seconds`; the rate is the flops of all of
  // them over the longest one's time, so a thread that got less CPU lowers the figure.
  using Clock = std::chrono::steady_clock;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<double> elapsed(threads), flops(threads), sink(threads);
  auto body = [&](int t) {
    ready.fetch_add(1);
    while (!go.load()) std::this_thread::yield();
    const auto start = Clock::now();
    int64_t chunks = 0;
    double s = 0;
    double dt = 0;
    do {
      s += loop(kItersPerCheck, 1.0f + static_cast<float>(t));
      ++chunks;
      dt = std::chrono::duration<double>(Clock::now() - start).count();
    } while (dt < seconds);
    elapsed[t] = dt;
    flops[t] = static_cast<double>(chunks) * kItersPerCheck * flops_per_iter;
    sink[t] = s;
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(body, t);
  while (ready.load() < threads - 1) std::this_thread::yield();
  go.store(true);
  body(0);
  for (auto& th : pool) th.join();
  double total = 0, longest = 0;
  for (int t = 0; t < threads; ++t) total += flops[t], longest = std::max(longest, elapsed[t]);
  volatile double keep = sink[0];  // the loops' results are used
  (void)keep;
  return total / longest * 1e-9;
}

}  // namespace zeroth
