// backend_cpu.cpp — the CPU device table and device lookup.
#include <sys/mman.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <vector>
#include <string>
#include <thread>

#include "backend.h"
#include "errors.h"

namespace zeroth {
namespace {

// Every block starts with a 64-byte header (so the data stays 64-byte aligned) recording how
// it was obtained. Large blocks come from mmap and go back with munmap, so disposing a tensor
// returns its memory to the OS instead of leaving it to the heap's trimming heuristics (RSS
// stays flat across create/dispose cycles). A small cache keeps the most recently freed large
// blocks (at most kCacheBytes in all) for reuse by the next allocation of the same size: the
// create/dispose loops of training steps then cost no page faults.
constexpr size_t kHeader = 64;
constexpr size_t kMmapThreshold = 256 * 1024;
constexpr uint64_t kMagicHeap = 0x7a65726f74686831ull, kMagicMmap = 0x7a65726f74686d31ull;
struct BlockHeader {
  uint64_t magic;
  uint64_t total;  // bytes mapped or allocated, header included
};

// Sized for the activations of a forward pass: first writes to fresh pages are slow on some
// machines (page faults in sandboxed VMs cost ~10 ms per MB), and a training loop allocates
// the same shapes every step.
constexpr size_t kCacheBytes = 1ull << 30;

class MmapCache {
 public:
  void* take(size_t total) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = blocks_.size(); i-- > 0;) {
      if (blocks_[i].second == total) {
        void* p = blocks_[i].first;
        blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(i));
        cached_ -= total;
        return p;
      }
    }
    return nullptr;
  }
  // Unmaps every cached block (e.g. after quantizing a model frees its f32 weights, which the
  // cache would otherwise keep resident) and returns the bytes released.
  size_t clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t released = cached_;
    for (const auto& b : blocks_) munmap(b.first, b.second);
    blocks_.clear();
    cached_ = 0;
    return released;
  }
  size_t cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }
  void give(void* p, size_t total) {
    if (total > kCacheBytes / 2) {
      munmap(p, total);
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    blocks_.emplace_back(p, total);
    cached_ += total;
    while (cached_ > kCacheBytes) {  // evict the oldest
      munmap(blocks_.front().first, blocks_.front().second);
      cached_ -= blocks_.front().second;
      blocks_.erase(blocks_.begin());
    }
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<void*, size_t>> blocks_;
  size_t cached_ = 0;
};

MmapCache& mmap_cache() {
  static MmapCache* c = new MmapCache();  // leaked: tensors may be freed during exit
  return *c;
}

// Tensors are always written in full, so fault their pages in now, in one call, on huge pages
// where the kernel allows: measured here, first writes to 256 MB took 2.4 s page by page and
// 0.08 s this way. Both calls are hints; older kernels refuse them and we fault lazily instead.
void prefault(void* p, size_t bytes) {
#ifdef MADV_HUGEPAGE
  if (bytes >= (2u << 20)) madvise(p, bytes, MADV_HUGEPAGE);
#endif
  constexpr int kMadvPopulateWrite = 23;  // MADV_POPULATE_WRITE, Linux 5.14+
  madvise(p, bytes, kMadvPopulateWrite);
}

}  // namespace

size_t release_cached_memory() {
  const size_t released = mmap_cache().clear();
#if defined(__GLIBC__)
  // Also hand back the free pages of the C heap: large JavaScript buffers freed after building
  // or quantizing a model often stay in glibc's heap (its mmap threshold grows after big frees).
  malloc_trim(0);
#endif
  return released;
}
size_t cached_memory_bytes() { return mmap_cache().cached(); }

namespace {

void* cpu_alloc(int, size_t bytes) {
  ZCHECK(bytes <= (SIZE_MAX >> 1), ZEROTH_E_OOM, "cannot allocate " + std::to_string(bytes) + " bytes");
  size_t total = ((bytes + kHeader + 63) / 64) * 64;
  void* base = nullptr;
  uint64_t magic = kMagicHeap;
  if (total >= kMmapThreshold) {
    total = ((total + 4095) / 4096) * 4096;
    base = mmap_cache().take(total);
    if (!base) {
      base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (base == MAP_FAILED) base = nullptr;
      else prefault(base, total);
    }
    magic = kMagicMmap;
  } else {
    base = std::aligned_alloc(64, total);
  }
  ZCHECK(base != nullptr, ZEROTH_E_OOM,
         "out of host memory allocating " + std::to_string(bytes) + " bytes; free tensors or use a smaller model");
  auto* h = static_cast<BlockHeader*>(base);
  h->magic = magic;
  h->total = total;
  return static_cast<uint8_t*>(base) + kHeader;
}

void cpu_free(int, void* p) {
  if (!p) return;
  auto* h = reinterpret_cast<BlockHeader*>(static_cast<uint8_t*>(p) - kHeader);
  if (h->magic == kMagicMmap) mmap_cache().give(h, h->total);
  else std::free(h);
}
void cpu_memset_zero(int, void* p, size_t n) { std::memset(p, 0, n); }
void cpu_copy(int, void* dst, const void* src, size_t n) {
  if (n) std::memcpy(dst, src, n);
}
void cpu_sync(int) {}

const Backend kCpu = {"cpu", cpu_alloc, cpu_free, cpu_memset_zero, cpu_copy, cpu_copy, cpu_copy, cpu_sync};

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "CPU";
}

uint64_t host_memory() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  while (f >> key >> kb) {
    if (key == "MemTotal:") return kb * 1024;
    f.ignore(1 << 10, '\n');
  }
  return 0;
}

}  // namespace

#ifndef ZEROTH_WITH_CUDA
const Backend* cuda_backend() { return nullptr; }
int cuda_device_count() { return 0; }
DeviceInfo cuda_device_info(int index) {
  fail(ZEROTH_E_DEVICE, "cuda:" + std::to_string(index) + " is not available: this build of zeroth has no CUDA backend");
}
#endif

std::string device_string(zeroth_device d) {
  if (d.type == ZEROTH_DEVICE_CPU) return "cpu";
  return "cuda:" + std::to_string(d.index);
}

int device_count(zeroth_device_type type) {
  if (type == ZEROTH_DEVICE_CPU) return 1;
  if (type == ZEROTH_DEVICE_CUDA) return cuda_device_count();
  return 0;
}

const Backend& backend_for(zeroth_device d) {
  if (d.type == ZEROTH_DEVICE_CPU) {
    ZCHECK(d.index == 0, ZEROTH_E_DEVICE, "there is only one CPU device: use 'cpu'");
    return kCpu;
  }
  ZCHECK(d.type == ZEROTH_DEVICE_CUDA, ZEROTH_E_DEVICE, "unknown device type; use 'cpu' or 'cuda'");
  const Backend* cuda = cuda_backend();
  ZCHECK(cuda != nullptr, ZEROTH_E_DEVICE,
         "device " + device_string(d) +
             " is not available: this build of zeroth has no CUDA backend (rebuild with nvcc on PATH) — use 'cpu'");
  const int n = cuda_device_count();
  ZCHECK(n > 0, ZEROTH_E_DEVICE,
         "device " + device_string(d) + " is not available: no usable CUDA device or driver was found — use 'cpu'");
  ZCHECK(d.index >= 0 && d.index < n, ZEROTH_E_DEVICE,
         "device " + device_string(d) + " does not exist: this machine has " + std::to_string(n) +
             " CUDA device(s), cuda:0 .. cuda:" + std::to_string(n - 1));
  return *cuda;
}

DeviceInfo device_info(zeroth_device d) {
  if (d.type == ZEROTH_DEVICE_CPU) {
    return DeviceInfo{d, cpu_model_name() + " (" + std::to_string(std::thread::hardware_concurrency()) + " threads)",
                      host_memory()};
  }
  backend_for(d);  // validates
  return cuda_device_info(d.index);
}

}  // namespace zeroth
