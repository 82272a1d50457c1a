// How much of a stage server's compute each session has had lately, for the
// scheduler's fair-share rule (batch_plan.h): while several sessions are
// active, one whose long runs (prompts, replays, or a flood of them) took more
// than an equal share of the node's time lately waits until its share decays,
// so a caller sending prefills non-stop (one that never reads its answers
// included: at the last stage they are too small to ever back its stream up)
// cannot take the compute that other sessions' steps need.
//
// Pure: times are given, in seconds on any monotonic clock. Usage decays
// exponentially with the window as time constant.
#pragma once

#include <cstdint>
#include <map>

namespace swarm::node {

class ComputeShare {
 public:
  explicit ComputeShare(double window_s = 1.0) : window_s_(window_s) {}

  // `seconds` of compute went to `session`'s tokens, ending at `now`.
  void charge(uintptr_t session, double seconds, double now);
  // The fraction of the node's time `session` had over about the last window.
  double share(uintptr_t session, double now) const;
  // Whether `session` had more than an equal share among `active` sessions
  // (itself included); never with fewer than two.
  bool over_share(uintptr_t session, int active, double now) const {
    return active >= 2 && share(session, now) > 1.0 / active;
  }

 private:
  struct Usage {
    double seconds = 0;  // decayed to `at`
    double at = 0;
  };
  double window_s_;
  std::map<uintptr_t, Usage> usage_;
};

}  // namespace swarm::node
