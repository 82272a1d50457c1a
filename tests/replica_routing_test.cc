// Two nodes per layer range and several requests at once: the gateway
// spreads the sessions over both replicas of each range, by the load it
// knows each carries (routing/stage_load.h), so throughput grows with
// replicas; every stream's text is still the single process's. With the load
// term off (--route-load-weight 0) every request takes the same chain while
// the twins idle: what the term is for.
#include <gtest/gtest.h>

#include <future>
#include <string>
#include <vector>

#include "swarm_harness.h"

namespace swarm::testing {
namespace {

class ReplicaRoutingTest : public SwarmHarness {
 protected:
  static constexpr int kStreams = 8, kTokens = 24;

  // Starts two replicas of [0, 2) and of [2, 4) and a gateway over them (with
  // `gateway_flags`), runs kStreams greedy completions at once and checks
  // their texts. Each link is delayed, so every request is still running when
  // the last one is routed. Returns the sessions each node opened, in start
  // order: [0, 2), [2, 4), [0, 2), [2, 4).
  std::vector<int> sessions_after_concurrent_requests(
      const std::vector<std::string>& gateway_flags) {
    std::vector<std::string> want;
    for (int i = 0; i < kStreams; ++i) want.push_back(single_process(kPrompts[i], kTokens));
    // No audits: they would open sessions on the twins of their own.
    std::vector<std::string> flags = {"--speculate", "off", "--audit-rate", "0"};
    flags.insert(flags.end(), gateway_flags.begin(), gateway_flags.end());
    if (!start_chain({{0, 2}, {2, 4}, {0, 2}, {2, 4}}, flags, {"--link-delay-ms", "10"})) {
      ADD_FAILURE() << "the swarm did not start";
      return {};
    }
    std::vector<std::future<std::string>> got;
    for (int i = 0; i < kStreams; ++i)
      got.push_back(
          std::async(std::launch::async, [&, i] { return complete(kPrompts[i], kTokens); }));
    for (int i = 0; i < kStreams; ++i) EXPECT_EQ(got[i].get(), want[i]) << "stream " << i;
    std::vector<int> opened;
    for (size_t n = 0; n < 4; ++n) opened.push_back(sessions_opened(node_log(n)));
    return opened;
  }
};

TEST_F(ReplicaRoutingTest, ConcurrentRequestsUseEveryReplica) {
  const std::vector<int> opened = sessions_after_concurrent_requests({});
  ASSERT_EQ(opened.size(), 4u);
  for (size_t n = 0; n < 4; ++n)
    EXPECT_GE(opened[n], 1) << "node " << n << " served nothing\n" << read_file(gateway_log());
  // Each request opened one session per range.
  EXPECT_EQ(opened[0] + opened[2], kStreams);
  EXPECT_EQ(opened[1] + opened[3], kStreams);
}

TEST_F(ReplicaRoutingTest, ByLatencyAloneEveryRequestTakesOneChain) {
  const std::vector<int> opened = sessions_after_concurrent_requests({"--route-load-weight", "0"});
  ASSERT_EQ(opened.size(), 4u);
  // One replica of each range took them all.
  EXPECT_EQ(std::max(opened[0], opened[2]), kStreams);
  EXPECT_EQ(std::min(opened[0], opened[2]), 0);
  EXPECT_EQ(std::max(opened[1], opened[3]), kStreams);
  EXPECT_EQ(std::min(opened[1], opened[3]), 0);
}

}  // namespace
}  // namespace swarm::testing
