// test_philox.cpp — native/core/philox.h against published and independent references.
//
//  - Philox4x32-10 known-answer vectors from Random123's kat_vectors (philox4x32 10 lines).
//  - The counter/key layout of philox_block and the element indexing of normal_at/rademacher_at.
//  - stream_id = FNV-1a 64 (published FNV test values for "", "a", "foobar").
//  - The polynomial -2·ln(u) and quarter-turn sin/cos against libm in double, over every u the
//    generator can produce (2^24 values) and 2^20 evenly spaced angles. Bounds (measured error
//    plus margin, far below the 1e-3 that a wrong coefficient gives):
//      |minus_two_log(u) - (-2 ln u)| <= 1e-6 · max(1, -2 ln u)
//      |sin - sin_libm|, |cos - cos_libm| <= 3e-7
//  - Box–Muller output against a float64 Box–Muller on the same words: |z - z64| <= 2e-6·max(1,|z|).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/philox.h"
#include "check.h"

using namespace zeroth;
using namespace zeroth::rng;

using namespace zeroth_test;

namespace {

std::string hex(uint32_t x) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", x);
  return buf;
}

void test_kat() {
  struct Kat {
    uint32_t ctr[4];
    uint32_t key[2];
    uint32_t want[4];
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) {
    const U32x4 got = philox4x32_10(U32x4{{k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]}}, k.key[0], k.key[1]);
    for (int i = 0; i < 4; ++i)
      check(got.v[i] == k.want[i], "KAT ctr " + hex(k.ctr[0]) + " word " + std::to_string(i) + ": got " +
                                       hex(got.v[i]) + ", want " + hex(k.want[i]));
  }
  // philox_block's layout: counter = (block lo, block hi, stream lo, stream hi), key = seed.
  const U32x4 a = philox_block(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull);
  check(a.v[0] == 0xd16cfe09 && a.v[3] == 0x24126ea1, "philox_block maps (seed, stream, block) to key/counter");
}

void test_indexing() {
  const uint64_t seed = 0x1234567890abcdefull, stream = 77;
  for (uint64_t block : {0ull, 1ull, 0xffffffffull, 0x100000000ull}) {
    float z[4];
    normal4(seed, stream, block, z);
    for (uint64_t j = 0; j < 4; ++j)
      check(fbits(normal_at(seed, stream, 4 * block + j)) == fbits(z[j]), "normal_at indexes normal4");
    const U32x4 r = philox_block(seed, stream, block);
    for (uint64_t e = 0; e < 128; e += 13) {
      const bool bit = (r.v[e / 32] >> (e % 32)) & 1u;
      check(rademacher_at(seed, stream, 128 * block + e) == (bit ? 1.0f : -1.0f), "rademacher_at bit layout");
    }
  }
}

void test_stream_id() {
  check(stream_id("", 0) == 0xcbf29ce484222325ull, "FNV-1a of empty string");
  check(stream_id("a", 1) == 0xaf63dc4c8601ec8cull, "FNV-1a of 'a'");
  check(stream_id("foobar", 6) == 0x85944171f73967e8ull, "FNV-1a of 'foobar'");
}

void test_polynomials() {
  double worst_log = 0;
  for (uint32_t k = 1; k <= (1u << 24); ++k) {
    const float u = fmul(static_cast<float>(k), 5.9604644775390625e-8f);
    const double ref = -2.0 * std::log(static_cast<double>(u));
    const double err = std::fabs(static_cast<double>(minus_two_log(u)) - ref) / std::fmax(1.0, ref);
    if (err > worst_log) worst_log = err;
  }
  check(worst_log <= 1e-6, "minus_two_log relative error " + std::to_string(worst_log) + " > 1e-6");
  double worst_trig = 0;
  for (uint32_t k = 0; k < (1u << 20); ++k) {
    const float x = static_cast<float>(k) / static_cast<float>(1u << 20);
    float s, c;
    sincos_quarter(x, &s, &c);
    const double angle = static_cast<double>(x) * 1.5707963267948966;
    worst_trig = std::fmax(worst_trig, std::fabs(s - std::sin(angle)));
    worst_trig = std::fmax(worst_trig, std::fabs(c - std::cos(angle)));
  }
  check(worst_trig <= 3e-7, "sincos_quarter error " + std::to_string(worst_trig) + " > 3e-7");
  std::printf("max rel error of -2ln(u): %.3g; max abs error of sin/cos: %.3g\n", worst_log, worst_trig);

  // Box–Muller against float64 on the same words (quadrant + 24-bit position, 24-bit u).
  double worst_bm = 0;
  for (uint64_t block = 0; block < 200000; ++block) {
    const U32x4 r = philox_block(99, 5, block);
    for (int pair = 0; pair < 2; ++pair) {
      const uint32_t a = r.v[2 * pair], b = r.v[2 * pair + 1];
      float z0, z1;
      box_muller(a, b, &z0, &z1);
      const double u = static_cast<double>((a >> 8) + 1u) / 16777216.0;
      const double rad = std::sqrt(-2.0 * std::log(u));
      const double angle = 1.5707963267948966 * (static_cast<double>(b >> 30) + ((b >> 6) & 0xffffffu) / 16777216.0);
      const double e0 = std::fabs(z0 - rad * std::cos(angle)) / std::fmax(1.0, std::fabs(z0));
      const double e1 = std::fabs(z1 - rad * std::sin(angle)) / std::fmax(1.0, std::fabs(z1));
      worst_bm = std::fmax(worst_bm, std::fmax(e0, e1));
    }
  }
  check(worst_bm <= 2e-6, "box_muller error vs float64 " + std::to_string(worst_bm) + " > 2e-6");
  std::printf("max error of box_muller vs float64: %.3g\n", worst_bm);
}

}  // namespace

int main() {
  test_kat();
  test_indexing();
  test_stream_id();
  test_polynomials();
  return report();
}
