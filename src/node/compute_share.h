// How much of a stage server's compute each caller has had lately, for the
// scheduler's fair-share rule (batch_plan.h, step_scheduler.h): while several
// callers are active, one whose long runs (prompts, replays, or a flood of
// them) took more than its fair share of the node's time lately waits until
// its share decays, so a caller sending prefills non-stop (one that never
// reads its answers included: at the last stage they are too small to ever
// back its stream up) cannot take the compute that others' steps need.
// Keys are callers, not sessions: the sessions of one caller (a gateway's
// users) do not hold each other's prompts back.
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

  // `seconds` of compute went to `key`'s tokens, ending at `now`.
  void charge(uintptr_t key, double seconds, double now);
  // The fraction of the node's time `key` had over about the last window.
  double share(uintptr_t key, double now) const;
  // Whether `key` had more than `fair` (a fraction of the node) lately.
  bool over_share(uintptr_t key, double fair, double now) const { return share(key, now) > fair; }

 private:
  struct Usage {
    double seconds = 0;  // decayed to `at`
    double at = 0;
  };
  double window_s_;
  std::map<uintptr_t, Usage> usage_;
};

}  // namespace swarm::node
