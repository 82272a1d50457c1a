#include "routing/stage_load.h"

#include <algorithm>
#include <cmath>

namespace swarm {

double stage_load(const StageLoadReport& r) {
  const int others = std::max(0, r.reported_sessions - std::max(0, r.own_sessions_reported));
  return others + std::max(0, r.own_sessions_now) + std::max(0, r.reported_queued_steps);
}

double loaded_step_seconds(double step_seconds, double load, double load_weight) {
  if (!(load > 0) || !(load_weight > 0) || !std::isfinite(load_weight)) return step_seconds;
  return step_seconds * (1 + load_weight * load);
}

}  // namespace swarm
