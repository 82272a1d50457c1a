#include "sim/world.h"

#include <algorithm>
#include <cstdlib>
#include <simgrid/s4u/Actor.hpp>
#include <simgrid/s4u/Exec.hpp>
#include <simgrid/s4u/Mailbox.hpp>

namespace swarm::sim {

World::World(Scenario s, std::vector<NodePlacement> place, Platform plat)
    : scenario(std::move(s)),
      placement(std::move(place)),
      platform(std::move(plat)),
      metrics(scenario.window_s),
      rng(scenario.seed) {
  for (const NodeClass& c : scenario.classes) {
    class_time.emplace_back(c, scenario.model);
    class_head_time.emplace_back(c.head_time_points, c.max_batch_tokens);
    class_capacity.push_back(capacity_layers(c, scenario.model));
  }
  nodes.resize(placement.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    nodes[i].class_index = placement[i].class_index;
    nodes[i].region = placement[i].region;
  }
  for (size_t r = 0; r < scenario.network.regions.size(); ++r)
    gateways.push_back(std::make_unique<GatewayState>());
}

void World::compute(double seconds) const {
  namespace sg4 = simgrid::s4u;
  if (seconds <= 0) return;
  if (!platform.machine) {
    sg4::this_actor::sleep_for(seconds);
    return;
  }
  sg4::ExecPtr exec = sg4::this_actor::exec_init(seconds * kMachineCoreSpeed);
  exec->set_host(platform.machine);
  exec->start();
  exec->wait();
}

int World::node_of(const std::string& address, int* incarnation) const {
  // "node-<index>.<incarnation>"
  if (address.rfind("node-", 0) != 0) return -1;
  char* end = nullptr;
  const long i = std::strtol(address.c_str() + 5, &end, 10);
  if (*end != '.' || i < 0 || i >= static_cast<long>(nodes.size())) return -1;
  if (incarnation) *incarnation = static_cast<int>(std::strtol(end + 1, nullptr, 10));
  return static_cast<int>(i);
}

PeerSnapshot World::snapshot(int i, int gateway_region, double now) const {
  const NodeState& n = nodes[i];
  PeerSnapshot p;
  p.address = n.address;
  p.model_id = kModelId;
  p.first_layer = n.range.first;
  p.last_layer = n.range.last;
  p.n_layer = scenario.model.n_layer;
  p.layer_tokens_per_second = 1.0 / class_time[n.class_index].seconds(1);
  p.rtt_seconds = gateway_region >= 0 ? scenario.network.rtt_s[gateway_region][n.region] : 0;
  int active = 0;
  for (const auto& [session, seen] : n.last_seen) active += now - seen.at_s < 2.0;
  p.active_sessions = active;
  p.queued_steps = n.queued_steps;
  p.node_id = n.address;
  p.public_key = n.address;  // a node's key, as far as ordering a block's nodes goes
  return p;
}

std::vector<PeerSnapshot> World::all_peers(double now, int except) const {
  std::vector<PeerSnapshot> out;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const NodeState& n = nodes[i];
    if (static_cast<int>(i) == except || n.address.empty()) continue;
    if (!n.online && now - n.left_at_s > scenario.churn.record_ttl_s) continue;
    out.push_back(snapshot(static_cast<int>(i), -1, now));
  }
  return out;
}

const std::vector<PeerSnapshot>& World::gateway_peers(int region, double now) {
  GatewayState& g = *gateways[region];
  if (now - g.surveyed_at_s >= scenario.survey_interval_s) {
    g.peers.clear();
    for (size_t i = 0; i < nodes.size(); ++i) {
      const NodeState& n = nodes[i];
      if (n.address.empty()) continue;
      if (!n.online && now - n.left_at_s > scenario.churn.record_ttl_s) continue;
      g.peers.push_back(snapshot(static_cast<int>(i), region, now));
    }
    g.surveyed_at_s = now;
    g.own_sessions_surveyed = g.own_sessions;
  }
  for (PeerSnapshot& p : g.peers) {
    auto own = g.own_sessions.find(p.address);
    p.own_sessions = own == g.own_sessions.end() ? 0 : own->second;
    auto then = g.own_sessions_surveyed.find(p.address);
    p.own_sessions_reported = then == g.own_sessions_surveyed.end() ? 0 : then->second;
    auto it = g.failed_until.find(p.address);
    p.recently_failed = it != g.failed_until.end() && it->second > now;
  }
  return g.peers;
}

LayerRange World::choose_range(int node, double now) {
  const int cap = class_capacity[nodes[node].class_index];
  const double speed = 1.0 / class_time[nodes[node].class_index].seconds(1);
  Result<LayerRange> r = choose_layers(all_peers(now, node), scenario.model.n_layer, cap, speed);
  return r.ok() ? *r : LayerRange{0, cap};
}

void World::join(int node, double now, LayerRange range) {
  NodeState& n = nodes[node];
  n.incarnation++;
  n.online = true;
  n.range = range;
  n.address = "node-" + std::to_string(node) + "." + std::to_string(n.incarnation);
  n.mailbox = simgrid::s4u::Mailbox::by_name(n.address);
  n.queued_steps = 0;
  n.last_seen.clear();
  n.busy_ewma = 0;
  n.busy_since_s = now;
  n.busy_acc_s = 0;
  online_count++;
}

void World::leave(int node, double now) {
  NodeState& n = nodes[node];
  if (!n.online) return;
  n.online = false;
  n.left_at_s = now;
  // Messages sent to it from now on wait in its mailbox, undelivered.
  if (n.mailbox) n.mailbox->set_receiver(nullptr);
  online_count--;
}

void World::count_own_sessions(int region, const Chain& chain, int delta) {
  GatewayState& g = *gateways[region];
  for (const Hop& h : chain.hops) {
    int& n = g.own_sessions[h.address];
    n = std::max(0, n + delta);
    if (n == 0) g.own_sessions.erase(h.address);
  }
}

void World::add_busy(int node, double now, double seconds) {
  NodeState& n = nodes[node];
  n.busy_acc_s += seconds;
  const double span = now - n.busy_since_s;
  if (span >= 1.0) {  // one-second samples, smoothed over a few
    n.busy_ewma = 0.5 * n.busy_ewma + 0.5 * std::min(1.0, n.busy_acc_s / span);
    n.busy_acc_s = 0;
    n.busy_since_s = now;
  }
  metrics.busy(now, seconds, node);
}

double batch_seconds(const World& w, int node, int b, int layers, int head_rows) {
  const int c = w.nodes[node].class_index;
  double s = layers * w.class_time[c].seconds(b) + w.scenario.classes[c].step_overhead_s;
  if (head_rows > 0 && !w.scenario.classes[c].head_time_points.empty())
    s += w.class_head_time[c].seconds(head_rows);
  return s;
}

}  // namespace swarm::sim
