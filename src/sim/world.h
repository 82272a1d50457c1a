// The state every simulated actor shares: the scenario, the nodes (what each
// serves, whether it is online, its load) and the directory the gateways route
// from. The directory stands for the DHT: a node's record appears when it joins
// and lingers record_ttl_s after it leaves; load figures are as fresh as the
// gateways' last survey (survey_interval_s). One thread runs every actor
// (SimGrid), so nothing here locks.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <simgrid/s4u/Actor.hpp>
#include <vector>

#include "pipeline/speculative_decoder.h"
#include "pipeline/step_deadline.h"
#include "routing/chain.h"
#include "routing/layer_assignment.h"
#include "sim/layer_time.h"
#include "sim/messages.h"
#include "sim/metrics.h"
#include "sim/platform.h"
#include "sim/scenario.h"

namespace simgrid::s4u {
class Mailbox;
}

namespace swarm::sim {

inline constexpr const char* kModelId = "sim-model";

struct NodeState {
  int class_index = 0;
  int region = 0;
  int incarnation = 0;  // bumped at every (re)join; messages name the incarnation they target
  bool online = false;
  double left_at_s = -1;  // when it last went offline
  LayerRange range;
  std::string address;  // "node-<index>.<incarnation>"
  int queued_steps = 0;
  struct Seen {
    double at_s = 0;      // its last step
    uintptr_t caller = 0; // its gateway (node/step_scheduler.h: shares are per caller)
  };
  std::map<int64_t, Seen> last_seen;  // session -> when, and from whom (active sessions)
  // Cancels: per session, the steps below this number are dropped unrun. A
  // Cancel travels the chain hop by hop as steps do, so it counts here only
  // from when it arrives (cancels_on_the_way, by arrival time).
  struct Cancel {
    int64_t session = 0, from = 0, to = 0;  // steps from..to
  };
  std::map<int64_t, int64_t> cancelled_below;
  std::multimap<double, Cancel> cancels_on_the_way;
  // Per session, the steps run lately and their share of their batch's
  // compute, for the part of it a later Cancel wastes (as a node keeps them).
  std::map<int64_t, std::deque<std::pair<int64_t, double>>> recent_runs;
  double busy_ewma = 0;                 // busy fraction, smoothed (the controller's load input)
  double busy_since_s = 0;              // for busy_ewma
  double busy_acc_s = 0;
  simgrid::s4u::Mailbox* mailbox = nullptr;
  simgrid::s4u::ActorPtr actor;  // the node actor of this incarnation
};

// One gateway per region: its view of the swarm and its measurements.
struct GatewayState {
  std::vector<PeerSnapshot> peers;  // rebuilt every survey interval
  double surveyed_at_s = -1e18;
  std::map<std::string, double> failed_until;  // address -> end of its failure memory
  // Sessions this gateway has open through each node now, and as they were at
  // the last survey (routing/stage_load.h: the gateway counts its own between
  // surveys, so requests arriving together spread over replicas).
  std::map<std::string, int> own_sessions, own_sessions_surveyed;
  StepTimeBook steps;
  // What the speculation controller learned: a gateway keeps it across
  // requests (doc/speculation.md). Made by the first request that needs it.
  std::unique_ptr<SpeculationMemory> memory;
};

struct World {
  World(Scenario s, std::vector<NodePlacement> placement, Platform platform);

  Scenario scenario;
  std::vector<NodePlacement> placement;
  Platform platform;
  std::vector<LayerTime> class_time;  // per class
  std::vector<LayerTime> class_head_time;  // per class: the head over b rows
  std::vector<int> class_capacity;    // layers per class
  std::vector<NodeState> nodes;
  std::vector<std::unique_ptr<GatewayState>> gateways;
  Metrics metrics;
  std::mt19937_64 rng;
  int64_t next_request = 0;
  // Requests that ended: their sessions closed, every stage drops their steps.
  std::set<int64_t> ended_sessions;
  int online_count = 0;
  // Requests in progress: where to tell them that a stage of their chain was
  // reset (Scenario::Kill::reset), and the chain they are on.
  struct LiveRequest {
    simgrid::s4u::Mailbox* mailbox = nullptr;
    std::shared_ptr<const Chain> chain;
  };
  std::map<int64_t, LiveRequest> live_requests;
  // With Requests::total: requests the streams started so far, streams still
  // running, and what ends the run when the last stream is done.
  int stream_requests_started = 0;
  int streams_running = 0;
  std::function<void(double)> end_run;

  // `seconds` of one core's work by the calling actor: on the shared
  // machine's cores (Scenario::machine_cores), where work that overlaps
  // shares them, so it may take longer; without one, a plain wait.
  void compute(double seconds) const;
  // Node index of an address, -1 when unknown; `incarnation` gets its incarnation.
  int node_of(const std::string& address, int* incarnation) const;
  // The peers a joining node (or a gateway) sees: every record not expired.
  PeerSnapshot snapshot(int node, int gateway_region, double now) const;
  // The gateway's peers, refreshed when older than the survey interval; its
  // failure memory applied.
  const std::vector<PeerSnapshot>& gateway_peers(int region, double now);
  // Every record, without the node `except` (-1: none), for choose_layers.
  std::vector<PeerSnapshot> all_peers(double now, int except) const;
  // Layers a node of its class joining now should serve.
  LayerRange choose_range(int node, double now);
  // Marks a node online under a new incarnation (its mailbox named after it).
  void join(int node, double now, LayerRange range);
  void leave(int node, double now);
  // A request at gateway `region` opens (+1) or leaves (-1) a session on each
  // of `chain`'s stages.
  void count_own_sessions(int region, const Chain& chain, int delta);
  // The load figure for the controller: busy fraction lately.
  void add_busy(int node, double now, double seconds);
};

// Seconds one step's layers take on `node` for a batch of `b` tokens over
// `layers` layers, and its head over `head_rows` rows (0 unless it is the last
// stage), and the class's per-batch overhead.
double batch_seconds(const World& w, int node, int b, int layers, int head_rows = 0);

// A step of a chain whose stage at `node` was reset: what the churn actor
// sends a request's mailbox (its seq is this) so the request fails over at once.
inline constexpr int64_t kResetSeq = -1;

}  // namespace swarm::sim
