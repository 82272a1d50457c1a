#include "node/compute_share.h"

#include <cmath>

namespace swarm::node {

void ComputeShare::charge(uintptr_t session, double seconds, double now) {
  Usage& u = usage_[session];
  u.seconds = u.seconds * std::exp(-(now - u.at) / window_s_) + seconds;
  u.at = now;
  // Sessions that have had nothing for many windows are forgotten (their
  // keys may name new sessions later).
  for (auto it = usage_.begin(); it != usage_.end();)
    it = now - it->second.at > 20 * window_s_ ? usage_.erase(it) : std::next(it);
}

double ComputeShare::share(uintptr_t session, double now) const {
  auto it = usage_.find(session);
  if (it == usage_.end()) return 0;
  return it->second.seconds * std::exp(-(now - it->second.at) / window_s_) / window_s_;
}

}  // namespace swarm::node
