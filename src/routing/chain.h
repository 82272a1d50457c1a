// Choosing a chain of nodes that covers every layer of a model: a shortest path
// over layer boundaries 0..n_layer, where a peer serving [a, b) offers an edge
// i -> j for every a <= i < j <= b (it can run any sub-range of what it holds).
// Pure: it takes a snapshot of the swarm and returns a plan; it reads no clock
// and opens no socket, so tests and the simulator drive the same code.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/status.h"
#include "routing/stage_load.h"

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
  // Back after a failure (its failure memory is over) and not routed through
  // since: it costs nothing, so the next chain goes through it and it gets a
  // session to show it serves again (else a peer as good as its twin, or one
  // restarted with no speed measured yet, would never be chosen again).
  bool on_probation = false;
  // Hex Ed25519 key the peer's TLS connection was verified against; empty for
  // a plaintext peer. Carried into the chain so every hop to it is pinned too.
  std::string public_key;
  // Hex node id of the peer's identity ("" for a plaintext peer): what
  // reputation and credits are kept under.
  std::string node_id;
  double price_per_1k = 0;  // credits per 1,000 tokens through its layers, as it announces
  // Its kernels are not bit-identical to the reference engine's (another
  // device): audits check it with a tolerance (trust/activation_sketch.h).
  bool inexact = false;
  // Reputation (trust/reputation.h): a score in [0, 1]; excluded after proven fraud.
  double reputation = 1;
  bool excluded = false;
  // Load as the peer reported it at the last survey (the swarm page shows it).
  int active_sessions = 0;
  int queued_steps = 0;
  int64_t kv_bytes_free = 0, kv_bytes_total = 0;
  // The router's own sessions through the peer: open now, and open when the
  // peer reported the figures above. With them the load routing weighs
  // (routing/stage_load.h) follows every session the router opens or closes,
  // not only what the last survey saw.
  int own_sessions = 0;
  int own_sessions_reported = 0;
};

struct ChainStage {
  std::string address;
  int first_layer = 0;
  int last_layer = 0;
  std::string public_key;  // as in PeerSnapshot
  bool inexact = false;    // as in PeerSnapshot
};

struct ChainCosts {
  // Charged per hop, so that with equal speeds fewer, longer stages win.
  double hop_seconds = 0.002;
  // Assumed when a peer has not measured its speed yet and no peer of the
  // model has either; once some have, an unmeasured peer is assumed as fast
  // as their median (a fresh or restarted node is not ranked below its twins).
  double default_layer_seconds = 0.001;
  // Added for a peer that failed recently: used only when nothing else covers.
  double failed_penalty_seconds = 10.0;
  // Reputation (PeerSnapshot::reputation): a stage's time is divided by
  // reputation_weight(score), so a peer with half the score must be twice as
  // fast to be chosen alike; one scoring under low_reputation_below is also
  // charged low_reputation_penalty_seconds (used only when nothing else
  // covers), even on probation.
  // Scores at or above this (the prior's mean: a node nobody knows yet) weigh
  // 1: a new node is audited more while on probation, not starved of the
  // traffic it needs to earn a record; only evidence against a node costs it.
  double full_reputation = 0.8;
  double min_reputation_weight = 0.05;
  // Price (PeerSnapshot::price_per_1k): what one credit per token is worth in
  // seconds per token, so a stage costs its time plus credit_seconds x its
  // price per token. At 1, a price of 1 credit per 1,000 tokens weighs as a
  // millisecond more per token.
  double credit_seconds = 1.0;
  double low_reputation_below = 0.25;
  double low_reputation_penalty_seconds = 10.0;
  // Load (routing/stage_load.h): a stage's compute time is multiplied by
  // 1 + load_weight x the sessions and queued steps it carries, so concurrent
  // requests spread over replicas in proportion to their speed instead of
  // all taking the fastest chain. 0: route by speed alone.
  double load_weight = 1.0;
};

// The routing weight of a reputation score: 1 from costs.full_reputation up,
// below it score / full_reputation, at least costs.min_reputation_weight (a
// score that is not a number counts as the minimum).
double reputation_weight(double score, const ChainCosts& costs = {});

// The cheapest chain covering [0, n_layer) (what a stage costs: speed, round
// trip, load, reputation, price; doc/routing.md) with peers serving `model_id`, or
// Unavailable naming the first layer nobody covers. Draining peers and
// excluded ones (proven fraud) are never chosen. Ties break towards fewer stages, then the earlier address.
Result<std::vector<ChainStage>> choose_chain(const std::vector<PeerSnapshot>& peers, const std::string& model_id,
                                             int n_layer, const ChainCosts& costs = {});

// Whether a failover could leave `chain`: choose_chain, with every peer of
// `chain` counted as recently failed, picks a chain that differs from it in
// some stage. If not, a session routed around a stage of `chain` comes back
// to the same stages.
bool other_chain_exists(std::vector<PeerSnapshot> peers, const std::vector<ChainStage>& chain,
                        const std::string& model_id, int n_layer, const ChainCosts& costs = {});

// Per layer of [0, n_layer): whether some peer choose_chain may use (serving
// `model_id` with n_layer layers, not draining, not excluded) holds it. A chain exists
// exactly when every layer is covered.
std::vector<bool> covered_layers(const std::vector<PeerSnapshot>& peers, const std::string& model_id,
                                 int n_layer);

// The load choose_chain weighs for `peer` (stage_load() of its report and
// own-session counts).
double peer_load(const PeerSnapshot& peer);

// Expected seconds per decode step of a chain under `costs` (for reports and tests).
double chain_cost(const std::vector<ChainStage>& chain, const std::vector<PeerSnapshot>& peers,
                  const ChainCosts& costs = {});

}  // namespace swarm
