// What travels over the simulated links: a step's hidden states from hop to
// hop (n_tokens x d_model x 2 bytes) and, from the last stage, the tokens
// back to the gateway (doc/simulation.md, "Messages").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace simgrid::s4u {
class Mailbox;
}

namespace swarm::sim {

struct Hop {
  int node = 0;
  int incarnation = 0;
  int first_layer = 0, last_layer = 0;
  std::string address;
};

struct Chain {
  std::vector<Hop> hops;
  simgrid::s4u::Mailbox* reply = nullptr;  // the request's mailbox at the gateway
  int64_t session = 0;                     // the request
  int gateway = 0;                         // the region of the gateway it came from (its caller)
  int attempt = 0;                         // bumped at each failover: older answers are stale
  std::string key;                         // names the chain for the step-time book
};

struct StageTiming {
  std::string address;
  int batch_tokens = 0;
  double compute_s = 0;
};

class LastStage;

struct Step {
  std::shared_ptr<const Chain> chain;
  std::shared_ptr<LastStage> last_stage;  // the request's (sim/last_stage.h)
  int hop = 0;      // index of the stage it is at (or, back at the gateway, hops.size())
  int64_t seq = 0;  // the request's step number
  int tokens = 1;
  bool bulk = false;          // a prompt or a replay: runs in chunks
  bool continuation = false;  // carries drafts (speculation)
  std::vector<StageTiming> timings;
};

// Bytes of a message carrying `tokens` tokens' hidden states, and of an answer.
inline double hidden_bytes(int tokens, int d_model) { return 256.0 + 2.0 * tokens * d_model; }
inline double answer_bytes(int tokens) { return 256.0 + 8.0 * tokens; }

}  // namespace swarm::sim
