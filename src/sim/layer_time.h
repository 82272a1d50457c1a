// How long a node class takes to run one layer for a batch of b tokens, t(b),
// and how many layers fit in its memory. From measured points when the
// scenario gives them (interpolated by the same rule the speculation controller
// uses, pipeline/spec_controller.h's stage_time_table), else from the named
// hardware's figures as a roofline (doc/simulation.md, "Compute time"):
//   t(b) = overhead + max(bytes_per_layer / (bandwidth x memory_efficiency),
//                         b x flops_per_token_layer / (peak_flops x compute_efficiency))
#pragma once

#include <vector>

#include "sim/scenario.h"

namespace swarm::sim {

class LayerTime {
 public:
  LayerTime(const NodeClass& c, const ModelShape& m);
  // Measured points only (e.g. a head's time over b rows); none: always 0.
  LayerTime(const std::vector<std::pair<int, double>>& points, int max_batch);
  // Seconds for one layer and a batch of `b` >= 1 tokens; from points, beyond
  // the measured table linear along its last slope.
  double seconds(int b) const;

 private:
  std::vector<double> table_;  // t(1..n), from measured points
  // The roofline's terms, when no points are given.
  double memory_s_ = 0, flop_s_ = 0, overhead_s_ = 0;
};

// Layers a node of class `c` holds: memory x usable fraction over the bytes of
// one layer, at most max_layers (when set) and n_layer, at least 0.
int capacity_layers(const NodeClass& c, const ModelShape& m);

}  // namespace swarm::sim
