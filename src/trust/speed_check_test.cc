// Speed lies: announced layer-tokens/s against what StageTiming answers show.
#include "trust/speed_check.h"

#include <gtest/gtest.h>

namespace swarm::trust {
namespace {

// A sample of a batch of `tokens` tokens through `layers` layers at `rate`
// layer-tokens/s.
SpeedSample at_rate(double rate, int tokens = 1, int layers = 4) {
  return {static_cast<int64_t>(tokens * layers / rate * 1e6), tokens, layers};
}

// A strict rule, so that few samples make the cases.
SpeedCheckParams two_x() {
  SpeedCheckParams p;
  p.min_samples = 8;
  p.factor = 2;
  return p;
}

TEST(SpeedCheck, MeasuredRateIsTokensTimesLayersOverCompute) {
  EXPECT_DOUBLE_EQ(measured_layer_tokens_per_second({1000, 2, 5}), 10000);  // 10 in 1 ms
  EXPECT_EQ(measured_layer_tokens_per_second({0, 2, 5}), 0);
  EXPECT_EQ(measured_layer_tokens_per_second({1000, 0, 5}), 0);
  EXPECT_EQ(measured_layer_tokens_per_second({1000, 2, 0}), 0);
}

TEST(SpeedCheck, AnHonestNodeIsNotALiar) {
  std::vector<SpeedSample> samples;
  for (int i = 0; i < 20; ++i) samples.push_back(at_rate(i % 2 ? 900 : 1100));
  const SpeedVerdict v = check_speed(1000, samples);
  EXPECT_FALSE(v.lie);
  EXPECT_EQ(v.samples, 20u);
  EXPECT_NEAR(v.measured, 1000, 101);
  // Nor one that announced less than it does, nor one that announced nothing.
  EXPECT_FALSE(check_speed(10, samples).lie);
  EXPECT_FALSE(check_speed(0, samples).lie);
}

TEST(SpeedCheck, AnnouncingMoreThanFactorTimesMeasuredIsALie) {
  std::vector<SpeedSample> samples(10, at_rate(1000));
  const SpeedCheckParams p = two_x();
  EXPECT_FALSE(check_speed(1999, samples, p).lie);
  const SpeedVerdict v = check_speed(2001, samples, p);
  EXPECT_TRUE(v.lie);
  EXPECT_NEAR(v.measured, 1000, 1);
  EXPECT_DOUBLE_EQ(v.announced, 2001);
}

TEST(SpeedCheck, TooFewSamplesProveNothing) {
  SpeedCheckParams p;
  p.min_samples = 8;
  std::vector<SpeedSample> samples(7, at_rate(100));
  EXPECT_FALSE(check_speed(1e6, samples, p).lie);
  samples.push_back(at_rate(100));
  EXPECT_TRUE(check_speed(1e6, samples, p).lie);
  // Samples that say nothing do not count.
  std::vector<SpeedSample> empty(20, SpeedSample{0, 0, 0});
  EXPECT_FALSE(check_speed(1e6, empty, p).lie);
}

TEST(SpeedCheck, OneSlowBatchDoesNotMakeALiar) {
  // The median: a cold first step (weights paged in) or a stall is one sample.
  // A mean would be ~820 and call 1900 a lie at 2x.
  std::vector<SpeedSample> samples(9, at_rate(1000));
  samples.push_back(at_rate(1));
  samples.push_back(at_rate(2));
  EXPECT_FALSE(check_speed(1900, samples, two_x()).lie);
}

TEST(SpeedCheck, BatchesAndLayersCountInTheRate) {
  // 8 tokens through 2 layers in 16 ms is 1000 layer-tokens/s.
  std::vector<SpeedSample> samples(10, SpeedSample{16000, 8, 2});
  EXPECT_FALSE(check_speed(1900, samples, two_x()).lie);
  EXPECT_TRUE(check_speed(2100, samples, two_x()).lie);
}

TEST(SpeedCheck, DefaultsLeaveRoomForHonestVariance) {
  // Two honest nodes on one busy machine announced up to 2.1x what a window
  // of their steps measured; a liar claims far more.
  const SpeedCheckParams defaults;
  std::vector<SpeedSample> samples(defaults.min_samples, at_rate(1000));
  EXPECT_FALSE(check_speed(2500, samples).lie);
  EXPECT_TRUE(check_speed(10000, samples).lie);
  samples.pop_back();
  EXPECT_FALSE(check_speed(10000, samples).lie);  // one sample short
}

TEST(SpeedWatch, FlagsOnceThenNeedsAFreshWindow) {
  SpeedCheckParams p;
  p.min_samples = 4;
  SpeedWatch watch(p);
  int lies = 0;
  for (int i = 0; i < 12; ++i)
    if (watch.observe("liar", 10000, at_rate(100))) ++lies;
  EXPECT_EQ(lies, 3);  // one per 4 fresh samples
  for (int i = 0; i < 12; ++i) EXPECT_FALSE(watch.observe("honest", 100, at_rate(100)));
  EXPECT_FALSE(watch.observe("liar", 10000, SpeedSample{0, 1, 1}));  // says nothing
}

TEST(SpeedWatch, JudgesTheRecentWindowOnly) {
  // A node that slowed down to a tenth of what it still announces: its
  // earlier honest samples leave the window and the lie shows.
  SpeedCheckParams p;
  p.min_samples = 4;
  p.window = 4;
  SpeedWatch watch(p);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(watch.observe("n", 1000, at_rate(1000)));
  EXPECT_FALSE(watch.observe("n", 1000, at_rate(100)));
  EXPECT_FALSE(watch.observe("n", 1000, at_rate(100)));  // median 550: not yet
  EXPECT_TRUE(watch.observe("n", 1000, at_rate(100)));   // median 100
  // Forgotten nodes start over.
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(watch.observe("m", 1000, at_rate(100)));
  watch.retain({"n"});
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(watch.observe("m", 1000, at_rate(100)));
}

}  // namespace
}  // namespace swarm::trust
