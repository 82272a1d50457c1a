// The run's plot: throughput, latency percentiles, time to first token,
// utilisation and recoveries over time, drawn by gnuplot into a PNG.
#pragma once

#include <string>
#include <vector>

#include "engine/status.h"
#include "sim/metrics.h"

namespace swarm::sim {

// Writes DIR/sim.dat and DIR/sim.gp, then runs gnuplot to make DIR/sim.png.
// Unavailable (saying so) when gnuplot is not installed: the caller skips the
// plot, the run's numbers stand.
Status write_plot(const std::vector<WindowStats>& windows, const std::string& dir,
                  const std::string& title);

}  // namespace swarm::sim
