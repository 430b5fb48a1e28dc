// int4_gemm.cu — the CUDA twin of native/cpu/int4_gemm.h (CPU reference: int4_gemm.cpp's
// quant_matmul and its scalar row kernel gemv_rows_scalar). Contract, precision and the QZO
// scale perturbation: cuda/int4_gemm_cuda.h; the host-side plan (checks, kernel choice, grid) is
// int4_plan there, so it is tested without a GPU.
//
// Every weight is the CPU's f32 expression fl(fl(code − zero)·scale), then one fma into an f32
// accumulator. How the kernels get there cheaply:
//  - codes become floats without a conversion instruction: a byte permute (__byte_perm) puts a
//    code into the low mantissa bits of 2^23, giving the float 2^23 + code exactly (int8 codes
//    are first offset by 128 with one xor per word). When the zero point is an integer of
//    magnitude <= 2^22 (every zero quantize() and the GPTQ loader write, and the fixed 8 / 0),
//    2^23 + zero is exact too, so ONE subtraction (2^23 + code) − (2^23 + zero) is exactly
//    fl(code − zero). Other zeros take a second subtraction (the code itself, then − zero); a
//    warp decides per step, from the zeros it staged, which of the two loops it runs.
//  - the GEMV reads scales and zeros once per (row, group) into shared memory, with the
//    perturbation applied there (fl(s + fl(scale·z)), z from philox.h; four consecutive scales
//    share one Philox block), so its per-element loop only reads registers and shared memory;
//    the GEMM reads a thread's scale once per 16 codes, perturbed in registers.
//
// Kernels:
//   gemv_vec_kernel<BITS, MT, U>  M <= 8 (MT >= M x rows compiled in). A warp owns 4 W rows and
//                                 walks them in steps of 32·U 16-byte runs (a run: 32 int4 / 16
//                                 int8 codes of one row, inside one group: int4_plan::
//                                 gemv_vec_fits); lane l takes run l (+ 32, ..) of each row. Per
//                                 step: unpack in registers, fma with x read as float4 (each x
//                                 value serves the 4 rows). Software-pipelined one step ahead:
//                                 the next step's codes (4·U 16-byte loads per lane) and its raw
//                                 scales / zeros are loaded before this step's multiply and
//                                 perturbed + staged into the other half of a double-buffered
//                                 shared stage after it, so their latency hides behind the
//                                 multiply instead of stalling the warp once per step. Partial
//                                 sums per lane, butterfly shuffle reduction, no atomics.
//                                 Why 4 rows per warp: x traffic from L1 is 4× smaller than with
//                                 one row (the per-element cost is ~4.5 instructions, so the
//                                 kernel is near the issue limit as well as the memory limit),
//                                 and 4 rows × U runs × 16 bytes per lane keep enough bytes in
//                                 flight when `out` gives only a few warps per SM (4096 rows:
//                                 1024 warps). U = 2 for MT <= 2, 1 above (registers).
//                                 Perturbed scales: the step's scales are aligned quads of the
//                                 [out, groups] tensor, spread over the lanes across all 4 rows,
//                                 one Philox block (four normals) per quad.
//   gemv_generic_kernel<BITS>     the shapes the vector kernel refuses (odd `in`, group sizes
//                                 that split a run, misaligned codes): one warp per row, groups
//                                 in order, the group's columns strided over the lanes.
//   qgemm_kernel<BITS>            larger M: 128 (x rows) × 128 (W rows) output tiles, 256
//                                 threads with 8 × 8 accumulators each (the register tile of
//                                 gemm.cu's sgemm), K in steps of 32. Per step each thread reads 4
//                                 x quads and 16 codes of one W row (one 8-byte / 16-byte load
//                                 when aligned), de-quantizes them with the group's (perturbed)
//                                 scale and stores both tiles transposed into shared memory in
//                                 f32; the next step's global loads are in flight during the
//                                 multiply. f32 FMA throughout (no TF32, no bf16).
//   gather_columns_kernel         perm (act-order): x'[m, c] = x[m, perm[c]] into a scratch
//                                 buffer first, as the CPU does, so the kernels read the stored
//                                 column order unchanged.
//   fill_zero_kernel              in == 0: y = 0.
#include <cuda_runtime.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common.cuh"
#include "core/backend.h"
#include "cpu/quant.h"
#include "gemm_cuda.h"  // device_of_pointer
#include "int4_gemm_cuda.h"

namespace zeroth {
namespace cuda {
namespace {

using int4_plan::kGemmThreads;
using int4_plan::kGemmTileK;
using int4_plan::kGemmTileM;
using int4_plan::kGemmTileN;
using int4_plan::kGemvMaxM;
using int4_plan::kGemvRowsPerWarp;
using int4_plan::kGemvWarps;

constexpr unsigned kFullMask = 0xffffffffu;

// ---- codes ----------------------------------------------------------------------------------

template <int BITS>
struct Codes;

// int4: a 32-bit word holds elements 0..7 of a run, element 2k in the low nibble of byte k.
template <>
struct Codes<4> {
  static constexpr int kRun = 32, kPerWord = 8;
  static constexpr float kBase = 8388608.0f;  // 2^23: decode() gives 2^23 + code
  static __device__ __forceinline__ void decode(uint32_t wd, float f[8]) {
    const uint32_t lo = wd & 0x0F0F0F0Fu, hi = (wd >> 4) & 0x0F0F0F0Fu;
    // Result bytes: (byte k of lo/hi, 0, 0, 0x4B) = the float 2^23 + nibble.
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      f[2 * k] = __uint_as_float(__byte_perm(lo, 0x4B000000u, 0x7540u + static_cast<unsigned>(k)));
      f[2 * k + 1] = __uint_as_float(__byte_perm(hi, 0x4B000000u, 0x7540u + static_cast<unsigned>(k)));
    }
  }
};

// int8: a word holds 4 signed codes; xor 0x80 maps code c to the unsigned byte c + 128.
template <>
struct Codes<8> {
  static constexpr int kRun = 16, kPerWord = 4;
  static constexpr float kBase = 8388736.0f;  // 2^23 + 128: decode() gives 2^23 + 128 + code
  static __device__ __forceinline__ void decode(uint32_t wd, float f[4]) {
    const uint32_t u = wd ^ 0x80808080u;
#pragma unroll
    for (int k = 0; k < 4; ++k) f[k] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7540u + static_cast<unsigned>(k)));
  }
};

// True when kBase + zero is exact, so that (kBase + code) − (kBase + zero) rounds once, to
// fl(code − zero): an integer zero with |zero| <= 2^22 keeps kBase + zero an integer below 2^24.
// NaN and infinities are not exact (they take the two-subtraction path and propagate).
__device__ __forceinline__ bool zero_is_exact(float z) { return z == truncf(z) && fabsf(z) <= 4194304.0f; }

// Element c of row r, as quant.h's QuantMatrix::code.
template <int BITS>
__device__ __forceinline__ int code_at(const QuantMatrixDevice& w, int64_t r, int64_t c) {
  const int64_t i = r * w.cols + c;
  if (BITS == 8) return static_cast<int>(__ldg(w.codes8 + i));
  const uint32_t b = __ldg(w.codes4 + (i >> 1));
  return static_cast<int>((i & 1) ? (b >> 4) : (b & 15u));
}

// z of scale index `index`. Not inlined: one copy of the generator per kernel keeps register
// pressure and compile time down where it is called per element group (generic kernels).
__device__ __noinline__ float scale_z(const PerturbDesc& pd, uint64_t index) {
  return pd.dist == rng::Distribution::Normal ? rng::normal_at(pd.seed, pd.stream, index)
                                              : rng::rademacher_at(pd.seed, pd.stream, index);
}

// z of the four scales first .. first + 3 (first a multiple of 4), common.cuh's z4 behind a call:
// the vector GEMV stages a few quads per step, and an inlined generator there would hold its
// temporaries across the unrolled multiply (registers the multiply needs for loads in flight).
__device__ __noinline__ void scale_z4(const PerturbDesc& pd, uint64_t first, float z[4]) {
  z4(pd.seed, pd.stream, pd.dist, first, z);
}

// The scale of (r, g) as the kernels read it: fl(s + fl(scale·z(r·groups + g))) when perturbed.
__device__ __forceinline__ float scale_read(const QuantMatrixDevice& w, const PerturbDesc& pd, int64_t r, int64_t g) {
  const int64_t f = r * w.groups + g;
  const float s = __ldg(w.scales + f);
  return pd.active ? rng::fadd(s, rng::fmul(pd.scale, scale_z(pd, static_cast<uint64_t>(f)))) : s;
}
__device__ __forceinline__ float zero_read(const QuantMatrixDevice& w, int64_t r, int64_t g) {
  return w.zeros ? __ldg(w.zeros + r * w.groups + g) : w.fixed_zero;
}

// The CPU's value for a decoded code f = kBase + code: fl(fl(code − zero)·s). kExact: zb is
// kBase + zero (exact); otherwise zb is the zero itself.
template <int BITS, bool kExact>
__device__ __forceinline__ float dequant(float f, float zb, float s) {
  if (kExact) return __fmul_rn(__fsub_rn(f, zb), s);
  return __fmul_rn(__fsub_rn(__fsub_rn(f, Codes<BITS>::kBase), zb), s);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = __fadd_rn(v, __shfl_xor_sync(kFullMask, v, off));
  return v;
}

// ---- GEMV: vector kernel ----------------------------------------------------------------------

constexpr int kR = kGemvRowsPerWarp;

__device__ __forceinline__ uint32_t word_of(const uint4& q, int i) {
  return i == 0 ? q.x : i == 1 ? q.y : i == 2 ? q.z : q.w;
}

// The geometry of one step of the vector GEMV: runs [s0, s0 + 32·U) of each of the warp's rows
// (a run: 16 bytes of codes, inside one group), the groups [g_lo, g_lo + n_g) they touch, and the
// aligned quads of the scales tensor that hold those groups, row after row (the warp's rows are
// consecutive, so row i's groups are one contiguous range of the [out, groups] tensor).
template <int BITS, int U>
struct Step {
  static constexpr int kRuns = 32 * U;
  static constexpr int kStage = kRuns + 1;  // groups one step can touch: a run never straddles two
  // Quads a step's scales can span: per row ceil(kStage / 4) + 1 (misalignment), over kR rows.
  static constexpr int kQuadRounds = (kR * ((kStage + 3) / 4 + 1) + 31) / 32;
  int64_t s0;
  uint32_t g_lo, n_g;
  __device__ __forceinline__ Step(int64_t first_run, int64_t runs, uint32_t gs) : s0(first_run) {
    const int64_t end = first_run + kRuns < runs ? first_run + kRuns : runs;
    g_lo = static_cast<uint32_t>(first_run * Codes<BITS>::kRun) / gs;
    n_g = static_cast<uint32_t>(end * Codes<BITS>::kRun - 1) / gs - g_lo + 1;
  }
  // Quad t of the step's flattened quad list: its row i, first flat index b (a multiple of 4)
  // and the row's first group f0. False past the end.
  __device__ __forceinline__ bool quad(int t, int nr, int64_t row0, int64_t groups, int* i, int64_t* b,
                                       int64_t* f0) const {
    int64_t prefix = 0;
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      if (r >= nr) break;
      const int64_t first = (row0 + r) * groups + g_lo;
      const int64_t qa = first >> 2, nq = ((first + n_g + 3) >> 2) - qa;
      if (t < prefix + nq) {
        *i = r;
        *b = (qa + (t - prefix)) * 4;
        *f0 = first;
        return true;
      }
      prefix += nq;
    }
    return false;
  }
};

// A step's scales and zeros as loaded from global memory, held in registers until the previous
// step's multiply is done (so their latency overlaps it), then perturbed and staged.
template <int BITS, int U>
struct RawScales {
  static constexpr int kK = Step<BITS, U>::kQuadRounds;
  float s[kK][4], z[kK][4];

  __device__ __forceinline__ void load(const Step<BITS, U>& st, const QuantMatrixDevice& w, int nr, int64_t row0,
                                       int lane) {
#pragma unroll
    for (int k = 0; k < kK; ++k) {
      int i = 0;
      int64_t b = 0, f0 = 0;
      const bool any = st.quad(lane + 32 * k, nr, row0, w.groups, &i, &b, &f0);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t f = b + j;
        const bool in = any && f >= f0 && f < f0 + st.n_g;
        s[k][j] = in ? __ldg(w.scales + f) : 0.0f;
        z[k][j] = in && w.zeros ? __ldg(w.zeros + f) : w.fixed_zero;
      }
    }
  }

  // Writes (fl(s + fl(scale·z)), zero) of every group of the step into `stage` ([kR][kStage],
  // group g of row i at i·kStage + g − g_lo). Returns whether all of this lane's zeros are exact.
  __device__ __forceinline__ bool store(const Step<BITS, U>& st, const QuantMatrixDevice& w, const PerturbDesc& pd,
                                        int nr, int64_t row0, int lane, float2* stage) const {
    constexpr int kStage = Step<BITS, U>::kStage;
    bool exact = true;
#pragma unroll
    for (int k = 0; k < kK; ++k) {
      int i = 0;
      int64_t b = 0, f0 = 0;
      if (!st.quad(lane + 32 * k, nr, row0, w.groups, &i, &b, &f0)) continue;
      float zq[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      if (pd.active) scale_z4(pd, static_cast<uint64_t>(b), zq);  // one Philox block per quad
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t f = b + j;
        if (f < f0 || f >= f0 + st.n_g) continue;
        const float sv = pd.active ? rng::fadd(s[k][j], rng::fmul(pd.scale, zq[j])) : s[k][j];
        stage[i * kStage + static_cast<int>(f - f0)] = make_float2(sv, z[k][j]);
        exact = exact && zero_is_exact(z[k][j]);
      }
    }
    return exact;
  }
};

// The codes of a step: run s0 + u·32 + lane of each row (zeros past the end of the row).
template <int BITS, int U>
__device__ __forceinline__ void load_codes(const uint4* codes, int64_t runs, int64_t row0, int nr, int64_t s0,
                                           int lane, uint4 (&q)[U][kR]) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int64_t run = s0 + u * 32 + lane;
#pragma unroll
    for (int i = 0; i < kR; ++i)
      q[u][i] = (i < nr && run < runs) ? __ldg(codes + (row0 + i) * runs + run) : make_uint4(0u, 0u, 0u, 0u);
  }
}

// One step's multiply: the runs s0 + u·32 + lane (u < U) of the warp's rows, with the step's
// scales and zeros staged in `st`.
template <int BITS, int MT, int U, bool kExact>
__device__ __forceinline__ void gemv_step(const uint4 (&q)[U][kR], const float2* st, const Step<BITS, U>& step,
                                          int nr, int64_t runs, uint32_t gs, int M, const float* __restrict__ x,
                                          int64_t ldx, bool x_vec, int lane, float (&acc)[kR][MT]) {
  using CT = Codes<BITS>;
  constexpr int kStage = Step<BITS, U>::kStage;
  constexpr int kPW = CT::kPerWord;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int64_t run = step.s0 + u * 32 + lane;
    if (run >= runs) break;
    const uint32_t c = static_cast<uint32_t>(run * CT::kRun);
    const uint32_t gi = c / gs - step.g_lo;
    float s[kR], zb[kR];
#pragma unroll
    for (int i = 0; i < kR; ++i) {
      const float2 p = i < nr ? st[i * kStage + gi] : make_float2(0.0f, 0.0f);
      s[i] = p.x;
      zb[i] = kExact ? __fadd_rn(CT::kBase, p.y) : p.y;
    }
#pragma unroll
    for (int wi = 0; wi < 4; ++wi) {
      const uint32_t cw = c + static_cast<uint32_t>(wi * kPW);
      float xr[MT][kPW];
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        const float* xp = x + m * ldx + cw;
        if (m < M && x_vec) {
#pragma unroll
          for (int h = 0; h < kPW / 4; ++h) {
            const float4 v = __ldg(reinterpret_cast<const float4*>(xp) + h);
            xr[m][4 * h] = v.x;
            xr[m][4 * h + 1] = v.y;
            xr[m][4 * h + 2] = v.z;
            xr[m][4 * h + 3] = v.w;
          }
        } else {
#pragma unroll
          for (int e = 0; e < kPW; ++e) xr[m][e] = m < M ? __ldg(xp + e) : 0.0f;
        }
      }
#pragma unroll
      for (int i = 0; i < kR; ++i) {
        float f[kPW];
        CT::decode(word_of(q[u][i], wi), f);
#pragma unroll
        for (int e = 0; e < kPW; ++e) {
          const float v = dequant<BITS, kExact>(f[e], zb[i], s[i]);
#pragma unroll
          for (int m = 0; m < MT; ++m) acc[i][m] = __fmaf_rn(v, xr[m][e], acc[i][m]);
        }
      }
    }
  }
}

// Software pipeline, one step ahead: while step s is multiplied, the codes and the raw scales /
// zeros of step s + 1 are in flight; after the multiply they are perturbed and staged into the
// other half of the warp's double-buffered stage. So a warp waits on memory once, at the start,
// not once per step.
// Resident blocks per SM asked of the register allocator: left alone it spends 168 registers
// on a thread even for M = 1; 4 blocks (16 warps, <= 128 registers) keep more rows' loads in
// flight per SM. int8 at MT = 1 and MT = 2, 4 get 3 blocks (<= 168 registers), MT = 8 two (its
// 32 accumulators and 64 x values need ~250): fewer would spill (ptxas -v, sm_80 and sm_90).
constexpr int gemv_min_blocks(int bits, int mt) { return mt == 1 && bits == 4 ? 4 : mt <= 4 ? 3 : 2; }

template <int BITS, int MT, int U>
__global__ void __launch_bounds__(kGemvWarps * 32, gemv_min_blocks(BITS, MT))
    gemv_vec_kernel(QuantMatrixDevice w, uint32_t gs, int M, const float* __restrict__ x, int64_t ldx, bool x_vec,
                    float* __restrict__ y, int64_t ldy, PerturbDesc pd) {
  using CT = Codes<BITS>;
  using StepT = Step<BITS, U>;
  constexpr int kStage = StepT::kStage;
  __shared__ float2 stage[kGemvWarps][2][kR * kStage];

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kGemvWarps + warp) * kR;
  if (row0 >= w.rows) return;  // the whole warp: nothing below synchronizes the block
  const int nr = static_cast<int>(w.rows - row0 < kR ? w.rows - row0 : kR);
  const int64_t runs = w.cols / CT::kRun;
  const uint4* codes =
      reinterpret_cast<const uint4*>(BITS == 4 ? static_cast<const void*>(w.codes4) : static_cast<const void*>(w.codes8));

  float acc[kR][MT];
#pragma unroll
  for (int i = 0; i < kR; ++i)
#pragma unroll
    for (int m = 0; m < MT; ++m) acc[i][m] = 0.0f;

  // Prologue: step 0 loaded and staged.
  StepT step(0, runs, gs);
  uint4 q[U][kR];
  load_codes<BITS, U>(codes, runs, row0, nr, 0, lane, q);
  RawScales<BITS, U> raw;
  raw.load(step, w, nr, row0, lane);
  bool exact = __all_sync(kFullMask, raw.store(step, w, pd, nr, row0, lane, stage[warp][0]));
  __syncwarp();

  int buf = 0;
  for (int64_t s0 = 0; s0 < runs; s0 += StepT::kRuns) {
    const int64_t s1 = s0 + StepT::kRuns;
    const bool more = s1 < runs;  // warp-uniform
    const StepT next(more ? s1 : s0, runs, gs);
    uint4 qn[U][kR];
    load_codes<BITS, U>(codes, runs, row0, nr, s1, lane, qn);  // zeros (no loads) past the end
    if (more) raw.load(next, w, nr, row0, lane);
    if (exact)
      gemv_step<BITS, MT, U, true>(q, stage[warp][buf], step, nr, runs, gs, M, x, ldx, x_vec, lane, acc);
    else
      gemv_step<BITS, MT, U, false>(q, stage[warp][buf], step, nr, runs, gs, M, x, ldx, x_vec, lane, acc);
    if (!more) break;
    // The other half was last read by step s − 1, which every lane finished before the
    // __all_sync / __syncwarp that closed the previous iteration.
    exact = __all_sync(kFullMask, raw.store(next, w, pd, nr, row0, lane, stage[warp][buf ^ 1]));
    __syncwarp();
    buf ^= 1;
    step = next;
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int i = 0; i < kR; ++i) q[u][i] = qn[u][i];
  }

#pragma unroll
  for (int i = 0; i < kR; ++i)
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      const float v = warp_sum(acc[i][m]);
      if (lane == i * MT + m && i < nr && m < M) y[m * ldy + row0 + i] = v;
    }
}

// ---- GEMV: generic kernel -----------------------------------------------------------------------

template <int BITS>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_generic_kernel(QuantMatrixDevice w, uint32_t gs, int M, const float* __restrict__ x, int64_t ldx,
                        float* __restrict__ y, int64_t ldy, PerturbDesc pd) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kGemvWarps + warp;
  if (r >= w.rows) return;
  const uint32_t cols = static_cast<uint32_t>(w.cols);
  float acc[kGemvMaxM];
#pragma unroll
  for (int m = 0; m < kGemvMaxM; ++m) acc[m] = 0.0f;
  for (int64_t g = 0; g < w.groups; ++g) {
    const float s = scale_read(w, pd, r, g), zr = zero_read(w, r, g);
    const uint32_t c0 = static_cast<uint32_t>(g) * gs;
    const uint32_t c1 = cols - c0 < gs ? cols : c0 + gs;
    for (uint32_t c = c0 + static_cast<uint32_t>(lane); c < c1; c += 32) {
      const float v = __fmul_rn(__fsub_rn(static_cast<float>(code_at<BITS>(w, r, c)), zr), s);
#pragma unroll
      for (int m = 0; m < kGemvMaxM; ++m)
        if (m < M) acc[m] = __fmaf_rn(v, __ldg(x + m * ldx + c), acc[m]);
    }
  }
#pragma unroll
  for (int m = 0; m < kGemvMaxM; ++m) {
    const float v = warp_sum(acc[m]);
    if (lane == m && m < M) y[m * ldy + r] = v;
  }
}

// ---- GEMM --------------------------------------------------------------------------------------

constexpr int kGemmPad = 4;  // keeps float4 rows of the shared tiles aligned

static_assert(kGemmThreads == 256 && kGemmTileM == 128 && kGemmTileN == 128 && kGemmTileK == 32,
              "qgemm_kernel's index arithmetic assumes a 128 x 128 x 32 tile on 256 threads");

// Code e (0..15) of a thread's 16 packed codes.
template <int BITS>
__device__ __forceinline__ float packed_code(const uint32_t (&wc)[4], int e) {
  if (BITS == 4) return static_cast<float>((wc[e >> 3] >> (4 * (e & 7))) & 15u);
  return static_cast<float>(static_cast<int8_t>(static_cast<uint8_t>((wc[e >> 2] >> (8 * (e & 3))) & 0xFFu)));
}

template <int BITS>
__global__ void __launch_bounds__(kGemmThreads)
    qgemm_kernel(QuantMatrixDevice w, uint32_t gs, int64_t M, const float* __restrict__ x, int64_t ldx, bool x_vec,
                 bool w_vec, float* __restrict__ y, int64_t ldy, PerturbDesc pd) {
  constexpr int BM = kGemmTileM, BN = kGemmTileN, BK = kGemmTileK;
  __shared__ __align__(16) float Xs[BK][BM + kGemmPad];  // [k][m]
  __shared__ __align__(16) float Ws[BK][BN + kGemmPad];  // [k][n], de-quantized

  const int tid = threadIdx.x;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * BN;
  const uint32_t cols = static_cast<uint32_t>(w.cols);

  // x: 128 rows × 8 quads per step, 4 quads per thread (quad q = tid + 256·j: row q / 8,
  // columns (q % 8)·4 .. +3). W: row n0 + tid / 2, the 16 columns (tid % 2)·16 .. +15.
  const int wn = tid >> 1, wk = (tid & 1) * 16;
  const int64_t n = n0 + wn;
  float xq[4][4];
  uint32_t wc[4];
  uint32_t w_c = 0;
  int w_valid = 0;
  bool w_one = false;  // all of the thread's valid codes in one group: scale and zero below
  float w_s = 0.0f, w_z = 0.0f;

  auto fetch = [&](uint32_t k0) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int q = tid + j * kGemmThreads;
      const int64_t r = m0 + (q >> 3);
      const uint32_t c = k0 + static_cast<uint32_t>((q & 7) * 4);
      const int nv = (r < M && c < cols) ? (cols - c >= 4 ? 4 : static_cast<int>(cols - c)) : 0;
      const float* p = x + r * ldx + c;
      if (nv == 4 && x_vec) {
        const float4 v = __ldg(reinterpret_cast<const float4*>(p));
        xq[j][0] = v.x;
        xq[j][1] = v.y;
        xq[j][2] = v.z;
        xq[j][3] = v.w;
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) xq[j][e] = e < nv ? __ldg(p + e) : 0.0f;
      }
    }
    w_c = k0 + static_cast<uint32_t>(wk);
    w_valid = (n < w.rows && w_c < cols) ? (cols - w_c >= 16 ? 16 : static_cast<int>(cols - w_c)) : 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) wc[i] = 0u;
    w_one = false;
    if (w_valid == 0) return;
    const int64_t i0 = n * w.cols + w_c;
    if (w_valid == 16 && w_vec) {
      if (BITS == 4) {
        const uint2 v = __ldg(reinterpret_cast<const uint2*>(w.codes4 + (i0 >> 1)));
        wc[0] = v.x;
        wc[1] = v.y;
      } else {
        const uint4 v = __ldg(reinterpret_cast<const uint4*>(w.codes8 + i0));
        wc[0] = v.x;
        wc[1] = v.y;
        wc[2] = v.z;
        wc[3] = v.w;
      }
    } else {  // unrolled with a bound check so that wc stays in registers
#pragma unroll
      for (int e = 0; e < 16; ++e) {
        if (e >= w_valid) break;
        const uint32_t code = static_cast<uint32_t>(code_at<BITS>(w, n, w_c + e));
        if (BITS == 4) wc[e >> 3] |= (code & 15u) << (4 * (e & 7));
        else wc[e >> 2] |= (code & 0xFFu) << (8 * (e & 3));
      }
    }
    const uint32_t g_a = w_c / gs, g_b = (w_c + static_cast<uint32_t>(w_valid) - 1) / gs;
    if (g_a == g_b) {
      w_one = true;
      w_s = scale_read(w, pd, n, g_a);
      w_z = zero_read(w, n, g_a);
    }
  };
  auto stash = [&]() {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int q = tid + j * kGemmThreads;
      const int row = q >> 3, col = (q & 7) * 4;
#pragma unroll
      for (int e = 0; e < 4; ++e) Xs[col + e][row] = xq[j][e];
    }
    if (w_one || w_valid == 0) {
#pragma unroll
      for (int e = 0; e < 16; ++e)
        Ws[wk + e][wn] = e < w_valid ? __fmul_rn(__fsub_rn(packed_code<BITS>(wc, e), w_z), w_s) : 0.0f;
    } else {  // the codes straddle groups (group size < 16 or not a multiple of it)
#pragma unroll
      for (int e = 0; e < 16; ++e) {
        float v = 0.0f;
        if (e < w_valid) {
          const uint32_t g = (w_c + static_cast<uint32_t>(e)) / gs;
          v = __fmul_rn(__fsub_rn(packed_code<BITS>(wc, e), zero_read(w, n, g)), scale_read(w, pd, n, g));
        }
        Ws[wk + e][wn] = v;
      }
    }
  };

  const int tx = tid & 15, ty = tid >> 4;
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  fetch(0);
  for (uint32_t k0 = 0; k0 < cols; k0 += BK) {
    stash();
    __syncthreads();
    if (k0 + BK < cols) fetch(k0 + BK);  // in flight while this tile is multiplied
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float a[8], b[8];
      const float4 a_lo = *reinterpret_cast<const float4*>(&Xs[k][ty * 4]);
      const float4 a_hi = *reinterpret_cast<const float4*>(&Xs[k][64 + ty * 4]);
      const float4 b_lo = *reinterpret_cast<const float4*>(&Ws[k][tx * 4]);
      const float4 b_hi = *reinterpret_cast<const float4*>(&Ws[k][64 + tx * 4]);
      a[0] = a_lo.x, a[1] = a_lo.y, a[2] = a_lo.z, a[3] = a_lo.w;
      a[4] = a_hi.x, a[5] = a_hi.y, a[6] = a_hi.z, a[7] = a_hi.w;
      b[0] = b_lo.x, b[1] = b_lo.y, b[2] = b_lo.z, b[3] = b_lo.w;
      b[4] = b_hi.x, b[5] = b_hi.y, b[6] = b_hi.z, b[7] = b_hi.w;
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = __fmaf_rn(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t m = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t nn = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
      if (nn < w.rows) y[m * ldy + nn] = acc[i][j];
    }
  }
}

// ---- helpers ------------------------------------------------------------------------------------

__global__ void gather_columns_kernel(int64_t M, int64_t cols, const float* __restrict__ x, int64_t ldx,
                                      const int32_t* __restrict__ perm, float* __restrict__ out) {
  const int64_t total = M * cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = i / cols, c = i - m * cols;
    const int32_t p = __ldg(perm + c);
    out[i] = (p >= 0 && p < cols) ? __ldg(x + m * ldx + p) : __int_as_float(0x7fc00000);
  }
}

__global__ void fill_zero_kernel(int64_t M, int64_t n, float* __restrict__ y, int64_t ldy) {
  const int64_t total = M * n;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[(i / n) * ldy + (i % n)] = 0.0f;
}

// ---- host side ----------------------------------------------------------------------------------

// The device of y; every other pointer must be on it (E_DEVICE naming the first that is not).
int device_of_operands(const QuantMatrixDevice& w, const float* x, const float* y) {
  const int dev = device_of_pointer(y, "quant_matmul (cuda): y");
  auto same = [&](const void* p, const char* what) {
    if (p == nullptr) return;
    const int d = device_of_pointer(p, what);
    ZCHECK(d == dev, ZEROTH_E_DEVICE,
           std::string(what) + " is on cuda:" + std::to_string(d) + " but y is on cuda:" + std::to_string(dev) +
               "; move them to one device");
  };
  same(x, "quant_matmul (cuda): x");
  same(w.bits == 4 ? static_cast<const void*>(w.codes4) : static_cast<const void*>(w.codes8),
       "quant_matmul (cuda): the weight's codes");
  same(w.scales, "quant_matmul (cuda): the weight's scales");
  same(w.zeros, "quant_matmul (cuda): the weight's zeros");
  same(w.perm, "quant_matmul (cuda): the weight's perm");
  return dev;
}

// Device scratch from the backend's caching allocator. Freeing it right after the launches is
// safe: all work on a device runs on its one stream, so a later user of the block is ordered
// after the kernels that read it (backend_cuda.cu).
struct Scratch {
  int dev = 0;
  void* ptr = nullptr;
  Scratch(int d, size_t bytes) : dev(d) { ptr = backend_for(zeroth_device{ZEROTH_DEVICE_CUDA, d}).alloc(d, bytes); }
  ~Scratch() {
    try {
      backend_for(zeroth_device{ZEROTH_DEVICE_CUDA, dev}).free(dev, ptr);
    } catch (...) {
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

template <int BITS>
void launch_gemv_vec(int mt, unsigned grid, cudaStream_t st, const QuantMatrixDevice& w, uint32_t gs, int M,
                     const float* x, int64_t ldx, bool x_vec, float* y, int64_t ldy, const PerturbDesc& pd) {
  const unsigned threads = kGemvWarps * 32;
  switch (mt) {
    case 1: gemv_vec_kernel<BITS, 1, 2><<<grid, threads, 0, st>>>(w, gs, M, x, ldx, x_vec, y, ldy, pd); break;
    case 2: gemv_vec_kernel<BITS, 2, 2><<<grid, threads, 0, st>>>(w, gs, M, x, ldx, x_vec, y, ldy, pd); break;
    case 4: gemv_vec_kernel<BITS, 4, 1><<<grid, threads, 0, st>>>(w, gs, M, x, ldx, x_vec, y, ldy, pd); break;
    default: gemv_vec_kernel<BITS, 8, 1><<<grid, threads, 0, st>>>(w, gs, M, x, ldx, x_vec, y, ldy, pd); break;
  }
}

}  // namespace

void quant_matmul_path(const QuantMatrixDevice& w, int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy,
                       const PerturbDesc& pd, QuantPath path, int device) {
  int4_plan::check_problem(w, M, x, ldx, y, ldy);
  int4_plan::check_desc(pd);
  const int4_plan::Plan p = int4_plan::make_plan(w, M, x, ldx, path);
  if (p.nothing) return;
  if (p.zero_fill) {
    const int dev = device >= 0 ? device : device_of_pointer(y, "quant_matmul (cuda): y");
    fill_zero_kernel<<<grid_for(static_cast<uint64_t>(M * w.rows), 256), 256, 0, stream_for(dev)>>>(M, w.rows, y, ldy);
    check_launch(dev, "fill_zero_kernel");
    return;
  }
  const int dev = device >= 0 ? device : device_of_operands(w, x, y);
  cudaStream_t st = stream_for(dev);
  // The group size the kernels divide by: one group per row may have any size >= in.
  const uint32_t gs = static_cast<uint32_t>(w.group_size < w.cols ? w.group_size : w.cols);

  // A column-permuted weight: x in stored-column order first (quant.h), into aligned scratch.
  std::unique_ptr<Scratch> gathered;
  if (p.gather) {
    gathered.reset(new Scratch(dev, static_cast<size_t>(M * w.cols) * sizeof(float)));
    float* xg = static_cast<float*>(gathered->ptr);
    gather_columns_kernel<<<grid_for(static_cast<uint64_t>(M * w.cols), 256), 256, 0, st>>>(M, w.cols, x, ldx, w.perm,
                                                                                            xg);
    check_launch(dev, "gather_columns_kernel");
    x = xg;
    ldx = w.cols;
  }

  if (p.path == QuantPath::Gemm) {
    const dim3 grid(p.grid_x, p.grid_y);
    if (w.bits == 4)
      qgemm_kernel<4><<<grid, kGemmThreads, 0, st>>>(w, gs, M, x, ldx, p.x_vec, p.w_vec, y, ldy, pd);
    else
      qgemm_kernel<8><<<grid, kGemmThreads, 0, st>>>(w, gs, M, x, ldx, p.x_vec, p.w_vec, y, ldy, pd);
    check_launch(dev, "qgemm_kernel");
    return;
  }
  for (int64_t pass = 0; pass < p.passes; ++pass) {
    const int64_t m0 = pass * kGemvMaxM;
    const int mp = static_cast<int>(M - m0 < kGemvMaxM ? M - m0 : kGemvMaxM);
    const float* xp = x + m0 * ldx;
    float* yp = y + m0 * ldy;
    if (p.path == QuantPath::GemvVec) {
      if (w.bits == 4) launch_gemv_vec<4>(p.mt, p.grid_x, st, w, gs, mp, xp, ldx, p.x_vec, yp, ldy, pd);
      else launch_gemv_vec<8>(p.mt, p.grid_x, st, w, gs, mp, xp, ldx, p.x_vec, yp, ldy, pd);
      check_launch(dev, "gemv_vec_kernel");
    } else {
      if (w.bits == 4)
        gemv_generic_kernel<4><<<p.grid_x, kGemvWarps * 32, 0, st>>>(w, gs, mp, xp, ldx, yp, ldy, pd);
      else
        gemv_generic_kernel<8><<<p.grid_x, kGemvWarps * 32, 0, st>>>(w, gs, mp, xp, ldx, yp, ldy, pd);
      check_launch(dev, "gemv_generic_kernel");
    }
  }
}

void quant_matmul(const QuantMatrixDevice& w, int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy,
                  const PerturbDesc& scale_perturb) {
  quant_matmul_path(w, M, x, ldx, y, ldy, scale_perturb, QuantPath::Auto);
}

void quant_matmul_on(int device, const QuantMatrixDevice& w, int64_t M, const float* x, int64_t ldx, float* y,
                     int64_t ldy, const PerturbDesc& scale_perturb) {
  ZCHECK(device >= 0, ZEROTH_E_DEVICE, "quant_matmul (cuda): no CUDA device " + std::to_string(device));
  quant_matmul_path(w, M, x, ldx, y, ldy, scale_perturb, QuantPath::Auto, device);
}

DeviceQuantWeight upload_quant_matrix(const Tensor& q, int device) {
  std::vector<float> storage;
  const QuantMatrix m = quant_matrix(q, storage);  // validates q, widens f16 scales / zeros
  const zeroth_device dev{ZEROTH_DEVICE_CUDA, device};
  DeviceQuantWeight out;
  const int64_t n = m.rows * m.groups;
  if (q.numel > 0) {
    out.codes = tensor_empty(q.dtype, q.shape, dev);
    backend_for(dev).copy_from_host(device, out.codes->data(), q.data(), q.nbytes());
  }
  if (n > 0) {
    out.scales = tensor_from_host(ZEROTH_F32, Shape{m.rows, m.groups}, dev, m.scales, static_cast<size_t>(n) * 4);
    if (m.zeros)
      out.zeros = tensor_from_host(ZEROTH_F32, Shape{m.rows, m.groups}, dev, m.zeros, static_cast<size_t>(n) * 4);
  }
  if (m.perm && m.cols > 0)
    out.perm = tensor_from_host(ZEROTH_I32, Shape{m.cols}, dev, m.perm, static_cast<size_t>(m.cols) * 4);
  QuantMatrixDevice& d = out.matrix;
  d.bits = m.bits;
  d.rows = m.rows;
  d.cols = m.cols;
  d.group_size = m.group_size;
  d.groups = m.groups;
  if (out.codes) {
    if (m.bits == 4) d.codes4 = out.codes->as<uint8_t>();
    else d.codes8 = out.codes->as<int8_t>();
  }
  d.scales = out.scales ? out.scales->as<float>() : nullptr;
  d.zeros = out.zeros ? out.zeros->as<float>() : nullptr;
  d.fixed_zero = m.fixed_zero;
  d.perm = out.perm ? out.perm->as<int32_t>() : nullptr;
  return out;
}

}  // namespace cuda
}  // namespace zeroth
