#include "node/step_scheduler.h"

#include <algorithm>

namespace swarm::node {

std::optional<uintptr_t> StepScheduler::sole_caller(std::span<const QueuedWork> queue) {
  if (queue.empty()) return std::nullopt;
  for (const QueuedWork& w : queue)
    if (w.caller != queue.front().caller) return std::nullopt;
  return queue.front().caller;
}

void StepScheduler::session_closed(Clock::time_point last_active, uintptr_t caller) {
  recently_closed_.push_back({last_active, caller});
  if (recently_closed_.size() > kMaxRecentlyClosed) recently_closed_.pop_front();
}

int StepScheduler::active_sessions(std::span<const SessionSeen> open, Clock::time_point now,
                                   const uintptr_t* only_work_from) {
  const Clock::time_point recent = now - kActiveWindow;
  active_by_caller_.clear();
  int active = 0;
  for (const SessionSeen& s : open)
    if (s.last_active > recent) ++active, ++active_by_caller_[s.caller];
  while (!recently_closed_.empty() && recently_closed_.front().last_active <= recent)
    recently_closed_.pop_front();
  for (const SessionSeen& c : recently_closed_) {
    if (c.last_active <= recent || (only_work_from && c.caller == *only_work_from)) continue;
    ++active, ++active_by_caller_[c.caller];
  }
  return active;
}

StepScheduler::Decision StepScheduler::next_batch(std::vector<QueuedWork> queue,
                                                  int max_batch_tokens, int active,
                                                  Clock::time_point now,
                                                  int bulk_chunk_tokens) const {
  // A caller's fair part: its active sessions (at least the one whose work is
  // queued) over all; never over it while it is the only caller active.
  for (QueuedWork& w : queue) {
    auto it = active_by_caller_.find(w.caller);
    const int mine = std::max(1, it == active_by_caller_.end() ? 0 : it->second);
    const bool others = active_by_caller_.size() > (it == active_by_caller_.end() ? 0u : 1u);
    w.over_share = active >= 2 && others &&
                   compute_share_.over_share(w.caller, static_cast<double>(mine) / active,
                                             seconds(now));
  }
  Decision d;
  d.plan = plan_next_batch(queue, max_batch_tokens, active >= 2, bulk_chunk_tokens);
  const BatchPlan& p = d.plan;
  const bool none_runs =
      p.batch.empty() && p.truncates.empty() && p.dropped.empty() && !queue.empty();
  const bool all_stalled =
      std::all_of(queue.begin(), queue.end(), [](const QueuedWork& w) { return w.stalled; });
  d.waiting_on_shares = none_runs && !all_stalled;
  d.waiting_on_answers = none_runs && all_stalled;
  // Charged when it runs beside, or ahead of, another session's work, or
  // while other sessions are active (their next steps are on their way: a
  // caller whose prompts fill the gaps between their steps would otherwise
  // take most of the node uncharged).
  d.contended = active >= 2;
  if (!p.batch.empty()) {
    const uintptr_t first = queue[p.batch.front()].session;
    std::vector<bool> leaves(queue.size(), false);
    for (const auto* list : {&p.dropped, &p.truncates, &p.batch})
      for (size_t i : *list) leaves[i] = true;
    for (size_t i : p.batch) d.contended = d.contended || queue[i].session != first;
    for (size_t i = 0; i < queue.size(); ++i)
      d.contended = d.contended || (!leaves[i] && queue[i].session != first);
  }
  return d;
}

void StepScheduler::batch_ran(std::span<const std::pair<uintptr_t, int>> tokens, double took_s,
                              Clock::time_point ended, bool contended) {
  if (!contended) return;
  int total = 0;
  for (const auto& [caller, n] : tokens) total += n;
  // Each caller is charged the batch's time in proportion to its tokens.
  for (const auto& [caller, n] : tokens)
    compute_share_.charge(caller, took_s * n / std::max(1, total), seconds(ended));
}

}  // namespace swarm::node
