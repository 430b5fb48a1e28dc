// cuda_test.h — what the CUDA test programs (test_cuda_*.cpp) share on top of check.h: the
// program skeleton (host checks everywhere, GPU checks only where a device answers, `--bench`
// mode printing one JSON line), device upload / download of vectors, a best-of timer that
// synchronises the device, and a perturbation descriptor named like a weight.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "check.h"
#include "core/backend.h"
#include "core/errors.h"
#include "core/philox.h"
#include "core/tensor.h"
#include "cpu/gemm.h"  // PerturbDesc

namespace zeroth_test {

inline const zeroth_device kGpu{ZEROTH_DEVICE_CUDA, 0};

// check.h's expect_error with the callable first (reads better next to the calls it wraps).
template <typename F>
void expect_status(zeroth_status want, F&& fn, const std::string& what) {
  expect_error(want, what, std::forward<F>(fn));
}

// An active perturbation of the weight called `name` (its stream is the name's FNV-1a id).
inline zeroth::PerturbDesc perturb_desc(uint64_t seed, const char* name, float scale, zeroth::rng::Distribution dist) {
  zeroth::PerturbDesc d;
  d.active = true;
  d.seed = seed;
  d.stream = zeroth::rng::stream_id(name, std::strlen(name));
  d.scale = scale;
  d.dist = dist;
  return d;
}

template <typename T>
zeroth::TensorPtr upload(zeroth_dtype dt, const std::vector<T>& v) {
  return zeroth::tensor_from_host(dt, zeroth::Shape{static_cast<int64_t>(v.size())}, kGpu, v.data(), v.size() * sizeof(T));
}

template <typename T>
std::vector<T> download(const zeroth::Tensor& t) {
  std::vector<T> out(t.nbytes() / sizeof(T));
  zeroth::tensor_to_host(t, out.data(), out.size() * sizeof(T));
  return out;
}

// The fastest of `reps` runs of fn, each waited for on the device, after one warm-up run (first
// launches, the caching allocator, caches).
inline double seconds_of(const std::function<void()>& fn, int reps) {
  fn();
  zeroth::backend_for(kGpu).synchronize(0);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    zeroth::backend_for(kGpu).synchronize(0);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// main() of a CUDA test program. `--bench`: bench() prints one JSON line (or {"skipped": ...}
// without a device). Otherwise host_checks() run everywhere, gpu_checks() where a CUDA device
// answers (a SKIP line says why not), and the closing "N passed, N failed" line is the status.
// An unexpected zeroth::Error in either counts as a failure instead of ending the program.
inline int cuda_test_main(const char* name, int argc, char** argv, const std::function<void()>& host_checks,
                          const std::function<void()>& gpu_checks, const std::function<void()>& bench) {
  const bool cuda_build =
#ifdef ZEROTH_WITH_CUDA
      true;
#else
      false;
#endif
  const bool has_gpu = cuda_build && zeroth::device_count(ZEROTH_DEVICE_CUDA) > 0;
  if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) {
    if (!has_gpu) {
      std::printf("{\"skipped\": \"no CUDA device\"}\n");
      return 0;
    }
    try {
      bench();
      return 0;
    } catch (const zeroth::Error& e) {
      std::printf("{\"error\": \"%s\"}\n", zeroth::status_name(e.code()));
      return 1;
    }
  }
  try {
    host_checks();
  } catch (const zeroth::Error& e) {
    check(false, std::string("unexpected error in the host checks ") + zeroth::status_name(e.code()) + ": " + e.what());
  }
  if (!cuda_build) {
    std::printf("SKIP %s GPU checks: this build of zeroth has no CUDA backend (host checks ran)\n", name);
  } else if (!has_gpu) {
    std::printf("SKIP %s GPU checks: no usable CUDA device or driver on this machine (host checks ran)\n", name);
  } else {
    try {
      std::printf("device: %s\n", zeroth::device_info(kGpu).name.c_str());
      gpu_checks();
    } catch (const zeroth::Error& e) {
      check(false, std::string("unexpected error ") + zeroth::status_name(e.code()) + ": " + e.what());
    }
  }
  return report();
}

}  // namespace zeroth_test
