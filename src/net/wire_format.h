// Constants both ends of the wire agree on. doc/protocol.md describes the
// protocol in prose; proto/swarm/v1/stage.proto is the message contract.
#pragma once

#include <cstdint>

namespace swarm::net {

// InfoResponse.version of the protocol this code speaks.
inline constexpr const char* kProtocolVersion = "swarm.v1";

// Largest message either side sends or accepts. A step's hidden states are
// n_tokens x d_model x 4 bytes at most: 2048 tokens of a 8192-wide model fit.
inline constexpr int kMaxMessageBytes = 64 << 20;

// HTTP/2 keepalive: ping an idle connection this often, and drop it when a ping
// goes unanswered this long, so a dead peer is noticed without a request.
inline constexpr int kKeepaliveTimeMs = 20'000;
inline constexpr int kKeepaliveTimeoutMs = 10'000;

}  // namespace swarm::net
