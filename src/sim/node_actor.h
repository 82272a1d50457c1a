// A simulated node: receives steps in its mailbox, batches them with the
// stage server's own scheduling rule (node/batch_plan.h), spends the batch's
// compute time t(b) x layers, and pushes each finished step to the next hop,
// or its tokens back to the gateway after the last stage.
#pragma once

namespace swarm::sim {
struct World;
// The actor body of node `node`'s current incarnation.
void run_node(World* world, int node);
}  // namespace swarm::sim
