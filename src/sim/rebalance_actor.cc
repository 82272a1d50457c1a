#include "sim/rebalance_actor.h"

#include <random>
#include <simgrid/s4u.hpp>

#include "node/rebalancer.h"
#include "sim/actor_clock.h"

namespace swarm::sim {
namespace sg4 = simgrid::s4u;

void run_rebalancer(World* world, int node, int incarnation, MoveNode move) {
  World& w = *world;
  const NodeState& n = w.nodes[node];
  auto still_me = [&] { return n.online && n.incarnation == incarnation; };
  ActorClock clock;
  node::RebalanceOptions o;
  o.interval_s = w.scenario.rebalance.interval_s;
  o.n_layer = w.scenario.model.n_layer;
  o.capacity_layers = w.class_capacity[n.class_index];
  o.public_key_hex = n.address;  // what the simulated records carry as keys (World::snapshot)
  std::mt19937_64 rng(w.rng());
  bool moved = false;
  node::Rebalancer rebalancer(
      clock, [&rng] { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }, o,
      [&] {
        node::Rebalancer::View v;
        v.peers_without_me = w.all_peers(sg4::Engine::get_clock(), node);
        v.current = n.range;
        v.layer_tokens_per_second = 1.0 / w.class_time[n.class_index].seconds(1);
        return v;
      },
      [&](LayerRange target) {
        moved = true;
        move(node, target);
      });
  while (still_me()) {
    sg4::this_actor::sleep_for(
        std::chrono::duration<double>(rebalancer.next_wait()).count());
    if (!still_me()) return;
    rebalancer.check_once();
    if (moved) return;
  }
}

}  // namespace swarm::sim
