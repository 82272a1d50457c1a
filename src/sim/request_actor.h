// A simulated request at a gateway: routes it with routing::choose_chain over
// the gateway's view of the swarm, sends its prompt, then decodes step by step
// (speculating as pipeline/spec_controller.h plans), and when a step is
// overdue (pipeline/step_deadline.h) probes the chain and, if a stage is gone,
// replays the request on another chain (a recovery).
#pragma once

#include <cstdint>

namespace swarm::sim {

struct World;

struct RequestSpec {
  int64_t id = 0;
  int region = 0;  // the gateway it arrives at
  int prompt_tokens = 1;
  int output_tokens = 1;
  double arrival_s = 0;
};

// The actor body of one request; returns when it completed or gave up.
void run_request(World* world, RequestSpec spec);

}  // namespace swarm::sim
