// Choosing which contiguous block of layers a node serves, and deciding when a
// serving node should move to another block. The rule is specified in
// doc/layer-assignment.md; in short: cover uncovered layers first, otherwise
// raise the swarm's bottleneck (its weakest layer's throughput), and move only
// for a clear gain (Petals' balance quality 0.75) so the swarm does not oscillate.
// Pure: it takes a snapshot of the swarm and returns a decision; it reads no
// clock and opens no socket, so the node, the simulator and the tests drive it.
#pragma once

#include <string>
#include <vector>

#include "engine/status.h"
#include "routing/chain.h"

namespace swarm {

// Layers [first, last) of a model.
struct LayerRange {
  int first = 0;
  int last = 0;
  int size() const { return last - first; }
  bool operator==(const LayerRange&) const = default;
};

// Counted for a peer (or for ourselves) whose layer_tokens_per_second is unknown
// (<= 0): 1000 layer-tokens/s, the speed ChainCosts assumes (1 ms per layer).
inline constexpr double kDefaultLayerTokensPerSecond = 1000.0;

// Petals' balance quality: a node moves only when the bottleneck after moving
// exceeds the bottleneck where it is by more than 1 / 0.75 (about 1.33x).
inline constexpr double kMinImprovementRatio = 1.0 / 0.75;

// Throughput of each layer of a model with `n_layer` layers: for layer l, the sum
// of layer_tokens_per_second over the non-draining peers whose range contains l
// (unknown speeds count as kDefaultLayerTokensPerSecond). `peers` must hold the
// peers of one model (the caller filters by model_id); a peer that reports a
// different n_layer (non-zero) is ignored; ranges are clipped to [0, n_layer).
std::vector<double> layer_throughput(const std::vector<PeerSnapshot>& peers, int n_layer);

// The block a node with room for `capacity_layers` layers and speed
// `layer_tokens_per_second` (<= 0: unknown) should serve, given the swarm in
// `peers` (which must not include the node itself). Capacity is clamped to
// n_layer. Among all contiguous blocks of that size, the one that, with the node
// added, ranks first by:
//   1. fewest layers left uncovered (throughput 0) in the whole model;
//   2. highest bottleneck: the minimum per-layer throughput over all layers;
//   3. lowest sum of the swarm's throughput over the block (before adding us);
//   4. lowest start.
// InvalidArgument when n_layer < 1 or capacity_layers < 1.
Result<LayerRange> choose_layers(const std::vector<PeerSnapshot>& peers, int n_layer,
                                 int capacity_layers, double layer_tokens_per_second);

struct MoveDecision {
  bool move = false;
  LayerRange target;   // where to go when `move`; the current range otherwise
  std::string reason;  // one short line for logs
};

// Whether a node serving `current` should move to the block choose_layers picks.
// `peers_without_me` is the swarm without this node. With B(x) the bottleneck
// when the node serves x, and U(x) the set of uncovered layers:
//   - if U(current) is not empty: move iff U(target) is a strict subset of
//     U(current) (moving covers a gap and opens none);
//   - otherwise: move iff B(target) > min_improvement_ratio * B(current).
// Never moves when the target is the current range. Each move either shrinks
// the set of gaps or multiplies the bottleneck by more than the ratio, so
// repeated rounds over a fixed swarm end. InvalidArgument on bad sizes, on a
// current range outside [0, n_layer), or on min_improvement_ratio < 1.
Result<MoveDecision> should_move(const std::vector<PeerSnapshot>& peers_without_me,
                                 LayerRange current, int n_layer, int capacity_layers,
                                 double layer_tokens_per_second,
                                 double min_improvement_ratio = kMinImprovementRatio);

// Nodes that serve the same block see the same swarm and would all make the
// same move at once (two nodes that started together on [0,4) would both move
// to the gap [4,8), and back). Of the nodes serving exactly `current`, the one
// with the lowest public key (hex, compared as text) moves first: this returns
// true, for any other, when it has not already deferred for this very target
// in its previous check (`deferred_before`). A node defers once and then moves
// anyway, so a lower node that never moves (a fixed --layers node) delays it by
// one round only. Draining peers do not count.
bool should_defer_move(const std::vector<PeerSnapshot>& peers_without_me, LayerRange current,
                       const std::string& my_public_key, bool deferred_before);

}  // namespace swarm
