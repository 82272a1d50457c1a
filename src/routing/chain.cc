#include "routing/chain.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace swarm {
namespace {

const PeerSnapshot* find_peer(const std::vector<PeerSnapshot>& peers, const std::string& address) {
  for (const PeerSnapshot& p : peers)
    if (p.address == address) return &p;
  return nullptr;
}

bool find_stage(const std::vector<ChainStage>& chain, const std::string& address) {
  return std::any_of(chain.begin(), chain.end(),
                     [&](const ChainStage& s) { return s.address == address; });
}

// Seconds per layer assumed for a peer that has not measured its speed: the
// median of the measured peers of `model_id`, else the default.
double unmeasured_layer_seconds(const std::vector<PeerSnapshot>& peers, const std::string& model_id,
                                const ChainCosts& c) {
  std::vector<double> measured;
  for (const PeerSnapshot& p : peers)
    if (p.model_id == model_id && !p.excluded && p.layer_tokens_per_second > 0)
      measured.push_back(1.0 / p.layer_tokens_per_second);
  if (measured.empty()) return c.default_layer_seconds;
  std::sort(measured.begin(), measured.end());
  const size_t mid = measured.size() / 2;
  return measured.size() % 2 == 1 ? measured[mid] : (measured[mid - 1] + measured[mid]) / 2;
}

// Whether choose_chain may route through `p` at all.
bool usable(const PeerSnapshot& p, const std::string& model_id, int n_layer) {
  return p.model_id == model_id && p.n_layer == n_layer && !p.draining && !p.excluded;
}

double stage_cost(const PeerSnapshot& p, int layers, const ChainCosts& c,
                  double unmeasured_layer_s) {
  const double low_reputation =
      !(p.reputation >= c.low_reputation_below) ? c.low_reputation_penalty_seconds : 0;
  if (p.on_probation) return low_reputation;
  const double per_layer =
      p.layer_tokens_per_second > 0 ? 1.0 / p.layer_tokens_per_second : unmeasured_layer_s;
  // Only the compute is shared with the node's other sessions; hops and round
  // trips are not.
  const double compute = loaded_step_seconds(layers * per_layer, peer_load(p), c.load_weight);
  const double seconds = c.hop_seconds + p.rtt_seconds / 2 + compute;
  const double price = std::isfinite(p.price_per_1k) && p.price_per_1k > 0 ? p.price_per_1k / 1000 : 0;
  return seconds / reputation_weight(p.reputation, c) + c.credit_seconds * price + low_reputation +
         (p.recently_failed ? c.failed_penalty_seconds : 0);
}

}  // namespace

double peer_load(const PeerSnapshot& p) {
  return stage_load({p.active_sessions, p.queued_steps, p.own_sessions_reported, p.own_sessions});
}

double reputation_weight(double score, const ChainCosts& costs) {
  const double floor = std::max(costs.min_reputation_weight, 1e-9);
  if (!(score >= 0)) return floor;
  if (score >= costs.full_reputation) return 1.0;
  return std::max(floor, score / std::max(costs.full_reputation, 1e-9));
}

Result<std::vector<ChainStage>> choose_chain(const std::vector<PeerSnapshot>& peers, const std::string& model_id,
                                             int n_layer, const ChainCosts& costs) {
  if (n_layer <= 0) return Status::InvalidArgument("a model needs at least one layer");
  constexpr double kInf = std::numeric_limits<double>::infinity();
  // Layer boundaries form a DAG (edges only go forward), so one pass in order is
  // a shortest path: best[j] = min over edges i -> j of best[i] + cost.
  std::vector<double> best(n_layer + 1, kInf);
  std::vector<int> hops(n_layer + 1, 0);
  std::vector<int> from(n_layer + 1, -1);
  std::vector<const PeerSnapshot*> via(n_layer + 1, nullptr);
  best[0] = 0;
  const double unmeasured = unmeasured_layer_seconds(peers, model_id, costs);
  for (int i = 0; i < n_layer; ++i) {
    if (best[i] == kInf) continue;
    for (const PeerSnapshot& p : peers) {
      if (!usable(p, model_id, n_layer)) continue;
      if (p.first_layer > i || p.last_layer <= i) continue;
      for (int j = i + 1; j <= std::min(p.last_layer, n_layer); ++j) {
        const double c = best[i] + stage_cost(p, j - i, costs, unmeasured);
        const bool better = c < best[j] - 1e-12 ||
                            (c <= best[j] + 1e-12 && (hops[i] + 1 < hops[j] ||
                                                      (hops[i] + 1 == hops[j] && via[j] && p.address < via[j]->address)));
        if (via[j] == nullptr || better) {
          best[j] = c;
          hops[j] = hops[i] + 1;
          from[j] = i;
          via[j] = &p;
        }
      }
    }
  }
  if (best[n_layer] == kInf) {
    // Name the first layer no usable peer reaches, so an operator knows the gap.
    int gap = 0;
    while (gap < n_layer && best[gap] != kInf) ++gap;
    return Status::Unavailable("no route: no available peer serves layer " + std::to_string(gap - 1) +
                            " of model " + model_id.substr(0, 16) + " (" + std::to_string(n_layer) + " layers)");
  }
  std::vector<ChainStage> chain;
  for (int j = n_layer; j > 0; j = from[j]) chain.insert(chain.begin(), {via[j]->address, from[j], j, via[j]->public_key, via[j]->inexact});
  return chain;
}

std::vector<bool> covered_layers(const std::vector<PeerSnapshot>& peers, const std::string& model_id,
                                 int n_layer) {
  std::vector<bool> covered(static_cast<size_t>(std::max(n_layer, 0)), false);
  for (const PeerSnapshot& p : peers) {
    if (!usable(p, model_id, n_layer)) continue;
    for (int l = std::max(p.first_layer, 0); l < std::min(p.last_layer, n_layer); ++l)
      covered[static_cast<size_t>(l)] = true;
  }
  return covered;
}

bool other_chain_exists(std::vector<PeerSnapshot> peers, const std::vector<ChainStage>& chain,
                        const std::string& model_id, int n_layer, const ChainCosts& costs) {
  for (PeerSnapshot& p : peers)
    if (find_stage(chain, p.address)) {
      p.recently_failed = true;
      p.on_probation = false;
    }
  auto other = choose_chain(peers, model_id, n_layer, costs);
  if (!other.ok()) return false;
  auto same = [](const ChainStage& a, const ChainStage& b) {
    return a.address == b.address && a.first_layer == b.first_layer && a.last_layer == b.last_layer;
  };
  return !std::equal(other->begin(), other->end(), chain.begin(), chain.end(), same);
}

double chain_cost(const std::vector<ChainStage>& chain, const std::vector<PeerSnapshot>& peers,
                  const ChainCosts& costs) {
  double total = 0;
  const double unmeasured = peers.empty()
                                ? costs.default_layer_seconds
                                : unmeasured_layer_seconds(peers, peers.front().model_id, costs);
  for (const ChainStage& s : chain) {
    const PeerSnapshot* p = find_peer(peers, s.address);
    if (p == nullptr) return std::numeric_limits<double>::infinity();
    total += stage_cost(*p, s.last_layer - s.first_layer, costs, unmeasured);
  }
  return total;
}

}  // namespace swarm
