#include "node/batch_tally.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace swarm::node {
namespace {

TEST(BatchTallyTest, CountsBatchesIntoBucketsByTokens) {
  BatchTally t;
  t.count(1, 1);     // bucket le=1
  t.count(3, 3);     // le=4
  t.count(2, 4);     // le=4 (bounds are inclusive, as Prometheus' le)
  t.count(1, 5000);  // above every bound
  const BatchTally::Snapshot s = t.snapshot();
  EXPECT_EQ(s.batches, 4);
  EXPECT_EQ(s.steps, 7);
  EXPECT_EQ(s.tokens, 5008);
  ASSERT_EQ(s.per_bucket.size(), BatchTally::kTokenBounds.size() + 1);
  EXPECT_EQ(s.per_bucket[0], 1u);
  EXPECT_EQ(s.per_bucket[1], 0u);
  EXPECT_EQ(s.per_bucket[2], 2u);
  EXPECT_EQ(s.per_bucket.back(), 1u);
}

TEST(BatchTallyTest, CountsFromManyThreadsLoseNothing) {
  BatchTally t;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&t] {
      for (int k = 0; k < 10000; ++k) t.count(2, 8);
    });
  for (std::thread& th : threads) th.join();
  const BatchTally::Snapshot s = t.snapshot();
  EXPECT_EQ(s.batches, 40000);
  EXPECT_EQ(s.steps, 80000);
  EXPECT_EQ(s.tokens, 320000);
  EXPECT_EQ(s.per_bucket[3], 40000u);  // le=8
}

}  // namespace
}  // namespace swarm::node
