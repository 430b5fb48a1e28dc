// int4_gemm_cuda.h — the CUDA twin of native/cpu/int4_gemm.h: y[M, out] = x[M, in]·Wᵀ with a
// quantized weight W [out, in] (int4 or int8, quant.h's layout) in device memory, de-quantized in
// registers, never materialised in f32. Callable from plain C++ (no CUDA types).
//
// Two parts:
//  - always declared (plain C++, compiled and tested on machines without a GPU, as gemm_plan.h):
//    QuantMatrixDevice, the argument checks and the launch plan (cuda::int4_plan);
//  - declared only when the build has the CUDA backend (ZEROTH_WITH_CUDA): the launchers.
//
//   #ifdef ZEROTH_WITH_CUDA
//   #include "../../cuda/int4_gemm_cuda.h"   // from native/*/ or test/native/
//   cuda::DeviceQuantWeight dw = cuda::upload_quant_matrix(*q, 0);   // CPU quantized tensor -> cuda:0
//   cuda::quant_matmul(dw.matrix, M, x, K, y, N, scales_perturb);     // device pointers
//   #endif
//
// Contract: quant.h's value(r, c) = fl(fl(code − zero)·scale) for every weight, exactly as the
// CPU computes it, multiplied and accumulated in f32 with one fused multiply-add per term (no TF32,
// no bf16): results equal the CPU's quant_matmul up to summation order (f32 rounding of the sum:
// at most ~in·2^-24·Σ_c |value·x|, typically √in·2^-24 of it; test/native/test_cuda_int4.cpp
// checks 1e-5 of that sum). A column-permuted weight (perm) gathers x into stored-column order
// first, as the CPU does.
//
// QZO scale perturbation: when `scale_perturb.active`, every scale is read as
// fl(s + fl(scale·z(seed, stream, r·groups + g))) (r the output row, g the group), i.e. z indexed
// by the scale's position in the [out, groups] scales tensor — exactly the value perturb.h's
// perturb / perturb_to writes into that tensor in place (z from philox.h, the same bits on CPU
// and GPU). The perturbed product therefore has the same BITS as the plain product on scales
// perturbed in place (same kernel, same summation order). Zero points are never perturbed.
//
// Kernels (cuda/int4_gemm.cu says why):
//  - GEMV (M <= 8, or M a little larger in passes of 8 rows of x when the weight is too small for
//    the tiled kernel to fill the GPU): one warp per 4 output rows, 16-byte loads of packed codes,
//    unpacked and scaled in registers, warp-shuffle reduction. A generic GEMV serves shapes the
//    vector path cannot (odd `in`, group sizes that split a 16-byte run, misaligned codes).
//  - GEMM (larger M): 128 × 128 output tiles, the W tile de-quantized to f32 in shared memory.
// Work is queued on the device's stream (common.cuh); the call returns once it is queued.
#pragma once
#include <cstdint>
#include <string>

#include "core/errors.h"
#include "core/tensor.h"
#include "cpu/gemm.h"  // PerturbDesc

namespace zeroth {
namespace cuda {

// quant.h's QuantMatrix with device pointers (all on one CUDA device). scales [rows, groups] f32,
// zeros [rows, groups] f32 or null (then fixed_zero: 8 for symmetric int4, 0 for int8), perm
// i32 [cols] or null. A perm entry outside [0, cols) gives NaN in the x column it gathers (the
// device cannot throw; upload_quant_matrix validates perm on the host).
struct QuantMatrixDevice {
  int bits = 4;  // 4 or 8
  int64_t rows = 0, cols = 0, group_size = 0, groups = 0;
  const uint8_t* codes4 = nullptr;  // int4 packed codes, two per byte by flat element index
  const int8_t* codes8 = nullptr;   // int8 codes
  const float* scales = nullptr;
  const float* zeros = nullptr;
  float fixed_zero = 0.0f;
  const int32_t* perm = nullptr;
};

// Which kernel runs a product; Auto lets the plan choose (tests and benchmarks force the others).
enum class QuantPath { Auto, GemvVec, GemvGeneric, Gemm };

namespace int4_plan {

// GEMV: x rows per pass, W rows per warp, warps per block.
constexpr int64_t kGemvMaxM = 8;
constexpr int kGemvRowsPerWarp = 4, kGemvWarps = 4;
// GEMM tile (x rows × W rows × columns of the de-quantized W tile) and threads per block.
constexpr int kGemmTileM = 128, kGemmTileN = 128, kGemmTileK = 32, kGemmThreads = 256;
// M > kGemvMaxM takes the GEMM once it has at least this many output tiles (about one wave on an
// A100/H100): below that the tiled kernel leaves most SMs idle and re-reading W in GEMV passes
// of 8 x rows is faster (each pass streams W once at FMA speed).
constexpr int64_t kGemmMinTiles = 128;

// Elements per 16-byte run of codes: 32 int4 codes or 16 int8 codes.
inline int64_t run_elems(int bits) { return bits == 4 ? 32 : 16; }

inline std::string num(int64_t v) { return std::to_string(v); }

// E_INVALID_ARG / E_SHAPE unless `w` describes a consistent quantized matrix (quant_matrix's
// rules) whose offsets fit in 64 bits and whose rows have fewer than 2^31 columns (the kernels
// index columns in 32 bits).
inline void check_matrix(const QuantMatrixDevice& w) {
  ZCHECK(w.bits == 4 || w.bits == 8, ZEROTH_E_INVALID_ARG,
         "quant_matmul (cuda): bits must be 4 or 8, got " + num(w.bits));
  ZCHECK(w.rows >= 0 && w.cols >= 0, ZEROTH_E_SHAPE,
         "quant_matmul (cuda): the weight's sizes must be non-negative (out = " + num(w.rows) + ", in = " +
             num(w.cols) + ")");
  ZCHECK(w.cols < (int64_t{1} << 31), ZEROTH_E_SHAPE,
         "quant_matmul (cuda): " + num(w.cols) + " input features is more than the 2^31 - 1 a row may have");
  ZCHECK(w.group_size >= 1, ZEROTH_E_INVALID_ARG,
         "quant_matmul (cuda): group size must be >= 1, got " + num(w.group_size));
  const int64_t groups = w.cols == 0 ? 0 : (w.cols + w.group_size - 1) / w.group_size;
  ZCHECK(w.groups == groups, ZEROTH_E_SHAPE,
         "quant_matmul (cuda): groups = " + num(w.groups) + " but " + num(w.cols) + " columns in groups of " +
             num(w.group_size) + " make " + num(groups));
  int64_t n = 0, ng = 0;
  ZCHECK(!__builtin_mul_overflow(w.rows, w.cols, &n) && !__builtin_mul_overflow(w.rows, w.groups, &ng), ZEROTH_E_SHAPE,
         "quant_matmul (cuda): a weight of " + num(w.rows) + " x " + num(w.cols) + " overflows a 64-bit offset");
  if (n > 0) {
    ZCHECK(w.bits == 4 ? w.codes4 != nullptr : w.codes8 != nullptr, ZEROTH_E_INVALID_ARG,
           std::string("quant_matmul (cuda): the weight has no ") + (w.bits == 4 ? "codes4" : "codes8") +
               " pointer for its " + num(n) + " codes");
    ZCHECK(w.scales != nullptr, ZEROTH_E_INVALID_ARG, "quant_matmul (cuda): the weight has no scales");
  }
}

// E_SHAPE / E_INVALID_ARG unless x [M, cols] (row stride ldx) and y [M, rows] (row stride ldy)
// fit the weight (int4_gemm.h's quant_matmul rules: ldx >= in, ldy >= out).
inline void check_problem(const QuantMatrixDevice& w, int64_t M, const void* x, int64_t ldx, const void* y,
                          int64_t ldy) {
  check_matrix(w);
  ZCHECK(M >= 0, ZEROTH_E_SHAPE, "quant_matmul (cuda): M must be non-negative, got " + num(M));
  ZCHECK(ldx >= (w.cols > 1 ? w.cols : 1), ZEROTH_E_SHAPE,
         "quant_matmul (cuda): ldx = " + num(ldx) + " is smaller than the " + num(w.cols) +
             " input features of the weight; pass the row stride of x in elements");
  ZCHECK(ldy >= (w.rows > 1 ? w.rows : 1), ZEROTH_E_SHAPE,
         "quant_matmul (cuda): ldy = " + num(ldy) + " is smaller than the " + num(w.rows) +
             " output features of the weight; pass the row stride of y in elements");
  int64_t last = 0;
  if (M > 0 && w.cols > 0) {
    ZCHECK(x != nullptr, ZEROTH_E_INVALID_ARG, "quant_matmul (cuda): x is null but has " + num(M) + " rows");
    ZCHECK(!__builtin_mul_overflow(M - 1, ldx, &last) && !__builtin_add_overflow(last, w.cols, &last), ZEROTH_E_SHAPE,
           "quant_matmul (cuda): x of " + num(M) + " rows with stride " + num(ldx) + " overflows a 64-bit offset");
  }
  if (M > 0 && w.rows > 0) {
    ZCHECK(y != nullptr, ZEROTH_E_INVALID_ARG, "quant_matmul (cuda): y is null but has " + num(M) + " rows");
    ZCHECK(!__builtin_mul_overflow(M - 1, ldy, &last) && !__builtin_add_overflow(last, w.rows, &last), ZEROTH_E_SHAPE,
           "quant_matmul (cuda): y of " + num(M) + " rows with stride " + num(ldy) + " overflows a 64-bit offset");
  }
}

inline void check_desc(const PerturbDesc& pd) {
  if (!pd.active) return;
  ZCHECK(pd.dist == rng::Distribution::Normal || pd.dist == rng::Distribution::Rademacher, ZEROTH_E_INVALID_ARG,
         "quant_matmul (cuda): unknown scale perturbation distribution; use normal or rademacher");
}

inline bool aligned(const void* p, unsigned bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// True when the vector GEMV can read every row of W as whole 16-byte runs that each sit inside
// one group: the codes pointer 16-byte aligned, `in` a multiple of the run (so every row starts
// on a run), and no group boundary inside a run.
inline bool gemv_vec_fits(const QuantMatrixDevice& w) {
  const int64_t run = run_elems(w.bits);
  const void* codes = w.bits == 4 ? static_cast<const void*>(w.codes4) : static_cast<const void*>(w.codes8);
  return aligned(codes, 16) && w.cols % run == 0 && (w.group_size % run == 0 || w.groups == 1);
}

// True when the GEMM may load the 16 codes a thread de-quantizes per tile with one 8-byte (int4)
// or 16-byte (int8) load: `in` a multiple of 16 and the codes pointer aligned to that load.
inline bool gemm_codes_vec(const QuantMatrixDevice& w) {
  return w.cols % 16 == 0 && (w.bits == 4 ? aligned(w.codes4, 8) : aligned(w.codes8, 16));
}

struct Plan {
  bool nothing = false;    // M == 0 or out == 0: no work
  bool zero_fill = false;  // in == 0: y = 0
  bool gather = false;     // perm: x is gathered into a [M, in] scratch (aligned, stride in) first
  QuantPath path = QuantPath::Auto;
  int mt = 1;              // GEMV: x rows the kernel is compiled for (1, 2, 4 or 8 >= rows per pass)
  int64_t passes = 1;      // GEMV: launches of at most kGemvMaxM x rows each
  bool x_vec = false;      // x read as float4 (GEMV vector kernel, GEMM)
  bool w_vec = false;      // GEMM: codes read with one vector load per thread and tile
  unsigned grid_x = 1, grid_y = 1;
};

// The kernel, template and grid for a checked problem; x and ldx are the caller's (the gathered
// scratch replaces them when perm is set). E_INVALID_ARG when a forced path cannot run this
// weight (GemvVec on a shape gemv_vec_fits refuses), E_SHAPE when the grid would be too large.
inline Plan make_plan(const QuantMatrixDevice& w, int64_t M, const void* x, int64_t ldx,
                      QuantPath force = QuantPath::Auto) {
  Plan p;
  if (M == 0 || w.rows == 0) {
    p.nothing = true;
    return p;
  }
  if (w.cols == 0) {
    p.zero_fill = true;
    return p;
  }
  p.gather = w.perm != nullptr;
  // The gathered scratch is 256-byte aligned with stride `in`.
  const bool x_quads = p.gather ? w.cols % 4 == 0 : (aligned(x, 16) && ldx % 4 == 0);
  const int64_t tiles_m = (M + kGemmTileM - 1) / kGemmTileM, tiles_n = (w.rows + kGemmTileN - 1) / kGemmTileN;
  QuantPath path = force;
  if (path == QuantPath::Auto) {
    if (M > kGemvMaxM && tiles_m * tiles_n >= kGemmMinTiles) path = QuantPath::Gemm;
    else path = gemv_vec_fits(w) ? QuantPath::GemvVec : QuantPath::GemvGeneric;
  }
  ZCHECK(path != QuantPath::GemvVec || gemv_vec_fits(w), ZEROTH_E_INVALID_ARG,
         "quant_matmul (cuda): the vector GEMV needs 16-byte aligned codes, in (" + num(w.cols) +
             ") a multiple of " + num(run_elems(w.bits)) + " and a group size (" + num(w.group_size) +
             ") that is too, or one group per row");
  p.path = path;
  if (path == QuantPath::Gemm) {
    ZCHECK(tiles_m <= 65535 && tiles_n <= 2147483647, ZEROTH_E_SHAPE,
           "quant_matmul (cuda): " + num(M) + " rows of x are too many for one launch; split them into calls of at most " +
               num(int64_t{65535} * kGemmTileM));
    p.grid_x = static_cast<unsigned>(tiles_n);
    p.grid_y = static_cast<unsigned>(tiles_m);
    p.x_vec = x_quads;
    p.w_vec = gemm_codes_vec(w);
    return p;
  }
  const int64_t per_pass = M < kGemvMaxM ? M : kGemvMaxM;
  p.passes = (M + kGemvMaxM - 1) / kGemvMaxM;
  p.mt = per_pass <= 1 ? 1 : per_pass <= 2 ? 2 : per_pass <= 4 ? 4 : 8;
  const int64_t rows_per_block =
      path == QuantPath::GemvVec ? int64_t{kGemvRowsPerWarp} * kGemvWarps : int64_t{kGemvWarps};
  const int64_t blocks = (w.rows + rows_per_block - 1) / rows_per_block;
  ZCHECK(blocks <= 2147483647, ZEROTH_E_SHAPE,
         "quant_matmul (cuda): " + num(w.rows) + " output features need more blocks than one launch may have");
  p.grid_x = static_cast<unsigned>(blocks);
  p.x_vec = path == QuantPath::GemvVec && x_quads;
  return p;
}

}  // namespace int4_plan

#ifdef ZEROTH_WITH_CUDA

// y[M, out] = x[M, in]·Wᵀ (row-major, ldx >= in, ldy >= out); x, y and every pointer of w on one
// CUDA device (E_DEVICE otherwise, naming the pointer). Argument errors as int4_plan's checks.
void quant_matmul(const QuantMatrixDevice& w, int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy,
                  const PerturbDesc& scale_perturb = {});

// The same on cuda:`device` without asking the driver where each pointer lives, as ops_cuda.h's
// kernels do: for callers that already know (the model forward). Each cudaPointerGetAttributes
// costs a fraction of a microsecond, and quant_matmul makes up to six: about the GPU time of a
// 4096 x 4096 int4 GEMV. Sizes are checked the same; the pointers must be on `device`.
void quant_matmul_on(int device, const QuantMatrixDevice& w, int64_t M, const float* x, int64_t ldx, float* y,
                     int64_t ldy, const PerturbDesc& scale_perturb = {});

// quant_matmul with the kernel chosen by the caller (tests, benchmarks); QuantPath::Auto is
// quant_matmul. device < 0: found from the pointers (E_DEVICE checks); else quant_matmul_on's trust.
void quant_matmul_path(const QuantMatrixDevice& w, int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy,
                       const PerturbDesc& scale_perturb, QuantPath path, int device = -1);

// A device copy of a CPU quantized tensor (int4 or int8 with its QuantInfo, validated by
// quant.h's quant_matrix): codes, f32 scales (f16 scales widened exactly), f32 zeros and the
// permutation uploaded to cuda:`device`. The tensors own the memory (through the backend's
// caching allocator); `matrix` points into them and is valid while this object lives.
struct DeviceQuantWeight {
  QuantMatrixDevice matrix;
  TensorPtr codes, scales, zeros, perm;
};
DeviceQuantWeight upload_quant_matrix(const Tensor& q, int device);

#endif  // ZEROTH_WITH_CUDA

}  // namespace cuda
}  // namespace zeroth
