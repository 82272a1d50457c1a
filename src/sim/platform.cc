#include "sim/platform.h"

#include <algorithm>
#include <simgrid/kernel/ProfileBuilder.hpp>
#include <simgrid/s4u.hpp>
#include <sstream>

namespace swarm::sim {
namespace sg4 = simgrid::s4u;

std::vector<NodePlacement> place_nodes(const Scenario& s, std::mt19937_64& rng) {
  std::vector<NodePlacement> out;
  const size_t R = s.network.regions.size();
  for (size_t ci = 0; ci < s.classes.size(); ++ci) {
    const NodeClass& c = s.classes[ci];
    std::vector<double> w(R, c.region_weights.empty() ? 1.0 : 0.0);
    for (const auto& [name, weight] : c.region_weights)
      for (size_t r = 0; r < R; ++r)
        if (s.network.regions[r].name == name) w[r] = weight;
    if (std::all_of(w.begin(), w.end(), [](double x) { return x <= 0; })) w.assign(R, 1.0);
    std::discrete_distribution<int> pick(w.begin(), w.end());
    for (int i = 0; i < c.count; ++i) out.push_back({static_cast<int>(ci), pick(rng)});
  }
  return out;
}

double one_way_latency(const Scenario& s, int a, int b) { return s.network.rtt_s[a][b] / 2; }

namespace {

// Latency of a host's access link: a quarter of its region's own RTT (up at
// one end, down at the other make one way).
double access_latency(const Scenario& s, int r) { return s.network.rtt_s[r][r] / 4; }

// The latency profile of a region pair: base x (1 + U(-j, j)) every period,
// over the run, then repeating.
simgrid::kernel::profile::Profile* jitter_profile(const std::string& name, double base,
                                                  const Scenario& s, std::mt19937_64& rng) {
  const double period = s.network.jitter_period_s;
  const int points = static_cast<int>(std::min(20000.0, std::ceil(s.duration_s / period) + 1));
  std::uniform_real_distribution<double> u(-s.network.jitter, s.network.jitter);
  std::ostringstream text;
  for (int i = 0; i < points; ++i)
    text << i * period << " " << std::max(0.0, base * (1 + u(rng))) << "\n";
  return simgrid::kernel::profile::ProfileBuilder::from_string(name, text.str(), points * period);
}

}  // namespace

Platform build_platform(const Scenario& s, const std::vector<NodePlacement>& nodes,
                        std::mt19937_64& rng) {
  Platform p;
  const int R = static_cast<int>(s.network.regions.size());
  sg4::NetZone* world = sg4::create_full_zone("world");
  std::vector<sg4::NetZone*> zones(R);
  std::vector<simgrid::kernel::routing::NetPoint*> routers(R);
  std::vector<std::vector<int>> by_region(R);
  for (size_t i = 0; i < nodes.size(); ++i)
    by_region[nodes[i].region].push_back(static_cast<int>(i));
  p.node_hosts.assign(nodes.size(), nullptr);
  p.gateway_hosts.assign(R, nullptr);
  // A static per-host share of the jitter: homes differ in their last mile.
  std::uniform_real_distribution<double> u(-s.network.jitter, s.network.jitter);

  auto attach = [](sg4::NetZone* zone, sg4::Host* h, double up_bps, double down_bps,
                   double latency) {
    sg4::Link* up =
        zone->create_link(h->get_name() + "-up", up_bps / 8)->set_latency(latency)->seal();
    sg4::Link* down =
        zone->create_link(h->get_name() + "-down", down_bps / 8)->set_latency(latency)->seal();
    zone->add_route(h->get_netpoint(), nullptr, nullptr, nullptr, {sg4::LinkInRoute(up)}, false);
    zone->add_route(nullptr, h->get_netpoint(), nullptr, nullptr, {sg4::LinkInRoute(down)}, false);
  };
  for (int r = 0; r < R; ++r) {
    zones[r] = sg4::create_star_zone("region-" + s.network.regions[r].name);
    zones[r]->set_parent(world);
    routers[r] = zones[r]->create_router("router-" + std::to_string(r));
    const double lat = access_latency(s, r);
    sg4::Host* gw = zones[r]->create_host("gateway-" + std::to_string(r), 1e9);
    attach(zones[r], gw, s.network.gateway_bps, s.network.gateway_bps, lat);
    p.gateway_hosts[r] = gw;
    for (int i : by_region[r]) {
      const NodeClass& c = s.classes[nodes[i].class_index];
      sg4::Host* h = zones[r]->create_host("node-" + std::to_string(i), 1e9);
      attach(zones[r], h, c.uplink_bps, c.downlink_bps, std::max(0.0, lat * (1 + u(rng))));
      p.node_hosts[i] = h;
    }
    if (r == 0 && s.machine_cores > 0) {
      // Not on any route: only executions run on it.
      p.machine = zones[r]->create_host("machine", kMachineCoreSpeed);
      p.machine->set_core_count(s.machine_cores);
    }
    zones[r]->seal();
  }
  for (int a = 0; a < R; ++a) {
    for (int b = a + 1; b < R; ++b) {
      const double base =
          std::max(0.0, one_way_latency(s, a, b) - access_latency(s, a) - access_latency(s, b));
      const std::string name = "backbone-" + std::to_string(a) + "-" + std::to_string(b);
      sg4::Link* l = world->create_link(name, s.network.backbone_bps / 8)->set_latency(base);
      if (s.network.jitter > 0 && base > 0)
        l->set_latency_profile(jitter_profile(name, base, s, rng));
      l->seal();
      world->add_route(zones[a]->get_netpoint(), zones[b]->get_netpoint(), routers[a], routers[b],
                       {sg4::LinkInRoute(l)}, true);
    }
  }
  world->seal();
  return p;
}

}  // namespace swarm::sim
