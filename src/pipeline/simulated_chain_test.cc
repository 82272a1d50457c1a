// A chain session over simulated stages on a simulated clock: steps take the
// modelled time exactly, and a stopped, slowed, killed or unreachable stage is
// told apart and blamed as over gRPC, with no process and no waiting.
#include "pipeline/simulated_chain.h"

#include <gtest/gtest.h>

#include "pipeline/chain_session.h"

namespace swarm {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

ChainStage stage(const std::string& address, int first, int last) {
  return SimulatedStageSpec::at(address, first, last);
}

std::vector<int32_t> counting_script(int n) {
  std::vector<int32_t> s;
  for (int i = 0; i < n; ++i) s.push_back(100 + i);
  return s;
}

class SimulatedChainTest : public ::testing::Test {
 protected:
  // Two stages of 2 layers, 10 ms a step plus 1 ms a token, 5 ms links.
  void SetUp() override {
    chain_ = std::make_shared<SimulatedChain>(
        clock_,
        std::vector<SimulatedStageSpec>{{stage("a:1", 0, 2), milliseconds(10), milliseconds(1)},
                                        {stage("b:1", 2, 4), milliseconds(10), milliseconds(1)}},
        milliseconds(5), counting_script(64));
    options_.transport = chain_;
    options_.clock = &clock_;
  }
  std::unique_ptr<ChainSession> open() {
    auto s = std::make_unique<ChainSession>(
        std::vector<ChainStage>{stage("a:1", 0, 2), stage("b:1", 2, 4)}, options_, &times_);
    EXPECT_TRUE(s->open("simulated-model", 4, SamplingParams{}, 256).ok());
    return s;
  }
  // The first `n` tokens of the script: a prompt.
  static std::vector<int32_t> prompt(int n) {
    auto s = counting_script(n);
    return s;
  }
  double elapsed_ms(Clock::time_point since) const {
    return std::chrono::duration<double, std::milli>(clock_.now() - since).count();
  }

  SimulatedClock clock_;
  std::shared_ptr<SimulatedChain> chain_;
  PipelineOptions options_;
  StepTimeBook times_;
};

TEST_F(SimulatedChainTest, PushedStepsTakeTheModelledTimeAndFollowTheScript) {
  auto t0 = clock_.now();
  auto session = open();
  // Both stages confirm at once: one round trip.
  EXPECT_DOUBLE_EQ(elapsed_ms(t0), 10);
  t0 = clock_.now();
  auto token = session->step(prompt(8), 0);
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ(*token, 108);
  // Three links and two stages of 10 + 8 x 1 ms.
  EXPECT_DOUBLE_EQ(elapsed_ms(t0), 3 * 5 + 2 * 18);
  t0 = clock_.now();
  token = session->step({108}, 8);
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(*token, 109);
  EXPECT_DOUBLE_EQ(elapsed_ms(t0), 3 * 5 + 2 * 11);
  // A step that does not continue the cache is refused by the first stage.
  token = session->step({110}, 12);
  ASSERT_FALSE(token.ok());
  EXPECT_NE(token.status().message().find("cache holds 9 positions"), std::string::npos)
      << token.status().ToString();
  EXPECT_EQ(session->suspect(), "a:1");
  EXPECT_EQ(chain_->steps_run("a:1"), 2);
  EXPECT_EQ(chain_->steps_run("b:1"), 2);
}

TEST_F(SimulatedChainTest, RelayCarriesEveryStageAndTimesEach) {
  options_.push = false;
  auto session = open();
  const auto t0 = clock_.now();
  auto token = session->step(prompt(4), 0);
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ(*token, 104);
  // Two round trips: four links and both stages.
  EXPECT_DOUBLE_EQ(elapsed_ms(t0), 4 * 5 + 2 * 14);
}

// SIGSTOP of the last stage: once the step is overdue by the deadline its
// measured times give, the probe finds the silent stage and the step fails,
// naming it, long before the ceiling.
TEST_F(SimulatedChainTest, AStoppedStageIsBlamedAtItsDeadlineNotTheCeiling) {
  auto session = open();
  int pos = 0;
  for (int i = 0; i < 8; ++i) {
    auto t = session->step(i == 0 ? prompt(4) : std::vector<int32_t>{100 + pos}, pos);
    ASSERT_TRUE(t.ok());
    pos += i == 0 ? 4 : 1;
  }
  chain_->stop("b:1");
  const auto t0 = clock_.now();
  auto t = session->step({100 + pos}, pos);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Status::Code::kDeadlineExceeded) << t.status().ToString();
  EXPECT_EQ(session->suspect(), "b:1");
  EXPECT_NE(t.status().message().find("b:1 does not answer Info"), std::string::npos)
      << t.status().ToString();
  // The deadline's floor (steps take 37 ms) and the probe's timeout.
  EXPECT_DOUBLE_EQ(
      elapsed_ms(t0),
      static_cast<double>((options_.deadlines.floor + options_.deadlines.probe_timeout).count()));
  EXPECT_LT(elapsed_ms(t0), options_.deadlines.ceiling.count());
}

// A stage that got slow but answers Info is waited on: the step completes,
// with the right token, however far past its deadline (up to the ceiling).
TEST_F(SimulatedChainTest, ASlowStageThatAnswersIsWaitedOn) {
  auto session = open();
  ASSERT_TRUE(session->step(prompt(4), 0).ok());
  chain_->set_step_time("b:1", milliseconds(7000), microseconds(0));
  const auto t0 = clock_.now();
  auto t = session->step({104}, 4);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(*t, 105);
  EXPECT_DOUBLE_EQ(elapsed_ms(t0), 3 * 5 + 11 + 7000);
}

TEST_F(SimulatedChainTest, AKilledStageEndsItsStreamAndIsTheSuspect) {
  auto session = open();
  ASSERT_TRUE(session->step(prompt(4), 0).ok());
  chain_->kill("b:1");
  auto t = session->step({104}, 4);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Status::Code::kUnavailable) << t.status().ToString();
  EXPECT_EQ(session->suspect(), "b:1");
}

// The first stage cannot push to a dead next hop: it says so, and the hop,
// not the messenger, is blamed.
TEST_F(SimulatedChainTest, AnUnreachableNextHopIsBlamedNotTheStageThatSaysSo) {
  auto session = open();
  ASSERT_TRUE(session->step(prompt(4), 0).ok());
  chain_->cut("a:1", "b:1");
  auto t = session->step({104}, 4);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Status::Code::kUnavailable) << t.status().ToString();
  EXPECT_NE(t.status().message().find("cannot reach next hop b:1"), std::string::npos)
      << t.status().ToString();
  EXPECT_EQ(session->suspect(), "b:1");
}

// Drafts through a session by hand: the last stage judges them against the
// script, rolls back after a rejection, and cancels a continuation built on it.
TEST_F(SimulatedChainTest, DraftsAreJudgedAndContinuationsOfARejectionCancelled) {
  auto session = open();
  ASSERT_TRUE(session->step(prompt(4), 0).ok());  // yields 104
  ChainRun run;
  run.tokens = {104, 105, 106, 999};  // anchor, two good drafts, a bad one
  run.position = 4;
  run.n_drafts = 3;
  run.rewind = true;
  auto first = session->send_run(run);
  ASSERT_TRUE(first.ok());
  ChainRun cont;
  cont.tokens = {108, 109};
  cont.position = 8;
  cont.n_drafts = 2;
  cont.continues_previous = true;
  auto second = session->send_run(cont);
  ASSERT_TRUE(second.ok());
  auto r = session->next_result([&](uint64_t id) { return id == *first; });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->accepted_drafts(), 2);
  ASSERT_EQ(r->tokens_size(), 3);
  EXPECT_EQ(r->tokens(2), 107);  // the correction
  EXPECT_EQ(r->length(), 7);     // rolled back to the accepted length
  // The continuation built on the rejected draft: cancelled by the last stage.
  EXPECT_EQ(chain_->steps_cancelled("b:1"), 1);
  // An anchor from the corrected token rewinds every stage and goes on.
  ChainRun anchor;
  anchor.tokens = {107, 108};
  anchor.position = 7;
  anchor.n_drafts = 1;
  anchor.rewind = true;
  auto third = session->send_run(anchor);
  ASSERT_TRUE(third.ok());
  r = session->next_result([&](uint64_t id) { return id == *third; });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->accepted_drafts(), 1);
  EXPECT_EQ(r->tokens(1), 109);
  EXPECT_EQ(r->length(), 9);
}

}  // namespace
}  // namespace swarm
