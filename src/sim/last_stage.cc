#include "sim/last_stage.h"

namespace swarm::sim {

void LastStage::cancelled(uint64_t from, uint64_t to) {
  for (auto it = steps_.lower_bound(from); it != steps_.end() && it->first <= to; ++it)
    it->second.cancelled = true;
}

void LastStage::forget_cancelled_before(uint64_t id) {
  for (auto it = steps_.begin(); it != steps_.end() && it->first < id;)
    it = it->second.cancelled ? steps_.erase(it) : std::next(it);
}

bool LastStage::take_up(uint64_t id) {
  forget_cancelled_before(id);
  auto it = steps_.find(id);
  if (it == steps_.end()) return true;
  Sent& s = it->second;
  if (!s.outcome) s.outcome = session_.run(s.step);
  return s.outcome->kind != ScriptedSession::Outcome::Kind::kCancelled;
}

std::optional<v1::StageResponse> LastStage::answer(uint64_t id) {
  forget_cancelled_before(id);
  auto it = steps_.find(id);
  if (it == steps_.end()) return std::nullopt;
  std::optional<v1::StageResponse> r;
  Sent& s = it->second;
  if (!s.cancelled) r = session_.response(s.step, s.outcome ? *s.outcome : session_.run(s.step));
  steps_.erase(it);
  return r;
}

}  // namespace swarm::sim
