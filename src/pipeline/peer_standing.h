// One peer the gateway knows of, reachable or not, as the swarm page shows it
// (PipelineBackend::standing()).
#pragma once

#include <string>

#include "routing/chain.h"

namespace swarm {

// A peer from --peers or discovery: whether it answered the last survey and,
// if it ever answered, what it said then (its layers, speed, load, standing).
struct PeerStanding {
  std::string address;  // the peer's first address, as given
  std::string pin;      // the key it is pinned to; "" for a plaintext peer
  // The layers its signed record announces (both 0 when none: a --peers entry).
  int announced_first = 0, announced_last = 0;
  bool reachable = false;          // answered the last survey
  std::string error;               // why not, when not reachable
  double unreachable_seconds = 0;  // for how long, when not reachable
  bool seen = false;               // `last` holds its last answer
  PeerSnapshot last;               // now when reachable, else as it last answered
};

}  // namespace swarm
