// cpu_features.h — which SIMD paths this CPU runs; kernels pick theirs at run time, so one
// binary built without -march=native runs on any x86-64. ZEROTH_SIMD=scalar|avx2|avx512
// caps the choice (for tests that cover every path and for benchmarks).
#pragma once

namespace zeroth {

enum class SimdLevel { Scalar = 0, Avx2 = 1, Avx512 = 2 };

SimdLevel simd_level();           // the best level allowed by the CPU and ZEROTH_SIMD
void set_simd_level(SimdLevel l); // clamp to what the CPU supports (tests)
const char* simd_level_name(SimdLevel l);

}  // namespace zeroth
