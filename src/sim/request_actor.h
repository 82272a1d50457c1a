// A simulated request at a gateway, run by the gateway's own code: it routes
// with routing::choose_chain over the gateway's view of the swarm, then a
// pipeline ChainSession (over a SimTransport, on the actor's clock) sends the
// prompt and decodes, plainly or with the speculation driver and controller
// (pipeline/speculative_decoder.h) when speculation is on, with the step
// deadlines of pipeline/step_deadline.h. When a stage fails (a step overdue
// and a silent stage probed, or its connection reset), the request is routed
// anew around it and replayed on the new chain (a recovery), as
// PipelineBackend does.
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
  bool counted = true;  // false: a warm-up, left out of the run's records
};

// The actor body of one request; returns when it completed or gave up.
void run_request(World* world, RequestSpec spec);

}  // namespace swarm::sim
