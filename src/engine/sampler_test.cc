#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>

namespace swarm {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Parameters with every filter off: temperature 1 samples the plain softmax.
SamplingParams plain(uint64_t seed = 1) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  return p;
}

std::vector<double> softmax(const std::vector<float>& l, double temp = 1.0) {
  std::vector<double> p(l.size());
  const double top = *std::max_element(l.begin(), l.end());
  double sum = 0;
  for (size_t i = 0; i < l.size(); ++i) sum += (p[i] = std::exp((l[i] - top) / temp));
  for (double& x : p) x /= sum;
  return p;
}

// Logits whose softmax is exactly `probs`.
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::vector<float> wavy_logits(int n) {
  std::vector<float> l(n);
  for (int i = 0; i < n; ++i)
    l[i] = static_cast<float>(std::sin(i * 1.7) + 0.3 * std::cos(i * 0.37));
  return l;
}

// The tokens chosen at positions [from, from + n), all from the same logits.
std::vector<int32_t> draw(Sampler& s, const std::vector<float>& logits, int n, int from = 0) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(s.sample(logits.data(), from + i));
  return out;
}

TEST(Sampler, DefaultsAreLlamaCpps) {
  SamplingParams p;
  EXPECT_FLOAT_EQ(p.temperature, 0.8f);
  EXPECT_EQ(p.top_k, 40);
  EXPECT_FLOAT_EQ(p.top_p, 0.95f);
  EXPECT_FLOAT_EQ(p.min_p, 0.05f);
  EXPECT_FLOAT_EQ(p.repeat_penalty, 1.0f);
  EXPECT_EQ(p.repeat_last_n, 64);
  EXPECT_EQ(p.max_tokens, -1);
  EXPECT_TRUE(p.validate(32000).ok());
}

TEST(Sampler, GreedyIsArgmax) {
  SamplingParams p = plain();
  p.temperature = 0.0f;
  const std::vector<float> l = wavy_logits(1000);
  const auto best = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
  Sampler s(p, 1000);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(l.data(), i), best);
  const std::vector<float> probs = s.probabilities(l.data());
  EXPECT_EQ(probs[best], 1.0f);
  EXPECT_EQ(std::accumulate(probs.begin(), probs.end(), 0.0f), 1.0f);
  // Negative temperature is greedy too; ties go to the lowest id.
  p.temperature = -1.0f;
  Sampler t(p, 4);
  const std::vector<float> tie = {0.0f, 2.0f, 2.0f, 1.0f};
  EXPECT_EQ(t.sample(tie.data(), 0), 1);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedsDiffer) {
  const std::vector<float> l = wavy_logits(50);
  Sampler a(plain(42), 50), b(plain(42), 50), c(plain(43), 50);
  const std::vector<int32_t> ta = draw(a, l, 200);
  EXPECT_EQ(ta, draw(b, l, 200));
  EXPECT_NE(ta, draw(c, l, 200));
  // The sequence is not constant: the draws really are random.
  EXPECT_NE(std::count(ta.begin(), ta.end(), ta[0]), 200);
}

// The draws are keyed by position, not by how many came before: asking again,
// in another order, or after other draws (a cancelled speculative run) gives
// the same token for the same position.
TEST(Sampler, ChoicesDependOnThePositionNotOnEarlierDraws) {
  const std::vector<float> l = wavy_logits(50);
  Sampler a(plain(7), 50), b(plain(7), 50);
  const std::vector<int32_t> forward = draw(a, l, 60);
  (void)draw(b, l, 500, 1000);  // spent elsewhere
  for (int i = 59; i >= 0; --i) ASSERT_EQ(b.sample(l.data(), i), forward[static_cast<size_t>(i)]) << i;
  // A judgement uses other draws of its position than a sample does.
  int differ = 0;
  for (int pos = 0; pos < 200; ++pos)
    differ += sampling_uniform(7, pos, 0) != sampling_uniform(7, pos, 1) &&
              sampling_uniform(7, pos, 1) != sampling_uniform(7, pos, 2);
  EXPECT_EQ(differ, 200);
}

TEST(Sampler, CopyForksTheHistoryAndResetForgetsIt) {
  SamplingParams p = plain(7);
  p.repeat_penalty = 1.5f;
  p.repeat_last_n = -1;
  const std::vector<float> l = wavy_logits(50);
  Sampler a(p, 50);
  const std::vector<int32_t> fresh = draw(a, l, 30);
  for (int32_t t : fresh) a.accept(t);
  Sampler fork = a;
  const std::vector<int32_t> next = draw(a, l, 30, 30);
  EXPECT_EQ(draw(fork, l, 30, 30), next);
  EXPECT_NE(a.adjusted_logits(l.data()), l);  // the penalties read the history
  a.reset();
  EXPECT_EQ(a.adjusted_logits(l.data()), l);
  EXPECT_EQ(draw(a, l, 30), fresh);
}

// The draws look uniform and independent across positions and seeds: each
// tenth of [0, 1) gets its share, and neighbouring positions do not correlate.
TEST(Sampler, CounterDrawsAreUniformAndUncorrelated) {
  constexpr int kN = 100000;
  std::vector<int> bins(10, 0);
  double sum_xy = 0, sum_x = 0, sum_y = 0, sum_xx = 0, sum_yy = 0;
  for (int i = 0; i < kN; ++i) {
    const uint64_t seed = static_cast<uint64_t>(i / 1000);
    const double x = sampling_uniform(seed, i % 1000, 0);
    const double y = sampling_uniform(seed, i % 1000 + 1, 0);
    ASSERT_GE(x, 0.0);
    ASSERT_LT(x, 1.0);
    ++bins[static_cast<size_t>(x * 10)];
    sum_x += x, sum_y += y, sum_xy += x * y, sum_xx += x * x, sum_yy += y * y;
  }
  // Chi-square with 9 degrees of freedom: above 27.9 one time in a thousand.
  double chi2 = 0;
  for (int b : bins) chi2 += (b - kN / 10.0) * (b - kN / 10.0) / (kN / 10.0);
  EXPECT_LT(chi2, 27.9);
  const double cov = sum_xy / kN - (sum_x / kN) * (sum_y / kN);
  const double r = cov / std::sqrt((sum_xx / kN - (sum_x / kN) * (sum_x / kN)) *
                                   (sum_yy / kN - (sum_y / kN) * (sum_y / kN)));
  EXPECT_LT(std::abs(r), 0.02);  // |r| of independent draws: about 0.003
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p = plain(3);
  p.top_k = 1;
  const std::vector<float> l = wavy_logits(300);
  const auto best = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
  Sampler s(p, 300);
  for (int32_t t : draw(s, l, 200)) ASSERT_EQ(t, best);
}

TEST(Sampler, TopKKeepsTheKMostLikely) {
  SamplingParams p = plain();
  p.top_k = 3;
  const std::vector<float> l = {0.1f, 3.0f, -1.0f, 2.0f, 2.5f, 0.0f};
  const std::vector<float> probs = Sampler(p, 6).probabilities(l.data());
  const std::vector<double> kept = softmax({3.0f, 2.0f, 2.5f});
  EXPECT_NEAR(probs[1], kept[0], 1e-6);
  EXPECT_NEAR(probs[3], kept[1], 1e-6);
  EXPECT_NEAR(probs[4], kept[2], 1e-6);
  EXPECT_EQ(probs[0] + probs[2] + probs[5], 0.0f);
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  const std::vector<float> l = logits_of({0.5, 0.2, 0.15, 0.1, 0.05});
  auto kept = [&l](float top_p) {
    SamplingParams p = plain();
    p.top_p = top_p;
    return Sampler(p, 5).probabilities(l.data());
  };
  std::vector<float> p = kept(0.65f);  // 0.5 < 0.65 <= 0.5 + 0.2
  EXPECT_NEAR(p[0], 0.5 / 0.7, 1e-6);
  EXPECT_NEAR(p[1], 0.2 / 0.7, 1e-6);
  EXPECT_EQ(p[2] + p[3] + p[4], 0.0f);
  p = kept(0.8f);  // needs the third: 0.85
  EXPECT_NEAR(p[2], 0.15 / 0.85, 1e-6);
  EXPECT_EQ(p[3] + p[4], 0.0f);
  p = kept(0.3f);  // the top token alone reaches it
  EXPECT_EQ(p[0], 1.0f);
  p = kept(0.0f);  // at least one token always stays
  EXPECT_EQ(p[0], 1.0f);
  p = kept(1.0f);  // off
  EXPECT_NEAR(p[4], 0.05, 1e-6);
}

TEST(Sampler, MinPIsRelativeToTheTopProbability) {
  const std::vector<float> l = logits_of({0.5, 0.2, 0.15, 0.1, 0.05});
  auto kept = [&l](float min_p) {
    SamplingParams p = plain();
    p.min_p = min_p;
    return Sampler(p, 5).probabilities(l.data());
  };
  std::vector<float> p = kept(0.25f);  // floor 0.125: keeps 0.5, 0.2, 0.15
  EXPECT_NEAR(p[0], 0.5 / 0.85, 1e-6);
  EXPECT_NEAR(p[2], 0.15 / 0.85, 1e-6);
  EXPECT_EQ(p[3] + p[4], 0.0f);
  p = kept(0.35f);  // floor 0.175: keeps 0.5, 0.2
  EXPECT_NEAR(p[1], 0.2 / 0.7, 1e-6);
  EXPECT_EQ(p[2], 0.0f);
  p = kept(0.05f);  // floor 0.025: keeps all
  EXPECT_NEAR(p[4], 0.05, 1e-6);
}

TEST(Sampler, FiltersRunBeforeTemperature) {
  // top-p on the untempered distribution keeps two tokens; temperature then reshapes
  // just those two (llama.cpp's order).
  SamplingParams p = plain();
  p.top_p = 0.65f;
  p.temperature = 2.0f;
  const std::vector<float> l = logits_of({0.5, 0.2, 0.15, 0.1, 0.05});
  const std::vector<float> probs = Sampler(p, 5).probabilities(l.data());
  const std::vector<double> expect = softmax({l[0], l[1]}, 2.0);
  EXPECT_NEAR(probs[0], expect[0], 1e-6);
  EXPECT_NEAR(probs[1], expect[1], 1e-6);
  EXPECT_EQ(probs[2], 0.0f);
}

TEST(Sampler, TemperatureSharpensAndFlattensAndDrawsMatchIt) {
  const std::vector<float> l = {2.0f, 1.0f, 0.0f, -1.0f};
  double previous_top = 1.0;
  for (double temp : {0.5, 1.0, 2.0}) {
    SamplingParams p = plain(1234);
    p.temperature = static_cast<float>(temp);
    Sampler s(p, 4);
    const std::vector<double> expect = softmax(l, temp);
    const std::vector<float> probs = s.probabilities(l.data());
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(probs[i], expect[i], 1e-6) << "T=" << temp;
    EXPECT_LT(expect[0], previous_top);  // higher temperature: flatter
    previous_top = expect[0];

    const int n = 40000;
    std::vector<int> count(4, 0);
    for (int32_t t : draw(s, l, n)) ++count[t];
    for (int i = 0; i < 4; ++i) {
      // 5 standard deviations of a binomial proportion.
      const double tol = 5 * std::sqrt(expect[i] * (1 - expect[i]) / n);
      EXPECT_NEAR(static_cast<double>(count[i]) / n, expect[i], tol)
          << "T=" << temp << " token " << i;
    }
  }
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplingParams p = plain();
  p.repeat_penalty = 2.0f;
  Sampler s(p, 5);
  for (int32_t t : {0, 1, 1}) s.accept(t);
  const std::vector<float> l = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f};
  const std::vector<float> a = s.adjusted_logits(l.data());
  EXPECT_EQ(a, (std::vector<float>{1.0f, -4.0f, 1.0f, 0.5f, 3.0f}));
}

TEST(Sampler, PresenceAndFrequencyPenaltiesAreOpenAIs) {
  SamplingParams p = plain();
  p.presence_penalty = 0.25f;
  p.frequency_penalty = 0.5f;
  Sampler s(p, 5);
  for (int32_t t : {0, 1, 1, 1}) s.accept(t);
  const std::vector<float> l = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f};
  // token 0 once: 2 - 0.5 - 0.25; token 1 three times: -2 - 1.5 - 0.25.
  EXPECT_EQ(s.adjusted_logits(l.data()), (std::vector<float>{1.25f, -3.75f, 1.0f, 0.5f, 3.0f}));
}

TEST(Sampler, PenaltiesLookOnlyAtTheLastNTokens) {
  SamplingParams p = plain();
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 2;
  Sampler s(p, 5);
  for (int32_t t : {0, 4, 1, 1}) s.accept(t);  // the window is {1, 1}
  const std::vector<float> l = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f};
  EXPECT_EQ(s.adjusted_logits(l.data()), (std::vector<float>{2.0f, -4.0f, 1.0f, 0.5f, 3.0f}));

  p.repeat_last_n = 0;  // off
  Sampler off(p, 5);
  off.accept(0);
  EXPECT_EQ(off.adjusted_logits(l.data()), l);

  p.repeat_last_n = -1;  // the whole history
  Sampler all(p, 5);
  for (int i = 0; i < 100; ++i) all.accept(i == 0 ? 4 : 2);
  EXPECT_EQ(all.adjusted_logits(l.data())[4], 1.5f);
}

TEST(Sampler, PenaltiesChangeGreedysChoice) {
  SamplingParams p = plain();
  p.temperature = 0.0f;
  p.repeat_penalty = 1.5f;
  Sampler s(p, 3);
  const std::vector<float> l = {1.0f, 1.2f, 0.0f};
  EXPECT_EQ(s.sample(l.data(), 0), 1);
  s.accept(1);
  EXPECT_EQ(s.sample(l.data(), 1), 0);  // 1.2 / 1.5 = 0.8 < 1.0
}

TEST(Sampler, LogitBiasShiftsAndNegativeInfinityBans) {
  SamplingParams p = plain(5);
  p.temperature = 0.0f;
  p.logit_bias = {{4, -kInf}, {0, 10.0f}};
  const std::vector<float> l = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f};
  Sampler greedy(p, 5);
  EXPECT_EQ(greedy.adjusted_logits(l.data()),
            (std::vector<float>{12.0f, -2.0f, 1.0f, 0.5f, -kInf}));
  EXPECT_EQ(greedy.sample(l.data(), 0), 0);

  p.temperature = 1.0f;
  p.logit_bias = {{4, -kInf}};
  Sampler s(p, 5);
  EXPECT_EQ(s.probabilities(l.data())[4], 0.0f);
  for (int32_t t : draw(s, l, 2000)) ASSERT_NE(t, 4);
}

TEST(Sampler, ProbabilitiesSumToOneWithTheDefaults) {
  const std::vector<float> l = wavy_logits(5000);
  const std::vector<float> probs = Sampler(SamplingParams{}, 5000).probabilities(l.data());
  EXPECT_NEAR(std::accumulate(probs.begin(), probs.end(), 0.0), 1.0, 1e-5);
  EXPECT_LE(std::count_if(probs.begin(), probs.end(), [](float x) { return x > 0; }), 40);  // top-k
}

TEST(Sampler, StopTokensAndMaxTokens) {
  SamplingParams p;
  p.stop_tokens = {2, 7};
  p.max_tokens = 3;
  Sampler s(p, 10);
  EXPECT_TRUE(s.is_stop_token(7));
  EXPECT_FALSE(s.is_stop_token(3));
  EXPECT_FALSE(s.reached_max_tokens(2));
  EXPECT_TRUE(s.reached_max_tokens(3));
  p.max_tokens = -1;
  EXPECT_FALSE(Sampler(p, 10).reached_max_tokens(1 << 30));
}

TEST(Sampler, ValidateNamesTheBadField) {
  auto error = [](SamplingParams p, int n_vocab = 10) { return p.validate(n_vocab).message(); };
  SamplingParams p;
  EXPECT_EQ(error(p, 0).empty(), false);
  p.top_p = std::nanf("");
  EXPECT_NE(error(p).find("top_p"), std::string::npos);
  p = SamplingParams{};
  p.min_p = 2.0f;
  EXPECT_NE(error(p).find("min_p"), std::string::npos);
  p = SamplingParams{};
  p.repeat_penalty = 0.0f;
  EXPECT_NE(error(p).find("repeat_penalty"), std::string::npos);
  p = SamplingParams{};
  p.logit_bias = {{10, 1.0f}};
  EXPECT_NE(error(p).find("logit_bias"), std::string::npos);
  p = SamplingParams{};
  p.logit_bias = {{3, -kInf}};
  EXPECT_TRUE(p.validate(10).ok());
  p.stop_tokens = {-1};
  EXPECT_NE(error(p).find("stop_tokens"), std::string::npos);
  p = SamplingParams{};
  p.max_tokens = -2;
  EXPECT_NE(error(p).find("max_tokens"), std::string::npos);
}

// Feeds `pieces` and returns everything emitted, flushing at the end unless stopped.
std::string stream(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& piece : pieces) out += m.push(piece);
  return out + m.flush();
}

TEST(StopMatcher, HoldsBackAPartialMatchAcrossPieces) {
  StopMatcher m({"\nUser:"});
  EXPECT_EQ(m.push("Hel"), "Hel");
  EXPECT_EQ(m.push("lo\nUser:"), "lo");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched(), "\nUser:");
  EXPECT_EQ(m.push("more"), "");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, StopSplitOverManyPieces) {
  StopMatcher m({"\nUser:"});
  EXPECT_EQ(m.push("Hello"), "Hello");
  EXPECT_EQ(m.push("\n"), "");
  EXPECT_EQ(m.push("Us"), "");
  EXPECT_EQ(m.push("er"), "");
  EXPECT_EQ(m.push(": and more"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, ReleasesHeldTextWhenTheMatchFails) {
  StopMatcher m({"\nUser:"});
  EXPECT_EQ(m.push("Hello\nUs"), "Hello");
  EXPECT_EQ(m.push("ual"), "\nUsual");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push("\n"), "");
  EXPECT_EQ(m.flush(), "\n");  // the end of generation releases what was held
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, SelfOverlappingStop) {
  StopMatcher m({"aab"});
  EXPECT_EQ(stream(m, {"a", "a", "a", "b", "c"}), "a");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, SeveralStopStrings) {
  StopMatcher m({"###", "\n\n"});
  EXPECT_EQ(m.push("a\n"), "a");
  EXPECT_EQ(m.push("#"), "\n");  // "\n#" is no start of "\n\n", "#" may start "###"
  EXPECT_EQ(m.push("##x"), "");
  EXPECT_EQ(m.matched(), "###");

  StopMatcher first({"world", "lo w"});  // the one that starts first wins
  EXPECT_EQ(first.push("hello world"), "hel");
  EXPECT_EQ(first.matched(), "lo w");

  StopMatcher none({"", "zz"});  // empty stops are ignored
  EXPECT_EQ(stream(none, {"abc", "z"}), "abcz");
  EXPECT_FALSE(none.stopped());
}

TEST(StopMatcher, Utf8) {
  StopMatcher m({"。"});
  EXPECT_EQ(stream(m, {"你好", "。", "再见"}), "你好");
  EXPECT_TRUE(m.stopped());

  // A stop character whose first byte arrives alone, then a different character.
  StopMatcher accent({"é"});
  EXPECT_EQ(accent.push("caf\xC3"), "caf");
  EXPECT_EQ(accent.push("\xA8!"), "è!");
  EXPECT_EQ(accent.push("caf\xC3"), "caf");
  EXPECT_EQ(accent.push("\xA9 au lait"), "");
  EXPECT_TRUE(accent.stopped());

  // Never emits half a character, even with no stop strings.
  StopMatcher plain({});
  EXPECT_EQ(plain.push("a\xE4\xBD"), "a");
  EXPECT_EQ(plain.push("\xA0"), "你");
  EXPECT_EQ(plain.push("\xF0\x9F"), "");
  EXPECT_EQ(plain.push("\x98\x80."), "😀.");
  EXPECT_EQ(plain.push("\xE4"), "");
  EXPECT_EQ(plain.flush(), "\xE4");  // a dangling byte still comes out at the end
}

}  // namespace
}  // namespace swarm
