#include "node/batch_plan.h"

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
  int tokens = 0;
  auto take_fitting = [&](bool continuations) {
    for (size_t i : earliest) {
      const QueuedWork& w = queue[i];
      if (w.continuation != continuations) continue;
      if (!plan.batch.empty()) {
        const QueuedWork& head = queue[plan.batch.front()];
        if (tokens + w.tokens > max_batch_tokens || w.first_layer != head.first_layer ||
            w.last_layer != head.last_layer)
          continue;
      }
      tokens += w.tokens;
      plan.batch.push_back(i);
    }
  };
  take_fitting(false);
  take_fitting(true);
  return plan;
}

}  // namespace swarm::node
