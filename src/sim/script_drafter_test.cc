#include "sim/script_drafter.h"

#include <gtest/gtest.h>

namespace swarm::sim {
namespace {

struct Asked {
  double guess_share = 0;        // questions with a guess
  double guess_after_guess = 0;  // of the questions after one with a guess
  double right_share = 0;        // drafted tokens that are the script's
};

// Asks at positions 0, 1, ..., `n` - 1 for `drafts` tokens each.
Asked ask(const Speculation& s, int n, int drafts = 1) {
  ScriptDrafter d(7, s, 0, 11);
  std::vector<int32_t> context;
  int guesses = 0, after = 0, again = 0, drafted = 0, right = 0;
  bool last = false;
  for (int pos = 0; pos < n; ++pos) {
    Result<DraftProposal> p = d.propose(context, drafts);
    EXPECT_TRUE(p.ok());
    const bool guessed = !p->tokens.empty();
    if (guessed) {
      EXPECT_EQ(p->tokens.size(), static_cast<size_t>(drafts));
    }
    for (size_t i = 0; i < p->tokens.size(); ++i, ++drafted)
      right += p->tokens[i] == script_token(7, pos + static_cast<int64_t>(i));
    if (pos > 0 && last) ++after, again += guessed;
    guesses += guessed;
    last = guessed;
    context.push_back(script_token(7, pos));
  }
  return {static_cast<double>(guesses) / n, after > 0 ? static_cast<double>(again) / after : 0,
          drafted > 0 ? static_cast<double>(right) / drafted : 0};
}

// Guesses at the scenario's share of questions, each on its own (a guess
// after a guess as often as any) or in runs (as often in all, but a guess
// mostly follows a guess).
TEST(ScriptDrafterTest, GuessesAtTheRateOnTheirOwnOrInRuns) {
  for (double after_guess : {-1.0, 0.9}) {
    SCOPED_TRACE(after_guess);
    Speculation s;
    s.proposal_rate = 0.3;
    s.guess_after_guess = after_guess;
    const Asked a = ask(s, 4000);
    EXPECT_NEAR(a.guess_share, 0.3, 0.05);
    EXPECT_NEAR(a.guess_after_guess, after_guess < 0 ? 0.3 : 0.9, 0.05);
  }
}

TEST(ScriptDrafterTest, AGuessIsForEveryTokenAskedAndHoldsAtTheAcceptance) {
  Speculation s;
  s.acceptance = 0.6;
  const Asked a = ask(s, 2000, 4);
  EXPECT_EQ(a.guess_share, 1.0);
  EXPECT_NEAR(a.right_share, 0.6, 0.04);
}

// Asked again at a position (as the driver does after a rejected draft), the
// same answer: guess or not, and the same drafts.
TEST(ScriptDrafterTest, TheSamePositionGetsTheSameAnswer) {
  Speculation s;
  s.proposal_rate = 0.5;
  s.acceptance = 0.5;
  ScriptDrafter d(3, s, 0, 5);
  std::vector<int32_t> context;
  std::vector<DraftProposal> first;
  for (int pos = 0; pos < 200; ++pos, context.push_back(1)) first.push_back(*d.propose(context, 3));
  context.clear();
  for (int pos = 0; pos < 200; ++pos, context.push_back(1))
    EXPECT_EQ(d.propose(context, 3)->tokens, first[pos].tokens) << pos;
}

// A trace replaces the rates: after a prompt of 4, a question after 5 tokens
// gets no guess, after 6 two drafts that hold and then wrong ones, after 7
// none that hold; past the trace, no guess.
TEST(ScriptDrafterTest, ATraceSaysWhereTheDraftsAreAndHowManyHold) {
  Speculation s;
  s.trace = {-1, 2, 0};
  ScriptDrafter d(9, s, 4, 1);
  auto at = [&](int length) { return *d.propose(std::vector<int32_t>(length, 1), 4); };
  EXPECT_TRUE(at(5).tokens.empty());
  const DraftProposal two = at(6);
  ASSERT_EQ(two.tokens.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(two.tokens[i] == script_token(9, 6 + i), i < 2) << i;
  const DraftProposal none = at(7);
  ASSERT_EQ(none.tokens.size(), 4u);
  EXPECT_NE(none.tokens[0], script_token(9, 7));
  EXPECT_TRUE(at(8).tokens.empty());
  EXPECT_TRUE(at(4).tokens.empty());
  // Built on its own wrong draft (position 8 of the proposal after 6), the
  // context is off the text: a guess, all wrong, where the trace has none.
  std::vector<int32_t> off(6, 1);
  off.insert(off.end(), two.tokens.begin(), two.tokens.end());
  const DraftProposal doomed = *d.propose(off, 2);
  ASSERT_EQ(doomed.tokens.size(), 2u);
  EXPECT_NE(doomed.tokens[0], script_token(9, 10));
}

}  // namespace
}  // namespace swarm::sim
