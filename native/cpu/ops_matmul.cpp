// ops_matmul.cpp — batched matmul [..., M, K] x [..., K, N] with numpy batch broadcasting.
//
// f32 goes through zeroth::gemm_f32 (packed, SIMD, multithreaded). When the right operand has
// no batch of its own (the usual activations [B, T, D] x weight [D, H]) the left batch is
// folded into M and the whole product is one GEMM. Otherwise each batch element is one GEMM:
// large ones run one after another, each using every thread; small ones are spread over
// the pool, one GEMM per task. f64 uses a plain i-k-j loop accumulating in double.
#include <string>

#include "gemm.h"
#include "ops.h"
#include "ops_util.h"

namespace zeroth::ops {
namespace {

// Element offset of each batch element in an operand whose batch shape broadcasts to `batch`.
std::vector<int64_t> batch_offsets(const Shape& batch, const Shape& own, int64_t matrix_elems) {
  const int nd = static_cast<int>(batch.size());
  std::vector<int64_t> stride(nd, 0);
  int64_t s = matrix_elems;
  for (int i = static_cast<int>(own.size()) - 1; i >= 0; --i) {
    stride[i + nd - static_cast<int>(own.size())] = own[i] == 1 ? 0 : s;
    s *= own[i];
  }
  const int64_t count = shape_numel(batch);
  std::vector<int64_t> off(static_cast<size_t>(count), 0);
  for (int64_t b = 0; b < count; ++b) {
    int64_t rest = b, o = 0;
    for (int i = nd - 1; i >= 0; --i) {
      o += (rest % batch[i]) * stride[i];
      rest /= batch[i];
    }
    off[b] = o;
  }
  return off;
}

void matmul_f64(const double* a, const double* b, double* c, int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < M; ++i) {
    double* row = c + i * N;
    for (int64_t j = 0; j < N; ++j) row[j] = 0.0;
    for (int64_t k = 0; k < K; ++k) {
      const double aik = a[i * K + k];
      const double* brow = b + k * N;
      for (int64_t j = 0; j < N; ++j) row[j] += aik * brow[j];
    }
  }
}

}  // namespace

TensorPtr matmul(const TensorPtr& a, const TensorPtr& b) {
  require_float_cpu(*a, "matmul: left operand");
  require_float_cpu(*b, "matmul: right operand");
  ZCHECK(a->dtype == b->dtype, ZEROTH_E_DTYPE,
         std::string("matmul: operands have dtypes ") + dtype_traits(a->dtype).name + " and " +
             dtype_traits(b->dtype).name + "; convert one with .to() first");
  const std::string both = shape_string(a->shape) + " x " + shape_string(b->shape);
  ZCHECK(a->ndim() >= 1 && b->ndim() >= 1, ZEROTH_E_SHAPE,
         "matmul: " + both + ": operands need at least one dimension; use mul for scalars");
  // 1-D operands: a row vector on the left, a column vector on the right (numpy semantics).
  const bool a_vec = a->ndim() == 1, b_vec = b->ndim() == 1;
  const Shape as = a_vec ? Shape{1, a->shape[0]} : a->shape;
  const Shape bs = b_vec ? Shape{b->shape[0], 1} : b->shape;
  const int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
  ZCHECK(bs[bs.size() - 2] == K, ZEROTH_E_SHAPE,
         "matmul: " + both + ": the left operand has " + std::to_string(K) + " columns but the right has " +
             std::to_string(bs[bs.size() - 2]) + " rows");
  const Shape a_batch(as.begin(), as.end() - 2), b_batch(bs.begin(), bs.end() - 2);
  Shape batch;
  try {
    batch = broadcast_shapes(a_batch, b_batch);
  } catch (const Error&) {
    fail(ZEROTH_E_SHAPE, "matmul: " + both + ": batch dimensions " + shape_string(a_batch) + " and " +
                             shape_string(b_batch) + " do not broadcast");
  }
  Shape out_shape = batch;
  if (!a_vec) out_shape.push_back(M);
  if (!b_vec) out_shape.push_back(N);
  TensorPtr y = tensor_empty(a->dtype, out_shape, a->device());
  if (y->numel == 0) return y;
  const int64_t batches = shape_numel(batch);

  if (a->dtype == ZEROTH_F64) {
    const std::vector<int64_t> ao = batch_offsets(batch, a_batch, M * K), bo = batch_offsets(batch, b_batch, K * N);
    const double *ad = a->as<double>(), *bd = b->as<double>();
    double* yd = y->as<double>();
    for_range(batches * M, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(N * K, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t bi = r / M, i = r % M;
        matmul_f64(ad + ao[bi] + i * K, bd + bo[bi], yd + r * N, 1, N, K);
      }
    });
    return y;
  }

  const float *af = a->as<float>(), *bf = b->as<float>();
  float* yf = y->as<float>();
  // gemm wants leading dimensions >= 1 even for empty operands.
  const int64_t lda = std::max<int64_t>(K, 1), ldb = std::max<int64_t>(N, 1), ldc = std::max<int64_t>(N, 1);
  if (shape_numel(b_batch) == 1 && shape_numel(a_batch) == batches) {
    // Right operand shared by every batch element: fold the batch into M (one GEMM).
    gemm_f32(false, false, batches * M, N, K, 1.0f, af, lda, bf, ldb, 0.0f, yf, ldc);
    return y;
  }
  const std::vector<int64_t> ao = batch_offsets(batch, a_batch, M * K), bo = batch_offsets(batch, b_batch, K * N);
  auto one = [&](int64_t bi) {
    gemm_f32(false, false, M, N, K, 1.0f, af + ao[bi], lda, bf + bo[bi], ldb, 0.0f, yf + bi * M * N, ldc);
  };
  const double work = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  if (work >= 2.0e6) {
    for (int64_t bi = 0; bi < batches; ++bi) one(bi);  // each GEMM is threaded itself
  } else {
    const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(2.0e6 / std::max(work, 1.0)) / 4);
    for_range(batches, grain, [&](int64_t lo, int64_t hi) {
      for (int64_t bi = lo; bi < hi; ++bi) one(bi);
    });
  }
  return y;
}

}  // namespace zeroth::ops
