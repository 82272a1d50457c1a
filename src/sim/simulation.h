// One simulation run: builds the platform from the scenario, starts the nodes
// (each choosing its layers as a joining node does), the request arrivals,
// churn, and a ticker that closes a metrics window every window_s; runs
// SimGrid until the scenario's duration. SimGrid allows one engine per process:
// run_simulation may be called once per process (tests fork).
#pragma once

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/status.h"
#include "sim/metrics.h"
#include "sim/scenario.h"

namespace swarm::sim {

struct SimResult {
  std::vector<WindowStats> windows;
  std::vector<std::string> lines;  // one JSON line per window, then the summary line
  int nodes = 0;
  double wall_s = 0;
};

// `on_line` (optional) receives each JSON line as soon as it is known.
Result<SimResult> run_simulation(const Scenario& scenario,
                                 const std::function<void(const std::string&)>& on_line = {});

// Lengths drawn from a distribution (at least 1).
int draw_length(const LengthDist& d, std::mt19937_64& rng);

}  // namespace swarm::sim
