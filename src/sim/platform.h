// The simulated network, built in code from a scenario: per region a star zone
// where every node (and the region's gateway) has its own uplink and downlink
// to the region's backbone, and between regions one link per pair whose
// latency follows the scenario's RTT matrix, redrawn every jitter period.
// doc/simulation.md ("Network") gives the latency split.
#pragma once

#include <random>
#include <vector>

#include "sim/scenario.h"

namespace simgrid::s4u {
class Host;
}  // namespace simgrid::s4u

namespace swarm::sim {

struct NodePlacement {
  int class_index = 0;
  int region = 0;
};

struct Platform {
  std::vector<simgrid::s4u::Host*> node_hosts;     // by node index
  std::vector<simgrid::s4u::Host*> gateway_hosts;  // by region
  // With Scenario::machine_cores: the one machine every node computes on
  // (kMachineCoreSpeed flop/s per core, so a second of compute is that many flops).
  simgrid::s4u::Host* machine = nullptr;
};
inline constexpr double kMachineCoreSpeed = 1e9;

// Which class and region each node has, in node order (class by class).
std::vector<NodePlacement> place_nodes(const Scenario& s, std::mt19937_64& rng);

// One-way latency between regions a and b as the routes will have it
// (without jitter): rtt_s[a][b] / 2.
double one_way_latency(const Scenario& s, int a, int b);

// Builds the platform in the process's SimGrid engine (before any actor starts).
Platform build_platform(const Scenario& s, const std::vector<NodePlacement>& nodes,
                        std::mt19937_64& rng);

}  // namespace swarm::sim
