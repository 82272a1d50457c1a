// Choosing a chain of nodes that covers every layer of a model: a shortest path
// over layer boundaries 0..n_layer, where a peer serving [a, b) offers an edge
// i -> j for every a <= i < j <= b (it can run any sub-range of what it holds).
// Pure: it takes a snapshot of the swarm and returns a plan; it reads no clock
// and opens no socket, so tests and the simulator drive the same code.
#pragma once

#include <string>
#include <vector>

#include "engine/status.h"

namespace swarm {

struct PeerSnapshot {
  std::string address;
  std::string model_id;
  std::string layout_id;        // hash of the model's header alone; "" when unknown
  int first_layer = 0;          // serves [first_layer, last_layer)
  int last_layer = 0;
  int n_layer = 0;              // of the whole model, as the peer reports it
  double layer_tokens_per_second = 0;  // measured; 0 when unknown
  double rtt_seconds = 0;       // measured round trip to the peer; 0 when unknown
  bool draining = false;
  bool recently_failed = false;
  // Hex Ed25519 key the peer's TLS connection was verified against; empty for
  // a plaintext peer. Carried into the chain so every hop to it is pinned too.
  std::string public_key;
};

struct ChainStage {
  std::string address;
  int first_layer = 0;
  int last_layer = 0;
  std::string public_key;  // as in PeerSnapshot
};

struct ChainCosts {
  // Charged per hop, so that with equal speeds fewer, longer stages win.
  double hop_seconds = 0.002;
  // Assumed when a peer has not measured its speed yet.
  double default_layer_seconds = 0.001;
  // Added for a peer that failed recently: used only when nothing else covers.
  double failed_penalty_seconds = 10.0;
};

// The cheapest chain covering [0, n_layer) with peers serving `model_id`, or
// Unavailable naming the first layer nobody covers. Draining peers
// are never chosen. Ties break towards fewer stages, then the earlier address.
Result<std::vector<ChainStage>> choose_chain(const std::vector<PeerSnapshot>& peers, const std::string& model_id,
                                             int n_layer, const ChainCosts& costs = {});

// Per layer of [0, n_layer): whether some peer choose_chain may use (serving
// `model_id` with n_layer layers, not draining) holds it. A chain exists
// exactly when every layer is covered.
std::vector<bool> covered_layers(const std::vector<PeerSnapshot>& peers, const std::string& model_id,
                                 int n_layer);

// Expected seconds per decode step of a chain under `costs` (for reports and tests).
double chain_cost(const std::vector<ChainStage>& chain, const std::vector<PeerSnapshot>& peers,
                  const ChainCosts& costs = {});

}  // namespace swarm
