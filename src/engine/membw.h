// Measures this machine's memory read bandwidth the way the roofline needs it:
// `threads` threads each summing their share of a buffer far larger than the
// caches, best of several passes. Decode speed is reported as a fraction of it.
#pragma once

#include "engine/thread_pool.h"

namespace swarm {

// Bytes per second; `bytes` is the buffer size (1 GiB by default).
double measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t{1} << 30, int passes = 5);

}  // namespace swarm
