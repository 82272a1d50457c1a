// The gateway's reputation of every node it has seen (doc/trust.md,
// "Reputation"): the pure rule of trust/reputation.h applied to the events the
// gateway observes, kept in memory for routing and written through to the
// trust database (trust/reputation_store.h) so it survives a restart.
// Thread-safe: requests, audits and the survey share one. Time is always the
// caller's `now` (seconds; the gateway passes Unix time, which a restart keeps).
//
// Nodes are keyed by node id (40 hex digits) where the gateway verified the
// node's identity, else by its address.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/status.h"
#include "trust/reputation.h"
#include "trust/reputation_store.h"

namespace swarm::trust {

// One node's standing, as dumps and metrics show it.
struct NodeReputation {
  std::string node_id;
  double score = 0;
  ReputationState state;  // faded to the time asked
};

// {"node_id", "score", "alpha", "beta", "audits_passed", ..., "excluded"}.
nlohmann::json to_json(const NodeReputation& r);

class ReputationBook {
 public:
  // Opens the trust database at `path` and loads every node stored there.
  static Result<std::unique_ptr<ReputationBook>> Open(const std::string& path,
                                                      ReputationParams params = {},
                                                      size_t events_per_node = 256);
  ReputationBook(const ReputationBook&) = delete;
  ReputationBook& operator=(const ReputationBook&) = delete;

  const ReputationParams& params() const { return params_; }

  // Applies `event` to node_id's reputation at `now`, logs it with `detail`
  // and writes both through; the new state. On a write error the state in
  // memory is updated all the same (routing goes on) and the error returned.
  Result<ReputationState> record(const std::string& node_id, ReputationEvent event, double now,
                                 const std::string& detail = "");
  // A proven fraud: stores `proof` (opaque bytes, e.g. the serialized signed
  // commitments that contradict the re-execution) with `reason`, and records
  // kAuditFailed, which excludes the node; one transaction.
  Result<ReputationState> store_proof(const std::string& node_id, const std::string& proof,
                                      const std::string& reason, double now);

  // node_id's state faded to `now`; a node never seen has the prior's.
  ReputationState state(const std::string& node_id, double now);
  double score(const std::string& node_id, double now);
  bool excluded(const std::string& node_id);
  // The share of node_id's steps to audit (probation: see reputation.h).
  double audit_rate(const std::string& node_id, double base_rate, double now);

  // Every node known, by node id.
  std::vector<NodeReputation> all(double now);
  nlohmann::json dump(double now);

  // What the store holds (for tools and tests).
  Result<std::vector<ReputationEventRecord>> events(const std::string& node_id);
  Result<std::vector<FraudProof>> proofs(const std::string& node_id);

 private:
  ReputationBook(std::unique_ptr<ReputationStore> store, ReputationParams params,
                 std::map<std::string, ReputationState> states)
      : params_(params), store_(std::move(store)), states_(std::move(states)) {}
  Result<ReputationState> apply_locked(const std::string& node_id, ReputationEvent event,
                                       double now, const std::string& detail,
                                       const FraudProof* proof);
  ReputationState state_locked(const std::string& node_id, double now) const;

  const ReputationParams params_;
  std::mutex mu_;  // guards store_ and states_
  std::unique_ptr<ReputationStore> store_;
  std::map<std::string, ReputationState> states_;
};

}  // namespace swarm::trust
