// int4_gemm_avx512.cpp — AVX-512 GEMV row kernels (int4_gemm_kernels.h).
//
// int4: a code becomes its weight by a table look-up instead of arithmetic. Per (row, group) the
// 16 possible weights T[k] = (k − zero)·scale are computed once with dequantize()'s f32 expression
// (so every weight is bit-identical to it), and one vpermps turns 16 codes into 16 weights: it
// reads only the low 4 bits of each 32-bit index lane, so no mask is needed, only shifts.
//
// Wide steps (128 columns, group size a multiple of 128): one 64-byte load per row; 32-bit lane i
// holds the 8 codes of columns 8i .. 8i+7, and the shift by 4k puts column 8i + k in the low bits,
// so 7 shifts + 8 vpermps + 8 fma cover 128 columns. x must then be laid out as
// xw[b + 16k + i] = x[b + 8i + k]; it is built per call from x (build_wide_x).
// Narrow steps (32 columns: groups of 32 or 64, the blocks past the last 128, odd cols): 16 bytes
// zero-extended to 16 × i32 index the even columns as they are and the odd ones after one shift,
// against the de-interleaved x (xd): 1 extend + 1 shift + 2 vpermps + 2 fma per 32 columns.
// Convert-subtract-multiply (the previous kernel) took 12 operations per 32 columns. One core, 128
// rows × 4096 columns in L2 (Zen 5): 14-16 GB/s of codes before, ~25 narrow, ~28-30 wide.
//
// Four rows go together: each x vector is loaded once for four rows (x of an 11008-column row
// does not fit L1 beside the codes), and the next four rows are prefetched as the current ones are
// read, so the four interleaved code streams are in cache when reached — without it the hardware
// prefetcher loses these short streams and a DRAM-resident weight runs at half speed.
//
// Odd `cols`: a row then starts in a high nibble when r·cols is odd. The even columns of a block
// are the high nibbles of bytes b..b+15 and the odd ones the low nibbles of bytes b+1..b+16, so
// such rows take a second load and the shifts move to the other operand (narrow steps only).
// A group size that is not a multiple of 32 is fine when the row has one group (no group boundary
// inside a block). Columns past the last full 32-block are summed in scalar code, in the same f32
// expression.
// GCC 12 reports the deliberately undefined pass-through operands inside the AVX-512
// intrinsics as "maybe uninitialized" once they are inlined here; they are not (see gemm_pack.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cmath>
#include <vector>

#include "cpu/int4_gemm_kernels.h"

#define ZEROTH_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

namespace zeroth::detail {
namespace {

constexpr int kBlock = 32;   // columns per narrow step: 16 bytes of codes, xd's de-interleaving block
constexpr int kWide = 128;   // columns per wide step: 64 bytes of codes, the xw layout's block
constexpr int kRows = 4;     // rows that share each x load

// T[k] = (k − zero)·scale: the weight of code k in group g of row r, quant.h's expression in f32.
ZEROTH_AVX512 inline __m512 code_table(const QuantMatrix& w, int64_t r, int64_t g) {
  const __m512 k = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  return _mm512_mul_ps(_mm512_sub_ps(k, _mm512_set1_ps(w.zero(r, g))), _mm512_set1_ps(w.scale(r, g)));
}

ZEROTH_AVX512 inline __m512i load16_u8(const uint8_t* p) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// A 16-lane index vector from a lane -> index function.
template <class F>
ZEROTH_AVX512 inline __m512i lane_index(F f) {
  alignas(64) int32_t v[16];
  for (int l = 0; l < 16; ++l) v[l] = f(l);
  return _mm512_load_si512(v);
}

// The wide layout: per 128-column block, xw[b + 16k + i] = x[b + 8i + k] (k < 8, i < 16) — lane i of
// a 64-byte code load holds columns 8i .. 8i+7 of the block, one per nibble, so the shift by 4k
// lines column 8i + k up with xw[b + 16k + i]. Built for the first floor(cols / 128)·128 columns
// as the transpose of a 16 × 8 matrix (row i = x[b + 8i .. b + 8i + 7]) in three rounds of 8
// two-source permutes: by halves of k, by quarters of k, then the two 8-row halves.
ZEROTH_AVX512 void build_wide_x(const float* x, int64_t cols, float* xw) {
  // Round 1, i1[h]: from two loads (rows 4m .. 4m+3), lane 4kk + rr <- row rr, column k = 4h + kk.
  // Round 2, i2[q]: from the round-1 vectors of rows 0-3 and 4-7 of an 8-row half (same h),
  //   lane 8kk + rr <- row rr, column k = 4h + 2q + kk.
  // Round 3, i3[k]: from the round-2 vectors of rows 0-7 and 8-15 (same h, q), lane i <- row i,
  //   column 4h + 2q + k: one finished xw vector.
  __m512i i1[2], i2[2], i3[2];
  for (int j = 0; j < 2; ++j) {
    i1[j] = lane_index([j](int l) { return 8 * (l & 3) + 4 * j + (l >> 2); });
    i2[j] = lane_index([j](int l) {
      const int kk = 2 * j + (l >> 3), rr = l & 7;
      return rr < 4 ? 4 * kk + rr : 16 + 4 * kk + rr - 4;
    });
    i3[j] = lane_index([j](int l) { return l < 8 ? 8 * j + l : 16 + 8 * j + l - 8; });
  }
  for (int64_t b = 0; b + kWide <= cols; b += kWide) {
    __m512 u[4][2], v[2][2][2];
    for (int m = 0; m < 4; ++m) {
      const __m512 lo = _mm512_loadu_ps(x + b + 32 * m), hi = _mm512_loadu_ps(x + b + 32 * m + 16);
      for (int h = 0; h < 2; ++h) u[m][h] = _mm512_permutex2var_ps(lo, i1[h], hi);
    }
    for (int n = 0; n < 2; ++n)
      for (int h = 0; h < 2; ++h)
        for (int q = 0; q < 2; ++q) v[n][h][q] = _mm512_permutex2var_ps(u[2 * n][h], i2[q], u[2 * n + 1][h]);
    for (int h = 0; h < 2; ++h)
      for (int q = 0; q < 2; ++q)
        for (int k = 0; k < 2; ++k)
          _mm512_storeu_ps(xw + b + 16 * (4 * h + 2 * q + k), _mm512_permutex2var_ps(v[0][h][q], i3[k], v[1][h][q]));
  }
}

// The R rows' code tables for group g.
template <int R>
ZEROTH_AVX512 inline void load_tables(const QuantMatrix& w, int64_t r, int64_t g, __m512* table) {
  for (int i = 0; i < R; ++i) table[i] = code_table(w, r + i, g);
}

// Columns [c, c + 128) of R rows from one 64-byte load per row and the wide layout xw.
template <int R>
ZEROTH_AVX512 inline void wide_step(const uint8_t* const* row, const float* xw, int64_t c, const __m512* table,
                                    __m512 (*acc)[2]) {
  for (int half = 0; half < 2; ++half) {
    __m512 xv[4];
    for (int k = 0; k < 4; ++k) xv[k] = _mm512_loadu_ps(xw + c + 64 * half + 16 * k);
    for (int i = 0; i < R; ++i) {
      __m512i v = _mm512_loadu_si512(row[i] + c / 2);
      if (half) v = _mm512_srli_epi32(v, 16);
      for (int k = 0; k < 4; ++k) {
        const __m512i idx = k ? _mm512_srli_epi32(v, 4 * k) : v;
        acc[i][k & 1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, table[i]), xv[k], acc[i][k & 1]);
      }
    }
  }
}

// y[r .. r+R) for R rows. kOdd: cols is odd, so rows may start in a high nibble. xw: the wide layout
// or null (then only narrow steps). prefetch: the next R rows belong to this call's range.
template <int R, bool kOdd>
ZEROTH_AVX512 void int4_rows(const QuantMatrix& w, const float* x, const float* xd, const float* xw, int64_t r,
                             bool prefetch, float* y) {
  const uint8_t* row[R];
  __m128i lo_shift[R], hi_shift[R];  // kOdd: 4·phase and 4·(1 − phase), phase = (r·cols) & 1
  int64_t hi_offset[R];              // kOdd: byte offset of the odd columns' codes (the phase)
  for (int i = 0; i < R; ++i) {
    const int64_t e = (r + i) * w.cols, phase = e & 1;
    row[i] = w.codes4 + (e >> 1);
    lo_shift[i] = _mm_cvtsi64_si128(4 * phase);
    hi_shift[i] = _mm_cvtsi64_si128(4 * (1 - phase));
    hi_offset[i] = phase;
  }
  const char* next = reinterpret_cast<const char*>(w.codes4 + (((r + R) * w.cols) >> 1));
  __m512 acc[R][2], table[R];
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  const int64_t wide_end = xw ? w.cols / kWide * kWide : 0, narrow_end = w.cols / kBlock * kBlock;
  // The common case first, in a loop of its own: groups of a multiple of 128 columns that lie in the
  // wide part. Keeping the narrow steps and the tail out of this loop measured 5-10% faster.
  const int64_t fast_groups = xw && w.group_size % kWide == 0 ? wide_end / w.group_size : 0;
  for (int64_t g = 0; g < fast_groups; ++g) {
    load_tables<R>(w, r, g, table);
    const int64_t c0 = g * w.group_size;
    for (int64_t c = c0; c < c0 + w.group_size; c += kWide) {
      if (prefetch)  // R·64 bytes of the next rows per step: all of them by the time these rows end
        for (int i = 0; i < R; ++i) _mm_prefetch(next + R * (c / 2) + 64 * i, _MM_HINT_T0);
      wide_step<R>(row, xw, c, table, acc);
    }
  }
  // Every other group: wide steps where the layout covers them, narrow steps (groups of 32 or 64
  // columns, 32-column blocks past wide_end, odd cols), then the scalar tail of the last group.
  float tail[R] = {};
  for (int64_t g = fast_groups; g < w.groups; ++g) {
    load_tables<R>(w, r, g, table);
    const int64_t c0 = g * w.group_size, c1 = c0 + w.group_size < w.cols ? c0 + w.group_size : w.cols;
    int64_t c = c0;
    for (; c + kWide <= c1 && c + kWide <= wide_end; c += kWide) {
      if (prefetch)
        for (int i = 0; i < R; ++i) _mm_prefetch(next + R * (c / 2) + 64 * i, _MM_HINT_T0);
      wide_step<R>(row, xw, c, table, acc);
    }
    for (; c + kBlock <= c1 && c + kBlock <= narrow_end; c += kBlock) {
      if (prefetch) _mm_prefetch(next + R * (c / 2), _MM_HINT_T0);  // R·16 bytes of the next rows per step
      const __m512 x_even = _mm512_loadu_ps(xd + c), x_odd = _mm512_loadu_ps(xd + c + 16);
      for (int i = 0; i < R; ++i) {
        __m512i even, odd;
        if (kOdd) {
          even = _mm512_srl_epi32(load16_u8(row[i] + c / 2), lo_shift[i]);
          odd = _mm512_srl_epi32(load16_u8(row[i] + c / 2 + hi_offset[i]), hi_shift[i]);
        } else {
          even = load16_u8(row[i] + c / 2);
          odd = _mm512_srli_epi32(even, 4);
        }
        acc[i][0] = _mm512_fmadd_ps(_mm512_permutexvar_ps(even, table[i]), x_even, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(_mm512_permutexvar_ps(odd, table[i]), x_odd, acc[i][1]);
      }
    }
    for (int i = 0; i < R && c < c1; ++i) {  // the last group's columns past the last full block
      const float s = w.scale(r + i, g), z = w.zero(r + i, g);
      for (int64_t cc = c; cc < c1; ++cc)
        tail[i] = std::fma((static_cast<float>(w.code(r + i, cc)) - z) * s, x[cc], tail[i]);
    }
  }
  for (int i = 0; i < R; ++i) y[r + i] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1])) + tail[i];
}

template <bool kOdd>
ZEROTH_AVX512 void int4_range(const QuantMatrix& w, const float* x, const float* xd, const float* xw, int64_t r0,
                              int64_t r1, float* y) {
  int64_t r = r0;
  for (; r + kRows <= r1; r += kRows) int4_rows<kRows, kOdd>(w, x, xd, xw, r, r + 2 * kRows <= r1, y);
  for (; r < r1; ++r) int4_rows<1, kOdd>(w, x, xd, xw, r, false, y);
}

}  // namespace

ZEROTH_AVX512 void int4_gemv_rows_avx512(const QuantMatrix& w, const float* x, const float* xd, int64_t r0,
                                         int64_t r1, float* y) {
  if (w.cols % 2) {
    int4_range<true>(w, x, xd, nullptr, r0, r1, y);
    return;
  }
  // The wide steps need every group to start on a 128-column boundary. xw is rebuilt per call,
  // i.e. per parallel_for chunk: 24 permutes per 128 columns, about what one row costs, against
  // chunks of at least 32 rows (int4_gemm.cpp's grain at 4096 columns; 512 rows on 2 threads).
  std::vector<float> storage;
  float* xw = nullptr;
  if (w.cols >= kWide && (w.group_size % kWide == 0 || w.groups == 1)) {
    storage.resize(static_cast<size_t>(w.cols / kWide * kWide + 15));
    // 64-byte aligned, so that no x load splits a cache line.
    xw = storage.data() + (16 - reinterpret_cast<uintptr_t>(storage.data()) / 4 % 16) % 16;
    build_wide_x(x, w.cols, xw);
  }
  int4_range<false>(w, x, xd, xw, r0, r1, y);
}

ZEROTH_AVX512 void int8_gemv_rows_avx512(const QuantMatrix& w, const float* x, int64_t r0, int64_t r1, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const int8_t* row = w.codes8 + r * w.cols;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    float tail = 0.0f;
    for (int64_t g = 0; g < w.groups; ++g) {
      const int64_t c0 = g * w.group_size, c1 = c0 + w.group_size < w.cols ? c0 + w.group_size : w.cols;
      const float s = w.scale(r, g);
      const __m512 vs = _mm512_set1_ps(s);
      int64_t c = c0;
      for (; c + 32 <= c1; c += 32) {
        const __m512i v0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c)));
        const __m512i v1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c + 16)));
        a0 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v0), vs), _mm512_loadu_ps(x + c), a0);
        a1 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v1), vs), _mm512_loadu_ps(x + c + 16), a1);
      }
      for (; c + 16 <= c1; c += 16) {
        const __m512i v0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c)));
        a0 = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v0), vs), _mm512_loadu_ps(x + c), a0);
      }
      for (; c < c1; ++c) tail = fmaf(static_cast<float>(row[c]) * s, x[c], tail);
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) + tail;
  }
}

}  // namespace zeroth::detail
