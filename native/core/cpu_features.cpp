#include "cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace zeroth {
namespace {

SimdLevel detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return SimdLevel::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::Avx2;
#endif
  return SimdLevel::Scalar;
}

SimdLevel from_env(SimdLevel hw) {
  const char* env = std::getenv("ZEROTH_SIMD");
  if (!env) return hw;
  SimdLevel want = hw;
  if (!std::strcmp(env, "scalar")) want = SimdLevel::Scalar;
  else if (!std::strcmp(env, "avx2")) want = SimdLevel::Avx2;
  else if (!std::strcmp(env, "avx512")) want = SimdLevel::Avx512;
  return static_cast<int>(want) < static_cast<int>(hw) ? want : hw;
}

const SimdLevel kHardware = detect();
std::atomic<int> g_level{static_cast<int>(from_env(kHardware))};

}  // namespace

SimdLevel simd_level() { return static_cast<SimdLevel>(g_level.load(std::memory_order_relaxed)); }

void set_simd_level(SimdLevel l) {
  const int want = static_cast<int>(l);
  const int hw = static_cast<int>(kHardware);
  g_level.store(want < hw ? want : hw);
}

const char* simd_level_name(SimdLevel l) {
  switch (l) {
    case SimdLevel::Avx512: return "avx512";
    case SimdLevel::Avx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace zeroth
