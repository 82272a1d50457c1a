// What a request does when no chain covers the model's layers: look at the
// swarm again at once (a DHT look-up and a survey of the peers), then wait a
// bounded time for coverage while it may still come, and otherwise refuse.
//
// Coverage may still come when a layer nobody announces has a gap while the
// gateway is young (its nodes may not have announced yet), or when a peer that
// may serve a missing layer became unreachable only recently (it may be
// starting, restarting, or reloading). A peer unreachable for longer than
// `settle` is taken as down, and a request refuses at once instead of waiting.
// Pure: every time is given, so tests drive it without clocks (doc/protocol.md,
// "When no route exists").
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "engine/status.h"
#include "net/peer_address.h"
#include "pipeline/peer_reachability.h"

namespace swarm {

struct CoverageWaitOptions {
  // A request waits at most this long after it arrived.
  std::chrono::milliseconds max_wait{5000};
  // A gap nobody announces is waited on only this long after the gateway started.
  std::chrono::milliseconds startup{30000};
  // A peer unreachable for this long is taken as down, not as coming up.
  std::chrono::milliseconds settle{5000};
  // While waiting, look again this often.
  std::chrono::milliseconds relook_every{250};
};

// What the gateway knows when a request finds no route.
struct NoRouteView {
  using Clock = std::chrono::steady_clock;
  Clock::time_point now;
  Clock::time_point request_arrived;
  Clock::time_point gateway_started;
  // When the last look at the swarm (DHT and survey) finished; the epoch if never.
  Clock::time_point last_look;
  // Some uncovered layer that no known peer announces (or may serve).
  bool gap_nobody_announces = false;
  // The most recent "unreachable since" among unreachable peers that may serve
  // an uncovered layer; none if there is no such peer.
  std::optional<Clock::time_point> newest_unreachable_since;
};

enum class NoRouteAction {
  kLookNow,  // look at the swarm again (DHT, survey), then try to route
  kWait,     // wait until `wake_at` (or until something changes), then ask again
  kRefuse,   // answer the request: no route
};

struct NoRouteStep {
  NoRouteAction action = NoRouteAction::kRefuse;
  NoRouteView::Clock::time_point wake_at{};  // for kWait
};

// The next step for a request without a route. A request always gets a look
// that finished after it arrived before it is refused; it then waits only
// while coverage may still come, and never past `max_wait` after arriving.
NoRouteStep next_no_route_step(const NoRouteView& view, const CoverageWaitOptions& options = {});

// The key the gateway's memory files `peer` under: who it must be and where it
// is. A record that moves to other addresses is a new peer.
std::string peer_key(const net::PeerAddress& peer);

// Fills `view`'s gap_nobody_announces and newest_unreachable_since from which
// layers reachable peers cover (routing's covered_layers), the known peers
// (an unreachable one may serve the layers it announces, or any layer when it
// announced none) and which of them are unreachable. `can_look_up`: whether a
// look-up (the DHT) may bring peers not known yet.
void weigh_uncovered(const std::vector<bool>& covered, const std::vector<net::PeerAddress>& peers,
                     const PeerReachability& reachability, bool can_look_up, NoRouteView& view);

// The error a request without a route gets: `chain_error` (choose_chain's
// "no route: ...") with the uncovered layers and the unreachable peers that may
// serve them (at most 8 named, then a count), each with its node id, addresses,
// announced layers and why it was not reached. Other errors are returned as they are.
Status explain_no_route(const Status& chain_error, const std::vector<bool>& covered,
                        const std::vector<net::PeerAddress>& peers,
                        const PeerReachability& reachability);

}  // namespace swarm
