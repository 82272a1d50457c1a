#include "trust/activation_sketch.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace swarm::trust {
namespace {

std::vector<float> random_row(int d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0, 1);
  std::vector<float> row(static_cast<size_t>(d));
  for (float& x : row) x = n(rng);
  return row;
}

// Each entry times (1 + e), |e| <= relative: another device's rounding.
std::vector<float> perturbed(std::vector<float> row, double relative, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-relative, relative);
  for (float& x : row) x = static_cast<float>(x * (1 + u(rng)));
  return row;
}

TEST(ActivationSketch, KeepsTheLargestMagnitudesLargestFirst) {
  const std::vector<float> row = {0.5f, -3.0f, 2.0f, 0.0f, 3.0f, -0.1f};
  const RowSketch s = sketch_row(row.data(), 6, 7, 3);
  EXPECT_EQ(s.position, 7);
  EXPECT_EQ(s.indices, (std::vector<int32_t>{1, 4, 2}));  // |-3| = |3|: the lower index first
  EXPECT_EQ(s.values, (std::vector<float>{-3.0f, 3.0f, 2.0f}));
  EXPECT_EQ(sketch_row(row.data(), 6, 0, 99).indices.size(), 6u);  // at most the row
}

TEST(ActivationSketch, TheRuleSketchesEveryStrideAndEachStepsLastRow) {
  EXPECT_TRUE(is_sketched(0, 1, 0, false));                  // a decode step's one row
  EXPECT_FALSE(is_sketched(0, 100, 0, false));
  EXPECT_TRUE(is_sketched(0, 100, kSketchStride - 1, false));
  EXPECT_TRUE(is_sketched(0, 100, 99, false));
  EXPECT_FALSE(is_sketched(0, 100, 98, false));
  EXPECT_TRUE(is_sketched(0, 100, 5, true));  // audit runs: every row
}

// Another device's rounding (0.1%) always passes; other rows (other weights,
// a replayed position) never do, and neither does a row off by 10%.
TEST(ActivationSketch, ToleratesRoundingAndCatchesOtherRows) {
  constexpr int d = 256;
  int passed_rounding = 0, passed_other = 0, passed_scaled = 0;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    const std::vector<float> row = random_row(d, seed);
    const RowSketch ref = sketch_row(row.data(), d, 3, kReferenceEntries);
    const std::vector<float> near = perturbed(row, 1e-3, seed + 1000);
    passed_rounding += check_sketch(sketch_row(near.data(), d, 3), ref).ok;
    const std::vector<float> other = random_row(d, seed + 5000);
    passed_other += check_sketch(sketch_row(other.data(), d, 3), ref).ok;
    std::vector<float> scaled = row;
    for (float& x : scaled) x *= 1.1f;
    passed_scaled += check_sketch(sketch_row(scaled.data(), d, 3), ref).ok;
  }
  EXPECT_EQ(passed_rounding, 200);
  EXPECT_EQ(passed_other, 0);
  EXPECT_EQ(passed_scaled, 0);
}

TEST(ActivationSketch, AFailureSaysWhatDisagreed) {
  constexpr int d = 64;
  const std::vector<float> row = random_row(d, 1);
  const RowSketch ref = sketch_row(row.data(), d, 9, kReferenceEntries);
  RowSketch claimed = sketch_row(row.data(), d, 9);
  for (size_t i = 0; i < 8; ++i) claimed.values[i] *= 2;
  const SketchCheck c = check_sketch(claimed, ref);
  EXPECT_FALSE(c.ok);
  EXPECT_EQ(c.agreeing, 8);
  EXPECT_NE(c.reason.find("row 9: 8 of 16 sketched entries agree (13 needed)"), std::string::npos) << c.reason;
  EXPECT_NE(c.reason.find("8 off by more than 5%"), std::string::npos) << c.reason;
}

// A sketch cannot pass by repeating one right entry, nor by being long.
TEST(ActivationSketch, RepeatedOrExtraEntriesDoNotCount) {
  constexpr int d = 64;
  const std::vector<float> row = random_row(d, 2);
  const RowSketch ref = sketch_row(row.data(), d, 0, kReferenceEntries);
  RowSketch repeated = sketch_row(row.data(), d, 0, 1);
  repeated.indices.assign(kSketchEntries, repeated.indices[0]);
  repeated.values.assign(kSketchEntries, repeated.values[0]);
  const SketchCheck r = check_sketch(repeated, ref);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.agreeing, 1);
  const SketchCheck long_one = check_sketch(sketch_row(row.data(), d, 0, kReferenceEntries), ref);
  EXPECT_FALSE(long_one.ok);
  EXPECT_NE(long_one.reason.find("a sketch of 32 entries (at most 16)"), std::string::npos) << long_one.reason;
}

TEST(ActivationSketch, ProtoRoundTripAndMalformedOnesAreNamed) {
  const std::vector<float> row = random_row(32, 3);
  const RowSketch s = sketch_row(row.data(), 32, 5);
  v1::RowSketch p;
  to_proto(s, &p);
  auto back = from_proto(p);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->indices, s.indices);
  EXPECT_EQ(back->values, s.values);
  EXPECT_EQ(back->position, 5);
  p.add_indices(1);  // one more index than values
  EXPECT_NE(from_proto(p).status().message().find("RowSketch: 17 indices and 16 values"), std::string::npos);
}

}  // namespace
}  // namespace swarm::trust
