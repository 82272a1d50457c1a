#include "pipeline/coverage_wait.h"

#include <algorithm>

#include "net/identity.h"

namespace swarm {

NoRouteStep next_no_route_step(const NoRouteView& v, const CoverageWaitOptions& o) {
  // Look again at once: the swarm may have changed since the last look (a node
  // came up, a record appeared), and that costs one look, not a wait.
  if (v.last_look < v.request_arrived) return {NoRouteAction::kLookNow, v.now};
  const auto deadline = v.request_arrived + o.max_wait;
  if (v.now >= deadline) return {NoRouteAction::kRefuse, v.now};
  const bool young_gap = v.gap_nobody_announces && v.now - v.gateway_started < o.startup;
  const bool peer_coming =
      v.newest_unreachable_since && v.now - *v.newest_unreachable_since < o.settle;
  if (!young_gap && !peer_coming) return {NoRouteAction::kRefuse, v.now};
  const auto next_look = v.last_look + o.relook_every;
  if (v.now >= next_look) return {NoRouteAction::kLookNow, v.now};
  return {NoRouteAction::kWait, std::min(next_look, deadline)};
}

namespace {

bool may_serve(const net::PeerAddress& p, int layer) {
  return p.announced_first == p.announced_last ||
         (p.announced_first <= layer && layer < p.announced_last);
}

// "node 1b3517cf5af0 at A, B (announces [0,4); why)".
std::string describe_unreachable(const net::PeerAddress& p, const std::string& error) {
  std::string who;
  if (auto key = net::from_hex(p.pin); key.ok() && key->size() == net::kPublicKeyBytes) {
    net::PublicKey pk{};
    std::copy(key->begin(), key->end(), pk.begin());
    who = "node " + net::node_id_of(pk).substr(0, 12) + " at ";
  } else if (p.pin.size() == 2 * net::kNodeIdBytes) {
    who = "node " + p.pin.substr(0, 12) + " at ";
  }
  std::string addrs;
  for (const std::string& a : p.addresses()) addrs += (addrs.empty() ? "" : ", ") + a;
  std::string what;
  if (p.announced_first != p.announced_last)
    what = "announces [" + std::to_string(p.announced_first) + "," +
           std::to_string(p.announced_last) + "); ";
  return who + addrs + " (" + what + error.substr(0, 160) + ")";
}

}  // namespace

std::string peer_key(const net::PeerAddress& p) {
  std::string key = p.pin;
  for (const std::string& a : p.addresses()) key += "|" + a;
  return key;
}

void weigh_uncovered(const std::vector<bool>& covered, const std::vector<net::PeerAddress>& peers,
                     const PeerReachability& reachability, bool can_look_up, NoRouteView& v) {
  for (size_t layer = 0; layer < covered.size(); ++layer) {
    if (covered[layer]) continue;
    bool candidate = false;
    for (const net::PeerAddress& peer : peers) {
      const PeerReachability::Unreachable* u = reachability.find(peer_key(peer));
      if (u == nullptr || !may_serve(peer, static_cast<int>(layer))) continue;
      candidate = true;
      if (!v.newest_unreachable_since || u->since > *v.newest_unreachable_since)
        v.newest_unreachable_since = u->since;
    }
    // Only a look-up can bring a peer nobody knows of yet.
    if (!candidate && can_look_up) v.gap_nobody_announces = true;
  }
}

Status explain_no_route(const Status& chain_error, const std::vector<bool>& covered,
                        const std::vector<net::PeerAddress>& peers,
                        const PeerReachability& reachability) {
  if (chain_error.code() != Status::Code::kUnavailable) return chain_error;
  const int n = static_cast<int>(covered.size());
  std::string gaps;
  for (int a = 0; a < n;) {
    if (covered[static_cast<size_t>(a)]) {
      ++a;
      continue;
    }
    int b = a;
    while (b < n && !covered[static_cast<size_t>(b)]) ++b;
    gaps += (gaps.empty() ? "" : " ") + ("[" + std::to_string(a) + "," + std::to_string(b) + ")");
    a = b;
  }
  std::string unreachable;
  size_t named = 0;
  for (const net::PeerAddress& peer : peers) {
    const PeerReachability::Unreachable* u = reachability.find(peer_key(peer));
    if (u == nullptr) continue;
    bool relevant = false;
    for (int layer = 0; layer < n && !relevant; ++layer)
      relevant = !covered[static_cast<size_t>(layer)] && may_serve(peer, layer);
    if (!relevant) continue;
    if (named++ < 8)
      unreachable += (unreachable.empty() ? "" : "; ") + describe_unreachable(peer, u->error);
  }
  std::string msg = chain_error.message() + "; uncovered layers " + (gaps.empty() ? "none" : gaps);
  if (!unreachable.empty())
    msg += "; unreachable node(s) that may serve them: " + unreachable +
           (named > 8 ? " and " + std::to_string(named - 8) + " more" : "");
  return Status::Unavailable(msg);
}

}  // namespace swarm
