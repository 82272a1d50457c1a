// Chain choice on hand-made swarms whose best chain is known.
#include "routing/chain.h"

#include <gtest/gtest.h>

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

TEST(ChooseChain, ChainCostAddsStages) {
  const std::vector<PeerSnapshot> peers = {peer("a", 0, 2, 1000), peer("b", 2, 4, 1000)};
  auto c = choose_chain(peers, "m", 4);
  ASSERT_TRUE(c.ok());
  ChainCosts costs;
  EXPECT_NEAR(chain_cost(*c, peers, costs), 2 * costs.hop_seconds + 4 * 0.001, 1e-12);
}

}  // namespace
}  // namespace swarm
