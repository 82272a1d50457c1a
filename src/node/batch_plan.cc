#include "node/batch_plan.h"

#include <algorithm>
#include <set>

namespace swarm::node {

BatchPlan plan_next_batch(std::span<const QueuedWork> queue, int max_batch_tokens,
                          bool others_active, int bulk_chunk_tokens) {
  BatchPlan plan;
  // Each open session's earliest step, in queue order; Truncates before it are
  // applied on the way.
  std::vector<size_t> earliest;
  std::set<uintptr_t> seen;  // sessions whose earliest step was found
  for (size_t i = 0; i < queue.size(); ++i) {
    const QueuedWork& w = queue[i];
    if (w.session_closed) {
      plan.dropped.push_back(i);
    } else if (!w.stalled && !seen.count(w.session)) {
      if (w.truncate) {
        plan.truncates.push_back(i);
      } else {
        seen.insert(w.session);
        earliest.push_back(i);
      }
    }
  }
  // A bulk step (a chunkable run longer than a chunk: a prompt, a replay)
  // runs beside other sessions' steps a chunk at a time, so their latency
  // stays that of a small batch; alone, it takes whole batches. A chunk is
  // an eighth of the batch, or less where the caller measured that an eighth
  // takes longer than others' steps should wait.
  const int eighth = std::max(1, max_batch_tokens / 8);
  const int share = bulk_chunk_tokens > 0 ? std::min(bulk_chunk_tokens, eighth) : eighth;
  // Bulk work of a session over its fair share waits (and its session's
  // later items behind it).
  std::erase_if(earliest, [&](size_t i) {
    const QueuedWork& w = queue[i];
    return w.over_share && w.chunkable && !w.continuation && w.tokens > share;
  });
  // Audit runs wait while anyone else's step can run.
  if (std::any_of(earliest.begin(), earliest.end(), [&](size_t i) { return !queue[i].background; }))
    std::erase_if(earliest, [&](size_t i) { return queue[i].background; });
  // While one waits, the others leave it that chunk.
  auto bulk = [&](const QueuedWork& w) {
    return w.chunkable && !w.continuation && w.tokens > share;
  };
  int reserve = 0;
  for (size_t i : earliest)
    if (bulk(queue[i])) reserve = share;
  int tokens = 0;
  std::vector<size_t> waiting_bulk;
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
      if (bulk(w)) {
        waiting_bulk.push_back(i);
        continue;
      }
      if (!plan.batch.empty()) {
        if (tokens + w.tokens > max_batch_tokens - reserve || !same_range(w)) continue;
      }
      add(i, w.tokens);
    }
  };
  take_fitting(false);
  take_fitting(true);
  const bool others = !plan.batch.empty() || others_active;
  for (size_t i : waiting_bulk) {
    const QueuedWork& w = queue[i];
    if (!plan.batch.empty() && !same_range(w)) continue;
    const int room = max_batch_tokens - tokens;
    if (room <= 0) break;
    add(i, std::min({room, w.tokens, others ? share : max_batch_tokens}));
  }
  return plan;
}

}  // namespace swarm::node
