// perturb_mask.cpp — Sparse MeZO masks from weight magnitudes (see perturb.h).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/errors.h"
#include "cpu/perturb.h"

namespace zeroth {

TensorPtr mask_from_magnitude(const Tensor& weights, MagnitudeRule rule, double value) {
  require_cpu(weights, "mask weights");
  require_dtype(weights, {ZEROTH_F32, ZEROTH_F16, ZEROTH_BF16}, "mask weights");
  ZCHECK(!std::isnan(value), ZEROTH_E_INVALID_ARG, "the mask rule's value must be a number, not NaN");
  if (rule != MagnitudeRule::AtMost)
    ZCHECK(value >= 0.0 && value <= 1.0, ZEROTH_E_INVALID_ARG,
           "the fraction of weights to train must be in [0, 1], got " + std::to_string(value));
  const int64_t n = weights.numel;
  std::vector<float> mag(static_cast<size_t>(n));
  convert_host(weights.dtype, weights.data(), ZEROTH_F32, mag.data(), n);
  for (float& m : mag) m = std::fabs(m);

  TensorPtr mask = tensor_zeros(ZEROTH_U8, Shape{(n + 7) / 8}, zeroth_device{ZEROTH_DEVICE_CPU, 0});
  uint8_t* bits = mask->as<uint8_t>();
  auto set = [&](int64_t i) { bits[i >> 3] = static_cast<uint8_t>(bits[i >> 3] | (1u << (i & 7))); };

  if (rule == MagnitudeRule::AtMost) {
    for (int64_t i = 0; i < n; ++i)
      if (static_cast<double>(mag[static_cast<size_t>(i)]) <= value) set(i);  // NaN compares false
    return mask;
  }
  // Exactly k elements: everything strictly beyond the k-th magnitude, then ties in index order.
  std::vector<float> sorted;
  sorted.reserve(mag.size());
  for (float m : mag)
    if (!std::isnan(m)) sorted.push_back(m);
  const int64_t k = std::min<int64_t>(static_cast<int64_t>(std::llround(value * static_cast<double>(n))),
                                      static_cast<int64_t>(sorted.size()));
  if (k == 0) return mask;
  const bool smallest = rule == MagnitudeRule::Smallest;
  auto kth = sorted.begin() + (k - 1);
  if (smallest) std::nth_element(sorted.begin(), kth, sorted.end());
  else std::nth_element(sorted.begin(), kth, sorted.end(), std::greater<float>());
  const float threshold = *kth;
  int64_t taken = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float m = mag[static_cast<size_t>(i)];
    if (smallest ? m < threshold : m > threshold) {
      set(i);
      ++taken;
    }
  }
  for (int64_t i = 0; i < n && taken < k; ++i) {
    if (mag[static_cast<size_t>(i)] == threshold) {
      set(i);
      ++taken;
    }
  }
  return mask;
}

}  // namespace zeroth
