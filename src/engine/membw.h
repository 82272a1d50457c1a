// Measures this machine's memory read bandwidth the way the roofline needs it:
// `threads` threads each summing their share of a buffer far larger than the
// caches, best of several passes. Decode speed is reported as a fraction of it.
// The buffer sits on 2 MiB pages where the kernel gives them, as the weights do
// (MappedRegion), so that both are read through the same kind of page-table entry.
// (On this project's Zen 5 VM either kind has read faster than the other, by up to
// a tenth, depending on where the buffer landed.)
//
// Where memory sits matters as much: in that VM a model file's cached pages read
// at 51-59 GB/s while fresh anonymous memory read at 71-75 in the same minute, so
// read_pass() can also time a pass over the weights themselves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/thread_pool.h"

namespace swarm {

// One pass of every thread summing its share of each span in turn (all threads
// on one span, then the next); returns total bytes over the time, per second.
double read_pass(ThreadPool& pool, const std::vector<std::span<const uint8_t>>& spans);

// Bytes per second; `bytes` is the buffer size (1 GiB by default).
double measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t{1} << 30, int passes = 5);

// The same measurement kept ready, so that passes can be taken between the runs
// they are compared with: on a shared machine bandwidth drifts by the minute, and
// a figure taken only before the runs can come from a faster or slower moment.
class ReadBandwidthProbe {
 public:
  ReadBandwidthProbe(ThreadPool& pool, size_t bytes = size_t{1} << 30);
  ~ReadBandwidthProbe();
  ReadBandwidthProbe(const ReadBandwidthProbe&) = delete;
  ReadBandwidthProbe& operator=(const ReadBandwidthProbe&) = delete;

  // One pass; returns its bandwidth, bytes per second.
  double pass();
  // Takes `passes` passes; returns the best of every pass so far, bytes per second.
  double measure(int passes);
  double best() const { return best_; }
  // Bytes of the buffer that 2 MiB pages cover (0 where /proc cannot tell).
  size_t huge_page_bytes() const;

 private:
  ThreadPool& pool_;
  size_t words_;
  void* map_ = nullptr;  // the anonymous mapping; buf_ is its first 2 MiB boundary
  size_t map_bytes_ = 0;
  uint64_t* buf_ = nullptr;
  double best_ = 0;
};

}  // namespace swarm
