#include "node/step_scheduler.h"

#include <algorithm>

namespace swarm::node {

void StepScheduler::session_closed(Clock::time_point last_active, std::string connection) {
  recently_closed_.push_back({last_active, std::move(connection)});
  if (recently_closed_.size() > kMaxRecentlyClosed) recently_closed_.pop_front();
}

int StepScheduler::active_sessions(std::span<const Clock::time_point> open_last_active,
                                   Clock::time_point now, const std::string* only_work_from) {
  const Clock::time_point recent = now - kActiveWindow;
  int active = 0;
  for (Clock::time_point t : open_last_active) active += t > recent;
  while (!recently_closed_.empty() && recently_closed_.front().last_active <= recent)
    recently_closed_.pop_front();
  active += static_cast<int>(std::count_if(
      recently_closed_.begin(), recently_closed_.end(), [&](const Closed& c) {
        return c.last_active > recent && !(only_work_from && c.connection == *only_work_from);
      }));
  return active;
}

StepScheduler::Decision StepScheduler::next_batch(std::vector<QueuedWork> queue,
                                                  int max_batch_tokens, int active,
                                                  Clock::time_point now) const {
  for (QueuedWork& w : queue)
    w.over_share = compute_share_.over_share(w.session, active, seconds(now));
  Decision d;
  d.plan = plan_next_batch(queue, max_batch_tokens, active >= 2);
  const BatchPlan& p = d.plan;
  d.waiting_on_shares =
      p.batch.empty() && p.truncates.empty() && p.dropped.empty() && !queue.empty();
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
  for (const auto& [session, n] : tokens) total += n;
  // Each session is charged the batch's time in proportion to its tokens.
  for (const auto& [session, n] : tokens)
    compute_share_.charge(session, took_s * n / std::max(1, total), seconds(ended));
}

}  // namespace swarm::node
