#include "sim/simulation.h"

#include <xbt/log.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <simgrid/s4u.hpp>

#include "sim/node_actor.h"
#include "sim/rebalance_actor.h"
#include "sim/request_actor.h"
#include "sim/world.h"

namespace swarm::sim {
namespace sg4 = simgrid::s4u;

int draw_length(const LengthDist& d, std::mt19937_64& rng) {
  double v = d.value;
  if (d.kind == "uniform") {
    v = std::uniform_int_distribution<int>(static_cast<int>(d.min), static_cast<int>(d.max))(rng);
  } else if (d.kind == "exponential") {
    v = std::exponential_distribution<double>(1.0 / d.mean)(rng);
  }
  return std::max(1, static_cast<int>(std::lround(v)));
}

namespace {

struct ChurnEvent {
  double at_s;
  int node;
  bool join;
  bool reset = false;  // a kill whose connections are reset: callers know at once
};

// Every leave and rejoin of the run, in time order: sessions online and
// downtimes exponential, and the scenario's scheduled kills.
std::vector<ChurnEvent> churn_events(const Scenario& s, size_t nodes, std::mt19937_64& rng) {
  std::vector<ChurnEvent> ev;
  if (s.churn.enabled) {
    std::exponential_distribution<double> session(1.0 / s.churn.mean_session_s);
    for (size_t i = 0; i < nodes; ++i) {
      double t = session(rng);
      while (t < s.duration_s) {
        ev.push_back({t, static_cast<int>(i), false});
        if (s.churn.mean_downtime_s <= 0) break;
        t += std::exponential_distribution<double>(1.0 / s.churn.mean_downtime_s)(rng);
        if (t >= s.duration_s) break;
        ev.push_back({t, static_cast<int>(i), true});
        t += session(rng);
      }
    }
  }
  for (const Scenario::Kill& k : s.kills) ev.push_back({k.at_s, k.node, false, k.reset});
  std::stable_sort(ev.begin(), ev.end(),
                   [](const ChurnEvent& a, const ChurnEvent& b) { return a.at_s < b.at_s; });
  return ev;
}

// A killed process's kernel resets its connections: every request whose
// chain goes through it hears so at once.
void tell_reset(World& w, int node, int incarnation) {
  for (const auto& [id, live] : w.live_requests) {
    int through = -1;
    for (size_t i = 0; i < live.chain->hops.size(); ++i) {
      const Hop& h = live.chain->hops[i];
      if (h.node == node && h.incarnation == incarnation) through = static_cast<int>(i);
    }
    if (through < 0) continue;
    auto* s = new Step;
    s->chain = live.chain;
    s->hop = through;  // which stage
    s->seq = kResetSeq;
    live.mailbox->put_init(s, 64)->detach();
  }
}

void start_node(World& w, int i, double now, LayerRange range);

// A rebalancing node's move: it leaves its block as a shutdown does (callers
// hear at once), reads the new block's weights, and joins again.
void move_node(World* w, int node, LayerRange target) {
  NodeState& n = w->nodes[node];
  const int incarnation = n.incarnation;
  w->leave(node, sg4::Engine::get_clock());
  if (n.actor) n.actor->kill();
  tell_reset(*w, node, incarnation);
  w->metrics.rebalance_move(sg4::Engine::get_clock());
  const double bytes = static_cast<double>(target.last - target.first) *
                       w->scenario.model.bytes_per_layer;
  sg4::this_actor::sleep_for(bytes / (w->scenario.rebalance.load_gbps * 1e9));
  start_node(*w, node, sg4::Engine::get_clock(), target);
}

void start_node(World& w, int i, double now, LayerRange range) {
  w.join(i, now, range);
  w.nodes[i].actor = sg4::Actor::create(w.nodes[i].address, w.platform.node_hosts[i], run_node, &w, i);
  // Nodes given their layers (--layers) keep them; the others re-check.
  if (w.scenario.rebalance.interval_s > 0 && w.scenario.fixed_ranges.empty())
    sg4::Actor::create("rebalance-" + w.nodes[i].address, w.platform.node_hosts[i], run_rebalancer,
                       &w, i, w.nodes[i].incarnation,
                       MoveNode([&w](int node, LayerRange target) { move_node(&w, node, target); }));
}

void run_churn(World* w, std::vector<ChurnEvent> events) {
  for (const ChurnEvent& e : events) {
    sg4::this_actor::sleep_until(e.at_s);
    const double now = sg4::Engine::get_clock();
    sg4::Host* h = w->platform.node_hosts[e.node];
    if (!e.join) {
      if (!w->nodes[e.node].online) continue;
      const int incarnation = w->nodes[e.node].incarnation;
      w->leave(e.node, now);
      h->turn_off();
      if (e.reset) tell_reset(*w, e.node, incarnation);
    } else if (!w->nodes[e.node].online) {
      h->turn_on();
      start_node(*w, e.node, now, w->choose_range(e.node, now));
    }
  }
}

int pick_region(World& w) {
  std::vector<double> weights;
  for (const Region& r : w.scenario.network.regions) weights.push_back(r.gateway_weight);
  if (std::accumulate(weights.begin(), weights.end(), 0.0) <= 0) weights.assign(weights.size(), 1);
  return std::discrete_distribution<int>(weights.begin(), weights.end())(w.rng);
}

RequestSpec new_request(World& w) {
  RequestSpec r;
  r.id = w.next_request++;
  r.region = pick_region(w);
  r.prompt_tokens = draw_length(w.scenario.requests.prompt, w.rng);
  r.output_tokens = draw_length(w.scenario.requests.output, w.rng);
  r.arrival_s = sg4::Engine::get_clock();
  return r;
}

void run_arrivals(World* w) {
  std::exponential_distribution<double> gap(w->scenario.requests.arrival_rate);
  for (;;) {
    sg4::this_actor::sleep_for(gap(w->rng));
    if (sg4::Engine::get_clock() >= w->scenario.duration_s) return;
    RequestSpec r = new_request(*w);
    sg4::Actor::create("request-" + std::to_string(r.id), w->platform.gateway_hosts[r.region],
                       run_request, w, r);
  }
}

// A closed-loop stream: one request after another, as `swarm loadgen` does.
// With Requests::total, the streams start that many in all and the last
// stream to finish ends the run.
void run_stream(World* w) {
  const int total = w->scenario.requests.total;
  for (;;) {
    if (total > 0 && w->stream_requests_started >= total) break;
    w->stream_requests_started++;
    RequestSpec r = new_request(*w);
    sg4::Actor::create("request-" + std::to_string(r.id), w->platform.gateway_hosts[r.region],
                       run_request, w, r)
        ->join();
    if (sg4::Engine::get_clock() >= w->scenario.duration_s) break;
  }
  if (--w->streams_running == 0 && total > 0 && w->end_run) w->end_run(sg4::Engine::get_clock());
}

void run_ticker(World* w, std::function<void(const std::string&)> emit,
                std::vector<std::string>* lines) {
  for (int k = 1;; ++k) {
    const double end = std::min(w->scenario.duration_s, k * w->scenario.window_s);
    sg4::this_actor::sleep_until(end);
    const WindowStats& ws = w->metrics.close_window(end, w->online_count);
    lines->push_back(window_json(ws));
    if (emit) emit(lines->back());
    if (end >= w->scenario.duration_s) break;
  }
  sg4::Actor::kill_all();
}

}  // namespace

Result<SimResult> run_simulation(const Scenario& scenario,
                                 const std::function<void(const std::string&)>& on_line) {
  const auto wall0 = std::chrono::steady_clock::now();
  int argc = 1;
  char arg0[] = "swarm-sim";
  char* argv[] = {arg0, nullptr};
  sg4::Engine engine(&argc, argv);
  xbt_log_control_set("root.thresh:critical");
  engine.set_config("network/model:CM02");  // latency and bandwidth as given, no TCP fudge factors
  engine.set_config("network/crosstraffic:0");  // acknowledgements are not modelled

  std::mt19937_64 rng(scenario.seed);
  std::vector<NodePlacement> placement = place_nodes(scenario, rng);
  Platform platform = build_platform(scenario, placement, rng);
  World w(scenario, placement, platform);
  w.rng.seed(rng());

  // Nodes join in a random order; each picks its layers from what the
  // earlier ones serve (or takes the scenario's fixed range).
  std::vector<int> order(placement.size());
  std::iota(order.begin(), order.end(), 0);
  if (scenario.fixed_ranges.empty()) std::shuffle(order.begin(), order.end(), w.rng);
  for (int i : order) {
    if (w.class_capacity[w.nodes[i].class_index] < 1) continue;
    LayerRange r = scenario.fixed_ranges.empty() ? w.choose_range(i, 0)
                                                 : LayerRange{scenario.fixed_ranges[i].first,
                                                              scenario.fixed_ranges[i].second};
    start_node(w, i, 0, r);
  }
  sg4::Host* control = platform.gateway_hosts[0];
  SimResult result;
  result.nodes = static_cast<int>(placement.size());
  sg4::Actor::create("churn", control, run_churn, &w,
                     churn_events(scenario, placement.size(), w.rng));
  if (scenario.requests.arrival_rate > 0) sg4::Actor::create("arrivals", control, run_arrivals, &w);
  w.streams_running = scenario.requests.streams;
  bool ended = false;
  w.end_run = [&](double now) {
    // The last window ends with the run; the other actors stop.
    if (ended) return;
    ended = true;
    result.lines.push_back(window_json(w.metrics.close_window(now, w.online_count)));
    if (on_line) on_line(result.lines.back());
    sg4::Actor::kill_all();
  };
  auto start_streams = [&w, control] {
    for (int i = 0; i < w.scenario.requests.streams; ++i) {
      // Streams are spread over the gateways by their weights.
      sg4::Actor::create("stream-" + std::to_string(i), control, run_stream, &w);
    }
  };
  if (scenario.requests.warmup_output > 0 && scenario.requests.streams > 0) {
    sg4::Actor::create("warmup", control, [&w, start_streams] {
      RequestSpec r = new_request(w);
      r.output_tokens = w.scenario.requests.warmup_output;
      r.counted = false;
      sg4::Actor::create("request-" + std::to_string(r.id), w.platform.gateway_hosts[r.region],
                         run_request, &w, r)
          ->join();
      start_streams();
    });
  } else {
    start_streams();
  }
  sg4::Actor::create("ticker", control, run_ticker, &w, on_line, &result.lines);
  engine.run();

  result.windows = w.metrics.windows();
  result.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  // The run as loadgen would report it, then the summary (always last).
  if (!w.metrics.records().empty()) {
    result.lines.push_back(run_json(w.metrics.records(), scenario.name));
    if (on_line) on_line(result.lines.back());
  }
  result.lines.push_back(
      summary_json(result.windows, scenario.warmup_s, scenario.name, result.nodes, result.wall_s));
  if (on_line) on_line(result.lines.back());
  return result;
}

}  // namespace swarm::sim
