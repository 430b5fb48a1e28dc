// gemm_plan.h — the host-side decisions of the CUDA GEMMs (cuda/gemm.cu), in plain C++ so they
// are compiled and tested on machines without a GPU (test/native/test_cuda_gemm.cpp):
// argument checks with gemm.h's rules and messages, the grid of output tiles, and whether a
// 4-element "quad" of an operand may be read with one vector load.
//
// Quads. Every kernel reads its operands in runs of 4 elements that are consecutive in the
// operand's own storage (along its rows): row r, columns c .. c+3, with c a multiple of 4.
// One vector load serves a quad when the base pointer is aligned to the whole quad (16 bytes
// for f32, 8 for f16/bf16) and the leading dimension is a multiple of 4, so that every row
// starts aligned too. The same quads carry the perturbation: element (r, c) of B sits at
// offset r·ldb + c, a multiple of 4 under the same condition, so one Philox block gives the
// quad's four normals (philox.h: block b holds elements 4b .. 4b+3).
#pragma once
#include <cstdint>
#include <string>

#include "core/errors.h"

namespace zeroth {
namespace cuda {
namespace gemm_plan {

// Tile shapes, shared by the kernels and the grid computation (gemm.cu says why these sizes).
constexpr int kF32TileM = 128, kF32TileN = 128, kF32TileK = 8, kF32Threads = 256;
constexpr int kHalfTileM = 128, kHalfTileN = 128, kHalfTileK = 32, kHalfThreads = 256;

// Throws E_SHAPE / E_INVALID_ARG unless a rows × cols row-major matrix with leading dimension ld
// is addressable with 64-bit element offsets (gemm.cpp's check_matrix, same wording).
inline void check_matrix(const char* name, const void* ptr, int64_t rows, int64_t cols, int64_t ld,
                         const char* ld_name) {
  const std::string n(name);
  const int64_t min_ld = cols > 1 ? cols : 1;
  ZCHECK(ld >= min_ld, ZEROTH_E_SHAPE,
         "gemm (cuda): " + std::string(ld_name) + " = " + std::to_string(ld) + " is smaller than the " +
             std::to_string(cols) + " columns " + n + " is stored with; pass the row stride of " + n + " in elements");
  if (rows == 0 || cols == 0) return;
  ZCHECK(ptr != nullptr, ZEROTH_E_INVALID_ARG,
         "gemm (cuda): " + n + " is null but has " + std::to_string(rows) + " x " + std::to_string(cols) + " elements");
  int64_t last = 0;
  ZCHECK(!__builtin_mul_overflow(rows - 1, ld, &last) && !__builtin_add_overflow(last, cols, &last), ZEROTH_E_SHAPE,
         "gemm (cuda): " + n + " of " + std::to_string(rows) + " rows with stride " + std::to_string(ld) +
             " overflows a 64-bit element offset");
}

inline void check_problem(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
                          const void* B, int64_t ldb, const void* C, int64_t ldc) {
  ZCHECK(M >= 0 && N >= 0 && K >= 0, ZEROTH_E_SHAPE,
         "gemm (cuda): sizes must be non-negative (M = " + std::to_string(M) + ", N = " + std::to_string(N) +
             ", K = " + std::to_string(K) + ")");
  check_matrix("A", A, trans_a ? K : M, trans_a ? M : K, lda, "lda");
  check_matrix("B", B, trans_b ? N : K, trans_b ? K : N, ldb, "ldb");
  check_matrix("C", C, M, N, ldc, "ldc");
}

struct Grid {
  unsigned x = 1, y = 1;  // x: tiles along N, y: tiles along M
};

// The grid of output tiles; E_SHAPE when M needs more than the 65535 block rows CUDA allows
// (8.4M rows at 128 per tile) or N more than 2^31 - 1 tiles.
inline Grid tile_grid(int64_t M, int64_t N, int tile_m, int tile_n) {
  const int64_t gy = (M + tile_m - 1) / tile_m;
  const int64_t gx = (N + tile_n - 1) / tile_n;
  ZCHECK(gy <= 65535 && gx <= 2147483647, ZEROTH_E_SHAPE,
         "gemm (cuda): " + std::to_string(M) + " x " + std::to_string(N) +
             " is too large for one launch; split the rows of op(A) into calls of at most " +
             std::to_string(int64_t{65535} * tile_m) + " rows");
  Grid g;
  g.x = static_cast<unsigned>(gx < 1 ? 1 : gx);
  g.y = static_cast<unsigned>(gy < 1 ? 1 : gy);
  return g;
}

// True when every quad of an operand may be read with one vector load of 4 elements of
// `elem_bytes` each (see the file comment).
inline bool quads_aligned(const void* ptr, int64_t ld, int elem_bytes) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  return p % (4u * static_cast<unsigned>(elem_bytes)) == 0 && ld % 4 == 0;
}

}  // namespace gemm_plan
}  // namespace cuda
}  // namespace zeroth
