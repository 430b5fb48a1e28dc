// gemm.cpp — the blocked, packed driver of gemm_f32 (see gemm.h) and the naive reference loop.
//
// Loop nest (GotoBLAS / BLIS), for one task's block of C:
//   jc: nc columns of op(B)        pack B (kc × nc) into NR-wide micro-panels  (+ scale·z here)
//     pc: kc of the depth
//       ic: mc rows of op(A)       pack A (mc × kc) into MR-tall micro-panels (on the first jc
//                                  only, when the task's whole packed A fits kWholeABudgetFloats)
//         jr: NR columns           one B micro-panel stays in L1 ...
//           ir: MR rows            ... while the A block streams from L2 through the micro-kernel
// Every element of C sums its depth in kc-sized chunks, chunk by chunk in ascending order, so
// the result depends on kc and the micro-kernel only: not on mc, nc, or the thread count.
//
// Threads: C is cut into one block of columns per thread (N-split: each thread packs and perturbs
// only its own part of B, and the weight is the larger operand in LLM shapes), or of rows when N
// is too narrow; small problems run on the calling thread.
#include "gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <xmmintrin.h>
#include <cstring>
#include <string>

#include "core/cpu_features.h"
#include "core/errors.h"
#include "core/parallel.h"
#include "cpu/gemv.h"
#include "gemm_kernels.h"
#include "perturb.h"

namespace zeroth {
namespace {

using gemm_detail::KernelInfo;

std::atomic<int64_t> g_kc{0}, g_mc{0}, g_nc{0};

const KernelInfo& kernel_for(SimdLevel level) {
  static const KernelInfo scalar = gemm_detail::scalar_kernel();
  static const KernelInfo avx2 = gemm_detail::avx2_kernel();
  static const KernelInfo avx512 = gemm_detail::avx512_kernel();
  switch (level) {
    case SimdLevel::Avx512: return avx512;
    case SimdLevel::Avx2: return avx2;
    default: return scalar;
  }
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// A per-thread, 64-byte aligned scratch buffer that only grows.
class Scratch {
 public:
  ~Scratch() { std::free(data_); }
  float* get(int64_t floats) {
    const size_t bytes = static_cast<size_t>(round_up(std::max<int64_t>(floats, 16), 16)) * sizeof(float);
    if (bytes > bytes_) {
      std::free(data_);
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      bytes_ = data_ ? bytes : 0;
      ZCHECK(data_ != nullptr, ZEROTH_E_OOM,
             "gemm: could not allocate " + std::to_string(bytes) + " bytes of packing buffer");
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  size_t bytes_ = 0;
};

thread_local Scratch t_pack_a, t_pack_b, t_row;

struct Problem {
  bool trans_a, trans_b;
  int64_t M, N, K;
  float alpha, beta;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
  PerturbDesc perturb;
  const KernelInfo* k;
  int64_t kc, mc, nc;
};

// Packs rows [i0, i0 + mc) × depth [p0, p0 + kc) of op(A) into MR-tall micro-panels.
void pack_a(const Problem& p, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  const int mr = p.k->mr;
  for (int64_t ir = 0; ir < mc; ir += mr, dst += mr * kc) {
    const int rows = static_cast<int>(std::min<int64_t>(mr, mc - ir));
    if (p.trans_a) {  // A stored [K, M]: the MR values of one depth step are contiguous
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = p.A + (p0 + k) * p.lda + i0 + ir;
        float* out = dst + k * mr;
        for (int i = 0; i < rows; ++i) out[i] = src[i];
        for (int i = rows; i < mr; ++i) out[i] = 0.0f;
      }
    } else {  // A stored [M, K]: rows of A become the columns of the panel
      p.k->pack_transposed(p.A + (i0 + ir) * p.lda + p0, p.lda, rows, kc, mr, dst);
    }
  }
}

// Depth of a perturbed slice of a transposed B (see pack_b): its [nr, slice] staging block is
// 32 KB with the AVX-512 panels, so it stays in L1 between its write and the transposing read.
constexpr int64_t kTransposedSlice = 256;

// A perturbed pack draws z for every element, so it runs far slower than a copy and its loads
// find no help from the sequential prefetchers (which follow fast streams): a row's source
// lines missing L1/L2 stall the arithmetic. Asking for the run a few rows ahead removed most of
// the perturbation's excess over the draw itself (GPT-2 small forward: +34 ms -> +21 ms, about
// the 20 ms its 124M normals take on two threads); 1 to 8 rows ahead measured alike.
constexpr int64_t kPerturbedRowsAhead = 4;

void prefetch_run(const float* src, int64_t n) {
  const char* bytes = reinterpret_cast<const char*>(src);
  for (int64_t b = 0; b < n * static_cast<int64_t>(sizeof(float)); b += 64) _mm_prefetch(bytes + b, _MM_HINT_T0);
}

// Packs depth [p0, p0 + kc) × columns [j0, j0 + nc) of op(B) into NR-wide micro-panels. With an
// active perturbation every element becomes fl(b + fl(scale·z(offset))) on the way, offset being
// the element's position in B's own storage (+ base); add_scaled_z_from works on runs that are
// contiguous there.
void pack_b(const Problem& p, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  const int nr = p.k->nr;
  const PerturbDesc& z = p.perturb;
  if (!p.trans_b) {  // B stored [K, N]: each depth step is a contiguous run of nc values
    // Perturbed, b + scale·z goes straight into the NR-wide pieces of the panels when the run is
    // whole pieces (add_scaled_z_pieces: z in registers on AVX-512; staging the run through L1
    // and copying it cost about a quarter of the perturbation on GPT-2 shapes); a ragged run
    // goes to an L1 run first, then is copied like an unperturbed one.
    float* run = z.active ? t_row.get(nc) : nullptr;
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = p.B + (p0 + k) * p.ldb + j0;
      if (z.active && nc % nr == 0) {
        if (k + kPerturbedRowsAhead < kc) prefetch_run(src + kPerturbedRowsAhead * p.ldb, nc);
        add_scaled_z_pieces(z.seed, z.stream, z.dist, z.scale, z.base + static_cast<uint64_t>((p0 + k) * p.ldb + j0), nc,
                            src, nr, dst + k * nr, static_cast<int64_t>(nr) * kc);
        continue;
      }
      if (z.active) {
        add_scaled_z_from(z.seed, z.stream, z.dist, z.scale, z.base + static_cast<uint64_t>((p0 + k) * p.ldb + j0), nc,
                          src, run);
        src = run;
      }
      for (int64_t jr = 0; jr < nc; jr += nr) {
        const int cols = static_cast<int>(std::min<int64_t>(nr, nc - jr));
        float* out = dst + (jr / nr) * nr * kc + k * nr;
        std::memcpy(out, src + jr, static_cast<size_t>(cols) * sizeof(float));
        for (int j = cols; j < nr; ++j) out[j] = 0.0f;
      }
    }
    return;
  }
  // B stored [N, K] (nn.Linear weights): each column of op(B) is a contiguous run of kc values,
  // perturbed (when asked) into a [nr, kc] staging block before the transposing pack.
  const int64_t slice = std::min<int64_t>(kc, kTransposedSlice);
  float* block = z.active ? t_row.get(static_cast<int64_t>(nr) * slice) : nullptr;
  for (int64_t jr = 0; jr < nc; jr += nr, dst += nr * kc) {
    const int cols = static_cast<int>(std::min<int64_t>(nr, nc - jr));
    const float* src = p.B + (j0 + jr) * p.ldb + p0;
    if (!z.active) {
      p.k->pack_transposed(src, p.ldb, cols, kc, nr, dst);
      continue;
    }
    // Perturbed in depth slices, so the staging block stays in L1 between its write and the
    // transposing read (a whole [nr, kc] block is 64 KB at kc = 512).
    for (int64_t k0 = 0; k0 < kc; k0 += slice) {
      const int64_t len = std::min(slice, kc - k0);
      for (int j = 0; j < cols; ++j) {
        const uint64_t first = z.base + static_cast<uint64_t>((j0 + jr + j) * p.ldb + p0 + k0);
        add_scaled_z_from(z.seed, z.stream, z.dist, z.scale, first, len, src + j * p.ldb + k0, block + j * len);
      }
      p.k->pack_transposed(block, len, cols, len, nr, dst + k0 * nr);
    }
  }
}

// Pulls the source lines of the next B block toward L2 a few at a time, spread over the kernel
// calls of the current block. Packing B reads the weight from DRAM once per GEMM; without this the
// pack waits on memory (about a tenth of a 512-row GEMM) instead of overlapping with arithmetic.
class BPrefetcher {
 public:
  // Targets the B block (depth [p0, p0 + kc), columns [j0, j0 + nc)), over `calls` kernel calls.
  void aim(const Problem& p, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t calls) {
    if (p.trans_b) base_ = p.B + j0 * p.ldb + p0, rows_ = nc, len_ = kc;
    else base_ = p.B + p0 * p.ldb + j0, rows_ = kc, len_ = nc;
    ld_ = p.ldb;
    lines_per_row_ = (len_ + 15) / 16;
    next_ = 0;
    total_ = rows_ * lines_per_row_;
    per_call_ = (total_ + calls - 1) / std::max<int64_t>(calls, 1);
  }
  void none() { next_ = total_ = 0; }
  void step() {
    for (int64_t end = std::min(total_, next_ + per_call_); next_ < end; ++next_) {
      const int64_t row = next_ / lines_per_row_, col = std::min(next_ % lines_per_row_ * 16, len_ - 1);
      _mm_prefetch(reinterpret_cast<const char*>(base_ + row * ld_ + col), _MM_HINT_T1);
    }
  }

 private:
  const float* base_ = nullptr;
  int64_t rows_ = 0, len_ = 0, ld_ = 0, lines_per_row_ = 1, next_ = 0, total_ = 0, per_call_ = 0;
};

// The packed op(A) of a task is kept whole (all of its rows and depth) when it is at most this
// big, so that it is packed once instead of once per nc columns: then nc can be small enough
// for the next B block to be prefetched into L2 (see BPrefetcher). LLM shapes (512 tokens ×
// 768..3072 features) need 1.5–6 MB.
constexpr int64_t kWholeABudgetFloats = int64_t{8} << 20;  // 32 MB
constexpr int64_t kBlockedANcFactor = 4;  // without a whole A, widen nc to repack A less often

// C[m0:m1, n0:n1] on the calling thread.
void gemm_block(const Problem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int mr = p.k->mr, nr = p.k->nr;
  const int64_t kc_max = std::min(p.kc, p.K);
  const int64_t m_pad = round_up(m1 - m0, mr);
  const bool whole_a = m_pad * p.K <= kWholeABudgetFloats;
  const int64_t nc_step = whole_a ? p.nc : p.nc * kBlockedANcFactor;
  float* bpack = t_pack_b.get(round_up(std::min(nc_step, n1 - n0), nr) * kc_max);
  float* apack = t_pack_a.get(whole_a ? m_pad * p.K : round_up(std::min(p.mc, m1 - m0), mr) * kc_max);
  BPrefetcher prefetch;
  for (int64_t jc = n0; jc < n1; jc += nc_step) {
    const int64_t nc = std::min(nc_step, n1 - jc);
    for (int64_t pc = 0; pc < p.K; pc += p.kc) {
      const int64_t kc = std::min(p.kc, p.K - pc);
      const float beta = pc == 0 ? p.beta : 1.0f;  // later depth chunks accumulate
      pack_b(p, pc, kc, jc, nc, bpack);
      const int64_t calls = (m_pad / mr) * ((nc + nr - 1) / nr);
      if (pc + p.kc < p.K) prefetch.aim(p, pc + p.kc, std::min(p.kc, p.K - pc - p.kc), jc, nc, calls);
      else if (jc + nc_step < n1) prefetch.aim(p, 0, kc_max, jc + nc_step, std::min(nc_step, n1 - jc - nc_step), calls);
      else prefetch.none();
      for (int64_t ic = m0; ic < m1; ic += p.mc) {
        const int64_t mc = std::min(p.mc, m1 - ic);
        // Whole A: depth chunk pc starts at pc·m_pad, and block ic at (ic - m0)·kc inside it.
        float* a_block = whole_a ? apack + pc * m_pad + (ic - m0) * kc : apack;
        if (!whole_a || jc == n0) pack_a(p, ic, mc, pc, kc, a_block);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const int n = static_cast<int>(std::min<int64_t>(nr, nc - jr));
          const float* b = bpack + (jr / nr) * nr * kc;
          for (int64_t ir = 0; ir < mc; ir += mr) {
            const int m = static_cast<int>(std::min<int64_t>(mr, mc - ir));
            p.k->kernel(kc, a_block + (ir / mr) * mr * kc, b, p.C + (ic + ir) * p.ldc + jc + jr, p.ldc, m, n, p.alpha,
                        beta);
            prefetch.step();
          }
        }
      }
    }
  }
}

// Throws unless a rows × cols row-major matrix with leading dimension ld is addressable.
void check_matrix(const char* name, const void* ptr, int64_t rows, int64_t cols, int64_t ld, const char* ld_name) {
  const std::string n(name);
  ZCHECK(ld >= std::max<int64_t>(cols, 1), ZEROTH_E_SHAPE,
         "gemm: " + std::string(ld_name) + " = " + std::to_string(ld) + " is smaller than the " + std::to_string(cols) +
             " columns " + n + " is stored with; pass the row stride of " + n + " in elements");
  if (rows == 0 || cols == 0) return;
  ZCHECK(ptr != nullptr, ZEROTH_E_INVALID_ARG, "gemm: " + n + " is null but has " + std::to_string(rows) + " x " +
                                                   std::to_string(cols) + " elements");
  int64_t last = 0;
  ZCHECK(!__builtin_mul_overflow(rows - 1, ld, &last) && !__builtin_add_overflow(last, cols, &last), ZEROTH_E_SHAPE,
         "gemm: " + n + " of " + std::to_string(rows) + " rows with stride " + std::to_string(ld) +
             " overflows a 64-bit element offset");
}

void check_problem(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                   const float* B, int64_t ldb, const float* C, int64_t ldc) {
  ZCHECK(M >= 0 && N >= 0 && K >= 0, ZEROTH_E_SHAPE,
         "gemm: sizes must be non-negative (M = " + std::to_string(M) + ", N = " + std::to_string(N) +
             ", K = " + std::to_string(K) + ")");
  check_matrix("A", A, trans_a ? K : M, trans_a ? M : K, lda, "lda");
  check_matrix("B", B, trans_b ? N : K, trans_b ? K : N, ldb, "ldb");
  check_matrix("C", C, M, N, ldc, "ldc");
}

// C = beta·C when there is nothing to multiply (K == 0 or alpha == 0); beta == 0 writes zeros.
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  if (beta == 1.0f) return;
  for (int64_t i = 0; i < M; ++i) {
    float* row = C + i * ldc;
    if (beta == 0.0f) std::fill(row, row + N, 0.0f);
    else
      for (int64_t j = 0; j < N; ++j) row[j] *= beta;
  }
}

// Splits [0, extent) into `parts` ranges whose boundaries fall on multiples of `unit`.
int64_t split_point(int64_t extent, int64_t unit, int64_t parts, int64_t i) {
  const int64_t units = (extent + unit - 1) / unit;
  return std::min(extent, units * i / parts * unit);
}

}  // namespace

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const PerturbDesc& b_perturb) {
  check_problem(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  if (b_perturb.active)
    ZCHECK(b_perturb.dist == rng::Distribution::Normal || b_perturb.dist == rng::Distribution::Rademacher,
           ZEROTH_E_INVALID_ARG, "gemm: unknown perturbation distribution; use normal or rademacher");
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  if (M <= kGemvMaxRows && !trans_a && !b_perturb.active) {  // generation: stream B once (gemv.h)
    gemv_f32(trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }

  Problem p{trans_a, trans_b, M, N, K, alpha, beta, A, lda, B, ldb, C, ldc, b_perturb, &kernel_for(simd_level()),
            0, 0, 0};
  const int64_t kc = g_kc.load(), mc = g_mc.load(), nc = g_nc.load();
  p.kc = kc > 0 ? kc : p.k->kc;
  p.mc = round_up(mc > 0 ? mc : p.k->mc, p.k->mr);
  p.nc = round_up(nc > 0 ? nc : p.k->nc, p.k->nr);

  // One task per thread; below ~128³ multiply-adds the wake-up costs more than it saves.
  const int64_t threads = num_threads();
  const double work = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  int64_t n_parts = 1, m_parts = 1;
  if (threads > 1 && work >= 2.0e6) {
    if (N >= threads * 2 * p.k->nr) n_parts = threads;
    else if (M >= threads * 2 * p.k->mr) m_parts = threads;
    else if (N >= 2 * p.k->nr) n_parts = std::min<int64_t>(threads, N / p.k->nr);
  }
  const int64_t tasks = n_parts * m_parts;
  if (tasks == 1) {
    gemm_block(p, 0, M, 0, N);
    return;
  }
  parallel_for(tasks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t mi = t / n_parts, ni = t % n_parts;
      const int64_t m0 = split_point(M, p.k->mr, m_parts, mi), m1 = split_point(M, p.k->mr, m_parts, mi + 1);
      const int64_t n0 = split_point(N, p.k->nr, n_parts, ni), n1 = split_point(N, p.k->nr, n_parts, ni + 1);
      if (m0 < m1 && n0 < n1) gemm_block(p, m0, m1, n0, n1);
    }
  });
}

void gemm_f32_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  check_problem(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double sum = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
        const float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        sum += static_cast<double>(a) * static_cast<double>(b);
      }
      float& c = C[i * ldc + j];
      const double prior = beta == 0.0f ? 0.0 : static_cast<double>(beta) * static_cast<double>(c);
      c = static_cast<float>(static_cast<double>(alpha) * sum + prior);
    }
  }
}

const char* gemm_f32_kernel_name() { return kernel_for(simd_level()).name; }

void gemm_f32_set_blocking(int64_t kc, int64_t mc, int64_t nc) {
  ZCHECK(kc >= 0 && mc >= 0 && nc >= 0, ZEROTH_E_INVALID_ARG, "gemm_f32_set_blocking: sizes must be >= 0 (0 = default)");
  g_kc.store(kc);
  g_mc.store(mc);
  g_nc.store(nc);
}

}  // namespace zeroth
