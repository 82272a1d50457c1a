#include "engine/spec_verify.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "engine/sampler.h"

namespace swarm {
namespace {

constexpr int kVocab = 5;
using Table = std::vector<std::vector<float>>;  // [previous token][next token]

// A tiny "model": the target's and the drafter's next-token distributions
// given the previous token, deliberately different.
Table target_table() {
  return {{0.50f, 0.20f, 0.15f, 0.10f, 0.05f},
          {0.05f, 0.05f, 0.60f, 0.20f, 0.10f},
          {0.30f, 0.30f, 0.10f, 0.20f, 0.10f},
          {0.10f, 0.70f, 0.05f, 0.05f, 0.10f},
          {0.25f, 0.25f, 0.25f, 0.20f, 0.05f}};
}
Table draft_table() {
  return {{0.10f, 0.60f, 0.10f, 0.10f, 0.10f},
          {0.20f, 0.20f, 0.20f, 0.20f, 0.20f},
          {0.70f, 0.05f, 0.05f, 0.10f, 0.10f},
          {0.05f, 0.05f, 0.05f, 0.05f, 0.80f},
          {0.00f, 0.50f, 0.50f, 0.00f, 0.00f}};
}

double uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

int32_t draw(const std::vector<float>& p, std::mt19937_64& rng) {
  const double u = uniform(rng);
  double cum = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if (u < (cum += p[i])) return static_cast<int32_t>(i);
  return static_cast<int32_t>(p.size() - 1);
}

SparseProbs sparse(const std::vector<float>& q) {
  SparseProbs s;
  for (size_t i = 0; i < q.size(); ++i)
    if (q[i] > 0) {
      s.ids.push_back(static_cast<int32_t>(i));
      s.probs.push_back(q[i]);
    }
  return s;
}

using Judge = std::function<Judgement(const std::vector<float>& p, int32_t draft,
                                      const SparseProbs& q, std::mt19937_64& rng)>;

// Two tokens after token 0, speculatively: two drafts from the drafter, judged
// in order; a rejection's replacement ends the run and the second token is
// then decoded plainly. Returns y1 * kVocab + y2.
int two_tokens(const Table& p, const Table& q, bool one_hot, const Judge& judge,
               std::mt19937_64& rng) {
  const int32_t d1 = draw(q[0], rng);
  const int32_t d2 = draw(q[d1], rng);
  const SparseProbs q1 = one_hot ? SparseProbs{} : sparse(q[0]);
  const SparseProbs q2 = one_hot ? SparseProbs{} : sparse(q[d1]);
  const Judgement j1 = judge(p[0], d1, q1, rng);
  if (!j1.accepted) return j1.token * kVocab + draw(p[j1.token], rng);
  const Judgement j2 = judge(p[d1], d2, q2, rng);
  return d1 * kVocab + j2.token;
}

// Pearson's chi-square of `counts` against the target's joint distribution.
double chi_square(const std::vector<int>& counts, const Table& p, int n) {
  double chi = 0;
  for (int y1 = 0; y1 < kVocab; ++y1)
    for (int y2 = 0; y2 < kVocab; ++y2) {
      const double expected = n * p[0][y1] * p[y1][y2];
      const double d = counts[y1 * kVocab + y2] - expected;
      chi += d * d / expected;
    }
  return chi;
}

double run_chi_square(bool one_hot, const Judge& judge) {
  const Table p = target_table(), q = draft_table();
  std::mt19937_64 rng(12345);
  constexpr int kTrials = 50000;
  std::vector<int> counts(kVocab * kVocab, 0);
  for (int i = 0; i < kTrials; ++i) ++counts[two_tokens(p, q, one_hot, judge, rng)];
  return chi_square(counts, p, kTrials);
}

const Judge kExact = [](const std::vector<float>& p, int32_t d, const SparseProbs& q,
                        std::mt19937_64& rng) {
  const double a = uniform(rng);
  return judge_draft(p, d, q, a, uniform(rng));
};

// 24 degrees of freedom: P(chi-square > 51.18) = 0.001.
constexpr double kChiSquare999 = 51.18;

TEST(SpecVerify, OutputDistributionEqualsTheTargetsWithADraftModelsProbabilities) {
  EXPECT_LT(run_chi_square(false, kExact), kChiSquare999);
}

TEST(SpecVerify, OutputDistributionEqualsTheTargetsWithDeterministicDrafts) {
  EXPECT_LT(run_chi_square(true, kExact), kChiSquare999);
}

TEST(SpecVerify, TheChiSquareTestCatchesAVerifierThatAcceptsEveryDraft) {
  const Judge accept_all = [](const std::vector<float>&, int32_t d, const SparseProbs&,
                              std::mt19937_64&) {
    return Judgement{true, d};
  };
  EXPECT_GT(run_chi_square(false, accept_all), 10 * kChiSquare999);
}

TEST(SpecVerify, TheChiSquareTestCatchesResamplingFromPInsteadOfTheResidual) {
  const Judge naive = [](const std::vector<float>& p, int32_t d, const SparseProbs& q,
                         std::mt19937_64& rng) {
    const Judgement j = kExact(p, d, q, rng);
    return j.accepted ? j : Judgement{false, draw(p, rng)};
  };
  EXPECT_GT(run_chi_square(false, naive), kChiSquare999);
}

TEST(SpecVerify, ADeterministicDraftIsAcceptedWithItsTargetProbability) {
  const std::vector<float> p = {0.1f, 0.6f, 0.3f};
  EXPECT_TRUE(judge_draft(p, 1, {}, 0.59, 0.5).accepted);
  const Judgement j = judge_draft(p, 1, {}, 0.61, 0.5);
  EXPECT_FALSE(j.accepted);
  // The residual is {0.1, 0, 0.3}: u = 0.5 lands in token 2's share.
  EXPECT_EQ(j.token, 2);
}

TEST(SpecVerify, ARejectedDraftIsNeverItsOwnReplacement) {
  const std::vector<float> p = {0.25f, 0.25f, 0.5f};
  const SparseProbs q = {{0, 2}, {0.5f, 0.5f}};
  for (double u = 0; u < 1; u += 0.01) {
    const Judgement j = judge_draft(p, 0, q, 0.99, u);
    ASSERT_FALSE(j.accepted);
    EXPECT_NE(j.token, 0);
  }
}

TEST(SpecVerify, GreedyAcceptsExactlyTheArgmaxAndConsumesNoRandomness) {
  SamplingParams sp;
  sp.temperature = 0;
  Sampler s(sp, 4);
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f};
  EXPECT_TRUE(s.judge(logits.data(), 1, {}, 0).accepted);
  const Judgement j = s.judge(logits.data(), 3, {}, 0);
  EXPECT_FALSE(j.accepted);
  EXPECT_EQ(j.token, 1);

  SamplingParams hot;
  hot.temperature = 1;
  hot.top_k = 0;
  hot.min_p = 0;
  hot.top_p = 1;
  // A sampled judgement reads draws 1 and 2 of its position: the same ones
  // however often it is asked, and never the draw a sample there reads.
  Sampler a(hot, 4), b(hot, 4);
  const std::vector<float> p = a.probabilities(logits.data());
  for (int pos = 0; pos < 50; ++pos) {
    const Judgement ja = a.judge(logits.data(), 2, {}, pos);
    (void)b.sample(logits.data(), pos);
    const Judgement jb = b.judge(logits.data(), 2, {}, pos);
    EXPECT_EQ(ja.accepted, jb.accepted);
    EXPECT_EQ(ja.token, jb.token);
    const Judgement by_hand =
        judge_draft(p, 2, {}, sampling_uniform(hot.seed, pos, 1), sampling_uniform(hot.seed, pos, 2));
    EXPECT_EQ(ja.accepted, by_hand.accepted);
    EXPECT_EQ(ja.token, by_hand.token);
  }
}

TEST(SpecVerify, MalformedDraftProbabilitiesAreNamed) {
  EXPECT_TRUE(validate_sparse_probs({}, 10).ok());
  EXPECT_TRUE(validate_sparse_probs({{1, 2}, {0.5f, 0.5f}}, 10).ok());
  const Status outside = validate_sparse_probs({{10}, {1.0f}}, 10);
  EXPECT_NE(outside.message().find("outside the vocabulary"), std::string::npos);
  EXPECT_FALSE(validate_sparse_probs({{1}, {}}, 10).ok());
  EXPECT_FALSE(validate_sparse_probs({{1}, {NAN}}, 10).ok());
  EXPECT_FALSE(validate_sparse_probs({{1}, {-0.5f}}, 10).ok());
  EXPECT_FALSE(validate_sparse_probs({{1}, {0.0f}}, 10).ok());
}

}  // namespace
}  // namespace swarm
