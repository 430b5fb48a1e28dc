// ops.cu — device kernels of the model forward; contract in cuda/ops_cuda.h. Each kernel names
// its CPU reference; the element math follows that reference operation for operation (double
// where it uses double, one f32 rounding per f32 operation through the _rn intrinsics, which
// nvcc never contracts into an fma).
#include <cuda_runtime.h>

#include <cmath>
#include <string>

#include "common.cuh"
#include "ops_cuda.h"

namespace zeroth {
namespace cuda {
namespace {

constexpr int kRowThreads = 256;  // one block per row for the row kernels
constexpr int kElemThreads = 256;

// w[i] read through an (optional) perturbation: fl(w + fl(scale·z(i))) (Resolved::vec / row).
__device__ __forceinline__ float perturbed(const float* w, const PerturbDesc& pd, uint64_t i) {
  const float v = w[i];
  if (!pd.active) return v;
  const float z = pd.dist == rng::Distribution::Normal ? rng::normal_at(pd.seed, pd.stream, i)
                                                       : rng::rademacher_at(pd.seed, pd.stream, i);
  return rng::fadd(v, rng::fmul(pd.scale, z));
}

// Sum of one double per thread over the block (blockDim.x == kRowThreads), returned to every
// thread. The tree is fixed, so the result is the same every run.
__device__ double block_sum(double v) {
  __shared__ double part[kRowThreads / 32];
  __shared__ double total;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double s = lane < kRowThreads / 32 ? part[lane] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) total = s;
  }
  __syncthreads();
  const double r = total;
  __syncthreads();  // `total` and `part` may be reused by the next call
  return r;
}

__device__ float block_max(float v) {
  __shared__ float part[kRowThreads / 32];
  __shared__ float total;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < kRowThreads / 32 ? part[lane] : -INFINITY;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s = fmaxf(s, __shfl_xor_sync(0xffffffffu, s, o));
    if (lane == 0) total = s;
  }
  __syncthreads();
  const float r = total;
  __syncthreads();
  return r;
}

// ---- norms (CPU: layer_norm_rows / rms_norm_rows, native/model/transformer_norms.cpp) --------

__global__ void __launch_bounds__(kRowThreads)
    layer_norm_kernel(const float* __restrict__ x, int64_t d, const float* __restrict__ w, PerturbDesc wp,
                      const float* __restrict__ b, PerturbDesc bp, float eps, float* __restrict__ out) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * d;
  float* o = out + static_cast<int64_t>(blockIdx.x) * d;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < d; i += kRowThreads) sum += xr[i];
  const double mean = block_sum(sum) / static_cast<double>(d);
  double sq = 0.0;
  for (int64_t i = threadIdx.x; i < d; i += kRowThreads) {
    const double c = xr[i] - mean;
    sq += c * c;
  }
  sq = block_sum(sq);
  const float inv = static_cast<float>(1.0 / sqrt(sq / static_cast<double>(d) + eps));
  const float m = static_cast<float>(mean);
  for (int64_t i = threadIdx.x; i < d; i += kRowThreads) {
    float y = rng::fmul(__fsub_rn(xr[i], m), inv);
    if (w) y = rng::fmul(y, perturbed(w, wp, static_cast<uint64_t>(i)));
    if (b) y = rng::fadd(y, perturbed(b, bp, static_cast<uint64_t>(i)));
    o[i] = y;
  }
}

__global__ void __launch_bounds__(kRowThreads)
    rms_norm_kernel(const float* __restrict__ x, int64_t d, const float* __restrict__ w, PerturbDesc wp, float eps,
                    float* __restrict__ out) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * d;
  float* o = out + static_cast<int64_t>(blockIdx.x) * d;
  double sq = 0.0;
  for (int64_t i = threadIdx.x; i < d; i += kRowThreads) sq += static_cast<double>(xr[i]) * xr[i];
  sq = block_sum(sq);
  const float inv = static_cast<float>(1.0 / sqrt(sq / static_cast<double>(d) + eps));
  for (int64_t i = threadIdx.x; i < d; i += kRowThreads) {
    const float y = rng::fmul(xr[i], inv);
    o[i] = w ? rng::fmul(perturbed(w, wp, static_cast<uint64_t>(i)), y) : y;
  }
}

// ---- activations (CPU: ops_vec.cpp's scalar references gelu_tanh1 / gelu_erf1 / sigmoid1,
// used by activation_inplace / swiglu_inplace in transformer_norms.cpp) -----------------------

__device__ __forceinline__ float gelu_tanh1(float xf) {
  const double x = xf;
  return static_cast<float>(0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))));
}
__device__ __forceinline__ float gelu_erf1(float xf) {
  const double x = xf;
  return static_cast<float>(0.5 * x * erfc(-x * 0.70710678118654752));
}
__device__ __forceinline__ float silu1(float xf) {
  const float s = static_cast<float>(1.0 / (1.0 + exp(-static_cast<double>(xf))));
  return static_cast<float>(static_cast<double>(xf) * s);
}

enum class Act { GeluTanh, GeluErf, Relu, Silu };

template <Act A>
__device__ __forceinline__ float activation1(float x) {
  if (A == Act::GeluTanh) return gelu_tanh1(x);
  if (A == Act::GeluErf) return gelu_erf1(x);
  if (A == Act::Relu) return x > 0.0f ? x : 0.0f;
  return silu1(x);
}

template <Act A>
__global__ void activation_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = activation1<A>(x[i]);
}

__global__ void swiglu_kernel(float* gate, const float* __restrict__ up, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    gate[i] = rng::fmul(silu1(gate[i]), up[i]);
}

// ---- RoPE (CPU: rope_rows, native/model/transformer_attention.cpp) ----------------------------

// One thread per (row, pair i): the angle as the CPU forms it (f32 inv_freq from a double pow,
// f32 product with the position, double cos/sin rounded to f32), then every head's pair.
__global__ void rope_kernel(float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const int64_t* positions,
                            double theta) {
  const int64_t half = head_dim / 2;
  const int64_t total = rows * half;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = t / half, i = t % half;
    const float expo = rng::fdiv(static_cast<float>(2 * i), static_cast<float>(head_dim));
    const float inv_freq = static_cast<float>(1.0 / pow(theta, static_cast<double>(expo)));
    const float angle = rng::fmul(static_cast<float>(positions[r]), inv_freq);
    const float c = static_cast<float>(cos(static_cast<double>(angle)));
    const float s = static_cast<float>(sin(static_cast<double>(angle)));
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + (r * n_heads + h) * head_dim;
      const float a = v[i], b = v[i + half];
      v[i] = __fsub_rn(rng::fmul(a, c), rng::fmul(b, s));
      v[i + half] = rng::fadd(rng::fmul(b, c), rng::fmul(a, s));
    }
  }
}

// ---- embedding (CPU: Model::Resolved::row and the embedding loop of Model::run) -------------

__global__ void embedding_kernel(const float* __restrict__ table, int64_t vocab, int64_t width, PerturbDesc pd,
                                 const int32_t* __restrict__ ids, int64_t n, bool accumulate, float* out) {
  const int64_t total = n * width;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = t / width, j = t % width;
    const int64_t id = ids[i];
    float v = NAN;
    if (id >= 0 && id < vocab) v = perturbed(table, pd, static_cast<uint64_t>(id * width + j));
    out[t] = accumulate ? rng::fadd(out[t], v) : v;
  }
}

// ---- attention (CPU: attention + cache_append, native/model/transformer_attention.cpp) -------
//
// One block per (query tile of 16, head, batch row); 4 warps, each owning 4 queries of the tile.
// Keys stream through shared memory in tiles of 32 (K rows padded by one float so that lane j
// reading key j's row hits bank j). Lane j scores key j of the tile against the warp's 4 queries;
// the warp then rescales its running max / sum / output (online softmax, FlashAttention) and
// adds p_j·V_j, each lane holding output dimensions lane, lane + 32, ... (<= 8 of them).

constexpr int kAttnWarps = 4, kAttnQueriesPerWarp = 4, kAttnKeys = 32, kAttnMaxDimsPerLane = 8;
constexpr int kAttnQueries = kAttnWarps * kAttnQueriesPerWarp;
constexpr int kAttnMaxHeadDim = 32 * kAttnMaxDimsPerLane;

size_t attention_smem_bytes(int64_t hd) {
  return sizeof(float) * static_cast<size_t>(kAttnQueries * hd + kAttnKeys * (hd + 1) + kAttnKeys * hd);
}

__global__ void __launch_bounds__(kAttnWarps * 32)
    attention_kernel(const float* __restrict__ q, const float* __restrict__ k_cache, const float* __restrict__ v_cache,
                     const uint8_t* __restrict__ valid, int64_t S, int64_t length, int64_t capacity, int64_t n_head,
                     int64_t n_kv, int hd, float scale, float* __restrict__ out) {
  extern __shared__ __align__(16) float attn_smem[];
  float* q_s = attn_smem;                              // [16][hd]
  float* k_s = q_s + kAttnQueries * hd;                // [32][hd + 1]
  float* v_s = k_s + kAttnKeys * (hd + 1);             // [32][hd]
  const int64_t b = blockIdx.z, h = blockIdx.y;
  const int64_t s0 = static_cast<int64_t>(blockIdx.x) * kAttnQueries;
  const int64_t kvh = h / (n_head / n_kv);
  const int64_t width = n_head * hd;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float* Kp = k_cache + (b * n_kv + kvh) * capacity * hd;
  const float* Vp = v_cache + (b * n_kv + kvh) * capacity * hd;
  const uint8_t* vb = valid + b * capacity;

  for (int t = threadIdx.x; t < kAttnQueries * hd; t += blockDim.x) {
    const int64_t s = s0 + t / hd;
    q_s[t] = s < S ? q[(b * S + s) * width + h * hd + t % hd] : 0.0f;
  }
  const int64_t s_last = (s0 + kAttnQueries < S ? s0 + kAttnQueries : S) - 1;
  const int64_t n_keys = length + s_last + 1;  // keys visible to the tile's last query

  float m[kAttnQueriesPerWarp], l[kAttnQueriesPerWarp], acc[kAttnQueriesPerWarp][kAttnMaxDimsPerLane];
#pragma unroll
  for (int t = 0; t < kAttnQueriesPerWarp; ++t) {
    m[t] = -INFINITY;
    l[t] = 0.0f;
#pragma unroll
    for (int j = 0; j < kAttnMaxDimsPerLane; ++j) acc[t][j] = 0.0f;
  }

  for (int64_t j0 = 0; j0 < n_keys; j0 += kAttnKeys) {
    __syncthreads();  // the previous tile is consumed (and q_s is written, first time round)
    for (int t = threadIdx.x; t < kAttnKeys * hd; t += blockDim.x) {
      const int kk = t / hd, dd = t % hd;
      const int64_t j = j0 + kk;
      k_s[kk * (hd + 1) + dd] = j < n_keys ? Kp[j * hd + dd] : 0.0f;
      v_s[kk * hd + dd] = j < n_keys ? Vp[j * hd + dd] : 0.0f;
    }
    __syncthreads();

    const int64_t key = j0 + lane;
    const bool key_ok = key < n_keys && vb[key] != 0;
#pragma unroll
    for (int t = 0; t < kAttnQueriesPerWarp; ++t) {
      const int qi = warp * kAttnQueriesPerWarp + t;
      const int64_t s = s0 + qi;
      if (s >= S) continue;  // warp-uniform
      const float* qr = q_s + qi * hd;
      const float* kr = k_s + lane * (hd + 1);
      float dot = 0.0f;
      for (int dd = 0; dd < hd; ++dd) dot = __fmaf_rn(qr[dd], kr[dd], dot);
      const bool visible = key_ok && key <= length + s;
      const float score = visible ? rng::fmul(scale, dot) : -INFINITY;
      float tile_max = score;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, o));
      const float m_new = fmaxf(m[t], tile_max);
      if (m_new == -INFINITY) continue;  // nothing visible yet (warp-uniform)
      const float corr = expf(m[t] - m_new);  // exp(-inf) = 0 on the first visible tile
      const float p = visible ? expf(score - m_new) : 0.0f;
      float p_sum = p;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) p_sum += __shfl_xor_sync(0xffffffffu, p_sum, o);
      l[t] = rng::fadd(rng::fmul(l[t], corr), p_sum);
      m[t] = m_new;
#pragma unroll
      for (int j = 0; j < kAttnMaxDimsPerLane; ++j) acc[t][j] = rng::fmul(acc[t][j], corr);
      for (int kk = 0; kk < kAttnKeys; ++kk) {
        const float pk = __shfl_sync(0xffffffffu, p, kk);
        if (pk == 0.0f) continue;  // warp-uniform: pk is the same on every lane
        const float* vr = v_s + kk * hd;
#pragma unroll
        for (int j = 0; j < kAttnMaxDimsPerLane; ++j) {
          const int dd = lane + 32 * j;
          if (dd < hd) acc[t][j] = __fmaf_rn(pk, vr[dd], acc[t][j]);
        }
      }
    }
  }

#pragma unroll
  for (int t = 0; t < kAttnQueriesPerWarp; ++t) {
    const int64_t s = s0 + warp * kAttnQueriesPerWarp + t;
    if (s >= S) continue;
    float* o = out + (b * S + s) * width + h * hd;
    const float inv = l[t] > 0.0f ? rng::fdiv(1.0f, l[t]) : 0.0f;  // no visible key: zeros
#pragma unroll
    for (int j = 0; j < kAttnMaxDimsPerLane; ++j) {
      const int dd = lane + 32 * j;
      if (dd < hd) o[dd] = rng::fmul(acc[t][j], inv);
    }
  }
}

// ---- cross entropy (CPU: ops::cross_entropy / the loss loop of Model::loss) -----------------

__global__ void __launch_bounds__(kRowThreads)
    cross_entropy_kernel(const float* __restrict__ logits, int64_t classes, const int32_t* __restrict__ targets,
                         bool has_ignore, int64_t ignore_index, double* nll) {
  const int64_t r = blockIdx.x;
  const int32_t target = targets[r];
  if (has_ignore && target == ignore_index) {  // block-uniform
    if (threadIdx.x == 0) nll[r] = 0.0;
    return;
  }
  const float* z = logits + r * classes;
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < classes; i += kRowThreads) mx = fmaxf(mx, z[i]);
  mx = block_max(mx);
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < classes; i += kRowThreads) sum += exp(static_cast<double>(__fsub_rn(z[i], mx)));
  sum = block_sum(sum);
  if (threadIdx.x == 0)
    nll[r] = target >= 0 && target < classes ? static_cast<double>(mx) + log(sum) - static_cast<double>(z[target]) : NAN;
}

// One block: thread t sums rows t, t + 256, ... in order, then the fixed tree of block_sum.
__global__ void __launch_bounds__(kRowThreads)
    mean_rows_kernel(const double* __restrict__ nll, const int32_t* __restrict__ targets, int64_t rows, bool has_ignore,
                     int64_t ignore_index, double* out) {
  double s = 0.0, n = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += kRowThreads) {
    if (has_ignore && targets[r] == ignore_index) continue;
    s += nll[r];
    n += 1.0;
  }
  s = block_sum(s);
  n = block_sum(n);
  if (threadIdx.x == 0) *out = n > 0.0 ? s / n : NAN;
}

// ---- host side --------------------------------------------------------------------------------

void check_size(int64_t v, const char* what) {
  ZCHECK(v >= 0, ZEROTH_E_SHAPE, std::string(what) + " must be non-negative (got " + std::to_string(v) + ")");
}

void check_product(int64_t a, int64_t b, const char* what) {
  int64_t p = 0;
  ZCHECK(!__builtin_mul_overflow(a, b, &p), ZEROTH_E_SHAPE,
         std::string(what) + ": " + std::to_string(a) + " x " + std::to_string(b) + " overflows 64-bit sizes");
}

void check_desc(const PerturbDesc& pd, const char* what) {
  if (!pd.active) return;
  ZCHECK(pd.dist == rng::Distribution::Normal || pd.dist == rng::Distribution::Rademacher, ZEROTH_E_INVALID_ARG,
         std::string(what) + ": unknown perturbation distribution; use normal or rademacher");
}

void check_rows(int64_t rows, const char* what) {
  ZCHECK(rows <= 2147483647, ZEROTH_E_SHAPE,
         std::string(what) + ": " + std::to_string(rows) + " rows are more than one launch takes (2^31 - 1); split them");
}

}  // namespace

void layer_norm(int device, const float* x, int64_t rows, int64_t d, const float* w, const PerturbDesc& w_perturb,
                const float* b, const PerturbDesc& b_perturb, float eps, float* out) {
  check_size(rows, "layer_norm rows");
  check_size(d, "layer_norm width");
  check_product(rows, d, "layer_norm");
  check_rows(rows, "layer_norm");
  check_desc(w_perturb, "layer_norm weight");
  check_desc(b_perturb, "layer_norm bias");
  if (rows == 0 || d == 0) return;
  cudaStream_t st = stream_for(device);
  layer_norm_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, st>>>(x, d, w, w_perturb, b, b_perturb, eps, out);
  check_launch(device, "layer_norm_kernel");
}

void rms_norm(int device, const float* x, int64_t rows, int64_t d, const float* w, const PerturbDesc& w_perturb,
              float eps, float* out) {
  check_size(rows, "rms_norm rows");
  check_size(d, "rms_norm width");
  check_product(rows, d, "rms_norm");
  check_rows(rows, "rms_norm");
  check_desc(w_perturb, "rms_norm weight");
  if (rows == 0 || d == 0) return;
  cudaStream_t st = stream_for(device);
  rms_norm_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, st>>>(x, d, w, w_perturb, eps, out);
  check_launch(device, "rms_norm_kernel");
}

void gelu_tanh(int device, const float* x, float* y, int64_t n) {
  check_size(n, "gelu_tanh size");
  if (n == 0) return;
  cudaStream_t st = stream_for(device);
  activation_kernel<Act::GeluTanh><<<grid_for(static_cast<uint64_t>(n), kElemThreads), kElemThreads, 0, st>>>(x, y, n);
  check_launch(device, "activation_kernel<gelu_tanh>");
}

void gelu_erf(int device, const float* x, float* y, int64_t n) {
  check_size(n, "gelu_erf size");
  if (n == 0) return;
  cudaStream_t st = stream_for(device);
  activation_kernel<Act::GeluErf><<<grid_for(static_cast<uint64_t>(n), kElemThreads), kElemThreads, 0, st>>>(x, y, n);
  check_launch(device, "activation_kernel<gelu_erf>");
}

void relu(int device, const float* x, float* y, int64_t n) {
  check_size(n, "relu size");
  if (n == 0) return;
  cudaStream_t st = stream_for(device);
  activation_kernel<Act::Relu><<<grid_for(static_cast<uint64_t>(n), kElemThreads), kElemThreads, 0, st>>>(x, y, n);
  check_launch(device, "activation_kernel<relu>");
}

void silu(int device, const float* x, float* y, int64_t n) {
  check_size(n, "silu size");
  if (n == 0) return;
  cudaStream_t st = stream_for(device);
  activation_kernel<Act::Silu><<<grid_for(static_cast<uint64_t>(n), kElemThreads), kElemThreads, 0, st>>>(x, y, n);
  check_launch(device, "activation_kernel<silu>");
}

void swiglu(int device, float* gate, const float* up, int64_t n) {
  check_size(n, "swiglu size");
  if (n == 0) return;
  cudaStream_t st = stream_for(device);
  swiglu_kernel<<<grid_for(static_cast<uint64_t>(n), kElemThreads), kElemThreads, 0, st>>>(gate, up, n);
  check_launch(device, "swiglu_kernel");
}

void rope(int device, float* x, int64_t rows, int64_t n_heads, int64_t head_dim, const int64_t* positions,
          double theta) {
  check_size(rows, "rope rows");
  ZCHECK(n_heads >= 1 && head_dim >= 2 && head_dim % 2 == 0, ZEROTH_E_SHAPE,
         "rope: needs at least one head and an even head_dim (got " + std::to_string(n_heads) + " heads of " +
             std::to_string(head_dim) + ")");
  ZCHECK(std::isfinite(theta) && theta > 0.0, ZEROTH_E_INVALID_ARG, "rope: theta must be a positive finite number");
  check_product(rows, n_heads * head_dim, "rope");
  if (rows == 0) return;
  cudaStream_t st = stream_for(device);
  rope_kernel<<<grid_for(static_cast<uint64_t>(rows * (head_dim / 2)), kElemThreads), kElemThreads, 0, st>>>(
      x, rows, n_heads, head_dim, positions, theta);
  check_launch(device, "rope_kernel");
}

void embedding(int device, const float* table, int64_t vocab, int64_t width, const PerturbDesc& perturb,
               const int32_t* ids, int64_t n, bool accumulate, float* out) {
  check_size(vocab, "embedding vocabulary");
  check_size(width, "embedding width");
  check_size(n, "embedding ids");
  check_product(vocab, width, "embedding table");
  check_product(n, width, "embedding output");
  check_desc(perturb, "embedding");
  if (n == 0 || width == 0) return;
  cudaStream_t st = stream_for(device);
  embedding_kernel<<<grid_for(static_cast<uint64_t>(n * width), kElemThreads), kElemThreads, 0, st>>>(
      table, vocab, width, perturb, ids, n, accumulate, out);
  check_launch(device, "embedding_kernel");
}

void attention(int device, const float* q, const float* k_cache, const float* v_cache, const uint8_t* valid,
               int64_t B, int64_t S, int64_t length, int64_t capacity, int64_t n_head, int64_t n_kv,
               int64_t head_dim, float* out) {
  check_size(B, "attention batch");
  check_size(S, "attention queries");
  check_size(length, "attention cache length");
  ZCHECK(head_dim >= 1 && head_dim <= kAttnMaxHeadDim, ZEROTH_E_SHAPE,
         "attention (cuda): head_dim " + std::to_string(head_dim) + " is outside 1.." + std::to_string(kAttnMaxHeadDim));
  ZCHECK(n_kv >= 1 && n_head >= n_kv && n_head % n_kv == 0, ZEROTH_E_SHAPE,
         "attention (cuda): " + std::to_string(n_head) + " query heads cannot share " + std::to_string(n_kv) +
             " key/value heads; n_head must be a positive multiple of n_kv");
  ZCHECK(length + S <= capacity, ZEROTH_E_SHAPE,
         "attention (cuda): " + std::to_string(length) + " cached + " + std::to_string(S) +
             " new tokens exceed the cache capacity " + std::to_string(capacity));
  check_product(B * n_kv, capacity * head_dim, "attention cache");
  if (B == 0 || S == 0) return;
  const int64_t tiles = (S + kAttnQueries - 1) / kAttnQueries;
  ZCHECK(tiles <= 2147483647 && n_head <= 65535 && B <= 65535, ZEROTH_E_SHAPE,
         "attention (cuda): " + std::to_string(B) + " rows x " + std::to_string(n_head) +
             " heads is more than one launch takes (65535 of each)");
  const size_t smem = attention_smem_bytes(head_dim);
  cudaStream_t st = stream_for(device);
  if (smem > 48 * 1024)
    check(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
          device, "raising the shared-memory limit of attention_kernel");
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  attention_kernel<<<dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(n_head), static_cast<unsigned>(B)),
                     kAttnWarps * 32, smem, st>>>(q, k_cache, v_cache, valid, S, length, capacity, n_head, n_kv,
                                                  static_cast<int>(head_dim), scale, out);
  check_launch(device, "attention_kernel");
}

void cross_entropy_rows(int device, const float* logits, int64_t rows, int64_t classes, const int32_t* targets,
                        bool has_ignore, int64_t ignore_index, double* nll) {
  check_size(rows, "cross_entropy rows");
  ZCHECK(classes >= 1, ZEROTH_E_SHAPE, "cross_entropy (cuda): logits have no classes (last dimension is 0)");
  check_product(rows, classes, "cross_entropy");
  check_rows(rows, "cross_entropy");
  if (rows == 0) return;
  cudaStream_t st = stream_for(device);
  cross_entropy_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, st>>>(logits, classes, targets, has_ignore,
                                                                            ignore_index, nll);
  check_launch(device, "cross_entropy_kernel");
}

void mean_rows(int device, const double* nll, const int32_t* targets, int64_t rows, bool has_ignore,
               int64_t ignore_index, double* out) {
  check_size(rows, "mean_rows rows");
  cudaStream_t st = stream_for(device);
  mean_rows_kernel<<<1, kRowThreads, 0, st>>>(nll, targets, rows, has_ignore, ignore_index, out);
  check_launch(device, "mean_rows_kernel");
}

}  // namespace cuda
}  // namespace zeroth
