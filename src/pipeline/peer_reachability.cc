#include "pipeline/peer_reachability.h"

#include <algorithm>

namespace swarm {

void PeerReachability::failed(const std::string& key, Clock::time_point asked,
                              Clock::time_point now, bool slow, std::string error) {
  auto [it, fresh] = unreachable_.try_emplace(key);
  Unreachable& u = it->second;
  if (fresh) u.since = asked;
  ++u.failures;
  u.slow = slow;
  u.error = std::move(error);
  // initial x 2^(failures-1), capped; the shift is bounded so it cannot overflow.
  const int doublings = std::min(u.failures - 1, 20);
  const auto backoff = std::min<std::chrono::milliseconds>(
      options_.initial_backoff * (int64_t{1} << doublings), options_.max_backoff);
  u.next_probe = now + backoff;
}

void PeerReachability::reached(const std::string& key) { unreachable_.erase(key); }

void PeerReachability::retain(const std::set<std::string>& keys) {
  std::erase_if(unreachable_, [&](const auto& kv) { return !keys.contains(kv.first); });
}

const PeerReachability::Unreachable* PeerReachability::find(const std::string& key) const {
  auto it = unreachable_.find(key);
  return it == unreachable_.end() ? nullptr : &it->second;
}

bool PeerReachability::survey_asks(const std::string& key) const {
  const Unreachable* u = find(key);
  return u == nullptr || !u->slow;
}

std::vector<std::string> PeerReachability::due(Clock::time_point now) const {
  std::vector<std::string> out;
  for (const auto& [key, u] : unreachable_)
    if (u.slow && u.next_probe <= now) out.push_back(key);
  return out;
}

std::optional<PeerReachability::Clock::time_point> PeerReachability::next_due() const {
  std::optional<Clock::time_point> next;
  for (const auto& [key, u] : unreachable_)
    if (u.slow && (!next || u.next_probe < *next)) next = u.next_probe;
  return next;
}

}  // namespace swarm
