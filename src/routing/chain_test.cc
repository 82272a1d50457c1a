// Chain choice on hand-made swarms whose best chain is known.
#include "routing/chain.h"

#include <gtest/gtest.h>

#include <cmath>

namespace swarm {
namespace {

PeerSnapshot peer(const std::string& addr, int a, int b, double layer_tps = 0, const std::string& model = "m") {
  PeerSnapshot p;
  p.address = addr;
  p.model_id = model;
  p.first_layer = a;
  p.last_layer = b;
  p.n_layer = 4;
  p.layer_tokens_per_second = layer_tps;
  return p;
}

std::string describe(const std::vector<ChainStage>& chain) {
  std::string s;
  for (const ChainStage& c : chain) s += c.address + "[" + std::to_string(c.first_layer) + "," + std::to_string(c.last_layer) + ")";
  return s;
}

TEST(ChooseChain, OnePeerWithEveryLayerIsOneStage) {
  auto c = choose_chain({peer("a", 0, 4)}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "a[0,4)");
}

TEST(ChooseChain, DisjointRangesChainInOrder) {
  auto c = choose_chain({peer("c", 3, 4), peer("a", 0, 1), peer("b", 1, 3)}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "a[0,1)b[1,3)c[3,4)");
}

TEST(ChooseChain, FasterPeersWinOverOneSlowPeer) {
  // a does everything at 100 layer-tokens/s (40 ms); b + c do it at 10,000 (0.4 ms + two hops).
  auto c = choose_chain({peer("a", 0, 4, 100), peer("b", 0, 2, 10000), peer("c", 2, 4, 10000)}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "b[0,2)c[2,4)");
  // With equal speeds the single stage saves a hop.
  c = choose_chain({peer("a", 0, 4, 10000), peer("b", 0, 2, 10000), peer("c", 2, 4, 10000)}, "m", 4);
  EXPECT_EQ(describe(*c), "a[0,4)");
}

TEST(ChooseChain, OverlappingPeersRunSubRanges) {
  // a holds 0..3 and b 1..4: the fast b should take as many layers as it can.
  auto c = choose_chain({peer("a", 0, 3, 100), peer("b", 1, 4, 10000)}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "a[0,1)b[1,4)");
}

TEST(ChooseChain, GapIsNamed) {
  auto c = choose_chain({peer("a", 0, 2), peer("c", 3, 4)}, "m", 4);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("layer 2"), std::string::npos) << c.status().message();
}

// Covered exactly where choose_chain could route: other models and draining
// peers cover nothing; a chain exists once every layer is covered.
TEST(ChooseChain, CoveredLayersAreThoseAChainCanUse) {
  PeerSnapshot draining = peer("d", 2, 3);
  draining.draining = true;
  const std::vector<PeerSnapshot> swarm = {peer("a", 0, 2), draining, peer("o", 2, 4, 0, "other")};
  EXPECT_EQ(covered_layers(swarm, "m", 4), (std::vector<bool>{true, true, false, false}));
  EXPECT_FALSE(choose_chain(swarm, "m", 4).ok());
  std::vector<PeerSnapshot> more = swarm;
  more.push_back(peer("b", 1, 9));  // a range past the model is clipped
  EXPECT_EQ(covered_layers(more, "m", 4), (std::vector<bool>{true, true, true, true}));
  EXPECT_TRUE(choose_chain(more, "m", 4).ok());
}

TEST(ChooseChain, IgnoresOtherModelsDrainingPeersAndAvoidsRecentFailures) {
  PeerSnapshot draining = peer("d", 0, 4, 1e6);
  draining.draining = true;
  PeerSnapshot failed = peer("f", 0, 4, 1e6);
  failed.recently_failed = true;
  auto c = choose_chain({peer("x", 0, 4, 1e6, "other"), draining, failed, peer("slow", 0, 4, 10)}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "slow[0,4)");
  // A failed peer is still used when it is the only way through.
  c = choose_chain({failed}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "f[0,4)");
  EXPECT_FALSE(choose_chain({draining}, "m", 4).ok());
}

// At the step timeout the gateway asks whether a failover could leave the
// chain; a twin of any one stage is a way out, a lone chain (or one whose only
// other peers serve other weights) is not.
TEST(ChooseChain, OtherChainExistsOnlyWhereAStageHasATwin) {
  const std::vector<PeerSnapshot> lone = {peer("a", 0, 2), peer("b", 2, 4)};
  auto c = choose_chain(lone, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(other_chain_exists(lone, *c, "m", 4));
  std::vector<PeerSnapshot> other_weights = lone;
  other_weights.push_back(peer("x", 0, 4, 1e6, "other"));
  EXPECT_FALSE(other_chain_exists(other_weights, *c, "m", 4));
  std::vector<PeerSnapshot> twin = lone;
  twin.push_back(peer("b2", 2, 4, 10));  // slower, yet a way round "b"
  EXPECT_TRUE(other_chain_exists(twin, *c, "m", 4));
  // A peer of the chain back on probation (free to route through) is still
  // left for its twin.
  twin[1].on_probation = true;
  EXPECT_TRUE(other_chain_exists(twin, *c, "m", 4));
  // The same peers split at another layer are another chain.
  std::vector<ChainStage> split(2);
  split[0].address = "a", split[0].first_layer = 0, split[0].last_layer = 2;
  split[1].address = "b", split[1].first_layer = 2, split[1].last_layer = 4;
  EXPECT_TRUE(other_chain_exists({peer("a", 0, 4), peer("b", 2, 4)}, split, "m", 4));
}

TEST(ChooseChain, APeerOnProbationGetsTheNextChain) {
  // Twins: "a" is measured a little faster, yet "b", back from a failure, is
  // routed through once (and so measured again).
  PeerSnapshot back = peer("b", 0, 4, 900);
  back.on_probation = true;
  auto c = choose_chain({peer("a", 0, 4, 1000), back}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "b[0,4)");
  // On probation for half the layers: it takes them, its twin the rest.
  PeerSnapshot half = peer("h", 0, 2, 900);
  half.on_probation = true;
  c = choose_chain({peer("a", 0, 4, 1000), half}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "h[0,2)a[2,4)");
}

TEST(ChooseChain, AnUnmeasuredPeerIsAssumedAsFastAsTheMedianPeer) {
  // "a" restarted and has measured nothing; its twin "z" runs at 10,000
  // layer-tokens/s (0.1 ms a layer). Ranked at the 1 ms default "a" would lose
  // to "z" forever; at the median of the measured peers it is z's equal and
  // its earlier address decides.
  auto c = choose_chain({peer("z", 0, 4, 10000), peer("a", 0, 4)}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "a[0,4)");
  // The median of 0.2 and 0.1 ms is 0.15 ms: "a" beats "y" (0.2 ms); with
  // "b" (0.05 ms) too the median is 0.1 ms, and "b" wins.
  c = choose_chain({peer("y", 0, 4, 5000), peer("a", 0, 4), peer("x", 2, 4, 10000)}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "a[0,4)");
  c = choose_chain(
      {peer("y", 0, 4, 5000), peer("a", 0, 4), peer("b", 0, 4, 20000), peer("x", 2, 4, 10000)}, "m",
      4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "b[0,4)");
  ChainCosts costs;
  EXPECT_NEAR(chain_cost({{"a", 0, 4, ""}}, {peer("a", 0, 4), peer("c", 0, 4, 10000)}, costs),
              costs.hop_seconds + 4 * 1e-4, 1e-12);
}

TEST(ChooseChain, ChainCostAddsStages) {
  const std::vector<PeerSnapshot> peers = {peer("a", 0, 2, 1000), peer("b", 2, 4, 1000)};
  auto c = choose_chain(peers, "m", 4);
  ASSERT_TRUE(c.ok());
  ChainCosts costs;
  EXPECT_NEAR(chain_cost(*c, peers, costs), 2 * costs.hop_seconds + 4 * 0.001, 1e-12);
}

PeerSnapshot scored(PeerSnapshot p, double reputation, bool excluded = false) {
  p.reputation = reputation;
  p.excluded = excluded;
  return p;
}

TEST(ChooseChain, AnExcludedPeerIsNeverChosenNorCovers) {
  // The fastest peer, proven a cheat: not even when it is the only way through.
  const PeerSnapshot cheat = scored(peer("cheat", 0, 4, 1e6), 1.0, /*excluded=*/true);
  auto c = choose_chain({cheat, peer("slow", 0, 4, 10)}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "slow[0,4)");
  EXPECT_FALSE(choose_chain({cheat}, "m", 4).ok());
  EXPECT_EQ(covered_layers({cheat, peer("a", 0, 2)}, "m", 4),
            (std::vector<bool>{true, true, false, false}));
  // Probation (back after a failure) does not bring it back either.
  PeerSnapshot back = cheat;
  back.on_probation = true;
  EXPECT_FALSE(choose_chain({back}, "m", 4).ok());
  // Its claimed speed does not set what unmeasured peers are assumed to run at.
  ChainCosts costs;
  EXPECT_NEAR(chain_cost({{"a", 0, 4, ""}}, {peer("a", 0, 4), cheat}, costs),
              costs.hop_seconds + 4 * costs.default_layer_seconds, 1e-12);
}

TEST(ChooseChain, ALowerScoreNeedsMoreSpeedToWin) {
  // Equal speeds: the better reputation wins whatever the addresses say.
  auto c = choose_chain({scored(peer("a", 0, 4, 1000), 0.6), scored(peer("b", 0, 4, 1000), 0.9)}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "b[0,4)");
  // Cost is divided by the weight: "a" (0.6, weight 0.75 under the prior's
  // 0.8) must be more than 4/3 as fast as "b" (hops included) to win.
  c = choose_chain({scored(peer("a", 0, 4, 1400), 0.6), scored(peer("b", 0, 4, 1000), 0.9)}, "m", 4);
  EXPECT_EQ(describe(*c), "b[0,4)");
  c = choose_chain({scored(peer("a", 0, 4, 2500), 0.6), scored(peer("b", 0, 4, 1000), 0.9)}, "m", 4);
  EXPECT_EQ(describe(*c), "a[0,4)");
  // A uniform reputation changes nothing: a swarm of newcomers routes as before.
  c = choose_chain({scored(peer("a", 0, 4, 100), 0.8), scored(peer("b", 0, 2, 10000), 0.8),
                    scored(peer("c", 2, 4, 10000), 0.8)},
                   "m", 4);
  EXPECT_EQ(describe(*c), "b[0,2)c[2,4)");
  ChainCosts costs;
  EXPECT_NEAR(chain_cost({{"b", 0, 4, ""}}, {scored(peer("b", 0, 4, 1000), 0.5)}, costs),
              (costs.hop_seconds + 4e-3) / (0.5 / costs.full_reputation), 1e-12);
}

TEST(ChooseChain, APeerUnderTheReputationFloorIsALastResort) {
  ChainCosts costs;
  const PeerSnapshot low = scored(peer("low", 0, 4, 1e6), costs.low_reputation_below / 2);
  // Far faster, yet under the floor: the slow peer is chosen...
  auto c = choose_chain({low, peer("slow", 0, 4, 10)}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "slow[0,4)");
  // ...and on probation it is not forced through.
  PeerSnapshot back = low;
  back.on_probation = true;
  c = choose_chain({back, peer("slow", 0, 4, 10)}, "m", 4);
  EXPECT_EQ(describe(*c), "slow[0,4)");
  // It still serves when nothing else covers its layers: low scores are not
  // exclusion.
  c = choose_chain({scored(peer("low", 2, 4, 1e6), low.reputation), peer("a", 0, 2, 10)}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "a[0,2)low[2,4)");
  c = choose_chain({low}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "low[0,4)");
}

TEST(ChooseChain, ReputationWeightIsTheScoreWithinBounds) {
  ChainCosts costs;
  EXPECT_DOUBLE_EQ(reputation_weight(0.4, costs), 0.5);
  EXPECT_DOUBLE_EQ(reputation_weight(0.8, costs), 1.0);  // a node nobody knows yet
  EXPECT_DOUBLE_EQ(reputation_weight(1.0, costs), 1.0);
  EXPECT_DOUBLE_EQ(reputation_weight(5.0, costs), 1.0);
  EXPECT_DOUBLE_EQ(reputation_weight(0.0, costs), costs.min_reputation_weight);
  EXPECT_DOUBLE_EQ(reputation_weight(std::nan(""), costs), costs.min_reputation_weight);
  // A peer snapshot that says nothing of reputation is fully trusted (1), as
  // before reputation existed.
  EXPECT_DOUBLE_EQ(PeerSnapshot{}.reputation, 1.0);
}

PeerSnapshot priced(PeerSnapshot p, double price_per_1k) {
  p.price_per_1k = price_per_1k;
  return p;
}

TEST(ChooseChain, PriceCountsBesideSpeed) {
  // As fast: the cheaper wins, whatever the addresses say.
  auto c = choose_chain({priced(peer("a", 0, 4, 1000), 2), priced(peer("b", 0, 4, 1000), 1)}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(describe(*c), "b[0,4)");
  // A faster node may cost more, up to what its speed is worth: "a" saves
  // 4 ms a token over "b" (4 layers at 1000 vs 500 layer-tokens/s).
  c = choose_chain({priced(peer("a", 0, 4, 1000), 3), priced(peer("b", 0, 4, 500), 0)}, "m", 4);
  EXPECT_EQ(describe(*c), "a[0,4)");
  c = choose_chain({priced(peer("a", 0, 4, 1000), 5), priced(peer("b", 0, 4, 500), 0)}, "m", 4);
  EXPECT_EQ(describe(*c), "b[0,4)");
  ChainCosts costs;
  EXPECT_NEAR(chain_cost({{"a", 0, 4, ""}}, {priced(peer("a", 0, 4, 1000), 2)}, costs),
              costs.hop_seconds + 4e-3 + costs.credit_seconds * 2e-3, 1e-12);
}

}  // namespace
}  // namespace swarm
