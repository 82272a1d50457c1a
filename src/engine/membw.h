// Measures this machine's memory read bandwidth the way the roofline needs it:
// `threads` threads each summing their share of a buffer far larger than the
// caches, best of several passes. Decode speed is reported as a fraction of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "engine/thread_pool.h"

namespace swarm {

// Bytes per second; `bytes` is the buffer size (1 GiB by default).
double measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t{1} << 30, int passes = 5);

// The same measurement kept ready, so that passes can be taken between the runs
// they are compared with: on a shared machine bandwidth drifts by the minute, and
// a figure taken only before the runs can come from a faster or slower moment.
class ReadBandwidthProbe {
 public:
  ReadBandwidthProbe(ThreadPool& pool, size_t bytes = size_t{1} << 30);
  // Takes `passes` passes; returns the best of every pass so far, bytes per second.
  double measure(int passes);
  double best() const { return best_; }

 private:
  ThreadPool& pool_;
  size_t words_;
  std::unique_ptr<uint64_t[]> buf_;
  double best_ = 0;
};

}  // namespace swarm
