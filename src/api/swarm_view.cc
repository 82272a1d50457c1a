#include "api/swarm_view.h"

#include "trust/credits.h"

namespace swarm {
namespace {

using OJson = nlohmann::ordered_json;

OJson node_json(const PeerStanding& s, const std::optional<SwarmCredits>& ledger) {
  const PeerSnapshot& p = s.last;
  OJson j;
  j["address"] = s.address;
  j["node_id"] = s.seen && !p.node_id.empty() ? OJson(p.node_id) : OJson(nullptr);
  j["pinned"] = !s.pin.empty();
  j["reachable"] = s.reachable;
  j["error"] = s.reachable ? OJson(nullptr) : OJson(s.error);
  j["unreachable_seconds"] = s.reachable ? OJson(nullptr) : OJson(s.unreachable_seconds);
  // Layers: from the node's answer (now, or its last), else from its record.
  const bool announced = s.announced_first != s.announced_last;
  j["model_id"] = s.seen ? OJson(p.model_id) : OJson(nullptr);
  j["n_layer"] = s.seen ? OJson(p.n_layer) : OJson(nullptr);
  j["first_layer"] = s.seen      ? OJson(p.first_layer)
                     : announced ? OJson(s.announced_first)
                                 : OJson(nullptr);
  j["last_layer"] = s.seen      ? OJson(p.last_layer)
                    : announced ? OJson(s.announced_last)
                                : OJson(nullptr);
  j["layers_from"] = s.reachable ? "answer"
                     : s.seen    ? "last_answer"
                     : announced ? "record"
                                 : OJson(nullptr);
  auto measured = [&](double v) { return s.seen && v > 0 ? OJson(v) : OJson(nullptr); };
  j["layer_tokens_per_second"] = measured(p.layer_tokens_per_second);
  j["price_per_1k"] = s.seen ? OJson(p.price_per_1k) : OJson(nullptr);
  // Load and round trip only from an answer now: a dead node's last load says nothing.
  auto now = [&](auto v) { return s.reachable ? OJson(v) : OJson(nullptr); };
  j["rtt_ms"] = s.reachable && p.rtt_seconds > 0 ? OJson(p.rtt_seconds * 1000) : OJson(nullptr);
  j["active_sessions"] = now(p.active_sessions);
  j["queued_steps"] = now(p.queued_steps);
  j["kv_bytes_free"] = now(p.kv_bytes_free);
  j["kv_bytes_total"] = now(p.kv_bytes_total);
  j["draining"] = now(p.draining);
  j["recently_failed"] = s.seen && p.recently_failed;
  j["reputation"] = s.seen ? OJson(p.reputation) : OJson(nullptr);
  j["excluded"] = s.seen && p.excluded;
  // Credits it earned through this gateway: pending (unpaid) and paid.
  j["credits_pending"] = j["credits_paid"] = nullptr;
  if (ledger) {
    auto it = ledger->nodes.find(p.node_id.empty() ? p.address : p.node_id);
    const trust::NodeEarnings none;
    const trust::NodeEarnings& e = it == ledger->nodes.end() ? none : it->second;
    j["credits_pending"] = trust::to_credits(e.pending);
    j["credits_paid"] = trust::to_credits(e.paid);
  }
  return j;
}

OJson request_json(const RequestView& r) {
  OJson chain = OJson::array();
  for (const ChainStage& c : r.chain)
    chain.push_back(
        {{"address", c.address}, {"first_layer", c.first_layer}, {"last_layer", c.last_layer}});
  return {{"id", r.id},
          {"model", r.model},
          {"live", r.live},
          {"outcome", r.live ? OJson(nullptr) : OJson(r.outcome)},
          {"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"seconds", r.seconds},
          {"chains", r.chains},
          {"chain", chain}};
}

}  // namespace

std::vector<std::pair<int, int>> uncovered_ranges(const std::vector<bool>& covered) {
  std::vector<std::pair<int, int>> gaps;
  const int n = static_cast<int>(covered.size());
  for (int i = 0; i < n;) {
    if (covered[static_cast<size_t>(i)]) {
      ++i;
      continue;
    }
    int j = i;
    while (j < n && !covered[static_cast<size_t>(j)]) ++j;
    gaps.emplace_back(i, j);
    i = j;
  }
  return gaps;
}

std::vector<bool> reachable_coverage(const std::vector<PeerStanding>& peers,
                                     const SwarmModel& model) {
  std::vector<PeerSnapshot> reachable;
  for (const PeerStanding& s : peers)
    if (s.reachable) reachable.push_back(s.last);
  return covered_layers(reachable, model.model_id, model.n_layer);
}

nlohmann::ordered_json swarm_view_json(const SwarmView& view) {
  OJson models = OJson::array();
  for (const SwarmModel& m : view.swarm.models) {
    const std::vector<bool> covered = reachable_coverage(view.swarm.peers, m);
    OJson gaps = OJson::array();
    for (const auto& [first, last] : uncovered_ranges(covered))
      gaps.push_back({{"first_layer", first}, {"last_layer", last}});
    int n_covered = 0;
    for (bool c : covered) n_covered += c;
    models.push_back({{"names", m.names},
                      {"model_id", m.model_id},
                      {"n_layer", m.n_layer},
                      {"covered_layers", n_covered},
                      {"servable", m.n_layer > 0 && gaps.empty()},
                      {"gaps", gaps}});
  }
  OJson nodes = OJson::array();
  for (const PeerStanding& s : view.swarm.peers) nodes.push_back(node_json(s, view.swarm.credits));
  OJson requests = OJson::array();
  for (const RequestView& r : view.requests) requests.push_back(request_json(r));
  OJson ledger = nullptr;
  if (const auto& c = view.swarm.credits) {
    const trust::LedgerTotals& t = c->totals;
    ledger = {{"granted", trust::to_credits(t.granted)},   {"balances", trust::to_credits(t.balances)},
              {"held", trust::to_credits(t.held)},         {"pending", trust::to_credits(t.pending)},
              {"paid", trust::to_credits(t.paid)},         {"forfeited", trust::to_credits(t.forfeited)},
              {"conserved", t.conserved()}};
  }
  return {{"models", models},
          {"nodes", nodes},
          {"credits", ledger},
          {"requests", requests},
          {"live_requests", view.live_requests},
          {"tokens_per_second",
           {{"bucket_seconds", view.rate_bucket_seconds}, {"samples", view.tokens_per_second}}}};
}

}  // namespace swarm
