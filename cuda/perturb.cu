// perturb.cu — the CUDA twin of native/cpu/perturb.h (CPU reference: native/cpu/perturb.cpp
// and the scalar kernel table native/cpu/perturb_scalar.cpp). Same z bits (philox.h), same
// rounding of every operation (rng::fadd/fmul, the _rn intrinsics on the device), same
// f16/bf16 conversions (half.h), so CPU and GPU write the same weights.
//
// Kernels (each block owns one chunk of kChunk = 4096 consecutive elements of one tensor; each
// thread handles four groups of four consecutive elements, so one Philox call serves a
// thread's four normals and the 32 lanes of a warp share one Rademacher block):
//   fill_z_kernel          out[i] = z(first + i)                      (perturb.h fill_z)
//   perturb_kernel         t += fl(s * z), no journal                  (perturb.h perturb)
//   update_kernel          w_new = fl(fl(w * keep) - fl(step * z)) from the clean w, where w is
//                          the journaled original, or fl(p - fl(s_old * z)), or p when clean
//                          (f16/bf16: rounded to nearest even or stochastically)
//                                                                      (restore_and_update /
//                                                                       apply_update)
//   journal_move_kernel    moves a chunk from perturbation s_old to s_new around the clean w
//                          and journals every element whose new value does not round back to
//                          w exactly                                   (perturb_to)
//
// The device journal. Per target, entries {offset in chunk, original bits} sit in one device
// array, each chunk's entries contiguous at chunk_off[c] (chunk_cnt[c] of them). A block loads
// its chunk's entries into shared memory (a bit per element plus the original bits), so the
// clean value of every element is found without searching. perturb_to writes a fresh journal
// into the second buffer (a block reserves its range with one atomicAdd) and the buffers swap.
// If the fresh buffer is too small, blocks that do not fit write nothing (their chunk stays
// exactly as it was) and flag themselves; the host grows the buffer and reruns only those
// chunks into the ranges they already reserved.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "common.cuh"
#include "perturb_cuda.h"

namespace zeroth {
namespace cuda {
namespace {

constexpr int kChunk = 4096;                        // elements per block
constexpr int kThreads = 256;                       // threads per block
constexpr int kGroupsPerThread = kChunk / 4 / kThreads;  // 4 groups of 4 elements

static_assert(kChunk % (4 * kThreads) == 0, "a chunk is whole groups of four per thread");
static_assert(kChunk % 128 == 0, "chunks start on Rademacher blocks and mask bytes");

// The trainability of the four elements of group `first` (a multiple of 4, so all four bits
// sit in one mask byte): bit j set when element first + j may be written.
__device__ __forceinline__ uint32_t allowed4(const uint8_t* mask, uint64_t first) {
  if (mask == nullptr) return 0xfu;
  return (static_cast<uint32_t>(mask[first >> 3]) >> (first & 7)) & 0xfu;
}

// Loads the (up to) four elements of a group; n_valid < 4 only at the end of the tensor.
template <typename E>
__device__ __forceinline__ void load_group(const typename E::Storage* t, uint64_t first, int n_valid,
                                           typename E::Storage v[4]) {
  if (n_valid == 4) {
    load4<E>(t + first, v);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = j < n_valid ? t[first + j] : typename E::Storage(0);
  }
}

// Stores the allowed elements of a group (a vector store when all four are).
template <typename E>
__device__ __forceinline__ void store_group(typename E::Storage* t, uint64_t first, int n_valid, uint32_t allow,
                                            const typename E::Storage v[4]) {
  if (n_valid == 4 && allow == 0xfu) {
    store4<E>(t + first, v);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (j < n_valid && ((allow >> j) & 1u)) t[first + j] = v[j];
  }
}

// ---- fill_z ---------------------------------------------------------------------------------

// out[i] = z(first + i) for i < n. Groups are aligned to absolute element indices, so the
// first and last group may be partial.
__global__ void __launch_bounds__(kThreads) fill_z_kernel(float* out, uint64_t n, uint64_t first, uint64_t seed,
                                                          uint64_t stream, rng::Distribution dist) {
  const uint64_t g0 = first >> 2;
  const uint64_t g_end = ((first + (n - 1)) >> 2) + 1;  // no overflow: first + n - 1 <= UINT64_MAX
  const uint64_t step = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t g = g0 + static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < g_end; g += step) {
    float z[4];
    z4(seed, stream, dist, g << 2, z);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint64_t e = (g << 2) + j;
      if (e >= first && e - first < n) out[e - first] = z[j];
    }
  }
}

// fl(s·z) of element i, times its preconditioner p[i] when there is one: perturb.cpp's
// scaled() / scaled_one(), so a HiZOO step adds the same values on both devices.
__device__ __forceinline__ float scaled_z(float s, float z, const float* pc, uint64_t i) {
  const float d = rng::fmul(s, z);
  return pc ? rng::fmul(d, __ldg(pc + i)) : d;
}

// ---- perturb (no journal) --------------------------------------------------------------------

template <typename E>
__global__ void __launch_bounds__(kThreads) perturb_kernel(typename E::Storage* t, const uint8_t* mask,
                                                           const float* pc, uint64_t numel, uint64_t seed,
                                                           uint64_t stream, rng::Distribution dist, float scale) {
  const uint64_t c0 = static_cast<uint64_t>(blockIdx.x) * kChunk;
  for (int k = 0; k < kGroupsPerThread; ++k) {
    const uint64_t first = c0 + 4u * (threadIdx.x + static_cast<unsigned>(k) * kThreads);
    if (first >= numel) break;
    const int n_valid = numel - first >= 4 ? 4 : static_cast<int>(numel - first);
    const uint32_t allow = allowed4(mask, first);
    if (allow == 0) continue;
    typename E::Storage v[4];
    load_group<E>(t, first, n_valid, v);
    float z[4];
    z4(seed, stream, dist, first, z);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (j < n_valid) v[j] = E::from_f32(rng::fadd(E::to_f32(v[j]), scaled_z(scale, z[j], pc, first + j)));
    store_group<E>(t, first, n_valid, allow, v);
  }
}

// ---- the device journal, seen from a kernel --------------------------------------------------

struct OldJournal {  // the journal of the perturbation currently applied (entries may be null)
  const uint2* entries = nullptr;
  const unsigned long long* chunk_off = nullptr;
  const uint32_t* chunk_cnt = nullptr;
};

struct NewJournal {  // the journal perturb_to writes
  uint2* entries;
  unsigned long long capacity;  // entries that fit
  unsigned long long* counter;  // entries reserved by all chunks so far (may exceed capacity)
  unsigned long long* chunk_off;
  uint32_t* chunk_cnt;
  uint8_t* failed;  // per chunk: 1 if its range did not fit and it wrote nothing
  bool retry;       // rerun only failed chunks, into the ranges they reserved
};

// The shared-memory view of one chunk's old journal: a bit per element and its original bits.
struct ChunkJournal {
  uint32_t journaled[kChunk / 32];
  uint32_t original[kChunk];
};

__device__ void load_chunk_journal(const OldJournal& old, uint64_t chunk, ChunkJournal& cj) {
  for (int i = threadIdx.x; i < kChunk / 32; i += kThreads) cj.journaled[i] = 0;
  __syncthreads();
  if (old.entries != nullptr) {
    const unsigned long long off = old.chunk_off[chunk];
    const uint32_t cnt = old.chunk_cnt[chunk];
    for (uint32_t i = threadIdx.x; i < cnt; i += kThreads) {
      const uint2 e = old.entries[off + i];
      atomicOr(&cj.journaled[e.x >> 5], 1u << (e.x & 31));
      cj.original[e.x] = e.y;
    }
  }
  __syncthreads();
}

// The clean value of element `local` of the chunk: journaled, or recomputed from the
// perturbed value p (exact: elements that would not round back were journaled). d_old: the
// scaled z the applied perturbation added, scaled_z(s_old, z, pc, i).
template <typename E>
__device__ __forceinline__ typename E::Storage clean_value(const ChunkJournal& cj, int local, typename E::Storage p,
                                                           float s_old, float d_old) {
  if ((cj.journaled[local >> 5] >> (local & 31)) & 1u) return E::from_bits(cj.original[local]);
  if (s_old == 0.0f) return p;
  return E::from_f32(rng::fadd(E::to_f32(p), -d_old));
}

// ---- restore and update ----------------------------------------------------------------------

// w_new = fl(fl(w * keep) - scaled_z(step, z)) from the clean w; the product is skipped when
// !use_keep and the difference when step == 0, and with neither the clean bits are written
// back untouched (an exact restore: -0 and NaN payloads included).
template <typename E>
__global__ void __launch_bounds__(kThreads) update_kernel(typename E::Storage* t, const uint8_t* mask,
                                                          const float* pc, uint64_t numel, uint64_t seed,
                                                          uint64_t stream, rng::Distribution dist,
                                                          float s_old, OldJournal old, bool use_keep, float keep,
                                                          float step, bool stochastic, uint64_t rounding_seed) {
  __shared__ ChunkJournal cj;
  const uint64_t chunk = blockIdx.x;
  load_chunk_journal(old, chunk, cj);
  const bool need_z = s_old != 0.0f || step != 0.0f;
  const uint64_t c0 = chunk * kChunk;
  for (int k = 0; k < kGroupsPerThread; ++k) {
    const int local0 = 4 * (threadIdx.x + k * kThreads);
    const uint64_t first = c0 + static_cast<uint64_t>(local0);
    if (first >= numel) break;
    const int n_valid = numel - first >= 4 ? 4 : static_cast<int>(numel - first);
    const uint32_t allow = allowed4(mask, first);
    if (allow == 0) continue;
    typename E::Storage v[4];
    load_group<E>(t, first, n_valid, v);
    float z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (need_z) z4(seed, stream, dist, first, z);
    // Rounding word of element i (f16/bf16 only): word i & 3 of Philox block i >> 2 of
    // (rounding_seed, stream), as perturb.cpp draws it.
    rng::U32x4 random = {{0u, 0u, 0u, 0u}};
    if (stochastic) random = rng::philox_block(rounding_seed, stream, first >> 2);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint64_t i = first + static_cast<uint64_t>(j);
      const typename E::Storage w =
          clean_value<E>(cj, local0 + j, v[j], s_old, s_old != 0.0f && j < n_valid ? scaled_z(s_old, z[j], pc, i) : 0.0f);
      if (!use_keep && step == 0.0f) {
        v[j] = w;
        continue;
      }
      float x = E::to_f32(w);
      if (use_keep) x = rng::fmul(x, keep);
      if (step != 0.0f && j < n_valid) x = rng::fadd(x, -scaled_z(step, z[j], pc, i));
      v[j] = stochastic ? E::stochastic(x, random.v[j]) : E::from_f32(x);
    }
    store_group<E>(t, first, n_valid, allow, v);
  }
}

// ---- perturb_to ------------------------------------------------------------------------------

// Moves one chunk from s_old to s_new (s_new != 0): p = fl(w + fl(s_new * z)) from the clean w,
// journaling w where fl(p - fl(s_new * z)) does not give w's bits back. Results stay in
// registers until the block knows its journal range fits; a block that does not fit writes
// nothing, so rerunning it later sees the same inputs.
template <typename E>
__global__ void __launch_bounds__(kThreads) journal_move_kernel(typename E::Storage* t, const uint8_t* mask,
                                                                const float* pc, uint64_t numel, uint64_t seed,
                                                                uint64_t stream,
                                                                rng::Distribution dist, float s_old, float s_new,
                                                                OldJournal old, NewJournal fresh) {
  __shared__ ChunkJournal cj;
  __shared__ uint32_t block_count;
  __shared__ unsigned long long block_base;
  __shared__ int block_fits;
  const uint64_t chunk = blockIdx.x;
  if (fresh.retry && fresh.failed[chunk] == 0) return;  // the whole block leaves together
  if (threadIdx.x == 0) block_count = 0;
  load_chunk_journal(old, chunk, cj);  // (its __syncthreads also publishes block_count = 0)

  const uint64_t c0 = chunk * kChunk;
  typename E::Storage out[kGroupsPerThread][4];
  uint32_t original[kGroupsPerThread][4];
  uint32_t need = 0;   // bit 4k+j: element j of group k must be journaled
  uint32_t write = 0;  // bit 4k+j: element j of group k is written
#pragma unroll
  for (int k = 0; k < kGroupsPerThread; ++k) {
    const int local0 = 4 * (threadIdx.x + k * kThreads);
    const uint64_t first = c0 + static_cast<uint64_t>(local0);
    if (first >= numel) break;
    const int n_valid = numel - first >= 4 ? 4 : static_cast<int>(numel - first);
    const uint32_t allow = allowed4(mask, first) & ((1u << n_valid) - 1u);
    if (allow == 0) continue;
    typename E::Storage v[4];
    load_group<E>(t, first, n_valid, v);
    float z[4];
    z4(seed, stream, dist, first, z);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint64_t i = first + static_cast<uint64_t>(j);
      const bool real = j < n_valid;  // the preconditioner has no entry past the tensor's end
      const typename E::Storage w =
          clean_value<E>(cj, local0 + j, v[j], s_old, s_old != 0.0f && real ? scaled_z(s_old, z[j], pc, i) : 0.0f);
      const float d = real ? scaled_z(s_new, z[j], pc, i) : 0.0f;
      const typename E::Storage p = E::from_f32(rng::fadd(E::to_f32(w), d));
      const typename E::Storage back = E::from_f32(rng::fadd(E::to_f32(p), -d));
      out[k][j] = p;
      original[k][j] = E::bits(w);
      if ((allow >> j) & 1u) {
        write |= 1u << (4 * k + j);
        if (E::bits(back) != E::bits(w)) need |= 1u << (4 * k + j);
      }
    }
  }

  // Reserve the chunk's journal range: a slot per thread inside the block, one range per block.
  const uint32_t mine = static_cast<uint32_t>(__popc(need));
  const uint32_t my_slot = mine ? atomicAdd(&block_count, mine) : 0u;
  __syncthreads();
  if (threadIdx.x == 0) {
    if (fresh.retry) {
      block_base = fresh.chunk_off[chunk];
      block_fits = 1;
    } else {
      const unsigned long long base = block_count ? atomicAdd(fresh.counter, static_cast<unsigned long long>(block_count)) : 0ull;
      const int fits = base + block_count <= fresh.capacity;
      block_base = base;
      block_fits = fits;
      fresh.chunk_off[chunk] = base;
      fresh.chunk_cnt[chunk] = block_count;
      fresh.failed[chunk] = fits ? 0 : 1;
    }
  }
  __syncthreads();
  if (!block_fits) return;

  unsigned long long slot = block_base + my_slot;
#pragma unroll
  for (int k = 0; k < kGroupsPerThread; ++k) {
    const uint32_t w4 = (write >> (4 * k)) & 0xfu;
    if (w4 == 0) continue;
    const int local0 = 4 * (threadIdx.x + k * kThreads);
    const uint64_t first = c0 + static_cast<uint64_t>(local0);
    const int n_valid = numel - first >= 4 ? 4 : static_cast<int>(numel - first);
    store_group<E>(t, first, n_valid, w4, out[k]);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if ((need >> (4 * k + j)) & 1u) fresh.entries[slot++] = make_uint2(static_cast<uint32_t>(local0 + j), original[k][j]);
  }
}

// ---- host side -------------------------------------------------------------------------------

uint64_t chunks_of(int64_t numel) { return (static_cast<uint64_t>(numel) + kChunk - 1) / kChunk; }

struct Target {  // a validated PerturbTarget
  Tensor* tensor;
  int device;
  uint64_t stream;
  const uint8_t* mask;
  const float* precond;  // f32 per element on the tensor's device, or null
};

std::vector<Target> validate(const std::vector<PerturbTarget>& targets) {
  std::vector<Target> out;
  out.reserve(targets.size());
  std::unordered_set<const void*> seen;  // perturb.cpp's validate(): each tensor once
  for (size_t i = 0; i < targets.size(); ++i) {
    const PerturbTarget& pt = targets[i];
    const std::string what = "perturbation target " + std::to_string(i);
    ZCHECK(pt.tensor != nullptr, ZEROTH_E_INVALID_ARG, what + " has no tensor");
    require_dtype(*pt.tensor, {ZEROTH_F32, ZEROTH_F16, ZEROTH_BF16}, what.c_str());
    const int dev = cuda_index_of(*pt.tensor, what.c_str());
    ZCHECK(pt.tensor->numel == 0 || seen.insert(pt.tensor->data()).second, ZEROTH_E_INVALID_ARG,
           what + " shares its storage with an earlier target; pass each tensor once");
    const uint8_t* mask = nullptr;
    if (pt.mask) {
      require_dtype(*pt.mask, {ZEROTH_U8}, (what + "'s mask").c_str());
      ZCHECK(pt.mask->device().type == ZEROTH_DEVICE_CUDA && pt.mask->device().index == dev, ZEROTH_E_DEVICE,
             what + "'s mask is on " + device_string(pt.mask->device()) + " but the tensor is on cuda:" +
                 std::to_string(dev) + "; move the mask to the tensor's device");
      const int64_t need = (pt.tensor->numel + 7) / 8;
      ZCHECK(pt.mask->numel == need, ZEROTH_E_SHAPE,
             what + "'s mask has " + std::to_string(pt.mask->numel) + " bytes; a tensor of " +
                 std::to_string(pt.tensor->numel) + " elements needs " + std::to_string(need));
      mask = static_cast<const uint8_t*>(pt.mask->data());
    }
    const float* precond = nullptr;
    if (pt.precond) {  // perturb.cpp's validate() checks the same on the CPU
      const std::string pwhat = what + "'s preconditioner";
      require_dtype(*pt.precond, {ZEROTH_F32}, pwhat.c_str());
      ZCHECK(pt.precond->device().type == ZEROTH_DEVICE_CUDA && pt.precond->device().index == dev, ZEROTH_E_DEVICE,
             pwhat + " is on " + device_string(pt.precond->device()) + " but the tensor is on cuda:" +
                 std::to_string(dev) + "; move it to the tensor's device");
      ZCHECK(pt.precond->numel == pt.tensor->numel, ZEROTH_E_SHAPE,
             pwhat + " has " + std::to_string(pt.precond->numel) + " elements; it needs one per element of the target (" +
                 std::to_string(pt.tensor->numel) + ")");
      ZCHECK(pt.tensor->numel == 0 || pt.precond->data() != pt.tensor->data(), ZEROTH_E_INVALID_ARG,
             pwhat + " is the target itself; pass a separate tensor");
      precond = pt.precond->as<float>();
    }
    out.push_back(Target{pt.tensor.get(), dev, pt.stream, mask, precond});
  }
  return out;
}

// Launches a kernel templated on the element type for the target's dtype.
template <template <typename> class Launch, typename... Args>
void dispatch(zeroth_dtype dtype, Args&&... args) {
  switch (dtype) {
    case ZEROTH_F32: Launch<F32>::run(std::forward<Args>(args)...); break;
    case ZEROTH_F16: Launch<F16>::run(std::forward<Args>(args)...); break;
    case ZEROTH_BF16: Launch<BF16>::run(std::forward<Args>(args)...); break;
    default: fail(ZEROTH_E_DTYPE, "perturbation targets are f32, f16 or bf16");
  }
}

template <typename E>
struct LaunchPerturb {
  static void run(const Target& t, uint64_t seed, rng::Distribution dist, float scale) {
    cudaStream_t st = stream_for(t.device);
    perturb_kernel<E><<<static_cast<unsigned>(chunks_of(t.tensor->numel)), kThreads, 0, st>>>(
        static_cast<typename E::Storage*>(t.tensor->data()), t.mask, t.precond, static_cast<uint64_t>(t.tensor->numel),
        seed, t.stream, dist, scale);
    check_launch(t.device, "perturb_kernel");
  }
};

template <typename E>
struct LaunchUpdate {
  static void run(const Target& t, uint64_t seed, rng::Distribution dist, float s_old, const OldJournal& old,
                  const UpdateOptions& opts) {
    cudaStream_t st = stream_for(t.device);
    const bool use_keep = opts.decay != 0.0f;
    const float keep = 1.0f - opts.decay;
    update_kernel<E><<<static_cast<unsigned>(chunks_of(t.tensor->numel)), kThreads, 0, st>>>(
        static_cast<typename E::Storage*>(t.tensor->data()), t.mask, t.precond, static_cast<uint64_t>(t.tensor->numel),
        seed, t.stream, dist, s_old, old, use_keep, keep, opts.step_scale, opts.stochastic_rounding && t.tensor->dtype != ZEROTH_F32,
        opts.rounding_seed);
    check_launch(t.device, "update_kernel");
  }
};

template <typename E>
struct LaunchMove {
  static void run(const Target& t, uint64_t seed, rng::Distribution dist, float s_old, float s_new,
                  const OldJournal& old, const NewJournal& fresh) {
    cudaStream_t st = stream_for(t.device);
    journal_move_kernel<E><<<static_cast<unsigned>(chunks_of(t.tensor->numel)), kThreads, 0, st>>>(
        static_cast<typename E::Storage*>(t.tensor->data()), t.mask, t.precond, static_cast<uint64_t>(t.tensor->numel),
        seed, t.stream, dist, s_old, s_new, old, fresh);
    check_launch(t.device, "journal_move_kernel");
  }
};

void check_update_options(const UpdateOptions& opts) {
  ZCHECK(std::isfinite(opts.step_scale) && std::isfinite(opts.decay), ZEROTH_E_INVALID_ARG,
         "the update's step and decay must be finite numbers");
}

// ---- the device journals, keyed by their PerturbJournal -------------------------------------

TensorPtr device_array(int device, int64_t bytes) {
  return tensor_empty(ZEROTH_U8, Shape{bytes}, zeroth_device{ZEROTH_DEVICE_CUDA, device});
}

struct TargetJournal {
  int device = 0;
  int64_t numel = 0;
  TensorPtr entries[2];  // uint2 each
  uint64_t capacity[2] = {0, 0};
  TensorPtr chunk_off[2];  // u64 per chunk
  TensorPtr chunk_cnt[2];  // u32 per chunk
  TensorPtr failed;        // u8 per chunk
  TensorPtr counter;       // one u64
  int cur = 0;             // the buffer describing the applied perturbation
  bool live = false;       // cur holds the journal of a nonzero perturbation
  uint64_t count = 0;      // entries in cur

  OldJournal old_view() const {
    OldJournal o;
    if (!live) return o;
    o.entries = static_cast<const uint2*>(entries[cur]->data());
    o.chunk_off = static_cast<const unsigned long long*>(chunk_off[cur]->data());
    o.chunk_cnt = static_cast<const uint32_t*>(chunk_cnt[cur]->data());
    return o;
  }
};

struct DeviceJournal {
  std::vector<TargetJournal> targets;
};

std::mutex g_journals_mu;
std::map<const PerturbJournal*, std::shared_ptr<DeviceJournal>>& journals() {
  static auto* m = new std::map<const PerturbJournal*, std::shared_ptr<DeviceJournal>>();
  return *m;
}

std::shared_ptr<DeviceJournal> find_journal(const PerturbJournal& j) {
  std::lock_guard<std::mutex> lock(g_journals_mu);
  auto it = journals().find(&j);
  return it == journals().end() ? nullptr : it->second;
}

// The device journal of `j` for these targets, (re)built when the layout changed. Only called
// while `j` is clean, so rebuilding loses nothing.
std::shared_ptr<DeviceJournal> journal_for(const PerturbJournal& j, const std::vector<Target>& ts) {
  std::lock_guard<std::mutex> lock(g_journals_mu);
  std::shared_ptr<DeviceJournal>& slot = journals()[&j];
  bool same = slot && slot->targets.size() == ts.size();
  for (size_t i = 0; same && i < ts.size(); ++i)
    same = slot->targets[i].device == ts[i].device && slot->targets[i].numel == ts[i].tensor->numel;
  if (same) return slot;
  auto dj = std::make_shared<DeviceJournal>();
  dj->targets.resize(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    TargetJournal& tj = dj->targets[i];
    tj.device = ts[i].device;
    tj.numel = ts[i].tensor->numel;
    const int64_t chunks = static_cast<int64_t>(chunks_of(tj.numel));
    // A first guess of the entries needed (typically a few percent of the elements); too
    // small only costs a rerun of the chunks that did not fit.
    const uint64_t guess = std::max<uint64_t>(static_cast<uint64_t>(tj.numel) / 64, 4096);
    for (int b = 0; b < 2; ++b) {
      tj.entries[b] = device_array(tj.device, static_cast<int64_t>(guess * sizeof(uint2)));
      tj.capacity[b] = guess;
      tj.chunk_off[b] = device_array(tj.device, chunks * 8);
      tj.chunk_cnt[b] = device_array(tj.device, chunks * 4);
    }
    tj.failed = device_array(tj.device, chunks);
    tj.counter = device_array(tj.device, 8);
  }
  slot = dj;
  return slot;
}

void check_layout(const PerturbJournal& j, const std::vector<Target>& ts) {
  bool same = j.numels.size() == ts.size() && j.streams.size() == ts.size();
  for (size_t i = 0; same && i < ts.size(); ++i) same = j.numels[i] == ts[i].tensor->numel && j.streams[i] == ts[i].stream;
  ZCHECK(same, ZEROTH_E_INVALID_ARG,
         "the parameters changed while they are perturbed; restore them (restore_and_update) before changing the "
         "parameter list");
  // perturb.cpp's check_same_layout: restoring with another preconditioner would restore wrong values.
  for (size_t i = 0; i < ts.size(); ++i)
    ZCHECK(i < j.preconds.size() && j.preconds[i] == static_cast<const void*>(ts[i].precond), ZEROTH_E_INVALID_ARG,
           "target " + std::to_string(i) +
               " was perturbed with a different preconditioner (or none); pass the same precond tensors until "
               "restoreAndUpdate has restored them");
}

}  // namespace

// ---- entry points ----------------------------------------------------------------------------

void fill_z(const Tensor& out, uint64_t seed, uint64_t stream, rng::Distribution dist, uint64_t first) {
  require_dtype(out, {ZEROTH_F32}, "fill_z output");
  const int dev = cuda_index_of(out, "fill_z output");
  const uint64_t n = static_cast<uint64_t>(out.numel);
  if (n == 0) return;
  ZCHECK(first <= UINT64_MAX - (n - 1), ZEROTH_E_INVALID_ARG, "fill_z: first + n - 1 overflows the element index");
  const uint64_t groups = ((first + (n - 1)) >> 2) - (first >> 2) + 1;
  cudaStream_t st = stream_for(dev);
  fill_z_kernel<<<grid_for(groups, kThreads), kThreads, 0, st>>>(static_cast<float*>(out.data()), n, first, seed, stream,
                                                                dist);
  check_launch(dev, "fill_z_kernel");
}

void perturb(const std::vector<PerturbTarget>& targets, uint64_t seed, float scale, rng::Distribution dist) {
  const std::vector<Target> ts = validate(targets);
  ZCHECK(std::isfinite(scale), ZEROTH_E_INVALID_ARG, "the perturbation scale must be a finite number");
  if (scale == 0.0f) return;  // as on the CPU: no write (a -0 or a NaN payload keeps its bits)
  for (const Target& t : ts)
    if (t.tensor->numel > 0) dispatch<LaunchPerturb>(t.tensor->dtype, t, seed, dist, scale);
}

void apply_update(const std::vector<PerturbTarget>& targets, uint64_t seed, rng::Distribution dist,
                  const UpdateOptions& opts) {
  const std::vector<Target> ts = validate(targets);
  check_update_options(opts);
  for (const Target& t : ts)
    if (t.tensor->numel > 0) dispatch<LaunchUpdate>(t.tensor->dtype, t, seed, dist, 0.0f, OldJournal{}, opts);
}

void perturb_to(const std::vector<PerturbTarget>& targets, PerturbJournal& journal, uint64_t seed, float scale,
                rng::Distribution dist) {
  const std::vector<Target> ts = validate(targets);
  ZCHECK(std::isfinite(scale), ZEROTH_E_INVALID_ARG, "the perturbation scale must be a finite number");
  const bool perturbed = journal.scale != 0.0f;
  if (perturbed) {
    ZCHECK(journal.seed == seed && journal.dist == dist, ZEROTH_E_INVALID_ARG,
           "the weights are perturbed with another seed or distribution; restore them (restore_and_update) first");
    check_layout(journal, ts);
  }
  std::shared_ptr<DeviceJournal> dj = perturbed ? find_journal(journal) : journal_for(journal, ts);
  ZCHECK(dj != nullptr && dj->targets.size() == ts.size(), ZEROTH_E_INTERNAL,
         "the device journal of perturbed CUDA weights is missing; please report this");
  const float s_old = journal.scale;

  if (scale == 0.0f) {
    // Back to the clean weights: an exact restore (perturb.h: perturb_to(0) writes w itself).
    for (size_t i = 0; i < ts.size(); ++i) {
      TargetJournal& tj = dj->targets[i];
      if (ts[i].tensor->numel > 0)
        dispatch<LaunchUpdate>(ts[i].tensor->dtype, ts[i], seed, dist, s_old, tj.old_view(), UpdateOptions{});
      tj.live = false;
      tj.count = 0;
    }
  } else {
    // Pass 1: every chunk moves and reserves its journal range in the fresh buffer.
    for (size_t i = 0; i < ts.size(); ++i) {
      TargetJournal& tj = dj->targets[i];
      if (ts[i].tensor->numel == 0) continue;
      const int fresh_buf = 1 - tj.cur;
      backend_for(ts[i].tensor->device()).memset_zero(tj.device, tj.counter->data(), 8);
      NewJournal fresh{static_cast<uint2*>(tj.entries[fresh_buf]->data()),
                       tj.capacity[fresh_buf],
                       static_cast<unsigned long long*>(tj.counter->data()),
                       static_cast<unsigned long long*>(tj.chunk_off[fresh_buf]->data()),
                       static_cast<uint32_t*>(tj.chunk_cnt[fresh_buf]->data()),
                       static_cast<uint8_t*>(tj.failed->data()),
                       false};
      dispatch<LaunchMove>(ts[i].tensor->dtype, ts[i], seed, dist, s_old, scale, tj.old_view(), fresh);
    }
    // Pass 2: read back the reservations; where they outgrew the buffer, grow it and rerun the
    // chunks that did not fit (they wrote nothing) into the ranges they reserved.
    for (size_t i = 0; i < ts.size(); ++i) {
      TargetJournal& tj = dj->targets[i];
      if (ts[i].tensor->numel == 0) continue;
      const int fresh_buf = 1 - tj.cur;
      unsigned long long reserved = 0;
      backend_for(ts[i].tensor->device()).copy_to_host(tj.device, &reserved, tj.counter->data(), 8);
      if (reserved > tj.capacity[fresh_buf]) {
        const uint64_t grown = reserved + reserved / 4 + 4096;
        TensorPtr bigger = device_array(tj.device, static_cast<int64_t>(grown * sizeof(uint2)));
        backend_for(ts[i].tensor->device())
            .copy_device(tj.device, bigger->data(), tj.entries[fresh_buf]->data(), tj.capacity[fresh_buf] * sizeof(uint2));
        tj.entries[fresh_buf] = bigger;
        tj.capacity[fresh_buf] = grown;
        NewJournal fresh{static_cast<uint2*>(bigger->data()),
                         grown,
                         static_cast<unsigned long long*>(tj.counter->data()),
                         static_cast<unsigned long long*>(tj.chunk_off[fresh_buf]->data()),
                         static_cast<uint32_t*>(tj.chunk_cnt[fresh_buf]->data()),
                         static_cast<uint8_t*>(tj.failed->data()),
                         true};
        // The old journal is still intact: rerun chunks read it exactly as pass 1 did.
        dispatch<LaunchMove>(ts[i].tensor->dtype, ts[i], seed, dist, s_old, scale, tj.old_view(), fresh);
      }
      tj.cur = fresh_buf;
      tj.live = true;
      tj.count = reserved;
    }
  }

  if (!perturbed) {
    journal.numels.clear();
    journal.streams.clear();
    journal.preconds.clear();
    for (const Target& t : ts) {
      journal.numels.push_back(t.tensor->numel);
      journal.streams.push_back(t.stream);
      journal.preconds.push_back(t.precond);  // what perturb.cpp records: the tensor's data pointer
    }
  }
  journal.entries.clear();  // the CUDA journal lives on the device
  journal.scale = scale;
  journal.seed = seed;
  journal.dist = dist;
  journal.seeded = true;
}

void restore_and_update(const std::vector<PerturbTarget>& targets, PerturbJournal& journal, const UpdateOptions& opts) {
  const std::vector<Target> ts = validate(targets);
  check_update_options(opts);
  ZCHECK(opts.step_scale == 0.0f || journal.seeded, ZEROTH_E_INVALID_ARG,
         "an update step needs the seed of a perturb_to since the last restore_and_update");
  std::shared_ptr<DeviceJournal> dj;
  if (journal.scale != 0.0f) {
    check_layout(journal, ts);
    dj = find_journal(journal);
    ZCHECK(dj != nullptr && dj->targets.size() == ts.size(), ZEROTH_E_INTERNAL,
           "the device journal of perturbed CUDA weights is missing; please report this");
  }
  for (size_t i = 0; i < ts.size(); ++i) {
    if (ts[i].tensor->numel == 0) continue;
    const OldJournal old = dj ? dj->targets[i].old_view() : OldJournal{};
    dispatch<LaunchUpdate>(ts[i].tensor->dtype, ts[i], journal.seed, journal.dist, journal.scale, old, opts);
  }
  if (dj) {
    for (TargetJournal& tj : dj->targets) {
      tj.live = false;
      tj.count = 0;
    }
  }
  journal.entries.clear();
  journal.scale = 0.0f;
  journal.seeded = false;
}

uint64_t journal_entry_count(const PerturbJournal& journal) {
  std::shared_ptr<DeviceJournal> dj = find_journal(journal);
  if (!dj || journal.scale == 0.0f) return 0;
  uint64_t n = 0;
  for (const TargetJournal& tj : dj->targets) n += tj.live ? tj.count : 0;
  return n;
}

void release_journal(const PerturbJournal& journal) {
  std::lock_guard<std::mutex> lock(g_journals_mu);
  journals().erase(&journal);
}

}  // namespace cuda
}  // namespace zeroth
