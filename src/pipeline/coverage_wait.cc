#include "pipeline/coverage_wait.h"

#include <algorithm>

namespace swarm {

NoRouteStep next_no_route_step(const NoRouteView& v, const CoverageWaitOptions& o) {
  // Look again at once: the swarm may have changed since the last look (a node
  // came up, a record appeared), and that costs one look, not a wait.
  if (v.last_look < v.request_arrived) return {NoRouteAction::kLookNow, v.now};
  const auto deadline = v.request_arrived + o.max_wait;
  if (v.now >= deadline) return {NoRouteAction::kRefuse, v.now};
  const bool young_gap = v.gap_nobody_announces && v.now - v.gateway_started < o.startup;
  const bool peer_coming =
      v.newest_unreachable_since && v.now - *v.newest_unreachable_since < o.settle;
  if (!young_gap && !peer_coming) return {NoRouteAction::kRefuse, v.now};
  const auto next_look = v.last_look + o.relook_every;
  if (v.now >= next_look) return {NoRouteAction::kLookNow, v.now};
  return {NoRouteAction::kWait, std::min(next_look, deadline)};
}

}  // namespace swarm
