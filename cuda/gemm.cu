// gemm.cu — the CUDA twin of native/cpu/gemm.h (CPU reference: native/cpu/gemm.cpp, and its
// naive loop gemm_f32_naive). Contract and precision: cuda/gemm_cuda.h.
//
// Kernels:
//   sgemm_kernel<TA, TB>          f32 SIMT GEMM, exact f32 FMA accumulation (no TF32).
//                                 Block tile 128 × 128 × 8, 256 threads, each thread an 8 × 8
//                                 register tile read as two 4-wide halves (rows ty·4 and 64 + ty·4,
//                                 likewise columns), so shared-memory reads are float4 and a warp's
//                                 reads hit distinct banks or broadcast. Why these sizes: 64
//                                 accumulators per thread give 64 FMAs per 4 shared float4 loads
//                                 (the ratio that keeps the FMA pipes busy on sm_80/sm_90), and a
//                                 128 × 8 tile of each operand is exactly one 4-element quad per
//                                 thread, so every thread loads one quad of A and one of B per step
//                                 (and perturbs its B quad from one Philox block). Two shared
//                                 buffers: the next tile is fetched into registers while the current
//                                 one is multiplied. 17 KB of shared memory, so several blocks fit
//                                 on an SM.
//   hgemm_kernel<E, TA, TB, Out>  bf16/f16 inputs on tensor cores (WMMA m16n16k16), f32
//                                 accumulation. Block tile 128 × 128 × 32, 8 warps as 2 × 4, each
//                                 warp a 64 × 32 tile of 4 × 2 accumulator fragments (8 fragments
//                                 of 8 floats per lane). Why: a 16-bit 128 × 32 tile is four 4-element
//                                 quads per thread, a 32-deep step is two MMA k-steps per shared
//                                 tile, and 4 × 2 fragments reuse each A fragment twice and each B
//                                 fragment four times. Shared tiles are stored in the operand's own
//                                 layout (rows padded by 8 elements against bank conflicts, keeping
//                                 every fragment 32-byte aligned); transposed operands are read as
//                                 col_major fragments, so the global-to-shared copy never scatters.
//                                 40 KB of shared memory, double-buffered as the f32 kernel; the
//                                 epilogue stages each fragment through shared memory to apply
//                                 alpha, beta and the bounds of C.
//   scale_c_kernel                C = beta·C when there is nothing to multiply (K == 0, alpha == 0).
//
// The perturbation (gemm.h: fl(b + fl(scale·z(offset)))) is applied to B's quads in registers,
// between the global load and the shared-memory store: the weights in memory are never written.
// A whole, aligned quad takes its four z from one Philox block (common.cuh z4); quads at the
// edges of B or with ldb % 4 != 0 draw each element with rng::normal_at / rademacher_at.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <string>
#include <type_traits>

#include "common.cuh"
#include "gemm_cuda.h"
#include "gemm_plan.h"

namespace zeroth {
namespace cuda {
namespace {

using gemm_plan::kF32TileK;
using gemm_plan::kF32TileM;
using gemm_plan::kF32TileN;
using gemm_plan::kF32Threads;
using gemm_plan::kHalfThreads;
using gemm_plan::kHalfTileK;
using gemm_plan::kHalfTileM;
using gemm_plan::kHalfTileN;

// ---- quads: 4 elements consecutive in an operand's storage ------------------------------------

// How many of the quad at (r, c .. c+3) lie inside a rows × cols matrix.
__device__ __forceinline__ int quad_valid(int64_t rows, int64_t cols, int64_t r, int64_t c) {
  if (r >= rows || c >= cols) return 0;
  return cols - c >= 4 ? 4 : static_cast<int>(cols - c);
}

// f32 quad; zeros outside the matrix.
__device__ __forceinline__ void load_quad(const float* g, int64_t ld, int n_valid, int64_t r, int64_t c, bool vec,
                                          float out[4]) {
  const float* p = g + r * ld + c;
  if (n_valid == 4 && vec) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(p));
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) out[j] = j < n_valid ? __ldg(p + j) : 0.0f;
  }
}

// 16-bit quad (bf16/f16 bit patterns); zeros outside the matrix.
__device__ __forceinline__ void load_quad(const uint16_t* g, int64_t ld, int n_valid, int64_t r, int64_t c, bool vec,
                                          uint16_t out[4]) {
  const uint16_t* p = g + r * ld + c;
  if (n_valid == 4 && vec) {
    const ushort4 v = __ldg(reinterpret_cast<const ushort4*>(p));
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) out[j] = j < n_valid ? __ldg(p + j) : uint16_t(0);
  }
}

// z of one element: the slow path of quads at the edges of B or with ldb % 4 != 0. Not inlined:
// one copy of the generator per kernel instead of one per unrolled quad keeps the register
// count and the compile time of the kernels down.
__device__ __noinline__ float z_at(const PerturbDesc& pd, uint64_t index) {
  return pd.dist == rng::Distribution::Normal ? rng::normal_at(pd.seed, pd.stream, index)
                                              : rng::rademacher_at(pd.seed, pd.stream, index);
}

// z of the valid elements of the quad whose first element sits at storage offset `off`.
__device__ __forceinline__ void quad_z(const PerturbDesc& pd, uint64_t off, int n_valid, float z[4]) {
  if (n_valid == 4 && (off & 3u) == 0) {
    z4(pd.seed, pd.stream, pd.dist, off, z);
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) z[j] = j < n_valid ? z_at(pd, off + j) : 0.0f;
}

// v = fl(v + fl(scale·z)) for the valid elements (perturb.h's add_scaled_z, element for element).
__device__ __forceinline__ void perturb_quad(const PerturbDesc& pd, uint64_t off, int n_valid, float v[4]) {
  float z[4];
  quad_z(pd, off, n_valid, z);
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (j < n_valid) v[j] = rng::fadd(v[j], rng::fmul(pd.scale, z[j]));
}

template <typename E>
__device__ __forceinline__ void perturb_quad(const PerturbDesc& pd, uint64_t off, int n_valid, uint16_t q[4]) {
  float v[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) v[j] = E::to_f32(q[j]);
  perturb_quad(pd, off, n_valid, v);
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (j < n_valid) q[j] = E::from_f32(v[j]);
}

// C = fl(alpha·acc) (+ fl(beta·C) unless beta == 0, which ignores C).
__device__ __forceinline__ float epilogue(float acc, float alpha, float beta, float c_old) {
  const float v = rng::fmul(alpha, acc);
  return beta == 0.0f ? v : rng::fadd(v, rng::fmul(beta, c_old));
}

// ---- f32 SIMT ---------------------------------------------------------------------------------

constexpr int kF32Pad = 4;  // keeps float4 rows aligned; makes the transposing stores conflict-free

static_assert(kF32Threads == 256 && kF32TileM == 128 && kF32TileN == 128 && kF32TileK == 8,
              "sgemm_kernel's index arithmetic assumes a 128 x 128 x 8 tile on 256 threads");

// The quad a thread loads from a 128 × 8 (or 8 × 128) storage tile: 128 rows of 2 quads, or
// 8 rows of 32 quads.
struct QuadPos {
  int row, col;
};
__device__ __forceinline__ QuadPos quad_tall(int tid) { return QuadPos{tid >> 1, (tid & 1) * 4}; }   // 128 × 8
__device__ __forceinline__ QuadPos quad_wide(int tid) { return QuadPos{tid >> 5, (tid & 31) * 4}; }  // 8 × 128

template <bool TA, bool TB>
__global__ void __launch_bounds__(kF32Threads)
    sgemm_kernel(int64_t M, int64_t N, int64_t K, float alpha, const float* __restrict__ A, int64_t lda, bool vec_a,
                 const float* __restrict__ B, int64_t ldb, bool vec_b, float beta, float* __restrict__ C, int64_t ldc,
                 bool vec_c, PerturbDesc pd) {
  constexpr int BM = kF32TileM, BN = kF32TileN, BK = kF32TileK;
  __shared__ __align__(16) float As[2][BK][BM + kF32Pad];  // [k][m]
  __shared__ __align__(16) float Bs[2][BK][BN + kF32Pad];  // [k][n]

  const int tid = threadIdx.x;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * BN;

  // Storage coordinates of this thread's quads: A is [M, K] (or [K, M] when TA), B is [K, N]
  // (or [N, K] when TB); `tile_*` is the quad's place inside the storage tile.
  const QuadPos qa = TA ? quad_wide(tid) : quad_tall(tid);
  const QuadPos qb = TB ? quad_tall(tid) : quad_wide(tid);
  const int64_t a_rows = TA ? K : M, a_cols = TA ? M : K;
  const int64_t b_rows = TB ? N : K, b_cols = TB ? K : N;

  float a_q[4], b_q[4];
  int b_valid = 0;
  int64_t b_r = 0, b_c = 0;
  auto fetch = [&](int64_t k0) {
    const int64_t a_r = TA ? k0 + qa.row : m0 + qa.row;
    const int64_t a_c = TA ? m0 + qa.col : k0 + qa.col;
    load_quad(A, lda, quad_valid(a_rows, a_cols, a_r, a_c), a_r, a_c, vec_a, a_q);
    b_r = TB ? n0 + qb.row : k0 + qb.row;
    b_c = TB ? k0 + qb.col : n0 + qb.col;
    b_valid = quad_valid(b_rows, b_cols, b_r, b_c);
    load_quad(B, ldb, b_valid, b_r, b_c, vec_b, b_q);
  };
  auto stash = [&](int buf) {
    if (pd.active) perturb_quad(pd, pd.base + static_cast<uint64_t>(b_r * ldb + b_c), b_valid, b_q);
    if (TA) {
      *reinterpret_cast<float4*>(&As[buf][qa.row][qa.col]) = make_float4(a_q[0], a_q[1], a_q[2], a_q[3]);
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) As[buf][qa.col + j][qa.row] = a_q[j];
    }
    if (TB) {
#pragma unroll
      for (int j = 0; j < 4; ++j) Bs[buf][qb.col + j][qb.row] = b_q[j];
    } else {
      *reinterpret_cast<float4*>(&Bs[buf][qb.row][qb.col]) = make_float4(b_q[0], b_q[1], b_q[2], b_q[3]);
    }
  };

  const int tx = tid & 15, ty = tid >> 4;
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  fetch(0);
  stash(0);
  __syncthreads();
  int buf = 0;
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    const bool more = k0 + BK < K;
    if (more) fetch(k0 + BK);  // in flight while this tile is multiplied
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float a[8], b[8];
      const float4 a_lo = *reinterpret_cast<const float4*>(&As[buf][k][ty * 4]);
      const float4 a_hi = *reinterpret_cast<const float4*>(&As[buf][k][64 + ty * 4]);
      const float4 b_lo = *reinterpret_cast<const float4*>(&Bs[buf][k][tx * 4]);
      const float4 b_hi = *reinterpret_cast<const float4*>(&Bs[buf][k][64 + tx * 4]);
      a[0] = a_lo.x, a[1] = a_lo.y, a[2] = a_lo.z, a[3] = a_lo.w;
      a[4] = a_hi.x, a[5] = a_hi.y, a[6] = a_hi.z, a[7] = a_hi.w;
      b[0] = b_lo.x, b[1] = b_lo.y, b[2] = b_lo.z, b[3] = b_lo.w;
      b[4] = b_hi.x, b[5] = b_hi.y, b[6] = b_hi.z, b[7] = b_hi.w;
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = __fmaf_rn(a[i], b[j], acc[i][j]);
    }
    if (more) stash(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t m = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
    if (m >= M) continue;
    float* crow = C + m * ldc;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t n = n0 + h * 64 + tx * 4;
      if (n >= N) continue;
      const float* a4 = &acc[i][h * 4];
      if (vec_c && n + 3 < N) {
        float4 old = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (beta != 0.0f) old = *reinterpret_cast<const float4*>(crow + n);
        *reinterpret_cast<float4*>(crow + n) =
            make_float4(epilogue(a4[0], alpha, beta, old.x), epilogue(a4[1], alpha, beta, old.y),
                        epilogue(a4[2], alpha, beta, old.z), epilogue(a4[3], alpha, beta, old.w));
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (n + j < N) crow[n + j] = epilogue(a4[j], alpha, beta, beta == 0.0f ? 0.0f : crow[n + j]);
      }
    }
  }
}

// ---- bf16 / f16 tensor cores (WMMA) ---------------------------------------------------------

namespace wmma = nvcuda::wmma;

constexpr int kHalfPad = 8;  // 16 bytes: rows stay 32-byte aligned for every fragment pointer

// The shared tile of an operand stored R rows × L contiguous columns (padded).
template <int R, int L>
struct SmemTile {
  static constexpr int kLd = L + kHalfPad;
  static constexpr int kElems = R * kLd;
  static constexpr int kQuadsPerRow = L / 4;
  static constexpr int kQuadsPerThread = R * L / 4 / kHalfThreads;
};

template <typename E>
struct WmmaType;
template <>
struct WmmaType<BF16> {
  using T = __nv_bfloat16;
};
template <>
struct WmmaType<F16> {
  using T = __half;
};

template <typename Out>
struct OutStore;
template <>
struct OutStore<float> {
  static __device__ __forceinline__ float load(const float* p) { return *p; }
  static __device__ __forceinline__ void store(float* p, float v) { *p = v; }
};
template <typename E>
struct HalfOut {  // C in the inputs' 16-bit type
  static __device__ __forceinline__ float load(const uint16_t* p) { return E::to_f32(*p); }
  static __device__ __forceinline__ void store(uint16_t* p, float v) { *p = E::from_f32(v); }
};

template <typename E, bool TA, bool TB, typename OutT, typename OutIO>
__global__ void __launch_bounds__(kHalfThreads)
    hgemm_kernel(int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* __restrict__ A, int64_t lda, bool vec_a,
                 const uint16_t* __restrict__ B, int64_t ldb, bool vec_b, float beta, OutT* __restrict__ C,
                 int64_t ldc, PerturbDesc pd) {
  constexpr int BM = kHalfTileM, BN = kHalfTileN, BK = kHalfTileK;
  using TileA = typename std::conditional<TA, SmemTile<BK, BM>, SmemTile<BM, BK>>::type;  // storage layout
  using TileB = typename std::conditional<TB, SmemTile<BN, BK>, SmemTile<BK, BN>>::type;
  using WT = typename WmmaType<E>::T;
  using LayoutA = typename std::conditional<TA, wmma::col_major, wmma::row_major>::type;
  using LayoutB = typename std::conditional<TB, wmma::col_major, wmma::row_major>::type;
  static_assert(TileA::kQuadsPerThread == 4 && TileB::kQuadsPerThread == 4, "four quads per thread per operand");

  constexpr int kBufBytes = (TileA::kElems > TileB::kElems ? TileA::kElems : TileB::kElems) * 2;
  __shared__ __align__(128) unsigned char smem[4 * kBufBytes];
  auto a_tile = [&](int buf) { return reinterpret_cast<uint16_t*>(smem + buf * kBufBytes); };
  auto b_tile = [&](int buf) { return reinterpret_cast<uint16_t*>(smem + (2 + buf) * kBufBytes); };

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wm = warp >> 2, wn = warp & 3;  // warp tile: rows wm·64, columns wn·32
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int64_t a_rows = TA ? K : M, a_cols = TA ? M : K;
  const int64_t b_rows = TB ? N : K, b_cols = TB ? K : N;

  uint16_t a_q[4][4], b_q[4][4];
  auto fetch = [&](int64_t k0) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int q = tid + i * kHalfThreads;
      {
        const int row = q / TileA::kQuadsPerRow, col = (q % TileA::kQuadsPerRow) * 4;
        const int64_t r = TA ? k0 + row : m0 + row, c = TA ? m0 + col : k0 + col;
        load_quad(A, lda, quad_valid(a_rows, a_cols, r, c), r, c, vec_a, a_q[i]);
      }
      {
        const int row = q / TileB::kQuadsPerRow, col = (q % TileB::kQuadsPerRow) * 4;
        const int64_t r = TB ? n0 + row : k0 + row, c = TB ? k0 + col : n0 + col;
        load_quad(B, ldb, quad_valid(b_rows, b_cols, r, c), r, c, vec_b, b_q[i]);
      }
    }
  };
  auto stash = [&](int buf, int64_t k0) {
    uint16_t* as = a_tile(buf);
    uint16_t* bs = b_tile(buf);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int q = tid + i * kHalfThreads;
      {
        const int row = q / TileA::kQuadsPerRow, col = (q % TileA::kQuadsPerRow) * 4;
        *reinterpret_cast<ushort4*>(as + row * TileA::kLd + col) = make_ushort4(a_q[i][0], a_q[i][1], a_q[i][2], a_q[i][3]);
      }
      {
        const int row = q / TileB::kQuadsPerRow, col = (q % TileB::kQuadsPerRow) * 4;
        if (pd.active) {
          const int64_t r = TB ? n0 + row : k0 + row, c = TB ? k0 + col : n0 + col;
          perturb_quad<E>(pd, pd.base + static_cast<uint64_t>(r * ldb + c), quad_valid(b_rows, b_cols, r, c), b_q[i]);
        }
        *reinterpret_cast<ushort4*>(bs + row * TileB::kLd + col) = make_ushort4(b_q[i][0], b_q[i][1], b_q[i][2], b_q[i][3]);
      }
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  fetch(0);
  stash(0, 0);
  __syncthreads();
  int buf = 0;
  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    const bool more = k0 + BK < K;
    if (more) fetch(k0 + BK);
    const WT* as = reinterpret_cast<const WT*>(a_tile(buf));
    const WT* bs = reinterpret_cast<const WT*>(b_tile(buf));
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, WT, LayoutA> fa[4];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, WT, LayoutB> fb[2];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int m = wm * 64 + i * 16;
        // Element (m, k) sits at [m·ld + k] in a [BM][BK] tile, at [k·ld + m] in a [BK][BM] one.
        wmma::load_matrix_sync(fa[i], TA ? as + kk * TileA::kLd + m : as + m * TileA::kLd + kk, TileA::kLd);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int n = wn * 32 + j * 16;
        wmma::load_matrix_sync(fb[j], TB ? bs + n * TileB::kLd + kk : bs + kk * TileB::kLd + n, TileB::kLd);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    if (more) stash(buf ^ 1, k0 + BK);
    __syncthreads();
    buf ^= 1;
  }

  // Epilogue: each warp stages one fragment at a time through its own 16 × 16 f32 scratch (the
  // tiles are free now: the loop ended with __syncthreads).
  float* scratch = reinterpret_cast<float*>(smem) + warp * 256;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(scratch, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
#pragma unroll
      for (int t = 0; t < 8; ++t) {
        const int e = lane + 32 * t, r = e >> 4, c = e & 15;
        const int64_t m = m0 + wm * 64 + i * 16 + r, n = n0 + wn * 32 + j * 16 + c;
        if (m < M && n < N) {
          OutT* p = C + m * ldc + n;
          OutIO::store(p, epilogue(scratch[e], alpha, beta, beta == 0.0f ? 0.0f : OutIO::load(p)));
        }
      }
      __syncwarp();
    }
  }
}

template <typename T>
__global__ void scale_c_kernel(int64_t M, int64_t N, float beta, T* C, int64_t ldc) {
  const int64_t total = M * N;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    T* p = C + (i / N) * ldc + (i % N);
    if (beta == 0.0f) *p = T(0);
    else *p = T(rng::fmul(beta, static_cast<float>(*p)));
  }
}
template <typename E>
__global__ void scale_c_half_kernel(int64_t M, int64_t N, float beta, uint16_t* C, int64_t ldc) {
  const int64_t total = M * N;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint16_t* p = C + (i / N) * ldc + (i % N);
    *p = beta == 0.0f ? uint16_t(0) : E::from_f32(rng::fmul(beta, E::to_f32(*p)));
  }
}

// ---- host side --------------------------------------------------------------------------------

void check_desc(const PerturbDesc& pd) {
  if (!pd.active) return;
  ZCHECK(pd.dist == rng::Distribution::Normal || pd.dist == rng::Distribution::Rademacher, ZEROTH_E_INVALID_ARG,
         "gemm (cuda): unknown perturbation distribution; use normal or rademacher");
}

// The device all three matrices live on (the one C is on).
int device_of_operands(const void* A, const void* B, const void* C) {
  const int dev = device_of_pointer(C, "gemm (cuda): C");
  const int da = device_of_pointer(A, "gemm (cuda): A");
  const int db = device_of_pointer(B, "gemm (cuda): B");
  ZCHECK(da == dev && db == dev, ZEROTH_E_DEVICE,
         "gemm (cuda): A is on cuda:" + std::to_string(da) + ", B on cuda:" + std::to_string(db) + " and C on cuda:" +
             std::to_string(dev) + "; move them to one device");
  return dev;
}

template <bool TA, bool TB>
void launch_sgemm(cudaStream_t st, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const PerturbDesc& pd) {
  const gemm_plan::Grid g = gemm_plan::tile_grid(M, N, kF32TileM, kF32TileN);
  sgemm_kernel<TA, TB><<<dim3(g.x, g.y), kF32Threads, 0, st>>>(
      M, N, K, alpha, A, lda, gemm_plan::quads_aligned(A, lda, 4), B, ldb, gemm_plan::quads_aligned(B, ldb, 4), beta, C,
      ldc, gemm_plan::quads_aligned(C, ldc, 4), pd);
}

template <typename E, typename OutT, typename OutIO, bool TA, bool TB>
void launch_hgemm(cudaStream_t st, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t lda,
                  const uint16_t* B, int64_t ldb, float beta, OutT* C, int64_t ldc, const PerturbDesc& pd) {
  const gemm_plan::Grid g = gemm_plan::tile_grid(M, N, kHalfTileM, kHalfTileN);
  hgemm_kernel<E, TA, TB, OutT, OutIO><<<dim3(g.x, g.y), kHalfThreads, 0, st>>>(
      M, N, K, alpha, A, lda, gemm_plan::quads_aligned(A, lda, 2), B, ldb, gemm_plan::quads_aligned(B, ldb, 2), beta, C,
      ldc, pd);
}

template <typename E, typename OutT, typename OutIO>
void gemm_half(const char* name, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta, OutT* C, int64_t ldc,
               const PerturbDesc& pd) {
  gemm_plan::check_problem(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  check_desc(pd);
  if (M == 0 || N == 0) return;
  const int dev = K == 0 ? device_of_pointer(C, "gemm (cuda): C") : device_of_operands(A, B, C);
  cudaStream_t st = stream_for(dev);
  if (K == 0 || alpha == 0.0f) {
    if (beta == 1.0f) return;
    if constexpr (std::is_same<OutT, float>::value)
      scale_c_kernel<float><<<grid_for(static_cast<uint64_t>(M * N), 256), 256, 0, st>>>(M, N, beta, C, ldc);
    else
      scale_c_half_kernel<E><<<grid_for(static_cast<uint64_t>(M * N), 256), 256, 0, st>>>(M, N, beta, C, ldc);
    check_launch(dev, "scale_c_kernel");
    return;
  }
  if (!trans_a && !trans_b) launch_hgemm<E, OutT, OutIO, false, false>(st, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pd);
  else if (!trans_a && trans_b) launch_hgemm<E, OutT, OutIO, false, true>(st, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pd);
  else if (trans_a && !trans_b) launch_hgemm<E, OutT, OutIO, true, false>(st, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pd);
  else launch_hgemm<E, OutT, OutIO, true, true>(st, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pd);
  check_launch(dev, name);
}

}  // namespace

int device_of_pointer(const void* p, const char* what) {
  cudaPointerAttributes attr;
  const cudaError_t err = cudaPointerGetAttributes(&attr, p);
  if (err != cudaSuccess) throw_cuda_error(err, 0, (std::string("reading where ") + what + " lives").c_str());
  ZCHECK(attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged, ZEROTH_E_DEVICE,
         std::string(what) + " is host memory but this operation runs on a CUDA device; pass a pointer to GPU memory");
  return attr.device;
}

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const PerturbDesc& b_perturb) {
  gemm_plan::check_problem(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  check_desc(b_perturb);
  if (M == 0 || N == 0) return;
  const int dev = K == 0 ? device_of_pointer(C, "gemm (cuda): C") : device_of_operands(A, B, C);
  cudaStream_t st = stream_for(dev);
  if (K == 0 || alpha == 0.0f) {
    if (beta == 1.0f) return;
    scale_c_kernel<float><<<grid_for(static_cast<uint64_t>(M * N), 256), 256, 0, st>>>(M, N, beta, C, ldc);
    check_launch(dev, "scale_c_kernel");
    return;
  }
  if (!trans_a && !trans_b) launch_sgemm<false, false>(st, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, b_perturb);
  else if (!trans_a && trans_b) launch_sgemm<false, true>(st, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, b_perturb);
  else if (trans_a && !trans_b) launch_sgemm<true, false>(st, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, b_perturb);
  else launch_sgemm<true, true>(st, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, b_perturb);
  check_launch(dev, "sgemm_kernel");
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc,
               const PerturbDesc& b_perturb) {
  gemm_half<BF16, float, OutStore<float>>("hgemm_kernel<bf16>", trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta,
                                          C, ldc, b_perturb);
}

void gemm_f16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
              int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc,
              const PerturbDesc& b_perturb) {
  gemm_half<F16, float, OutStore<float>>("hgemm_kernel<f16>", trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                                         ldc, b_perturb);
}

}  // namespace cuda
}  // namespace zeroth
