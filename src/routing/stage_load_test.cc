// The load term of routing: what a node carries, what that costs a new
// session, and how concurrent requests then spread over replicas.
#include "routing/stage_load.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "routing/chain.h"

namespace swarm {
namespace {

TEST(StageLoad, OthersAsReportedPlusOursNowPlusTheQueue) {
  // The report saw 5 sessions, 2 of them ours; we have 4 open now; 3 steps wait.
  EXPECT_DOUBLE_EQ(stage_load({5, 3, 2, 4}), 3 + 4 + 3);
  // Ours all closed since the report: only the others' remain.
  EXPECT_DOUBLE_EQ(stage_load({5, 0, 5, 0}), 0);
  // Sessions we opened that the report did not see yet still count.
  EXPECT_DOUBLE_EQ(stage_load({0, 0, 0, 2}), 2);
  // A report behind our own count (sessions not opened there yet) hides no
  // negative load; nonsense counts count as none.
  EXPECT_DOUBLE_EQ(stage_load({1, 0, 3, 3}), 3);
  EXPECT_DOUBLE_EQ(stage_load({-4, -1, -2, -7}), 0);
}

TEST(StageLoad, AStepSharesItsBatchWithTheLoad) {
  EXPECT_DOUBLE_EQ(loaded_step_seconds(0.01, 0, 1), 0.01);
  EXPECT_DOUBLE_EQ(loaded_step_seconds(0.01, 3, 1), 0.04);
  EXPECT_DOUBLE_EQ(loaded_step_seconds(0.01, 3, 0.5), 0.025);
  // Weight 0 (or nonsense): speed alone, as routing was without the term.
  EXPECT_DOUBLE_EQ(loaded_step_seconds(0.01, 3, 0), 0.01);
  EXPECT_DOUBLE_EQ(loaded_step_seconds(0.01, 3, -1), 0.01);
  EXPECT_DOUBLE_EQ(loaded_step_seconds(0.01, 3, std::nan("")), 0.01);
}

PeerSnapshot peer(const std::string& addr, int a, int b, double layer_tps) {
  PeerSnapshot p;
  p.address = addr;
  p.model_id = "m";
  p.first_layer = a;
  p.last_layer = b;
  p.n_layer = 4;
  p.layer_tokens_per_second = layer_tps;
  return p;
}

// Routes `requests` sessions one after another, none ending, as a gateway
// does when they arrive together: each chosen chain adds a session of ours to
// its peers. Returns the sessions each peer got.
std::map<std::string, int> route_concurrent(std::vector<PeerSnapshot> peers, int requests,
                                            const ChainCosts& costs = {}) {
  std::map<std::string, int> got;
  for (int i = 0; i < requests; ++i) {
    auto chain = choose_chain(peers, "m", 4, costs);
    EXPECT_TRUE(chain.ok());
    if (!chain.ok()) break;
    for (const ChainStage& s : *chain) {
      ++got[s.address];
      for (PeerSnapshot& p : peers)
        if (p.address == s.address) ++p.own_sessions;
    }
  }
  return got;
}

TEST(ChooseChainUnderLoad, ConcurrentRequestsSpreadOverEqualReplicas) {
  // Two replicas of each half, all equally fast: 8 requests at once take 4
  // chains through each replica of each stage.
  const std::vector<PeerSnapshot> swarm = {peer("a1", 0, 2, 1000), peer("a2", 0, 2, 1000),
                                           peer("b1", 2, 4, 1000), peer("b2", 2, 4, 1000)};
  const auto got = route_concurrent(swarm, 8);
  EXPECT_EQ(got.at("a1"), 4);
  EXPECT_EQ(got.at("a2"), 4);
  EXPECT_EQ(got.at("b1"), 4);
  EXPECT_EQ(got.at("b2"), 4);
  // Speed alone (the term off): every request takes the same chain, the twins idle.
  ChainCosts speed_only;
  speed_only.load_weight = 0;
  const auto herd = route_concurrent(swarm, 8, speed_only);
  EXPECT_EQ(herd.at("a1"), 8);
  EXPECT_EQ(herd.at("b1"), 8);
  EXPECT_FALSE(herd.contains("a2") || herd.contains("b2"));
}

TEST(ChooseChainUnderLoad, AFasterReplicaTakesMoreInProportion) {
  // "f" runs 3x as fast as "s": of 8 concurrent sessions it takes 6 (step
  // times 7 x 1/3 vs 3 x 1 at the last choice: about equal).
  const auto got = route_concurrent({peer("f", 0, 4, 3000), peer("s", 0, 4, 1000)}, 8);
  EXPECT_EQ(got.at("f"), 6);
  EXPECT_EQ(got.at("s"), 2);
}

TEST(ChooseChainUnderLoad, OtherCallersSessionsAndQueuesCount) {
  // "a" serves 3 sessions of other gateways: a new session goes to idle "b",
  // though "a" has the earlier address.
  PeerSnapshot a = peer("a", 0, 4, 1000), b = peer("b", 0, 4, 1000);
  a.active_sessions = 3;
  auto c = choose_chain({a, b}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)[0].address, "b");
  // Those 3 were ours and have all closed since the report: "a" is idle again.
  a.own_sessions_reported = 3;
  c = choose_chain({a, b}, "m", 4);
  EXPECT_EQ((*c)[0].address, "a");
  // Steps waiting for a batch count as load too.
  a.queued_steps = 2;
  c = choose_chain({a, b}, "m", 4);
  EXPECT_EQ((*c)[0].address, "b");
  EXPECT_DOUBLE_EQ(peer_load(a), 2);
}

TEST(ChooseChainUnderLoad, LoadScalesComputeNotHops) {
  // 4 layers at 1000 layer-tokens/s (4 ms) under a load of 2: 12 ms of
  // compute, plus the hop and half the round trip once.
  PeerSnapshot p = peer("a", 0, 4, 1000);
  p.rtt_seconds = 0.01;
  p.own_sessions = 2;
  ChainCosts costs;
  EXPECT_NEAR(chain_cost({{"a", 0, 4, ""}}, {p}, costs), costs.hop_seconds + 0.005 + 0.012, 1e-12);
  // A much nearer twin that is loaded loses to a farther idle one only when
  // the load costs more than the distance saves.
  PeerSnapshot near = peer("near", 0, 4, 1000), far = peer("far", 0, 4, 1000);
  far.rtt_seconds = 0.02;  // 10 ms more each way than "near"
  near.own_sessions = 2;   // 8 ms more compute
  auto c = choose_chain({near, far}, "m", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)[0].address, "near");
  near.own_sessions = 3;  // 12 ms more compute
  c = choose_chain({near, far}, "m", 4);
  EXPECT_EQ((*c)[0].address, "far");
}

}  // namespace
}  // namespace swarm
