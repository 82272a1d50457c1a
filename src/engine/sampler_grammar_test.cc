// The sampler under a grammar: rejected tokens are masked as if their logits
// were -inf, stop tokens wait for a complete match, and the prompt is free.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/sampler.h"

namespace swarm {
namespace {

// id:      0       1    2    3    4     5      6     7
// piece: <eos>    "{"  "}"  "a"  "b"  "ab"  "{}"   "\xC3" (half of é) ; 8: "\xA9"
std::shared_ptr<const GrammarVocab> vocab() {
  return GrammarVocab::from_pieces({"", "{", "}", "a", "b", "ab", "{}", "\xC3", "\xA9"},
                                   {false, true, true, true, true, true, true, true, true});
}
constexpr int kVocab = 9;
constexpr int32_t kEos = 0;

SamplingParams with_grammar(const std::string& g, float temp = 0.0f) {
  SamplingParams p;
  p.temperature = temp;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.grammar = g;
  p.stop_tokens = {kEos};
  return p;
}

TEST(SamplerGrammar, GreedyTakesTheLikeliestAllowedToken) {
  Sampler s(with_grammar("root ::= \"{\" [ab]* \"}\""), kVocab, vocab());
  ASSERT_TRUE(s.grammar_status().ok());
  std::vector<float> l = {9, 1, 2, 8, 3, 7, 0.5f, 0, 0};
  EXPECT_EQ(s.sample(l.data(), 0), 1);  // eos (9) and "a" (8) are not allowed yet: "{"
  s.accept(1);
  EXPECT_EQ(s.sample(l.data(), 1), 3);  // "a" now fits; eos still does not
  s.accept(3);
  l[3] = -1;
  l[5] = -1;
  EXPECT_EQ(s.sample(l.data(), 2), 4);  // "b"; "{}" does not fit
  s.accept(2);                         // "}" forced: the match is complete
  EXPECT_TRUE(s.grammar_finished());
  l = {0, 9, 9, 9, 9, 9, 9, 9, 9};
  EXPECT_EQ(s.sample(l.data(), 3), kEos);  // nothing may follow but a stop token
}

TEST(SamplerGrammar, SampledChoicesFollowTheMaskedDistribution) {
  const std::vector<float> l = {3, 0.5f, 1, 2, 0.2f, 1.5f, 2.5f, 0, 0};
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    SamplingParams p = with_grammar("root ::= \"{\" \"a\"* \"}\"", 1.0f);
    p.seed = seed;
    Sampler s(p, kVocab, vocab());
    const int32_t first = s.sample(l.data(), 0);
    EXPECT_TRUE(first == 1 || first == 6) << first;  // "{" or "{}"
  }
  // probabilities() is the softmax over the allowed tokens alone.
  Sampler s(with_grammar("root ::= \"{\" \"a\"* \"}\"", 1.0f), kVocab, vocab());
  const std::vector<float> p = s.probabilities(l.data());
  const double z = std::exp(0.5) + std::exp(2.5);
  EXPECT_NEAR(p[1], std::exp(0.5) / z, 1e-6);
  EXPECT_NEAR(p[6], std::exp(2.5) / z, 1e-6);
  EXPECT_EQ(p[0], 0.0f);
  EXPECT_EQ(p[3], 0.0f);
}

TEST(SamplerGrammar, TopKCountsOnlyAllowedTokens) {
  SamplingParams p = with_grammar("root ::= [ab]+", 1.0f);
  p.top_k = 2;
  Sampler s(p, kVocab, vocab());
  const std::vector<float> l = {9, 8, 7, 1, 2, 3, 6, 0, 0};
  const std::vector<float> probs = s.probabilities(l.data());
  // Allowed: a(1), b(2), ab(3); the top two are "ab" and "b".
  EXPECT_GT(probs[5], 0.0f);
  EXPECT_GT(probs[4], 0.0f);
  EXPECT_EQ(probs[3], 0.0f);
  EXPECT_EQ(probs[0], 0.0f);
}

TEST(SamplerGrammar, ThePromptIsNotConstrained) {
  SamplingParams p = with_grammar("root ::= \"a\"+");
  p.grammar_start = 2;
  Sampler s(p, kVocab, vocab());
  s.accept(1);  // prompt tokens the grammar would reject
  s.accept(2);
  EXPECT_TRUE(s.constrained());
  std::vector<float> l = {0, 9, 0, 1, 0, 0, 0, 0, 0};
  EXPECT_EQ(s.sample(l.data(), 2), 3);
  s.accept(3);
  l[kEos] = 10;
  EXPECT_EQ(s.sample(l.data(), 3), kEos);  // complete: eos may come
}

TEST(SamplerGrammar, SplitUtf8TokensAndForks) {
  Sampler s(with_grammar("root ::= \"\xC3\xA9\" \"}\""), kVocab, vocab());
  std::vector<float> l = {0, 0, 0, 0, 0, 0, 0, 1, 0};
  EXPECT_EQ(s.sample(l.data(), 0), 7);
  s.accept(7);
  Sampler fork = s;  // a snapshot: same choices from here
  l = {5, 0, 4, 0, 0, 0, 0, 0, 1};
  EXPECT_EQ(s.sample(l.data(), 1), 8);
  EXPECT_EQ(fork.sample(l.data(), 1), 8);
  s.accept(8);
  EXPECT_EQ(s.sample(l.data(), 2), 2);
  EXPECT_EQ(fork.sample(l.data(), 1), 8);  // the fork did not move
  s.reset();
  EXPECT_EQ(s.sample(l.data(), 0), 7);  // back at the start
}

TEST(SamplerGrammar, GreedyJudgementUsesTheMask) {
  Sampler s(with_grammar("root ::= \"b\""), kVocab, vocab());
  const std::vector<float> l = {0, 0, 0, 9, 1, 0, 0, 0, 0};
  const Judgement no = s.judge(l.data(), 3, {}, 0);
  EXPECT_FALSE(no.accepted);
  EXPECT_EQ(no.token, 4);
  EXPECT_TRUE(s.judge(l.data(), 4, {}, 0).accepted);
}

TEST(SamplerGrammar, BadGrammarIsAValidationError) {
  SamplingParams p = with_grammar("root ::= (");
  const Status st = p.validate(kVocab);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("grammar"), std::string::npos);
  Sampler s(with_grammar("root ::= \"a\""), kVocab, nullptr);
  EXPECT_FALSE(s.grammar_status().ok());  // no token bytes to check against
}

}  // namespace
}  // namespace swarm
