// ops_reduce.cpp — sum and mean over a set of axes, accumulated in double.
//
// Precision: every output is a double sum of its inputs (eight interleaved accumulators, so
// the order is fixed by the shape alone), rounded once to the output dtype. A full reduction
// splits the input into fixed 64K-element blocks summed in parallel and then added in block
// order: the result does not depend on the thread count.
//
// Layout: size-1 dims are dropped and adjacent dims of the same kind (reduced or kept) are
// merged, so any axes set becomes alternating groups. When the innermost group is reduced,
// each output sums contiguous runs; when it is kept, each output row adds whole contiguous
// input rows into a double accumulator row (no strided reads either way).
#include <algorithm>
#include <cmath>
#include <string>

#include "ops.h"
#include "ops_util.h"

namespace zeroth::ops {
namespace {

struct Group {
  int64_t size;
  int64_t stride;  // input elements between consecutive indices of this group
};

template <typename T>
double sum_contiguous(const T* x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(x[i + k]);
  double tail = 0;
  for (; i < n; ++i) tail += static_cast<double>(x[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// Input offset of multi-index number `lin` over `groups` (row-major over the groups).
int64_t offset_of(const std::vector<Group>& groups, int64_t lin) {
  int64_t off = 0;
  for (int d = static_cast<int>(groups.size()) - 1; d >= 0; --d) {
    off += (lin % groups[d].size) * groups[d].stride;
    lin /= groups[d].size;
  }
  return off;
}

template <typename T>
void reduce_typed(const T* x, int64_t numel, const std::vector<Group>& kept, const std::vector<Group>& reduced,
                  bool inner_reduced, double scale, double* out, int64_t n_out) {
  int64_t r_total = 1;
  for (const Group& g : reduced) r_total *= g.size;

  if (kept.empty()) {  // full reduction: the groups collapse to one contiguous run
    constexpr int64_t kBlock = 65536;
    const int64_t blocks = (numel + kBlock - 1) / kBlock;
    std::vector<double> partial(static_cast<size_t>(std::max<int64_t>(blocks, 1)), 0.0);
    for_range(blocks, 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k)
        partial[k] = sum_contiguous(x + k * kBlock, std::min(kBlock, numel - k * kBlock));
    });
    double total = 0;
    for (double p : partial) total += p;
    out[0] = total * scale;
    return;
  }

  if (inner_reduced) {
    // Outputs in parallel; each sums r_total / run contiguous runs of length `run`.
    const int64_t run = reduced.back().size;
    const std::vector<Group> outer_reduced(reduced.begin(), reduced.end() - 1);
    const int64_t runs = r_total / run;
    for_range(n_out, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(r_total, 1)), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const int64_t base = offset_of(kept, o);
        double acc = 0;
        for (int64_t r = 0; r < runs; ++r) acc += sum_contiguous(x + base + offset_of(outer_reduced, r), run);
        out[o] = acc * scale;
      }
    });
    return;
  }

  // Innermost group kept: output rows of `width` contiguous elements, accumulated over the
  // reduced groups; work is split over (row, column block) so one output row still uses threads.
  const int64_t width = kept.back().size;
  const std::vector<Group> outer_kept(kept.begin(), kept.end() - 1);
  const int64_t rows = n_out / width;
  constexpr int64_t kCols = 2048;
  const int64_t col_blocks = (width + kCols - 1) / kCols;
  for_range(rows * col_blocks, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(r_total * kCols, 1)),
            [&](int64_t b, int64_t e) {
              std::vector<double> acc(static_cast<size_t>(std::min(kCols, width)));
              for (int64_t u = b; u < e; ++u) {
                const int64_t row = u / col_blocks, c0 = (u % col_blocks) * kCols;
                const int64_t cols = std::min(kCols, width - c0);
                std::fill(acc.begin(), acc.begin() + cols, 0.0);
                const int64_t base = offset_of(outer_kept, row) + c0;
                for (int64_t r = 0; r < r_total; ++r) {
                  const T* src = x + base + offset_of(reduced, r);
                  for (int64_t c = 0; c < cols; ++c) acc[c] += static_cast<double>(src[c]);
                }
                for (int64_t c = 0; c < cols; ++c) out[row * width + c0 + c] = acc[c] * scale;
              }
            });
}

TensorPtr reduce(const char* name, bool is_mean, const TensorPtr& x, const std::vector<int64_t>& axes, bool keep_dims,
                 zeroth_dtype out_dtype) {
  const std::string op = name;
  require_float_cpu(*x, op + ": input");
  ZCHECK(out_dtype == ZEROTH_F32 || out_dtype == ZEROTH_F64, ZEROTH_E_DTYPE,
         op + ": the result dtype must be f32 or f64");
  const int nd = x->ndim();
  std::vector<bool> is_reduced(nd, axes.empty());
  for (int64_t a : axes) {
    const int ax = norm_axis(a, nd, op);
    ZCHECK(!is_reduced[ax], ZEROTH_E_INVALID_ARG, op + ": axis " + std::to_string(a) + " is listed twice");
    is_reduced[ax] = true;
  }
  Shape out_shape;
  for (int i = 0; i < nd; ++i) {
    if (!is_reduced[i]) out_shape.push_back(x->shape[i]);
    else if (keep_dims) out_shape.push_back(1);
  }
  int64_t r_total = 1;
  for (int i = 0; i < nd; ++i)
    if (is_reduced[i]) r_total *= x->shape[i];

  // Groups of merged dims, outermost first, with their input strides.
  std::vector<Group> kept, reduced;
  bool last_reduced = false, have_last = false;
  int64_t stride = 1;
  std::vector<std::pair<bool, Group>> rev;  // built innermost first
  for (int i = nd - 1; i >= 0; --i) {
    const int64_t d = x->shape[i];
    if (d != 1) {
      if (have_last && last_reduced == is_reduced[i]) {
        rev.back().second.size *= d;
      } else {
        rev.push_back({is_reduced[i], Group{d, stride}});
        have_last = true;
        last_reduced = is_reduced[i];
      }
    }
    stride *= d;
  }
  for (auto it = rev.rbegin(); it != rev.rend(); ++it) (it->first ? reduced : kept).push_back(it->second);
  const bool inner_reduced = !rev.empty() && rev.front().first;

  std::vector<double> acc;
  TensorPtr y = tensor_empty(out_dtype, out_shape, x->device());
  const int64_t n_out = y->numel;
  if (n_out == 0) return y;
  const double scale = is_mean ? 1.0 / static_cast<double>(r_total) : 1.0;
  double* out = out_dtype == ZEROTH_F64 ? y->as<double>() : (acc.resize(n_out), acc.data());
  if (x->numel == 0) {
    // Empty reductions: the sum is 0 and the mean is NaN (0/0), as in numpy.
    std::fill(out, out + n_out, is_mean ? std::nan("") : 0.0);
  } else if (reduced.empty()) {
    // Nothing to add (only size-1 axes reduced): a conversion.
    if (x->dtype == ZEROTH_F32)
      for (int64_t i = 0; i < n_out; ++i) out[i] = x->as<float>()[i];
    else
      for (int64_t i = 0; i < n_out; ++i) out[i] = x->as<double>()[i];
  } else if (x->dtype == ZEROTH_F32) {
    reduce_typed(x->as<float>(), x->numel, kept, reduced, inner_reduced, scale, out, n_out);
  } else {
    reduce_typed(x->as<double>(), x->numel, kept, reduced, inner_reduced, scale, out, n_out);
  }
  if (out_dtype == ZEROTH_F32)
    for (int64_t i = 0; i < n_out; ++i) y->as<float>()[i] = static_cast<float>(out[i]);
  return y;
}

}  // namespace

TensorPtr sum(const TensorPtr& x, const std::vector<int64_t>& axes, bool keep_dims, zeroth_dtype out_dtype) {
  return reduce("sum", false, x, axes, keep_dims, out_dtype);
}

TensorPtr mean(const TensorPtr& x, const std::vector<int64_t>& axes, bool keep_dims, zeroth_dtype out_dtype) {
  return reduce("mean", true, x, axes, keep_dims, out_dtype);
}

}  // namespace zeroth::ops
