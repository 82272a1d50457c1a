#include "trust/reputation_book.h"

#include <spdlog/spdlog.h>

namespace swarm::trust {

nlohmann::json to_json(const NodeReputation& r) {
  const ReputationState& s = r.state;
  return {{"node_id", r.node_id},
          {"score", r.score},
          {"alpha", s.alpha},
          {"beta", s.beta},
          {"updated_at", s.updated_at},
          {"audits_passed", s.audits_passed},
          {"audits_failed", s.audits_failed},
          {"audits_disputed", s.audits_disputed},
          {"timeouts", s.timeouts},
          {"disconnects", s.disconnects},
          {"speed_lies", s.speed_lies},
          {"excluded", s.excluded}};
}

Result<std::unique_ptr<ReputationBook>> ReputationBook::Open(const std::string& path,
                                                             ReputationParams params,
                                                             size_t events_per_node) {
  auto store = ReputationStore::Open(path, events_per_node);
  if (!store.ok()) return store.status();
  auto states = (*store)->load();
  if (!states.ok()) return states.status().annotate("trust database " + path);
  return std::unique_ptr<ReputationBook>(
      new ReputationBook(std::move(store).value(), params, std::move(states).value()));
}

ReputationState ReputationBook::state_locked(const std::string& node_id, double now) const {
  auto it = states_.find(node_id);
  return it == states_.end() ? initial_state(now, params_) : decayed(it->second, now, params_);
}

Result<ReputationState> ReputationBook::apply_locked(const std::string& node_id,
                                                     ReputationEvent event, double now,
                                                     const std::string& detail,
                                                     const FraudProof* proof) {
  if (node_id.empty() || node_id.size() > kMaxNodeIdBytes)
    return Status::InvalidArgument("reputation: node id of " + std::to_string(node_id.size()) +
                                   " bytes (1 to " + std::to_string(kMaxNodeIdBytes) + ")");
  const ReputationState before = state_locked(node_id, now);
  const ReputationState after = trust::record(before, event, now, params_);
  states_[node_id] = after;
  if (after.excluded && !before.excluded)
    spdlog::warn("node {} excluded for good: {}", node_id, detail);
  ReputationEventRecord rec;
  rec.event = event;
  rec.at = now;
  rec.score_after = trust::score(after, now, params_);
  rec.detail = detail;
  const Status st = store_->save(node_id, after, rec, proof);
  if (!st.ok()) {
    spdlog::error("reputation of node {}: {}", node_id, st.message());
    return st;
  }
  return after;
}

Result<ReputationState> ReputationBook::record(const std::string& node_id, ReputationEvent event,
                                               double now, const std::string& detail) {
  std::lock_guard<std::mutex> lock(mu_);
  return apply_locked(node_id, event, now, detail, nullptr);
}

Result<ReputationState> ReputationBook::store_proof(const std::string& node_id,
                                                    const std::string& proof,
                                                    const std::string& reason, double now) {
  FraudProof p;
  p.node_id = node_id;
  p.proof = proof;
  p.reason = reason;
  p.at = now;
  std::lock_guard<std::mutex> lock(mu_);
  if (proof.size() > kMaxProofBytes)  // checked before the state changes
    return Status::InvalidArgument("reputation: fraud proof of " + std::to_string(proof.size()) +
                                   " bytes; the limit is " + std::to_string(kMaxProofBytes));
  return apply_locked(node_id, ReputationEvent::kAuditFailed, now, reason, &p);
}

ReputationState ReputationBook::state(const std::string& node_id, double now) {
  std::lock_guard<std::mutex> lock(mu_);
  return state_locked(node_id, now);
}

double ReputationBook::score(const std::string& node_id, double now) {
  std::lock_guard<std::mutex> lock(mu_);
  return trust::score(state_locked(node_id, now), now, params_);
}

bool ReputationBook::excluded(const std::string& node_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = states_.find(node_id);
  return it != states_.end() && it->second.excluded;
}

double ReputationBook::audit_rate(const std::string& node_id, double base_rate, double now) {
  std::lock_guard<std::mutex> lock(mu_);
  return trust::audit_rate(state_locked(node_id, now), base_rate, params_);
}

std::vector<NodeReputation> ReputationBook::all(double now) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<NodeReputation> out;
  for (const auto& [id, s] : states_) {
    NodeReputation r;
    r.node_id = id;
    r.state = decayed(s, now, params_);
    r.score = trust::score(r.state, now, params_);
    out.push_back(std::move(r));
  }
  return out;
}

nlohmann::json ReputationBook::dump(double now) {
  nlohmann::json nodes = nlohmann::json::array();
  for (const NodeReputation& r : all(now)) nodes.push_back(to_json(r));
  return nodes;
}

Result<std::vector<ReputationEventRecord>> ReputationBook::events(const std::string& node_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return store_->events(node_id);
}

Result<std::vector<FraudProof>> ReputationBook::proofs(const std::string& node_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return store_->proofs(node_id);
}

}  // namespace swarm::trust
