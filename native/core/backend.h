// backend.h — a device is a table of function pointers (ggml's backend habit): adding a
// device touches no caller. The CPU table always exists; the CUDA table is registered
// when the build includes cuda/ and is initialised lazily on first use, so a CUDA build
// runs on machines with no driver.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "../include/zeroth.h"

namespace zeroth {

struct DeviceInfo {
  zeroth_device device;
  std::string name;
  uint64_t total_memory;  // bytes
};

struct Backend {
  const char* name;
  // Memory: alloc returns 64-byte-aligned memory or throws E_OOM; free accepts nullptr.
  void* (*alloc)(int index, size_t bytes);
  void (*free)(int index, void* ptr);
  void (*memset_zero)(int index, void* ptr, size_t bytes);
  // Copies between host memory and this device (same device for device_to_device).
  void (*copy_from_host)(int index, void* dst, const void* src, size_t bytes);
  void (*copy_to_host)(int index, void* dst, const void* src, size_t bytes);
  void (*copy_device)(int index, void* dst, const void* src, size_t bytes);
  // Waits for the device's queued work (a no-op on the CPU).
  void (*synchronize)(int index);
};

// The backend serving `device`; throws E_DEVICE with a message saying what is available.
const Backend& backend_for(zeroth_device device);
int device_count(zeroth_device_type type);
DeviceInfo device_info(zeroth_device device);
std::string device_string(zeroth_device device);  // "cpu", "cuda:0"

// Set by the CUDA translation unit when the build has CUDA; nullptr otherwise.
const Backend* cuda_backend();
int cuda_device_count();
DeviceInfo cuda_device_info(int index);

// The CUDA caching allocator's counters for one device, in bytes of size classes (what the
// allocator holds from the driver for live blocks, so rounding is counted): the peak is what
// a benchmark compares between fine-tuning and inference. Defined only in CUDA builds
// (ZEROTH_WITH_CUDA); callers validate the device with backend_for() first.
struct DeviceMemoryStats {
  uint64_t allocated;       // in live blocks now
  uint64_t cached;          // in freed blocks kept for reuse
  uint64_t peak_allocated;  // the most `allocated` has been since the first use or the last reset
};
// Reads the counters; with reset_peak, then sets the peak to what is allocated now.
DeviceMemoryStats cuda_memory_stats(int index, bool reset_peak);

}  // namespace zeroth
