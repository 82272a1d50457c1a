// Where a peer is and, optionally, who it must be: the gateway's --peers entries
// (HOST:PORT or HOST:PORT@KEY) and, later, what discovery learns from a node's
// signed record (its address and public key).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/status.h"

namespace swarm::net {

struct PeerAddress {
  std::string address;  // host:port, tried first
  // Empty: connect in plaintext. Otherwise a KeyPin's hex (net/tls.h): the
  // peer's public key (64 hex digits) or node id (40); the connection is TLS and
  // refused unless the peer's certificate holds that key.
  std::string pin;
  // Further addresses of the same peer, tried in order when the ones before do
  // not answer: a signed record may list several (a public address and one on
  // the node's own network, say).
  std::vector<std::string> more_addresses;
  // The layers [announced_first, announced_last) the peer's record announces;
  // both 0 when nothing was announced (a --peers entry). Only for telling an
  // operator which layers an unreachable peer would have served.
  int announced_first = 0, announced_last = 0;

  // `address`, then `more_addresses`.
  std::vector<std::string> addresses() const;
};

// "HOST:PORT" or "HOST:PORT@KEY" (KEY: a public key or a node id in hex, either
// case). Checks the pin, and that an address is there; whether the address is a
// well-formed HOST:PORT is the caller's to check.
Result<PeerAddress> parse_peer_spec(std::string_view spec);

// "HOST:PORT" (or "[v6]:PORT") -> {host, port} with 0 <= port <= 65535 (0: any free port).
Result<std::pair<std::string, int>> parse_host_port(const std::string& s);

}  // namespace swarm::net
