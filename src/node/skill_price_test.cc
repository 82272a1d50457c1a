// The announced price follows load by the documented rule: half the base when
// idle, the base at half capacity, 1.5x at capacity, capped at 3x.
#include "node/skill_price.h"

#include <gtest/gtest.h>

namespace swarm::node {
namespace {

TEST(SkillPriceTest, PriceFollowsLoadWithinHalfAndThreeTimesTheBase) {
  EXPECT_DOUBLE_EQ(announced_price(2.0, skill_load({.capacity = 4})), 1.0);
  EXPECT_DOUBLE_EQ(announced_price(2.0, skill_load({.capacity = 4, .active = 2})), 2.0);
  EXPECT_DOUBLE_EQ(announced_price(2.0, skill_load({.capacity = 4, .active = 4})), 3.0);
  EXPECT_DOUBLE_EQ(announced_price(2.0, skill_load({.capacity = 4, .active = 4, .queued = 4})), 5.0);
  EXPECT_DOUBLE_EQ(announced_price(2.0, skill_load({.capacity = 4, .active = 4, .queued = 40})), 6.0);
  EXPECT_DOUBLE_EQ(announced_price(0.0, 5.0), 0.0);  // free stays free
  EXPECT_DOUBLE_EQ(announced_price(2.0, 0.0 / 0.0), 1.0);  // no measure: as if idle
  // A capacity of 0 (misconfigured) counts as 1, never a division by zero.
  EXPECT_DOUBLE_EQ(skill_load({.capacity = 0, .active = 1}), 1.0);
}

TEST(SkillPriceTest, OnlyMovesOfTenPercentAreReannounced) {
  EXPECT_FALSE(price_moved(1.0, 1.05));
  EXPECT_TRUE(price_moved(1.0, 1.1));
  EXPECT_TRUE(price_moved(1.0, 0.9));
  EXPECT_TRUE(price_moved(0.0, 0.5));
  EXPECT_FALSE(price_moved(0.0, 0.0));
}

}  // namespace
}  // namespace swarm::node
