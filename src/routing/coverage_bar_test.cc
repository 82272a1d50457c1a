#include "routing/coverage_bar.h"

#include <gtest/gtest.h>

namespace swarm {
namespace {

TEST(CoverageBar, OneCharacterPerLayerWhenTheyFit) {
  EXPECT_EQ(layer_bar(8, 0, 4), "####....");
  EXPECT_EQ(layer_bar(8, 4, 8), "....####");
  EXPECT_EQ(coverage_bar(8, {{0, 3}, {5, 8}}), "###..###");
  EXPECT_EQ(coverage_bar(8, {}), "........");
}

TEST(CoverageBar, DeepModelsShareCharactersAndShowPartialRuns) {
  // 96 layers in 48 characters: two layers each.
  const std::string bar = layer_bar(96, 0, 49);
  ASSERT_EQ(bar.size(), 48u);
  EXPECT_EQ(bar.substr(0, 24), std::string(24, '#'));
  EXPECT_EQ(bar[24], '+');  // layers 48 and 49: only 48 served
  EXPECT_EQ(bar.substr(25), std::string(23, '.'));
}

TEST(CoverageBar, RangesOutsideTheModelAreClipped) {
  EXPECT_EQ(layer_bar(4, -2, 9), "####");
  EXPECT_EQ(layer_bar(0, 0, 4), "");
}

}  // namespace
}  // namespace swarm
