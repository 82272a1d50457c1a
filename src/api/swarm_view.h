// GET /swarm: the gateway's view of its swarm as JSON, what the swarm page
// draws (doc/swarm-page.md): each model it serves with its layers and the
// gaps no reachable node covers, every node it knows (reachable or not) with
// its layers, speed, load and reputation, the requests live now with their
// chains, and tokens per second over the last minutes. Pure: built from what
// the caller read (PipelineBackend::standing(), RequestActivity).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "api/request_activity.h"
#include "pipeline/peer_standing.h"
#include "trust/ledger.h"

namespace swarm {

struct SwarmModel {
  std::vector<std::string> names;  // what the API serves it under
  std::string model_id;
  int n_layer = 0;
};

// A gateway's credits ledger (--api-keys; doc/trust.md, "Credits ledger"):
// where the credits are, and what each node earned, by node id (or address).
struct SwarmCredits {
  trust::LedgerTotals totals;
  std::map<std::string, trust::NodeEarnings> nodes;
};

// What a gateway knows of its swarm (swarm_of); the API adds its requests.
struct SwarmState {
  std::vector<SwarmModel> models;
  std::vector<PeerStanding> peers;
  std::optional<SwarmCredits> credits;  // none without a ledger
};

struct SwarmView {
  SwarmState swarm;
  std::vector<RequestView> requests;
  size_t live_requests = 0;  // all of them (`requests` may list fewer)
  double rate_bucket_seconds = 1;
  std::vector<double> tokens_per_second;  // oldest first
};

// The runs of `false` in `covered`, as [first, last) layer ranges.
std::vector<std::pair<int, int>> uncovered_ranges(const std::vector<bool>& covered);

// Per layer of `model`: whether a reachable peer that routes may use
// (covered_layers: same model, not draining, not excluded) serves it.
std::vector<bool> reachable_coverage(const std::vector<PeerStanding>& peers,
                                     const SwarmModel& model);

// The JSON of GET /swarm (doc/swarm-page.md lists its fields).
nlohmann::ordered_json swarm_view_json(const SwarmView& view);

}  // namespace swarm
