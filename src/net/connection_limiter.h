// How many new connections one address may open (doc/protocol.md, "Limits").
//
// A caller that opens a connection for every call costs a node far more than
// the call: on loopback, a refused 2 MB step on a fresh connection cost the
// node 4 ms of CPU, the same step on a kept connection half that, and most of
// it in the kernel and gRPC, before any of our code could refuse anything.
// Honest callers (gateways, the stage before this one) keep their connections
// for hours, so a node counts new connections per address in a token bucket
// and closes the ones over it as soon as they are accepted, before gRPC sees
// them.
//
// IPv4 addresses are counted one by one; IPv6 ones by /64, the block one
// machine is usually given (counting single IPv6 addresses would let a host
// open one connection per address of its block). Pure logic: time comes in as
// an argument, so tests and the simulator drive it as production does.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/clock.h"

namespace swarm::net {

struct ConnectionLimits {
  // An honest caller opens one connection per node it talks to and keeps it
  // (a gateway, the stage before this one); these leave room for restarts and
  // for a few callers behind one NAT, not for a connection per call.
  double per_second = 4;         // new connections an address may open, on average
  double burst = 16;             // ... and at once, after a quiet while
  size_t max_addresses = 16384;  // addresses remembered; the memory this takes is capped
  // Addresses never counted: the machine's own processes (scripts polling
  // `swarm info`, a gateway beside the node), as fail2ban ignores them by
  // default. Other loopback addresses (127.0.0.2, ...) count as strangers,
  // which is how tests and the soak stand in for remote callers.
  std::vector<std::string> exempt = {"127.0.0.1", "::1"};
};

class ConnectionLimiter {
 public:
  explicit ConnectionLimiter(ConnectionLimits limits) : limits_(limits) {}

  // Whether a connection from `host` (an IP address as text, IPv6 without
  // brackets) accepted at `now` may be served. A refusal counts too: an
  // address refused keeps being refused while it keeps knocking faster than
  // the refill. Not thread-safe: one acceptor owns a limiter.
  bool admit(std::string_view host, Clock::time_point now);

  // What a refused caller is told: the address counted and the limits.
  std::string refusal(std::string_view host) const;

  // `host` in one spelling: IPv6 compressed and lower case, an IPv4-mapped
  // IPv6 address as its IPv4 host; anything that does not parse as is.
  static std::string canonical(std::string_view host);
  // The bucket an address counts in: the address itself for IPv4 (and
  // anything that does not parse), its /64 for IPv6 ("2001:db8:1:2::/64").
  static std::string bucket_of(std::string_view host);

  size_t addresses() const { return buckets_.size(); }
  const ConnectionLimits& limits() const { return limits_; }

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point updated;
  };
  // Tokens `b` holds at `now`, refilled since it was last touched.
  double level(const Bucket& b, Clock::time_point now) const;
  // Forgets full buckets (they are as good as absent), then, if the map is
  // still at its cap, any bucket: an attacker forgotten starts over with a
  // burst, which bounds what forgetting costs.
  void make_room(Clock::time_point now);

  ConnectionLimits limits_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace swarm::net
