// check.h — the harness every native test program shares: counted checks, expected errors, a
// deterministic test-data generator, and the closing "N passed, N failed" line that
// test/native.test.ts (and CI) read.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

#include "core/errors.h"

namespace zeroth_test {

inline int g_passed = 0;
inline int g_failed = 0;

// Counts one check; prints the first 30 failures.
inline void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    if (g_failed <= 30) std::printf("FAIL: %s\n", what.c_str());
  }
}

// Passes when fn throws a zeroth::Error with `code`.
template <typename F>
void expect_error(zeroth_status code, const std::string& what, F&& fn) {
  try {
    fn();
    check(false, what + ": no error");
  } catch (const zeroth::Error& e) {
    check(e.code() == code, what + ": got " + zeroth::status_name(e.code()) + " (" + e.what() + "), expected " +
                                zeroth::status_name(code));
  }
}

// Deterministic test data (SplitMix64).
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  float uniform() { return static_cast<float>(static_cast<double>(next() >> 40) / 8388608.0 - 1.0); }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

// The closing line; the program's exit status.
inline int report() {
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}

}  // namespace zeroth_test
