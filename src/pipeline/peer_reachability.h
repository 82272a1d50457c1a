// What the gateway remembers about peers it could not reach: since when, why,
// and when to try each again. A peer whose probe failed fast (the connection was
// refused, or its TLS identity is wrong) costs nothing to ask again, so every
// survey asks it. A peer whose probe ran into the deadline (an address behind
// NAT or a firewall, a stopped process) is set aside: surveys skip it, and it is
// probed again in the background with exponential backoff, so requests do not
// each pay its deadline. Pure: every time is given by the caller.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace swarm {

struct ReachabilityOptions {
  // A set-aside peer is probed again this long after its first failure, then
  // after twice as long each time, at most `max_backoff` apart.
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{30000};
};

class PeerReachability {
 public:
  using Clock = std::chrono::steady_clock;

  struct Unreachable {
    Clock::time_point since;       // when the first failed probe of this run was sent
    Clock::time_point next_probe;  // when a set-aside peer is due again
    int failures = 0;
    bool slow = false;  // the last probe ran into its deadline: set aside
    std::string error;  // the last probe's error
  };

  explicit PeerReachability(ReachabilityOptions options = {}) : options_(options) {}

  // A probe of `key`, sent at `asked`, failed at `now`; `slow` if it waited
  // for its deadline. The peer counts as unreachable since `asked` (for its
  // first failure); backoff runs from `now`.
  void failed(const std::string& key, Clock::time_point asked, Clock::time_point now, bool slow,
              std::string error);
  // A probe of `key` was answered: it is reachable, its failures forgotten.
  void reached(const std::string& key);
  // Forgets every peer not in `keys` (peers no longer known).
  void retain(const std::set<std::string>& keys);

  // Null when `key` has not failed since it last answered.
  const Unreachable* find(const std::string& key) const;
  // Whether a survey should ask `key` now: yes unless it is set aside.
  bool survey_asks(const std::string& key) const;
  // The set-aside peers due for a background probe at `now`.
  std::vector<std::string> due(Clock::time_point now) const;
  // When the next set-aside peer falls due; none if nothing is set aside.
  std::optional<Clock::time_point> next_due() const;

 private:
  const ReachabilityOptions options_;
  std::map<std::string, Unreachable> unreachable_;
};

}  // namespace swarm
