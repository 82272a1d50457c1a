#include "node/batch_tally.h"

#include <algorithm>

namespace swarm::node {

void BatchTally::count(int64_t steps, int64_t tokens) {
  const size_t bucket =
      std::lower_bound(kTokenBounds.begin(), kTokenBounds.end(), tokens) - kTokenBounds.begin();
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  steps_.fetch_add(steps, std::memory_order_relaxed);
  tokens_.fetch_add(tokens, std::memory_order_relaxed);
  batches_.fetch_add(1, std::memory_order_relaxed);
}

BatchTally::Snapshot BatchTally::snapshot() const {
  Snapshot s;
  s.batches = batches_.load(std::memory_order_relaxed);
  s.steps = steps_.load(std::memory_order_relaxed);
  s.tokens = tokens_.load(std::memory_order_relaxed);
  for (const auto& b : buckets_) s.per_bucket.push_back(b.load(std::memory_order_relaxed));
  return s;
}

}  // namespace swarm::node
