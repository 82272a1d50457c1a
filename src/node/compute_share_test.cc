// The fair-share bookkeeping: a session that had most of the node's time is
// over its share among several, not when alone, and its share decays.
#include "node/compute_share.h"

#include <gtest/gtest.h>

namespace swarm::node {
namespace {

TEST(ComputeShare, ASessionThatTookMostOfTheTimeIsOverAnEqualShare) {
  ComputeShare c(1.0);
  for (int i = 1; i <= 20; ++i) {
    c.charge(1, 0.09, i * 0.1);   // 90% of the time
    c.charge(2, 0.005, i * 0.1);  // 5%
  }
  EXPECT_GT(c.share(1, 2.0), 0.5);
  EXPECT_LT(c.share(2, 2.0), 0.1);
  EXPECT_TRUE(c.over_share(1, 1.0 / 5, 2.0));
  EXPECT_FALSE(c.over_share(2, 1.0 / 5, 2.0));
  // Alone, any share is fair.
  EXPECT_FALSE(c.over_share(1, 1, 2.0));
}

TEST(ComputeShare, AShareDecaysAndAnUnknownSessionHasNone) {
  ComputeShare c(1.0);
  c.charge(1, 0.8, 10.0);
  EXPECT_TRUE(c.over_share(1, 1.0 / 2, 10.0));
  EXPECT_FALSE(c.over_share(1, 1.0 / 2, 11.0));  // 0.8 / e < 0.5
  EXPECT_EQ(c.share(7, 10.0), 0.0);
}

}  // namespace
}  // namespace swarm::node
