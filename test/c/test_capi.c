/* test_capi.c — links libzeroth through the C ABI only and checks it end to end.
 * Prints "N passed, N failed" and exits non-zero on any failure. Run by test/capi.test.ts;
 * it needs no Node, so it also runs on a bare GPU machine (pass "cuda" to include the
 * CUDA checks, which skip with a message when no device is present). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "zeroth.h"

static int passed = 0, failed = 0;
#define CHECK(cond, ...)                                  \
  do {                                                    \
    if (cond) {                                           \
      ++passed;                                           \
    } else {                                              \
      ++failed;                                           \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);         \
      printf(__VA_ARGS__);                                \
      printf("\n");                                       \
    }                                                     \
  } while (0)

static const zeroth_device CPU = {ZEROTH_DEVICE_CPU, 0};

static void test_version(void) {
  CHECK(zeroth_version() == ZEROTH_VERSION_MAJOR * 10000 + ZEROTH_VERSION_MINOR * 100 + ZEROTH_VERSION_PATCH,
        "version %d", zeroth_version());
  CHECK(zeroth_abi_version() == ZEROTH_ABI_VERSION, "abi %d", zeroth_abi_version());
  CHECK(zeroth_dtype_size(ZEROTH_BF16) == 2 && zeroth_dtype_size(ZEROTH_F64) == 8, "dtype sizes");
  CHECK(strcmp(zeroth_dtype_name(ZEROTH_INT4), "int4") == 0, "int4 name");
  CHECK(zeroth_device_count(ZEROTH_DEVICE_CPU) == 1, "one cpu");
}

static void test_create_read_copy(void) {
  const int64_t shape[2] = {2, 3};
  const float data[6] = {1.0f, -2.5f, 3.25f, 65504.0f, 1e-8f, -0.0f};
  zeroth_tensor* t = zeroth_tensor_from_data(ZEROTH_F32, shape, 2, CPU, data, sizeof data);
  CHECK(t != NULL, "from_data: %s", zeroth_last_error());
  if (!t) return;
  CHECK(zeroth_tensor_ndim(t) == 2 && zeroth_tensor_dim(t, 1) == 3 && zeroth_tensor_numel(t) == 6, "shape");
  float back[6];
  CHECK(zeroth_tensor_read(t, back, sizeof back) == ZEROTH_OK && memcmp(back, data, sizeof data) == 0, "read back");

  zeroth_tensor* h = zeroth_tensor_copy(t, ZEROTH_F16, CPU);
  CHECK(h != NULL && zeroth_tensor_dtype(h) == ZEROTH_F16, "copy to f16: %s", zeroth_last_error());
  uint16_t bits[6];
  CHECK(zeroth_tensor_read(h, bits, sizeof bits) == ZEROTH_OK, "read f16");
  /* 1.0 = 0x3c00, -2.5 = 0xc100, 3.25 = 0x4280, 65504 = 0x7bff, 1e-8 -> +0 (below half the smallest subnormal), -0 */
  CHECK(bits[0] == 0x3c00 && bits[1] == 0xc100 && bits[2] == 0x4280 && bits[3] == 0x7bff && bits[4] == 0 &&
            bits[5] == 0x8000,
        "f16 bits %04x %04x %04x %04x %04x %04x", bits[0], bits[1], bits[2], bits[3], bits[4], bits[5]);
  zeroth_tensor_free(h);

  zeroth_tensor* z = zeroth_tensor_create(ZEROTH_I32, shape, 2, CPU);
  int32_t zi[6] = {1, 1, 1, 1, 1, 1};
  CHECK(z && zeroth_tensor_read(z, zi, sizeof zi) == ZEROTH_OK && zi[0] == 0 && zi[5] == 0, "zeros");
  zeroth_tensor_free(z);
  zeroth_tensor_free(t);
}

static void test_errors(void) {
  const int64_t shape[2] = {2, 3};
  float data[5] = {0};
  zeroth_tensor* t = zeroth_tensor_from_data(ZEROTH_F32, shape, 2, CPU, data, sizeof data);
  CHECK(t == NULL && zeroth_last_status() == ZEROTH_E_SHAPE, "wrong byte count gives E_SHAPE (%s)",
        zeroth_last_error());
  CHECK(strstr(zeroth_last_error(), "needs 24") != NULL, "message names the size: %s", zeroth_last_error());

  const int64_t huge[3] = {1LL << 40, 1LL << 40, 16};
  t = zeroth_tensor_create(ZEROTH_F32, huge, 3, CPU);
  CHECK(t == NULL && zeroth_last_status() == ZEROTH_E_SHAPE, "overflowing shape gives E_SHAPE (%s)",
        zeroth_last_error());

  const int64_t neg[1] = {-3};
  t = zeroth_tensor_create(ZEROTH_F32, neg, 1, CPU);
  CHECK(t == NULL && zeroth_last_status() == ZEROTH_E_SHAPE, "negative dim gives E_SHAPE");

  t = zeroth_tensor_create((zeroth_dtype)42, shape, 2, CPU);
  CHECK(t == NULL && zeroth_last_status() == ZEROTH_E_DTYPE, "unknown dtype gives E_DTYPE");

  zeroth_device gpu = {ZEROTH_DEVICE_CUDA, 7};
  t = zeroth_tensor_create(ZEROTH_F32, shape, 2, gpu);
  CHECK(t == NULL && zeroth_last_status() == ZEROTH_E_DEVICE, "missing cuda:7 gives E_DEVICE (%s)",
        zeroth_last_error());

  CHECK(zeroth_tensor_read(NULL, data, 4) == ZEROTH_E_INVALID_ARG, "NULL handle gives E_INVALID_ARG");
  CHECK(strcmp(zeroth_status_name(ZEROTH_E_FORMAT), "E_FORMAT") == 0, "status names");
}

static void test_rng(void) {
  /* Same (seed, stream, index) -> same value; mean of many normals near 0. */
  CHECK(zeroth_rng_normal(1, 2, 3) == zeroth_rng_normal(1, 2, 3), "deterministic");
  double sum = 0, sq = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double z = zeroth_rng_normal(42, 7, (uint64_t)i);
    sum += z;
    sq += z * z;
  }
  CHECK(fabs(sum / n) < 4.0 / sqrt((double)n), "normal mean %g", sum / n);
  CHECK(fabs(sq / n - 1.0) < 4.0 * sqrt(2.0 / n), "normal variance %g", sq / n);
  const float r = zeroth_rng_rademacher(1, 2, 3);
  CHECK(r == 1.0f || r == -1.0f, "rademacher is +-1");
  /* FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (published test vector). */
  CHECK(zeroth_stream_id("a", 1) == 0xaf63dc4c8601ec8cULL, "fnv1a64('a')");
}

static void test_perturb(void) {
  const int64_t shape[1] = {1000};
  float w[1000];
  for (int i = 0; i < 1000; ++i) w[i] = 0.01f * (float)(i % 17);
  zeroth_tensor* t = zeroth_tensor_from_data(ZEROTH_F32, shape, 1, CPU, w, sizeof w);
  const uint64_t stream = zeroth_stream_id("w", 1);
  CHECK(zeroth_perturb(t, 9, stream, 0.5f) == ZEROTH_OK, "perturb: %s", zeroth_last_error());
  float p[1000];
  zeroth_tensor_read(t, p, sizeof p);
  int ok = 1;
  for (int i = 0; i < 1000; ++i)
    if (p[i] != w[i] + 0.5f * zeroth_rng_normal(9, stream, (uint64_t)i)) ok = 0;
  CHECK(ok, "perturb adds fl(0.5 z) to each element");
  zeroth_tensor_free(t);
}

static void test_cuda(int want_cuda) {
  if (!want_cuda) return;
  if (zeroth_device_count(ZEROTH_DEVICE_CUDA) == 0) {
    printf("SKIP cuda checks: no CUDA device (or this build has no CUDA backend)\n");
    return;
  }
  const zeroth_device GPU = {ZEROTH_DEVICE_CUDA, 0};
  const int64_t shape[1] = {4};
  const float data[4] = {1, 2, 3, 4};
  zeroth_tensor* t = zeroth_tensor_from_data(ZEROTH_F32, shape, 1, GPU, data, sizeof data);
  CHECK(t != NULL, "cuda tensor: %s", zeroth_last_error());
  float back[4];
  CHECK(t && zeroth_tensor_read(t, back, sizeof back) == ZEROTH_OK && memcmp(back, data, sizeof data) == 0,
        "cuda roundtrip");
  zeroth_tensor_free(t);
}

int main(int argc, char** argv) {
  const int want_cuda = argc > 1 && strcmp(argv[1], "cuda") == 0;
  test_version();
  test_create_read_copy();
  test_errors();
  test_rng();
  test_perturb();
  test_cuda(want_cuda);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
