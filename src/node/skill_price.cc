#include "node/skill_price.h"

#include <algorithm>
#include <cmath>

namespace swarm::node {

double skill_load(const SkillLoadNow& now) {
  const double capacity = static_cast<double>(std::max<int64_t>(1, now.capacity));
  return static_cast<double>(std::max<int64_t>(0, now.active) + std::max<int64_t>(0, now.queued)) /
         capacity;
}

double announced_price(double base_price, double load) {
  if (!(base_price > 0)) return 0;
  const double multiplier = std::clamp(0.5 + (std::isfinite(load) ? load : 0.0), 0.5, 3.0);
  return base_price * multiplier;
}

bool price_moved(double announced, double now) {
  if (announced == now) return false;
  if (announced <= 0) return true;
  return std::fabs(now - announced) >= 0.1 * announced * (1 - 1e-9);  // 0.9 is 10% off 1.0
}

}  // namespace swarm::node
