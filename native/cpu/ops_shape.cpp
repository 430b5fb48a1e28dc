// ops_shape.cpp — ops that only move elements: gather (embedding lookup), concat, slice and
// transpose. They copy bytes, so every non-packed dtype works; int4 is refused (its nibbles
// and group scales do not survive an element shuffle).
//
// Every index is validated before any copy, so a bad id or range leaves nothing half-written
// and never reads out of bounds.
#include <cstring>
#include <string>

#include "ops.h"
#include "ops_util.h"

namespace zeroth::ops {
namespace {

// Row-major element strides of a shape.
std::vector<int64_t> strides_of(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (int i = static_cast<int>(s.size()) - 2; i >= 0; --i) st[i] = st[i + 1] * s[i + 1];
  return st;
}

std::string list_string(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// out[i] = in[i · stride] for n elements of `size` bytes.
void strided_copy(const uint8_t* in, int64_t stride, uint8_t* out, int64_t n, size_t size) {
  switch (size) {
    case 1:
      for (int64_t i = 0; i < n; ++i) out[i] = in[i * stride];
      return;
    case 2: {
      const uint16_t* s = reinterpret_cast<const uint16_t*>(in);
      uint16_t* d = reinterpret_cast<uint16_t*>(out);
      for (int64_t i = 0; i < n; ++i) d[i] = s[i * stride];
      return;
    }
    case 4: {
      const uint32_t* s = reinterpret_cast<const uint32_t*>(in);
      uint32_t* d = reinterpret_cast<uint32_t*>(out);
      for (int64_t i = 0; i < n; ++i) d[i] = s[i * stride];
      return;
    }
    default: {
      const uint64_t* s = reinterpret_cast<const uint64_t*>(in);
      uint64_t* d = reinterpret_cast<uint64_t*>(out);
      for (int64_t i = 0; i < n; ++i) d[i] = s[i * stride];
      return;
    }
  }
}

}  // namespace

TensorPtr gather(const TensorPtr& table, const TensorPtr& ids) {
  require_unpacked_cpu(*table, "gather: table");
  require_cpu(*ids, "gather: ids");
  require_dtype(*ids, {ZEROTH_I32}, "gather: ids");
  ZCHECK(table->ndim() == 2, ZEROTH_E_SHAPE,
         "gather: table must be 2-D [V, D] (one row per id); got shape " + shape_string(table->shape));
  const int64_t vocab = table->shape[0], dim = table->shape[1];
  const int32_t* id = ids->as<int32_t>();
  for (int64_t i = 0; i < ids->numel; ++i)
    ZCHECK(id[i] >= 0 && id[i] < vocab, ZEROTH_E_INVALID_ARG,
           "gather: id " + std::to_string(id[i]) + " at flat position " + std::to_string(i) +
               " is out of range for a table of " + std::to_string(vocab) + " rows (use 0.." +
               std::to_string(vocab - 1) + ")");
  Shape out_shape = ids->shape;
  out_shape.push_back(dim);
  TensorPtr y = tensor_empty(table->dtype, out_shape, table->device());
  const size_t row_bytes = static_cast<size_t>(dim) * dtype_traits(table->dtype).size;
  const uint8_t* src = static_cast<const uint8_t*>(table->data());
  uint8_t* dst = static_cast<uint8_t*>(y->data());
  for_range(ids->numel, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(dim, 1)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(dst + i * row_bytes, src + id[i] * row_bytes, row_bytes);
  });
  return y;
}

TensorPtr concat(const std::vector<TensorPtr>& xs, int64_t axis) {
  ZCHECK(!xs.empty(), ZEROTH_E_INVALID_ARG, "concat: give at least one tensor");
  const Tensor& first = *xs[0];
  require_unpacked_cpu(first, "concat: tensor 0");
  ZCHECK(first.ndim() >= 1, ZEROTH_E_SHAPE, "concat: tensor 0 is a scalar (shape []); scalars have no axis to join");
  const int ax = norm_axis(axis, first.ndim(), "concat");
  int64_t total = 0;
  for (size_t k = 0; k < xs.size(); ++k) {
    const Tensor& t = *xs[k];
    const std::string what = "concat: tensor " + std::to_string(k);
    require_unpacked_cpu(t, what);
    ZCHECK(t.dtype == first.dtype, ZEROTH_E_DTYPE,
           what + " has dtype " + dtype_traits(t.dtype).name + " but tensor 0 has " + dtype_traits(first.dtype).name);
    bool same = t.ndim() == first.ndim();
    for (int i = 0; same && i < t.ndim(); ++i) same = i == ax || t.shape[i] == first.shape[i];
    ZCHECK(same, ZEROTH_E_SHAPE,
           what + " has shape " + shape_string(t.shape) + " but tensor 0 has " + shape_string(first.shape) +
               "; all dimensions except axis " + std::to_string(ax) + " must match");
    ZCHECK(!__builtin_add_overflow(total, t.shape[ax], &total), ZEROTH_E_SHAPE,
           "concat: the joined axis overflows 64 bits");
  }
  Shape out_shape = first.shape;
  out_shape[ax] = total;
  TensorPtr y = tensor_empty(first.dtype, out_shape, first.device());
  if (y->numel == 0) return y;
  const size_t esize = dtype_traits(first.dtype).size;
  const int64_t outer = dims_product(first.shape, 0, ax), inner = dims_product(first.shape, ax + 1, first.ndim());
  uint8_t* dst = static_cast<uint8_t*>(y->data());
  const size_t out_row = static_cast<size_t>(total * inner) * esize;
  for_range(outer, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(total * inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      size_t at = 0;
      for (const TensorPtr& t : xs) {
        const size_t chunk = static_cast<size_t>(t->shape[ax] * inner) * esize;
        std::memcpy(dst + o * out_row + at, static_cast<const uint8_t*>(t->data()) + o * chunk, chunk);
        at += chunk;
      }
    }
  });
  return y;
}

TensorPtr slice(const TensorPtr& x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends) {
  require_unpacked_cpu(*x, "slice: input");
  const int nd = x->ndim();
  ZCHECK(starts.size() == ends.size(), ZEROTH_E_INVALID_ARG,
         "slice: starts " + list_string(starts) + " and ends " + list_string(ends) + " must have the same length");
  ZCHECK(static_cast<int>(starts.size()) <= nd, ZEROTH_E_INVALID_ARG,
         "slice: " + std::to_string(starts.size()) + " ranges given for a tensor of shape " + shape_string(x->shape));
  std::vector<int64_t> lo(nd, 0);
  Shape out_shape = x->shape;
  for (size_t i = 0; i < starts.size(); ++i) {
    const int64_t d = x->shape[i];
    const int64_t s = starts[i] < 0 ? starts[i] + d : starts[i];
    const int64_t e = ends[i] < 0 ? ends[i] + d : ends[i];
    ZCHECK(s >= 0 && e <= d && s <= e, ZEROTH_E_INVALID_ARG,
           "slice: range [" + std::to_string(starts[i]) + ", " + std::to_string(ends[i]) + ") on axis " +
               std::to_string(i) + " does not fit shape " + shape_string(x->shape) + " (need 0 <= start <= end <= " +
               std::to_string(d) + "; negative values count from the end)");
    lo[i] = s;
    out_shape[i] = e - s;
  }
  TensorPtr y = tensor_empty(x->dtype, out_shape, x->device());
  if (y->numel == 0 || nd == 0) {
    if (y->numel) std::memcpy(y->data(), x->data(), y->nbytes());
    return y;
  }
  // Axes after the last cut one are whole: each output row is one contiguous input run.
  int cut = 0;
  for (int i = 0; i < nd; ++i)
    if (out_shape[i] != x->shape[i]) cut = i;
  const std::vector<int64_t> in_stride = strides_of(x->shape);
  const int64_t run = dims_product(out_shape, cut, nd);
  const int64_t rows = y->numel / run;
  const size_t esize = dtype_traits(x->dtype).size;
  const uint8_t* src = static_cast<const uint8_t*>(x->data());
  uint8_t* dst = static_cast<uint8_t*>(y->data());
  for_range(rows, std::max<int64_t>(1, kElementGrain / run), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      int64_t rest = r, off = lo[cut] * in_stride[cut];
      for (int i = cut - 1; i >= 0; --i) {
        off += (rest % out_shape[i] + lo[i]) * in_stride[i];
        rest /= out_shape[i];
      }
      std::memcpy(dst + r * run * esize, src + off * esize, static_cast<size_t>(run) * esize);
    }
  });
  return y;
}

TensorPtr transpose(const TensorPtr& x, const std::vector<int64_t>& perm_in) {
  require_unpacked_cpu(*x, "transpose: input");
  const int nd = x->ndim();
  std::vector<int64_t> perm = perm_in;
  if (perm.empty()) {
    ZCHECK(nd >= 2, ZEROTH_E_SHAPE,
           "transpose: shape " + shape_string(x->shape) + " has fewer than 2 axes; pass a permutation instead");
    for (int i = 0; i < nd; ++i) perm.push_back(i);
    std::swap(perm[nd - 1], perm[nd - 2]);
  }
  ZCHECK(static_cast<int>(perm.size()) == nd, ZEROTH_E_INVALID_ARG,
         "transpose: permutation " + list_string(perm) + " must list each of the " + std::to_string(nd) +
             " axes of shape " + shape_string(x->shape) + " once");
  std::vector<bool> seen(nd, false);
  for (int64_t& p : perm) {
    ZCHECK(p >= -nd && p < nd && !seen[p < 0 ? p + nd : p], ZEROTH_E_INVALID_ARG,
           "transpose: permutation " + list_string(perm_in) + " is not a permutation of the axes of shape " +
               shape_string(x->shape));
    if (p < 0) p += nd;
    seen[p] = true;
  }
  Shape out_shape(nd);
  const std::vector<int64_t> in_stride = strides_of(x->shape);
  std::vector<int64_t> src_stride(nd);  // input stride of each output axis
  for (int i = 0; i < nd; ++i) {
    out_shape[i] = x->shape[perm[i]];
    src_stride[i] = in_stride[perm[i]];
  }
  TensorPtr y = tensor_empty(x->dtype, out_shape, x->device());
  if (y->numel == 0) return y;
  const size_t esize = dtype_traits(x->dtype).size;
  const uint8_t* src = static_cast<const uint8_t*>(x->data());
  uint8_t* dst = static_cast<uint8_t*>(y->data());
  if (nd == 0) {
    std::memcpy(dst, src, esize);
    return y;
  }
  // Output rows along the last output axis; each row reads the input with one stride.
  const int64_t width = out_shape[nd - 1], step = src_stride[nd - 1];
  const int64_t rows = y->numel / width;
  for_range(rows, std::max<int64_t>(1, kElementGrain / width), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      int64_t rest = r, off = 0;
      for (int i = nd - 2; i >= 0; --i) {
        off += (rest % out_shape[i]) * src_stride[i];
        rest /= out_shape[i];
      }
      strided_copy(src + off * esize, step, dst + r * width * esize, width, esize);
    }
  });
  return y;
}

}  // namespace zeroth::ops
