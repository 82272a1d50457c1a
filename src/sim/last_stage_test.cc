// The simulated last stage judges drafts as it takes steps up, as a real one
// does in its batch runner: a continuation of a rejected draft is not run,
// whether or not the gateway's Cancel has come, and a cancelled step's answer
// is dropped.
#include "sim/last_stage.h"

#include <gtest/gtest.h>

namespace swarm::sim {
namespace {

// The model writes 100 + x at position x.
int32_t script(int64_t position) { return static_cast<int32_t>(100 + position); }

v1::Step step(uint64_t id, int position, std::vector<int32_t> tokens, int drafts) {
  v1::Step s;
  s.set_step_id(id);
  s.set_position(position);
  for (int32_t t : tokens) s.add_tokens(t);
  s.set_n_drafts(drafts);
  s.set_continues_previous(drafts > 0);
  s.set_rewind(drafts == 0);
  return s;
}

std::vector<int32_t> text(int from, int to) {
  std::vector<int32_t> t;
  for (int x = from; x < to; ++x) t.push_back(script(x));
  return t;
}

class LastStageTest : public ::testing::Test {
 protected:
  // The prompt, its first token as the anchor at position 10, then three
  // runs of one draft each: the first right, the second wrong, the third
  // built on it.
  void SetUp() override {
    stage.sent(step(0, 0, text(0, 10), 0));
    EXPECT_TRUE(stage.take_up(0));
    EXPECT_TRUE(stage.answer(0).has_value());
    for (const v1::Step& s : {step(1, 10, {script(10)}, 0), step(2, 11, {script(11)}, 1),
                              step(3, 12, {7}, 1), step(4, 13, {script(13)}, 1)})
      stage.sent(s);
  }
  LastStage stage{script};
};

TEST_F(LastStageTest, AContinuationOfARejectedDraftIsNotRun) {
  EXPECT_TRUE(stage.take_up(1));
  EXPECT_TRUE(stage.take_up(2));
  EXPECT_TRUE(stage.take_up(3));   // runs: its draft is judged, and rejected
  EXPECT_FALSE(stage.take_up(4));  // built on it
  EXPECT_FALSE(stage.take_up(4)) << "taken up again, the same answer";
  EXPECT_TRUE(stage.take_up(3));

  std::optional<v1::StageResponse> a = stage.answer(2);
  ASSERT_TRUE(a && a->has_result());
  EXPECT_EQ(a->result().accepted_drafts(), 1);
  a = stage.answer(3);
  ASSERT_TRUE(a && a->has_result());
  EXPECT_EQ(a->result().accepted_drafts(), 0);
  ASSERT_EQ(a->result().tokens_size(), 1);
  EXPECT_EQ(a->result().tokens(0), script(12));  // the token the draft should have been
  a = stage.answer(4);
  ASSERT_TRUE(a.has_value());
  EXPECT_TRUE(a->has_error()) << "a step built on a rejected draft is answered CANCELLED";
}

TEST_F(LastStageTest, ItJudgesWhetherOrNotTheGatewayHasCancelled) {
  EXPECT_TRUE(stage.take_up(1));
  EXPECT_TRUE(stage.take_up(2));
  EXPECT_TRUE(stage.take_up(3));
  // The gateway has step 3's verdict and cancels step 4 before it reaches
  // the last stage, which does not know: it still does not run it.
  stage.cancelled(4, 4);
  EXPECT_FALSE(stage.take_up(4));
  EXPECT_FALSE(stage.answer(4).has_value()) << "the gateway no longer wants it";
}

TEST_F(LastStageTest, ACancelledStepThatNeverComesIsForgotten) {
  stage.cancelled(2, 4);
  // Steps 2-4 were dropped at an earlier stage; a new anchor replaces them.
  stage.sent(step(5, 11, {script(11)}, 0));
  EXPECT_TRUE(stage.take_up(1));
  EXPECT_TRUE(stage.take_up(5));
  EXPECT_TRUE(stage.answer(1).has_value());
  EXPECT_TRUE(stage.answer(5).has_value());
  EXPECT_EQ(stage.in_flight(), 0u);
}

}  // namespace
}  // namespace swarm::sim
