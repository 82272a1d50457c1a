// The work one node did for one request: what the credits ledger pays
// (trust/ledger.h) and what usage reports (doc/trust.md). The pipeline fills it
// (GenerationResult::work); it lives here because trust must not depend on the
// pipeline.
#pragma once

#include <cstdint>
#include <string>

namespace swarm {

struct NodeWork {
  std::string node_id;      // hex node id; "" for a node without an identity
  std::string address;
  int first_layer = 0, last_layer = 0;
  int64_t steps = 0;        // steps it answered with a commitment
  int64_t tokens = 0;       // token positions it ran (replays after a failover included)
  double price_per_1k = 0;  // as it announced, credits per 1,000 tokens
  // Hex BLAKE2b-256 over its signed commitments for this request, in order: the
  // receipts a ledger entry is traced to.
  std::string receipts;
};

}  // namespace swarm
