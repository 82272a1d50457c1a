// The price a skill provider announces: its owner's base price, moved by its
// load so that busy providers cost more and idle ones less, which spreads
// price-aware traffic across providers (doc/skills.md, "Dynamic prices").
// Pure: the caller measures the load.
#pragma once

#include <cstdint>

namespace swarm::node {

struct SkillLoadNow {
  int64_t capacity = 1;  // requests served at once
  int64_t active = 0;    // served now
  int64_t queued = 0;    // waiting now
};

// The load the price follows: (active + queued) / capacity, 0 when idle, 1 at
// capacity, above 1 with a queue.
double skill_load(const SkillLoadNow& now);

// base x clamp(0.5 + load, 0.5, 3): half the base price when idle, the base at
// half capacity, 1.5x at capacity, and up to 3x with a queue twice the
// capacity or more. A base of 0 (free) stays 0.
double announced_price(double base_price, double load);

// Whether a price change is worth a new announcement before the periodic one:
// a move of 10% or more from what was last announced (either way, or from 0).
bool price_moved(double announced, double now);

}  // namespace swarm::node
