// parallel.h — one persistent worker pool for every multithreaded CPU kernel.
//
// parallel_for(n, grain, fn) splits [0, n) into chunks of at least `grain` items and
// calls fn(begin, end) on the pool's threads and the calling thread. It returns when
// every chunk is done and rethrows the first exception a chunk threw. Calls made from
// inside a chunk run serially (no nested fan-out), and calls from several threads at
// once take turns, so kernels may call it from AsyncWorkers freely.
//
// Thread count: ZEROTH_NUM_THREADS if set, else std::thread::hardware_concurrency().
#pragma once
#include <cstdint>
#include <functional>

namespace zeroth {

int num_threads();
void set_num_threads(int n);  // takes effect for the next parallel_for

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace zeroth
