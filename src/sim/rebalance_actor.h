// A simulated node's rebalance loop: the node code's own Rebalancer
// (node/rebalancer.h), on simulated time, reading the directory the
// simulation keeps (every record, as a node's DHT look-up returns them) and
// moving the node when routing::should_move says so.
#pragma once

#include <functional>

#include "routing/layer_assignment.h"
#include "sim/world.h"

namespace swarm::sim {

// Serve `target` instead: the node leaves its block (its sessions end, their
// callers told at once, as a real node's shutdown resets its streams),
// reloads, and joins again. Runs on the rebalancer's actor.
using MoveNode = std::function<void(int node, LayerRange target)>;

// Checks once per jittered Rebalance::interval_s while incarnation
// `incarnation` of `node` is online; ends after a move (the node's next
// incarnation starts its own).
void run_rebalancer(World* world, int node, int incarnation, MoveNode move);

}  // namespace swarm::sim
