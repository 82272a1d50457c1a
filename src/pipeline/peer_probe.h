// Asking peers what they serve: an Info call to each of a peer's addresses in
// turn until one answers within a deadline, many peers at once. The gateway's
// survey and `swarm status` share it, so both call a peer reachable under the
// same rule: it answers at one of its addresses, and, when pinned, its Info
// reports the pinned key (its TLS certificate already had to hold it).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "net/peer_address.h"
#include "swarm/v1/stage.pb.h"

namespace swarm {

struct PeerProbe {
  bool reached = false;
  int address_index = -1;  // into peer.addresses(): the one that answered
  std::string address;     // that address
  std::string public_key;  // hex key verified against the pin; "" for a plaintext peer
  ::swarm::v1::InfoResponse info;
  double rtt_seconds = 0;  // of the answered call
  // When no address answered: why, per address ("A: error; B: error").
  std::string error;
  // Some address ran into the deadline (rather than refusing at once).
  bool timed_out = false;
};

// Probes every peer, at most `kMaxConcurrentProbes` at a time; each address
// gets `timeout`, a peer at most kPeerProbeBudget x `timeout` in all. A peer's address `first_try[i]` (an index into addresses(),
// e.g. the one that answered last time; out of range: 0) is asked first, then
// the others in order. A channel that is backing off after failed connects is
// replaced by a fresh one, so a peer that just started answers now.
inline constexpr size_t kMaxConcurrentProbes = 16;
inline constexpr int kPeerProbeBudget = 2;
std::vector<PeerProbe> probe_peers(const std::vector<net::PeerAddress>& peers,
                                   const std::vector<int>& first_try,
                                   std::chrono::milliseconds timeout);

}  // namespace swarm
