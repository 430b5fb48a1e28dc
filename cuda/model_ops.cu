// model_ops.cu — the glue kernels of the transformer forward's CUDA twin; contract in
// cuda/model_ops_cuda.h. All are memory-bound element loops (grid-stride, one element per
// thread per step): next to the GEMMs they cost a few percent of a forward, so they stay plain.
// Each names its CPU reference; f32 arithmetic goes through philox.h's fadd / fmul (_rn
// intrinsics on the device), so nothing is contracted into an fma and the bits match the CPU.
#include <cuda_runtime.h>

#include <string>

#include "common.cuh"
#include "model_ops_cuda.h"

namespace zeroth {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// v, element i of a weight, read through an (optional) perturbation: fl(v + fl(scale·z(i))).
__device__ __forceinline__ float perturb_value(float v, const PerturbDesc& pd, uint64_t i) {
  if (!pd.active) return v;
  const float z = pd.dist == rng::Distribution::Normal ? rng::normal_at(pd.seed, pd.stream, i)
                                                       : rng::rademacher_at(pd.seed, pd.stream, i);
  return rng::fadd(v, rng::fmul(pd.scale, z));
}

// b[i] read through an (optional) perturbation (Resolved::vec).
__device__ __forceinline__ float perturbed(const float* b, const PerturbDesc& pd, uint64_t i) {
  return perturb_value(b[i], pd, i);
}

#define ZEROTH_GRID_STRIDE(t, total)                                                              \
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < (total); \
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)

// ---- CPU: add_bias_rows / add_inplace (native/model/transformer_norms.cpp) -------------------

__global__ void add_bias_rows_kernel(float* x, int64_t rows, int64_t n, const float* __restrict__ b, PerturbDesc pd) {
  ZEROTH_GRID_STRIDE(t, rows * n) x[t] = rng::fadd(x[t], perturbed(b, pd, static_cast<uint64_t>(t % n)));
}

__global__ void add_inplace_kernel(float* x, const float* __restrict__ y, int64_t n) {
  ZEROTH_GRID_STRIDE(t, n) x[t] = rng::fadd(x[t], y[t]);
}

// ---- CPU: the qkv split of Model::run (native/model/transformer_forward.cpp) -----------------

__global__ void copy_columns_kernel(const float* __restrict__ src, int64_t ld_src, int64_t col0, int64_t rows,
                                    int64_t n, float* __restrict__ dst, int64_t ld_dst) {
  ZEROTH_GRID_STRIDE(t, rows * n) {
    const int64_t r = t / n, c = t % n;
    dst[r * ld_dst + c] = src[r * ld_src + col0 + c];
  }
}

// ---- CPU: cache_append (native/model/transformer_attention.cpp) ------------------------------

__global__ void cache_append_kernel(const float* __restrict__ k, const float* __restrict__ v, int64_t B, int64_t S,
                                    int64_t n_kv, int64_t hd, int64_t capacity, int64_t length,
                                    float* __restrict__ K, float* __restrict__ V) {
  const int64_t width = n_kv * hd;
  ZEROTH_GRID_STRIDE(t, B * S * width) {
    // t runs over the source [B·S, n_kv·hd] in order, so reads are coalesced.
    const int64_t i = t % hd, h = (t / hd) % n_kv, s = (t / width) % S, b = t / (width * S);
    const int64_t dst = ((b * n_kv + h) * capacity + length + s) * hd + i;
    K[dst] = k[t];
    V[dst] = v[t];
  }
}

// ---- CPU: the chunk copy of Model::loss ------------------------------------------------------

__global__ void gather_rows_kernel(const float* __restrict__ src, int64_t width, const int64_t* __restrict__ rows,
                                   int64_t n, float* __restrict__ dst) {
  ZEROTH_GRID_STRIDE(t, n * width) {
    const int64_t i = t / width, j = t % width;
    dst[t] = src[rows[i] * width + j];
  }
}

// ---- CPU: Model::Resolved::row of a quantized table (dequantize_rows, cpu/quant.cpp) ---------

__global__ void quant_embedding_kernel(QuantMatrixDevice w, const int32_t* __restrict__ ids, int64_t n,
                                       float* __restrict__ out) {
  ZEROTH_GRID_STRIDE(t, n * w.cols) {
    const int64_t i = t / w.cols, c = t % w.cols;
    const int64_t r = ids[i];
    float v = NAN;
    if (r >= 0 && r < w.rows) {
      const int64_t e = r * w.cols + c, g = c / w.group_size;
      int code;
      if (w.bits == 8) {
        code = w.codes8[e];
      } else {
        const uint8_t byte = w.codes4[e >> 1];
        code = (e & 1) ? (byte >> 4) : (byte & 15);
      }
      const float zero = w.zeros ? w.zeros[r * w.groups + g] : w.fixed_zero;
      v = rng::fmul(__fsub_rn(static_cast<float>(code), zero), w.scales[r * w.groups + g]);
    }
    out[t] = v;
  }
}

// ---- CPU: Model::Resolved::row of a bf16 table (perturb.h's bf16 round-to-nearest write) ------

__global__ void embedding_bf16_kernel(const uint16_t* __restrict__ table, int64_t vocab, int64_t width, PerturbDesc pd,
                                      const int32_t* __restrict__ ids, int64_t n, float* __restrict__ out) {
  ZEROTH_GRID_STRIDE(t, n * width) {
    const int64_t i = t / width, j = t % width;
    const int64_t id = ids[i];
    float v = NAN;
    if (id >= 0 && id < vocab) {
      const uint64_t e = static_cast<uint64_t>(id * width + j);
      v = bf16_to_f32(table[e]);
      // gemm.cu's perturb_quad<BF16>: perturbed in f32, rounded once to bf16.
      if (pd.active) v = bf16_to_f32(f32_to_bf16(perturb_value(v, pd, e)));
    }
    out[t] = v;
  }
}

#undef ZEROTH_GRID_STRIDE

// ---- host side --------------------------------------------------------------------------------

std::string num(int64_t v) { return std::to_string(v); }

// rows x cols elements, both non-negative and their product within 64 bits; returns it.
int64_t checked_elems(int64_t rows, int64_t cols, const char* what) {
  int64_t n = 0;
  ZCHECK(rows >= 0 && cols >= 0 && !__builtin_mul_overflow(rows, cols, &n), ZEROTH_E_SHAPE,
         std::string(what) + " (cuda): " + num(rows) + " x " + num(cols) + " is not a valid size");
  return n;
}

void check_desc(const PerturbDesc& pd, const char* what) {
  if (!pd.active) return;
  ZCHECK(pd.dist == rng::Distribution::Normal || pd.dist == rng::Distribution::Rademacher, ZEROTH_E_INVALID_ARG,
         std::string(what) + ": unknown perturbation distribution; use normal or rademacher");
}

}  // namespace

void add_bias_rows(int device, float* x, int64_t rows, int64_t n, const float* b, const PerturbDesc& b_perturb) {
  const int64_t total = checked_elems(rows, n, "add_bias_rows");
  check_desc(b_perturb, "add_bias_rows");
  if (total == 0 || b == nullptr) return;
  cudaStream_t st = stream_for(device);
  add_bias_rows_kernel<<<grid_for(static_cast<uint64_t>(total), kThreads), kThreads, 0, st>>>(x, rows, n, b, b_perturb);
  check_launch(device, "add_bias_rows_kernel");
}

void add_inplace(int device, float* x, const float* y, int64_t n) {
  ZCHECK(n >= 0, ZEROTH_E_SHAPE, "add_inplace (cuda): size " + num(n) + " is negative");
  if (n == 0) return;
  cudaStream_t st = stream_for(device);
  add_inplace_kernel<<<grid_for(static_cast<uint64_t>(n), kThreads), kThreads, 0, st>>>(x, y, n);
  check_launch(device, "add_inplace_kernel");
}

void copy_columns(int device, const float* src, int64_t ld_src, int64_t col0, int64_t rows, int64_t n, float* dst,
                  int64_t ld_dst) {
  const int64_t total = checked_elems(rows, n, "copy_columns");
  ZCHECK(col0 >= 0 && ld_src >= col0 + n && ld_dst >= n, ZEROTH_E_SHAPE,
         "copy_columns (cuda): columns [" + num(col0) + ", " + num(col0 + n) + ") do not fit rows of " + num(ld_src) +
             " into rows of " + num(ld_dst));
  if (total == 0) return;
  cudaStream_t st = stream_for(device);
  copy_columns_kernel<<<grid_for(static_cast<uint64_t>(total), kThreads), kThreads, 0, st>>>(src, ld_src, col0, rows,
                                                                                              n, dst, ld_dst);
  check_launch(device, "copy_columns_kernel");
}

void cache_append(int device, const float* k, const float* v, int64_t B, int64_t S, int64_t n_kv, int64_t head_dim,
                  int64_t capacity, int64_t length, float* k_cache, float* v_cache) {
  const int64_t width = checked_elems(n_kv, head_dim, "cache_append");
  const int64_t total = checked_elems(checked_elems(B, S, "cache_append"), width, "cache_append");
  checked_elems(checked_elems(B * n_kv, capacity, "cache_append"), head_dim, "cache_append");
  ZCHECK(length >= 0 && length + S <= capacity, ZEROTH_E_INTERNAL,
         "KV cache overflow (cuda): " + num(length) + " + " + num(S) + " slots in a cache of " + num(capacity));
  if (total == 0) return;
  cudaStream_t st = stream_for(device);
  cache_append_kernel<<<grid_for(static_cast<uint64_t>(total), kThreads), kThreads, 0, st>>>(
      k, v, B, S, n_kv, head_dim, capacity, length, k_cache, v_cache);
  check_launch(device, "cache_append_kernel");
}

void gather_rows(int device, const float* src, int64_t width, const int64_t* rows, int64_t n, float* dst) {
  const int64_t total = checked_elems(n, width, "gather_rows");
  if (total == 0) return;
  cudaStream_t st = stream_for(device);
  gather_rows_kernel<<<grid_for(static_cast<uint64_t>(total), kThreads), kThreads, 0, st>>>(src, width, rows, n, dst);
  check_launch(device, "gather_rows_kernel");
}

void quant_embedding(int device, const QuantMatrixDevice& w, const int32_t* ids, int64_t n, float* out) {
  int4_plan::check_matrix(w);
  ZCHECK(w.perm == nullptr, ZEROTH_E_UNSUPPORTED,
         "quant_embedding (cuda): a column-permuted (act-order) embedding table is not supported");
  const int64_t total = checked_elems(n, w.cols, "quant_embedding");
  if (total == 0) return;
  cudaStream_t st = stream_for(device);
  quant_embedding_kernel<<<grid_for(static_cast<uint64_t>(total), kThreads), kThreads, 0, st>>>(w, ids, n, out);
  check_launch(device, "quant_embedding_kernel");
}

void embedding_bf16(int device, const uint16_t* table, int64_t vocab, int64_t width, const PerturbDesc& perturb,
                    const int32_t* ids, int64_t n, float* out) {
  checked_elems(vocab, width, "embedding_bf16 table");
  const int64_t total = checked_elems(n, width, "embedding_bf16");
  check_desc(perturb, "embedding_bf16");
  if (total == 0) return;
  cudaStream_t st = stream_for(device);
  embedding_bf16_kernel<<<grid_for(static_cast<uint64_t>(total), kThreads), kThreads, 0, st>>>(table, vocab, width,
                                                                                              perturb, ids, n, out);
  check_launch(device, "embedding_bf16_kernel");
}

}  // namespace cuda
}  // namespace zeroth
