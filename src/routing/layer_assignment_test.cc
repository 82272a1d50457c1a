// Layer assignment on hand-made swarms whose right answer is known, and a small
// swarm that joins one node at a time and then rebalances until it settles.
#include "routing/layer_assignment.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>

namespace swarm {
namespace {

constexpr int kLayers = 24;

PeerSnapshot peer(const std::string& addr, int a, int b, double layer_tps, int n_layer = kLayers) {
  PeerSnapshot p;
  p.address = addr;
  p.model_id = "m";
  p.first_layer = a;
  p.last_layer = b;
  p.n_layer = n_layer;
  p.layer_tokens_per_second = layer_tps;
  return p;
}

LayerRange choose(const std::vector<PeerSnapshot>& peers, int capacity, double speed,
                  int n_layer = kLayers) {
  Result<LayerRange> r = choose_layers(peers, n_layer, capacity, speed);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : LayerRange{-1, -1};
}

MoveDecision decide(const std::vector<PeerSnapshot>& without_me, LayerRange current, int capacity,
                    double speed) {
  Result<MoveDecision> r = should_move(without_me, current, kLayers, capacity, speed);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : MoveDecision{};
}

TEST(LayerThroughput, SumsNonDrainingPeersAndCountsUnknownSpeedAsDefault) {
  PeerSnapshot draining = peer("d", 0, 4, 1000, 4);
  draining.draining = true;
  const std::vector<double> t =
      layer_throughput({peer("a", 0, 2, 10, 4), peer("b", 1, 3, 5, 4), peer("u", 3, 9, 0, 4),
                        draining, peer("other-size", 0, 4, 7, /*n_layer=*/32)},
                       4);
  ASSERT_EQ(t.size(), 4u);
  EXPECT_DOUBLE_EQ(t[0], 10);
  EXPECT_DOUBLE_EQ(t[1], 15);
  EXPECT_DOUBLE_EQ(t[2], 5);
  EXPECT_DOUBLE_EQ(t[3],
                   kDefaultLayerTokensPerSecond);  // unknown speed; range clipped to the model
}

TEST(ChooseLayers, EmptySwarmStartsAtLayerZero) {
  EXPECT_EQ(choose({}, 6, 100), (LayerRange{0, 6}));
  EXPECT_EQ(choose({}, 6, 0), (LayerRange{0, 6}));  // unknown own speed
}

TEST(ChooseLayers, CapacityAtLeastTheModelTakesTheWholeModel) {
  EXPECT_EQ(choose({}, kLayers, 100), (LayerRange{0, kLayers}));
  EXPECT_EQ(choose({peer("a", 0, kLayers, 500)}, 100, 100), (LayerRange{0, kLayers}));
}

TEST(ChooseLayers, GapInTheMiddleIsFilled) {
  const std::vector<PeerSnapshot> swarm = {peer("a", 0, 8, 100), peer("c", 12, 24, 50)};
  EXPECT_EQ(choose(swarm, 4, 10), (LayerRange{8, 12}));
  // With room to spare the block still covers the whole gap, and spills onto the
  // weaker side (c's 50 rather than a's 100: lowest sum over the block).
  EXPECT_EQ(choose(swarm, 6, 10), (LayerRange{8, 14}));
}

TEST(ChooseLayers, GapWiderThanCapacityIsCoveredFromItsStart) {
  // Rule: fewest uncovered layers left, so any block inside the gap ties; the
  // tie falls to the lowest sum (all 0) and then the lowest start: the gap's start.
  const std::vector<PeerSnapshot> swarm = {peer("a", 0, 8, 100), peer("c", 16, 24, 100)};
  EXPECT_EQ(choose(swarm, 3, 10), (LayerRange{8, 11}));
  // The next node, seeing the first, continues where it stopped.
  std::vector<PeerSnapshot> more = swarm;
  more.push_back(peer("n1", 8, 11, 10));
  EXPECT_EQ(choose(more, 3, 10), (LayerRange{11, 14}));
}

TEST(ChooseLayers, TheWiderGapWinsOverANarrowerOne) {
  // Gaps [2,4) and [10,16): a block of 4 covers more of the second.
  const std::vector<PeerSnapshot> swarm = {peer("a", 0, 2, 100), peer("b", 4, 10, 100),
                                           peer("c", 16, 24, 100)};
  EXPECT_EQ(choose(swarm, 4, 10), (LayerRange{10, 14}));
  // Two narrow gaps a block can span together: [3,4) and [5,6).
  const std::vector<PeerSnapshot> two = {peer("a", 0, 3, 100), peer("b", 4, 5, 100),
                                         peer("c", 6, 24, 100)};
  EXPECT_EQ(choose(two, 3, 10), (LayerRange{3, 6}));
}

TEST(ChooseLayers, WeakestBlockWhenEverythingIsCovered) {
  // Layers 18..24 have half the throughput of the rest: that block is chosen.
  EXPECT_EQ(choose({peer("a", 0, 24, 100), peer("b", 0, 18, 100)}, 6, 100), (LayerRange{18, 24}));
  // Every block covering the weak [10,13) lifts the bottleneck to the same 100,
  // so the lowest sum over the block decides: [10,15) avoids b's faster layers.
  const std::vector<PeerSnapshot> swarm = {peer("a", 0, 24, 50), peer("b", 0, 10, 80),
                                           peer("c", 13, 24, 50)};
  EXPECT_EQ(choose(swarm, 5, 100), (LayerRange{10, 15}));
  // All equal: the lowest start.
  EXPECT_EQ(choose({peer("a", 0, 24, 100)}, 6, 100), (LayerRange{0, 6}));
}

TEST(ChooseLayers, DrainingPeersDoNotCount) {
  PeerSnapshot draining = peer("d", 0, 12, 1000);
  draining.draining = true;
  EXPECT_EQ(choose({draining, peer("b", 12, 24, 100)}, 12, 100), (LayerRange{0, 12}));
}

TEST(ChooseLayers, BadSizesAreErrors) {
  EXPECT_FALSE(choose_layers({}, 0, 4, 100).ok());
  EXPECT_FALSE(choose_layers({}, 24, 0, 100).ok());
  EXPECT_FALSE(should_move({}, LayerRange{20, 30}, 24, 4, 100).ok());
  EXPECT_FALSE(should_move({}, LayerRange{0, 4}, 24, 4, 100, 0.5).ok());
}

TEST(ShouldMove, HysteresisNeedsMoreThanOneThirdBetter) {
  // Without me: a serves everything at 100, b serves [0,12) at 20. I serve [0,12).
  // Where I am the bottleneck is 100 (layers 12..24); at [12,24) it would be
  // min(120, 100 + 20) = 120: x1.2, not enough.
  MoveDecision d = decide({peer("a", 0, 24, 100), peer("b", 0, 12, 20)}, {0, 12}, 12, 20);
  EXPECT_FALSE(d.move) << d.reason;
  EXPECT_EQ(d.target, (LayerRange{0, 12}));
  EXPECT_NE(d.reason.find("x1.2"), std::string::npos) << d.reason;
  // Same shape with b and me at 50: min(150, 150) = 150 against 100: x1.5, move.
  d = decide({peer("a", 0, 24, 100), peer("b", 0, 12, 50)}, {0, 12}, 12, 50);
  EXPECT_TRUE(d.move) << d.reason;
  EXPECT_EQ(d.target, (LayerRange{12, 24}));
  EXPECT_NE(d.reason.find("x1.5"), std::string::npos) << d.reason;
}

TEST(ShouldMove, StaysWhenAlreadyAtTheBestBlock) {
  const MoveDecision d = decide({peer("a", 0, 24, 100), peer("b", 0, 12, 100)}, {12, 24}, 12, 100);
  EXPECT_FALSE(d.move);
  EXPECT_NE(d.reason.find("already"), std::string::npos) << d.reason;
}

TEST(ShouldMove, MovesToCoverAGapWhenLeavingOpensNone) {
  // a duplicates my [0,8); nobody serves [16,24): move, however slow I am.
  const MoveDecision d = decide({peer("a", 0, 8, 100), peer("b", 8, 16, 100)}, {0, 8}, 8, 1);
  EXPECT_TRUE(d.move) << d.reason;
  EXPECT_EQ(d.target, (LayerRange{16, 24}));
}

TEST(ShouldMove, NodeWhoseDepartureWouldUncoverALayerStays) {
  // I alone serve [16,24); [0,8) is a gap of the same size. choose_layers without
  // me prefers [0,8) (lowest start), but going there opens [16,24).
  MoveDecision d = decide({peer("b", 8, 16, 100)}, {16, 24}, 8, 100);
  EXPECT_FALSE(d.move) << d.reason;
  EXPECT_EQ(d.target, (LayerRange{16, 24}));
  // Only partly duplicated: a covers [0,6) of my [0,8), so leaving would open 6..8
  // even though it would close the larger gap [16,24).
  d = decide({peer("a", 0, 6, 100), peer("b", 8, 16, 100)}, {0, 8}, 8, 100);
  EXPECT_FALSE(d.move) << d.reason;
}

const double kSpeeds[] = {100, 250, 50, 400, 150, 80, 300, 120};
const int kCapacities[] = {6, 8, 4, 10, 6, 5, 8, 7};  // 54 layers of room for 24

std::vector<int> uncovered(const std::vector<PeerSnapshot>& swarm) {
  const std::vector<double> t = layer_throughput(swarm, kLayers);
  std::vector<int> u;
  for (int l = 0; l < kLayers; ++l)
    if (t[l] <= 0) u.push_back(l);
  return u;
}

double bottleneck(const std::vector<PeerSnapshot>& swarm) {
  const std::vector<double> t = layer_throughput(swarm, kLayers);
  return *std::min_element(t.begin(), t.end());
}

// Every non-draining node in turn re-checks with should_move, and moves when told,
// until a whole round passes with no move. Checks that each move either closes
// gaps without opening any, or lifts the true bottleneck by the stated ratio: the
// two reasons the rule gives for why moves cannot cycle. Returns the rounds run.
int rebalance(std::vector<PeerSnapshot>& swarm) {
  constexpr int kMaxRounds = 20;
  int rounds = 0;
  for (bool moved = true; moved; ++rounds) {
    if (rounds == kMaxRounds) {
      ADD_FAILURE() << "the swarm still moves after " << kMaxRounds << " rounds";
      break;
    }
    moved = false;
    for (size_t i = 0; i < swarm.size(); ++i) {
      if (swarm[i].draining) continue;
      std::vector<PeerSnapshot> others = swarm;
      others.erase(others.begin() + static_cast<std::ptrdiff_t>(i));
      const MoveDecision d =
          decide(others, {swarm[i].first_layer, swarm[i].last_layer}, kCapacities[i], kSpeeds[i]);
      if (!d.move) continue;
      const std::vector<int> gaps_before = uncovered(swarm);
      const double before = bottleneck(swarm);
      swarm[i].first_layer = d.target.first;
      swarm[i].last_layer = d.target.last;
      const std::vector<int> gaps_after = uncovered(swarm);
      if (!gaps_before.empty()) {
        EXPECT_LT(gaps_after.size(), gaps_before.size()) << swarm[i].address << ": " << d.reason;
        EXPECT_TRUE(std::includes(gaps_before.begin(), gaps_before.end(), gaps_after.begin(),
                                  gaps_after.end()))
            << swarm[i].address << ": " << d.reason;
      } else {
        EXPECT_GT(bottleneck(swarm), kMinImprovementRatio * before)
            << swarm[i].address << ": " << d.reason;
      }
      moved = true;
    }
  }
  return rounds;
}

// 8 nodes of different speeds and memory join a 24-layer model one at a time,
// each choosing its block with choose_layers; then they rebalance until settled.
// Then the fastest node drains, opening a gap, and the rest rebalance again.
TEST(Simulation, JoinOneByOneThenRebalanceConvergesWithEveryLayerCovered) {
  std::vector<PeerSnapshot> swarm;
  for (int i = 0; i < 8; ++i) {
    const LayerRange r = choose(swarm, kCapacities[i], kSpeeds[i]);
    swarm.push_back(peer("n" + std::to_string(i), r.first, r.last, kSpeeds[i]));
  }
  EXPECT_TRUE(uncovered(swarm).empty()) << "joining in turn covers the model";
  const double joined = bottleneck(swarm);
  EXPECT_LE(rebalance(swarm), 3);
  EXPECT_TRUE(uncovered(swarm).empty());
  EXPECT_GE(bottleneck(swarm), joined);

  swarm[3].draining = true;  // 400 layer-tokens/s on [14,24); [20,24) only it serves
  EXPECT_FALSE(uncovered(swarm).empty());
  EXPECT_LE(rebalance(swarm), 5);
  EXPECT_TRUE(uncovered(swarm).empty()) << "the others close the gap the drained node left";
  EXPECT_GT(bottleneck(swarm), 0);
}

// The same nodes from a bad start: everyone piled onto the first layers, most of
// the model uncovered. Gaps close first, then the bottleneck rises, then it settles.
TEST(Simulation, PiledUpSwarmSpreadsOutAndSettles) {
  std::vector<PeerSnapshot> swarm;
  for (int i = 0; i < 8; ++i)
    swarm.push_back(peer("n" + std::to_string(i), 0, kCapacities[i], kSpeeds[i]));
  EXPECT_LE(rebalance(swarm), 5);
  EXPECT_TRUE(uncovered(swarm).empty()) << "gaps left";
}

// Two nodes on the same block: the lower key moves first, the other waits one
// check, then moves regardless (the lower one may be a node that never moves).
TEST(ShouldDeferMoveTest, TheLowerKeyOnTheSameBlockMovesFirstAndTheOtherWaitsOneRound) {
  PeerSnapshot twin = peer("a:1", 0, 12, 100);
  twin.public_key = "11";
  PeerSnapshot elsewhere = peer("b:1", 12, 20, 100);
  elsewhere.public_key = "00";
  const std::vector<PeerSnapshot> peers = {twin, elsewhere};
  EXPECT_TRUE(should_defer_move(peers, {0, 12}, "22", false));
  EXPECT_FALSE(should_defer_move(peers, {0, 12}, "22", true));
  EXPECT_FALSE(should_defer_move(peers, {0, 12}, "05", false)) << "lowest on its block";
  EXPECT_FALSE(should_defer_move(peers, {0, 8}, "22", false)) << "nobody else on [0,8)";
  twin.draining = true;
  EXPECT_FALSE(should_defer_move({twin, elsewhere}, {0, 12}, "22", false)) << "a draining twin";
}

}  // namespace
}  // namespace swarm
