// The step deadline rule on hand-made step times, the right answers worked
// out in the comments; no clock.
#include "pipeline/step_deadline.h"

#include <gtest/gtest.h>

namespace swarm {
namespace {

using std::chrono::milliseconds;

StepDeadlineOptions options() {
  StepDeadlineOptions o;
  o.multiplier = 4;
  o.margin = milliseconds(200);
  o.floor = milliseconds(2000);
  o.ceiling = milliseconds(60000);
  return o;
}

StepTimeHistory decode_steps(std::initializer_list<double> seconds) {
  StepTimeHistory h;
  for (double s : seconds) h.observe(1, s);
  return h;
}

TEST(StepDeadlineTest, NoMeasurementsGiveTheUnmeasuredDeadline) {
  StepDeadlineOptions o = options();
  o.unmeasured = milliseconds(5000);
  EXPECT_EQ(step_deadline(StepTimeHistory(), 1, o), milliseconds(5000));
  EXPECT_EQ(step_deadline(StepTimeHistory(), 4000, o), milliseconds(5000));
  // Two steps are not yet enough to judge by.
  EXPECT_EQ(step_deadline(decode_steps({0.5, 0.5}), 1, o), milliseconds(5000));
  // The ceiling still caps it.
  o.ceiling = milliseconds(1500);
  EXPECT_EQ(step_deadline(StepTimeHistory(), 1, o), milliseconds(1500));
}

TEST(StepDeadlineTest, DecodeStepIsMultipleOfTheMedianPlusMargin) {
  // Median of {0.9, 1.0, 1.1, 30}: (1.0 + 1.1) / 2 = 1.05 s; one stall of 30 s
  // moves it little. 4 x 1050 + 200 = 4400 ms.
  EXPECT_EQ(step_deadline(decode_steps({0.9, 1.0, 1.1, 30}), 1, options()), milliseconds(4400));
  // Odd count: median 1.0 s -> 4200 ms.
  EXPECT_EQ(step_deadline(decode_steps({1.0, 30, 0.5}), 1, options()), milliseconds(4200));
}

TEST(StepDeadlineTest, FastChainsGetTheFloor) {
  // 2 ms steps: 4 x 2 + 200 = 208 ms, raised to the 2 s floor.
  EXPECT_EQ(step_deadline(decode_steps({0.002, 0.002, 0.003}), 1, options()), milliseconds(2000));
}

TEST(StepDeadlineTest, SlowChainsAreCappedByTheCeiling) {
  // 20 s steps: 80.2 s, capped at 60 s.
  EXPECT_EQ(step_deadline(decode_steps({20, 20, 20}), 1, options()), milliseconds(60000));
  // A ceiling below the floor wins: an operator's --step-timeout is absolute.
  StepDeadlineOptions o = options();
  o.ceiling = milliseconds(1500);
  EXPECT_EQ(step_deadline(decode_steps({0.002, 0.002, 0.002}), 1, o), milliseconds(1500));
  // Absurd measurements do not overflow.
  EXPECT_EQ(step_deadline(decode_steps({1e300, 1e300, 1e300}), 1, options()), milliseconds(60000));
}

TEST(StepDeadlineTest, PromptsScaleWithTheirTokensAtTheMeasuredRate) {
  StepTimeHistory h = decode_steps({0.1, 0.1, 0.1});
  // Before any long step: each token as slow as a decode step. 100 tokens:
  // 100 x 0.1 = 10 s expected -> 4 x 10 s + 0.2 = 40.2 s.
  EXPECT_EQ(step_deadline(h, 100, options()), milliseconds(40200));
  // A 200-token prompt took 2 s: 10 ms per token. A 500-token step is then
  // expected at 0.1 + 500 x 0.01 = 5.1 s -> 4 x 5.1 + 0.2 = 20.6 s.
  h.observe(200, 2.0);
  EXPECT_EQ(step_deadline(h, 500, options()), milliseconds(20600));
  // Short steps (speculative runs of up to 32 tokens) keep the step time.
  EXPECT_EQ(step_deadline(h, 32, options()), milliseconds(2000));
}

TEST(StepDeadlineTest, BeforeAnyPromptTheStagesReportedComputeSetsTheRate) {
  // Decode steps take 300 ms under load (queueing), but the stages report
  // 0.5 ms of compute per token. A 100-token prompt: 0.3 + 100 x 0.0005 =
  // 0.35 s expected -> 4 x 0.35 + 0.2 = 1.6 s, raised to the 2 s floor; a
  // 2,000-token one: 0.3 + 1 = 1.3 s -> 5.4 s.
  StepTimeHistory h;
  for (int i = 0; i < 3; ++i) h.observe(1, 0.3, 0.0005);
  EXPECT_EQ(step_deadline(h, 100, options()), milliseconds(2000));
  EXPECT_EQ(step_deadline(h, 2000, options()), milliseconds(5400));
  // A measured prompt's rate takes over: 2 s for 200 tokens, 10 ms a token.
  // 1,000 tokens: 0.3 + 10 = 10.3 s -> 41.4 s.
  h.observe(200, 2.0, 0.0005);
  EXPECT_EQ(step_deadline(h, 1000, options()), milliseconds(41400));
}

TEST(StepDeadlineTest, OnlyTheLastWindowCounts) {
  StepTimeHistory h(4);
  for (int i = 0; i < 4; ++i) h.observe(1, 10.0);
  EXPECT_EQ(step_deadline(h, 1, options()), milliseconds(40200));
  // The chain got faster: four 1 s steps push the 10 s ones out.
  for (int i = 0; i < 4; ++i) h.observe(1, 1.0);
  EXPECT_EQ(step_deadline(h, 1, options()), milliseconds(4200));
}

TEST(StepDeadlineTest, NonsenseMeasurementsAreIgnored) {
  StepTimeHistory h;
  h.observe(0, 1.0);
  h.observe(1, -1.0);
  h.observe(-5, 1.0);
  EXPECT_EQ(h.short_samples(), 0u);
  EXPECT_FALSE(h.token_seconds().has_value());
}

TEST(StepDeadlineTest, BookFallsBackToThePoolForANewChain) {
  StepTimeBook book;
  for (int i = 0; i < 3; ++i) book.observe("a -> b", 1, 1.0);
  // The measured chain: 4 x 1 + 0.2 s.
  EXPECT_EQ(book.deadline("a -> b", 1, options()), milliseconds(4200));
  // A chain never used yet (a failover's new chain) takes the pooled history.
  EXPECT_EQ(book.deadline("a -> c", 1, options()), milliseconds(4200));
  // Once it has its own, it goes by it.
  for (int i = 0; i < 3; ++i) book.observe("a -> c", 1, 2.0);
  EXPECT_EQ(book.deadline("a -> c", 1, options()), milliseconds(8200));
  EXPECT_EQ(book.deadline("a -> b", 1, options()), milliseconds(4200));
}

}  // namespace
}  // namespace swarm
