#include "node/batch_cost.h"

#include <gtest/gtest.h>

#include <limits>

namespace swarm::node {
namespace {

TEST(BatchCostTest, NothingMeasuredLeavesTheDefault) {
  BatchCost c;
  EXPECT_EQ(c.chunk_beside_others(), 0);
  c.ran(1, 0.0015);  // decode steps say nothing of prompts
  EXPECT_EQ(c.chunk_beside_others(), 0);
}

// A CPU node: t(b) = 1.5 ms + 0.15 ms x b. A chunk may add 3 ms (more than
// a 1.5 ms decode step): 20 tokens.
TEST(BatchCostTest, OnACpuAChunkAddsAboutThreeMilliseconds) {
  BatchCost c;
  c.ran(64, 0.0015 + 0.00015 * 64);
  // Without a decode step measured: 3 ms at the prompt's average speed.
  EXPECT_EQ(c.chunk_beside_others(), static_cast<int>(0.003 / ((0.0015 + 0.00015 * 64) / 64)));
  c.ran(1, 0.0015 + 0.00015);
  EXPECT_EQ(c.chunk_beside_others(), 20);
}

// A node bound by reading its weights: a decode step takes 22 ms and 64
// tokens 24 ms. A chunk may add a decode step's time, 22 ms: 22 / (2 / 63)
// = 693 tokens (the batch plan caps it at an eighth of the batch).
TEST(BatchCostTest, WhereBatchesCostAboutTheSameAChunkIsLarge) {
  BatchCost c;
  c.ran(1, 0.022);
  c.ran(64, 0.024);
  EXPECT_NEAR(c.chunk_beside_others(), 693, 1);
  // Flat, or noise that makes it fall: no token costs anything more.
  BatchCost flat;
  flat.ran(1, 0.022);
  flat.ran(64, 0.021);
  EXPECT_EQ(flat.chunk_beside_others(), std::numeric_limits<int>::max());
}

TEST(BatchCostTest, AveragesMoveAFifthOfTheWayAndMiddleSizesDoNotCount) {
  BatchCost c;
  c.ran(1, 0.001);
  c.ran(64, 0.001 + 63 * 0.0001);  // 0.1 ms a token: 30 tokens
  EXPECT_EQ(c.chunk_beside_others(), 30);
  c.ran(24, 1.0);  // neither end
  EXPECT_EQ(c.chunk_beside_others(), 30);
  c.ran(64, 0.001 + 63 * 0.0002);  // the prompt average: 7.3 -> 8.56 ms, 0.12 ms a token
  EXPECT_NEAR(c.chunk_beside_others(), 25, 1);
  c.ran(0, 1.0);  // nothing ran
  c.ran(8, 0.0);  // no time
  EXPECT_NEAR(c.chunk_beside_others(), 25, 1);
}

}  // namespace
}  // namespace swarm::node
