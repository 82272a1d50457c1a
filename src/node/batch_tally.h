// What a node's scheduler ran, for its /metrics (doc/metrics.md): batches,
// the steps and token positions in them, and how big batches were (a
// histogram over fixed bounds of tokens per batch). Counted once per batch
// with relaxed atomics, so the scheduler never waits for a scrape.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

namespace swarm::node {

class BatchTally {
 public:
  // Upper bounds of the batch-size buckets, in tokens (+Inf above the last).
  static constexpr std::array<int, 12> kTokenBounds = {1,  2,   4,   8,   16,   32,
                                                       64, 128, 256, 512, 1024, 2048};

  // A batch of `steps` steps holding `tokens` token positions is about to run.
  void count(int64_t steps, int64_t tokens);

  struct Snapshot {
    int64_t batches = 0, steps = 0, tokens = 0;
    // Batches per bucket of kTokenBounds (not cumulative), the last above them all.
    std::vector<uint64_t> per_bucket;
  };
  Snapshot snapshot() const;

 private:
  std::atomic<int64_t> batches_{0}, steps_{0}, tokens_{0};
  std::array<std::atomic<uint64_t>, kTokenBounds.size() + 1> buckets_{};
};

}  // namespace swarm::node
