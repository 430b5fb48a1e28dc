// backend_cuda.cu — the CUDA device table of backend.h: lazy initialisation, a caching
// allocator, one stream per device, and host<->device copies through pinned staging buffers.
// No kernels here (the CPU twin is native/core/backend_cpu.cpp).
//
// Lazy: nothing calls into the CUDA runtime until a CUDA device is asked for (device count,
// device info, a cuda tensor). cudart is linked statically and loads the driver with dlopen
// then, so a CUDA build runs on a machine with no driver: cudaGetDeviceCount's error there is
// swallowed into "0 devices" and backend_for() answers E_DEVICE.
//
// Allocator: per device, freed blocks go to free lists keyed by their size class and are
// handed out again for the same class; all work on a device runs on its one stream, so a
// block reused by later work is ordered after the work that used it before. When cudaMalloc
// runs out of memory, the cache is emptied and the allocation tried once more before E_OOM.
//
// The runtime state is created with `new` and never destroyed: at process exit cudart may
// already be torn down, and tensors freed by late destructors only go back to the free lists.
#include <cuda_runtime.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.cuh"
#include "core/backend.h"
#include "core/errors.h"

namespace zeroth {
namespace cuda {
namespace {

constexpr size_t kMinBlock = 256;                 // every block is 256-byte aligned (cudaMalloc gives 256)
constexpr size_t kSmallLimit = size_t(1) << 20;   // up to 1 MiB: power-of-two classes
constexpr size_t kLargeRound = size_t(2) << 20;   // above: multiples of 2 MiB
constexpr size_t kStagingBytes = size_t(8) << 20; // per pinned staging buffer (two per device)

// The size class a request is served from: powers of two from 256 B to 1 MiB (a little waste
// on small tensors, many reuses), then multiples of 2 MiB (at most 2 MiB waste per tensor).
size_t size_class(size_t bytes) {
  if (bytes <= kMinBlock) return kMinBlock;
  if (bytes <= kSmallLimit) {
    size_t c = kMinBlock;
    while (c < bytes) c <<= 1;
    return c;
  }
  ZCHECK(bytes <= SIZE_MAX - kLargeRound, ZEROTH_E_OOM,
         "a GPU allocation of " + std::to_string(bytes) + " bytes cannot be served");
  return (bytes + kLargeRound - 1) / kLargeRound * kLargeRound;
}

struct DeviceState {
  int index = 0;
  std::mutex mu;  // guards everything below; JS finalizers and worker threads both free
  cudaStream_t stream = nullptr;
  std::map<size_t, std::vector<void*>> free_blocks;  // size class -> cached blocks
  std::unordered_map<void*, size_t> live;            // block -> size class
  size_t cached_bytes = 0;
  size_t live_bytes = 0;  // sum of the size classes in `live`
  size_t peak_bytes = 0;  // the most live_bytes has been since the last reset (cuda_memory_stats)
  // Pinned staging: two buffers so the host memcpy of one chunk overlaps the DMA of the other.
  std::mutex staging_mu;
  void* staging[2] = {nullptr, nullptr};
  cudaEvent_t staging_done[2] = {nullptr, nullptr};
  bool staging_failed = false;  // pinned memory refused: copy from pageable memory instead
};

struct Runtime {
  std::once_flag count_once;
  int count = 0;
  std::string count_error;  // why there are no devices, for messages
  std::mutex mu;
  std::vector<std::unique_ptr<DeviceState>> devices;  // created on first use of each
};

Runtime& runtime() {
  static Runtime* r = new Runtime();  // never destroyed: see the file comment
  return *r;
}

int device_total() {
  Runtime& r = runtime();
  std::call_once(r.count_once, [&] {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      // No driver, no device, or a driver older than this build's runtime: zero devices.
      r.count_error = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
      (void)cudaGetLastError();
      n = 0;
    }
    r.count = n;
    r.devices.resize(static_cast<size_t>(n));
  });
  return r.count;
}

std::string dev_name(int device) { return "cuda:" + std::to_string(device); }

// The state of a device, created (and the device checked) on first use.
DeviceState& state(int device) {
  const int n = device_total();
  ZCHECK(device >= 0 && device < n, ZEROTH_E_DEVICE,
         dev_name(device) + " does not exist: this machine has " + std::to_string(n) + " CUDA device(s)" +
             (runtime().count_error.empty() ? "" : " (" + runtime().count_error + ")"));
  Runtime& r = runtime();
  std::lock_guard<std::mutex> lock(r.mu);
  std::unique_ptr<DeviceState>& slot = r.devices[static_cast<size_t>(device)];
  if (!slot) {
    check(cudaSetDevice(device), device, "selecting the device");
    cudaDeviceProp prop;
    check(cudaGetDeviceProperties(&prop, device), device, "reading the device properties");
    ZCHECK(prop.major >= 8, ZEROTH_E_DEVICE,
           dev_name(device) + " (" + prop.name + ") has compute capability " + std::to_string(prop.major) + "." +
               std::to_string(prop.minor) +
               "; this build of zeroth has code for 8.0 (A100) and 9.0 (H100) and newer — use 'cpu'");
    auto s = std::make_unique<DeviceState>();
    s->index = device;
    check(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), device, "creating the device stream");
    slot = std::move(s);
  }
  return *slot;
}

void set_device(int device) { check(cudaSetDevice(device), device, "selecting the device"); }

// cudaMalloc, emptying the cache and trying once more when the device is out of memory.
void* malloc_block(DeviceState& s, size_t cls, size_t asked) {
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, cls);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    // Give cached blocks back to the driver (cudaFree waits for the device first).
    size_t released = 0;
    for (auto& kv : s.free_blocks) {
      for (void* b : kv.second) {
        (void)cudaFree(b);
        released += kv.first;
      }
    }
    s.free_blocks.clear();
    s.cached_bytes = 0;
    err = cudaMalloc(&p, cls);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      fail(ZEROTH_E_OOM, dev_name(s.index) + " is out of memory: asked " + std::to_string(asked) + " bytes (" +
                             std::to_string(cls) + " with rounding), " + std::to_string(free_b) + " free of " +
                             std::to_string(total_b) + " after releasing " + std::to_string(released) +
                             " cached bytes; free tensors, use a smaller batch or a smaller model");
    }
  }
  check(err, s.index, "allocating GPU memory");
  return p;
}

void* cuda_alloc(int device, size_t bytes) {
  DeviceState& s = state(device);
  const size_t cls = size_class(bytes);
  std::lock_guard<std::mutex> lock(s.mu);
  void* p = nullptr;
  auto it = s.free_blocks.find(cls);
  if (it != s.free_blocks.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    s.cached_bytes -= cls;
  } else {
    set_device(device);
    p = malloc_block(s, cls, bytes);
  }
  s.live.emplace(p, cls);
  s.live_bytes += cls;
  if (s.live_bytes > s.peak_bytes) s.peak_bytes = s.live_bytes;
  return p;
}

void cuda_free(int device, void* p) {
  if (p == nullptr) return;
  DeviceState& s = state(device);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.live.find(p);
  if (it == s.live.end()) return;  // not ours: never hand foreign memory out again
  s.free_blocks[it->second].push_back(p);
  s.cached_bytes += it->second;
  s.live_bytes -= it->second;
  s.live.erase(it);
}

void cuda_memset_zero(int device, void* p, size_t bytes) {
  if (bytes == 0) return;
  cudaStream_t st = stream_for(device);
  check(cudaMemsetAsync(p, 0, bytes, st), device, "zeroing GPU memory");
}

// Pinned staging buffers and their events, allocated on the first copy. Returns false when
// pinned memory is refused (then copies go through pageable memory, slower but correct).
bool ensure_staging(DeviceState& s) {
  if (s.staging_failed) return false;
  if (s.staging[0] != nullptr) return true;
  for (int k = 0; k < 2; ++k) {
    if (cudaHostAlloc(&s.staging[k], kStagingBytes, cudaHostAllocDefault) != cudaSuccess) {
      (void)cudaGetLastError();
      for (int j = 0; j < k; ++j) (void)cudaFreeHost(s.staging[j]);
      s.staging[0] = s.staging[1] = nullptr;
      s.staging_failed = true;
      return false;
    }
    check(cudaEventCreateWithFlags(&s.staging_done[k], cudaEventDisableTiming), s.index, "creating an event");
  }
  return true;
}

void cuda_copy_from_host(int device, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  DeviceState& s = state(device);
  cudaStream_t st = stream_for(device);
  std::lock_guard<std::mutex> lock(s.staging_mu);
  if (!ensure_staging(s)) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st), device, "copying host memory to the GPU");
    check(cudaStreamSynchronize(st), device, "copying host memory to the GPU");
    return;
  }
  // Chunk k goes through buffer k % 2: wait until that buffer's previous DMA is done, fill
  // it, queue its DMA. The host fills one buffer while the other one is being sent.
  size_t done = 0;
  for (int k = 0; done < bytes; k ^= 1) {
    const size_t n = bytes - done < kStagingBytes ? bytes - done : kStagingBytes;
    check(cudaEventSynchronize(s.staging_done[k]), device, "copying host memory to the GPU");
    std::memcpy(s.staging[k], static_cast<const char*>(src) + done, n);
    check(cudaMemcpyAsync(static_cast<char*>(dst) + done, s.staging[k], n, cudaMemcpyHostToDevice, st), device,
          "copying host memory to the GPU");
    check(cudaEventRecord(s.staging_done[k], st), device, "copying host memory to the GPU");
    done += n;
  }
  // The caller may free or reuse `src` and expects the data to be on the device.
  check(cudaStreamSynchronize(st), device, "copying host memory to the GPU");
}

void cuda_copy_to_host(int device, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  DeviceState& s = state(device);
  cudaStream_t st = stream_for(device);
  std::lock_guard<std::mutex> lock(s.staging_mu);
  if (!ensure_staging(s)) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st), device, "copying GPU memory to the host");
    check(cudaStreamSynchronize(st), device, "copying GPU memory to the host");
    return;
  }
  // Queue chunk k's DMA into buffer k % 2, then drain chunk k-1 from the other buffer while
  // chunk k is in flight. The DMA queues behind every kernel already on the stream.
  const size_t chunks = (bytes + kStagingBytes - 1) / kStagingBytes;
  auto chunk_len = [&](size_t k) { return k + 1 < chunks ? kStagingBytes : bytes - k * kStagingBytes; };
  for (size_t k = 0; k <= chunks; ++k) {
    if (k < chunks) {
      check(cudaMemcpyAsync(s.staging[k & 1], static_cast<const char*>(src) + k * kStagingBytes, chunk_len(k),
                            cudaMemcpyDeviceToHost, st),
            device, "copying GPU memory to the host");
      check(cudaEventRecord(s.staging_done[k & 1], st), device, "copying GPU memory to the host");
    }
    if (k > 0) {
      const size_t j = k - 1;
      check(cudaEventSynchronize(s.staging_done[j & 1]), device, "copying GPU memory to the host");
      std::memcpy(static_cast<char*>(dst) + j * kStagingBytes, s.staging[j & 1], chunk_len(j));
    }
  }
}

void cuda_copy_device(int device, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  cudaStream_t st = stream_for(device);
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st), device, "copying GPU memory");
}

void cuda_synchronize(int device) {
  cudaStream_t st = stream_for(device);
  check(cudaStreamSynchronize(st), device, "waiting for the GPU");
}

const Backend kCuda = {"cuda",           cuda_alloc,        cuda_free,        cuda_memset_zero,
                       cuda_copy_from_host, cuda_copy_to_host, cuda_copy_device, cuda_synchronize};

}  // namespace

[[noreturn]] void throw_cuda_error(cudaError_t err, int device, const char* what) {
  const std::string detail = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  (void)cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  if (err == cudaErrorMemoryAllocation)
    fail(ZEROTH_E_OOM, dev_name(device) + ": " + what + " failed (" + detail +
                           "); free tensors, use a smaller batch or a smaller model");
  if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorUnsupportedPtxVersion)
    fail(ZEROTH_E_DEVICE, dev_name(device) + ": " + what + " failed (" + detail +
                              "): this build of zeroth has code for sm_80 and sm_90 only, or the driver is older "
                              "than the CUDA toolkit it was built with — update the driver or use 'cpu'");
  fail(ZEROTH_E_DEVICE, dev_name(device) + ": " + what + " failed (" + detail +
                            "); after an illegal-address or launch failure the GPU context is unusable: restart "
                            "the process");
}

cudaStream_t stream_for(int device) {
  DeviceState& s = state(device);
  set_device(device);
  return s.stream;
}

void check_launch(int device, const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda_error(err, device, (std::string("launching ") + kernel).c_str());
}

int cuda_index_of(const Tensor& t, const char* what) {
  ZCHECK(t.device().type == ZEROTH_DEVICE_CUDA, ZEROTH_E_DEVICE,
         std::string(what) + " is on " + device_string(t.device()) + " but this operation runs on a CUDA device");
  return t.device().index;
}

}  // namespace cuda

// ---- backend.h entry points -----------------------------------------------------------------

const Backend* cuda_backend() { return &cuda::kCuda; }

int cuda_device_count() { return cuda::device_total(); }

DeviceInfo cuda_device_info(int index) {
  // Listing a device does not need it to be usable (an old GPU is listed, and refused on use).
  const int n = cuda::device_total();
  ZCHECK(index >= 0 && index < n, ZEROTH_E_DEVICE,
         "cuda:" + std::to_string(index) + " does not exist: this machine has " + std::to_string(n) + " CUDA device(s)");
  cudaDeviceProp prop;
  cuda::check(cudaGetDeviceProperties(&prop, index), index, "reading the device properties");
  return DeviceInfo{zeroth_device{ZEROTH_DEVICE_CUDA, index}, prop.name, static_cast<uint64_t>(prop.totalGlobalMem)};
}

DeviceMemoryStats cuda_memory_stats(int index, bool reset_peak) {
  cuda::DeviceState& s = cuda::state(index);
  std::lock_guard<std::mutex> lock(s.mu);
  const DeviceMemoryStats out{s.live_bytes, s.cached_bytes, s.peak_bytes};
  if (reset_peak) s.peak_bytes = s.live_bytes;
  return out;
}

}  // namespace zeroth
