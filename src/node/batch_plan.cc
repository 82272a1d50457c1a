#include "node/batch_plan.h"

#include <algorithm>
#include <set>

namespace swarm::node {

BatchPlan plan_next_batch(std::span<const QueuedWork> queue, int max_batch_tokens) {
  BatchPlan plan;
  // Each open session's earliest step, in queue order; Truncates before it are
  // applied on the way.
  std::vector<size_t> earliest;
  std::set<uintptr_t> seen;  // sessions whose earliest step was found
  for (size_t i = 0; i < queue.size(); ++i) {
    const QueuedWork& w = queue[i];
    if (w.session_closed) {
      plan.dropped.push_back(i);
    } else if (!seen.count(w.session)) {
      if (w.truncate) {
        plan.truncates.push_back(i);
      } else {
        seen.insert(w.session);
        earliest.push_back(i);
      }
    }
  }
  // Room kept for a chunkable step that does not fit whole, so that it makes
  // progress however many small steps keep arriving.
  int reserve = 0;
  for (size_t i : earliest) {
    const QueuedWork& w = queue[i];
    if (w.chunkable && !w.continuation && w.tokens > max_batch_tokens)
      reserve = std::max(reserve, std::max(1, max_batch_tokens / 4));
  }
  int tokens = 0;
  std::vector<size_t> waiting_chunks;
  auto same_range = [&](const QueuedWork& w) {
    const QueuedWork& head = queue[plan.batch.front()];
    return w.first_layer == head.first_layer && w.last_layer == head.last_layer;
  };
  auto add = [&](size_t i, int n) {
    tokens += n;
    plan.batch.push_back(i);
    plan.take.push_back(n);
  };
  auto take_fitting = [&](bool continuations) {
    for (size_t i : earliest) {
      const QueuedWork& w = queue[i];
      if (w.continuation != continuations) continue;
      const bool chunk_later = w.chunkable && tokens + w.tokens > max_batch_tokens;
      if (chunk_later) {
        waiting_chunks.push_back(i);
        continue;
      }
      if (!plan.batch.empty()) {
        const int room = max_batch_tokens - reserve;
        if (tokens + w.tokens > room || !same_range(w)) continue;
      }
      add(i, w.tokens);
    }
  };
  take_fitting(false);
  take_fitting(true);
  for (size_t i : waiting_chunks) {
    const QueuedWork& w = queue[i];
    if (!plan.batch.empty() && !same_range(w)) continue;
    const int room = max_batch_tokens - tokens;
    if (room <= 0) break;
    add(i, std::min(room, w.tokens));
  }
  return plan;
}

}  // namespace swarm::node
