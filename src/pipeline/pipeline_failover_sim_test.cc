// The gateway's pipeline backend (routing, sessions, deadlines, failover and
// replay) over simulated twins on a simulated clock: a stage killed or stopped
// mid-generation costs the request nothing but the time to notice it, and
// that time is the modelled one, not this machine's.
#include <gtest/gtest.h>

#include <cstdio>

#include "pipeline/pipeline_backend.h"
#include "pipeline/simulated_chain.h"

namespace swarm {
namespace {

using std::chrono::milliseconds;

constexpr int kPrompt = 32;

// Repeats every 24 tokens, so n-gram drafts from the prompt hold and the
// speculative runs have drafts in flight when the fault comes.
std::vector<int32_t> script() {
  std::vector<int32_t> s;
  for (int i = 0; i < 200; ++i) s.push_back(2000 + (i % 24) * 7);
  return s;
}

ChainStage stage(const std::string& address, int first, int last) {
  return SimulatedStageSpec::at(address, first, last);
}

class PipelineFailoverSimTest : public ::testing::TestWithParam<bool> {
 protected:
  // Two twins for each half of a 4-layer model, 10 ms a step plus 1 ms a
  // token, 5 ms links.
  void SetUp() override { build({"a0:1", "a1:1"}, {"b0:1", "b1:1"}); }
  void build(const std::vector<const char*>& firsts, const std::vector<const char*>& seconds) {
    std::vector<SimulatedStageSpec> specs;
    for (const char* a : firsts) specs.push_back({stage(a, 0, 2), milliseconds(10), milliseconds(1)});
    for (const char* b : seconds) specs.push_back({stage(b, 2, 4), milliseconds(10), milliseconds(1)});
    chain_ = std::make_shared<SimulatedChain>(clock_, specs, milliseconds(5), script());
    PipelineOptions o;
    for (const auto& s : specs) o.peers.push_back(net::PeerAddress{s.stage.address, "", {}, 0, 0});
    o.transport = chain_;
    o.clock = &clock_;
    o.speculation.mode = GetParam() ? SpeculationMode::kNgram : SpeculationMode::kOff;
    backend_ = std::make_unique<PipelineBackend>("simulated-model", 4, o);
  }

  struct Run {
    Status status;
    std::vector<int32_t> tokens;
    std::vector<Clock::time_point> at;  // when each token came
    std::vector<std::vector<ChainStage>> chains;
    GenerationResult result;
  };
  // `n` tokens; `fault(chain)` runs when the 10th token comes, `then(chain)`
  // (if given) when the 11th does.
  using Fault = std::function<void(const std::vector<ChainStage>&)>;
  Run generate(int n, const Fault& fault, const Fault& then = {}) {
    Run run;
    const std::vector<int32_t> text = script();
    GenerationRequest req;
    req.prompt.assign(text.begin(), text.begin() + kPrompt);
    req.sampling.temperature = 0;
    req.sampling.max_tokens = n;
    req.on_chain = [&](const std::vector<ChainStage>& c) { run.chains.push_back(c); };
    auto r = backend_->generate(req, [&](int32_t t) {
      run.tokens.push_back(t);
      run.at.push_back(clock_.now());
      if (run.tokens.size() == 10 && fault) fault(run.chains.back());
      if (run.tokens.size() == 11 && then) then(run.chains.back());
      return true;
    });
    run.status = r.status();
    if (r.ok()) run.result = *r;
    return run;
  }
  static std::vector<int32_t> want(int n) {
    const std::vector<int32_t> text = script();
    return {text.begin() + kPrompt, text.begin() + kPrompt + n};
  }
  // The longest wait between two tokens.
  static double longest_gap_s(const Run& run) {
    double gap = 0;
    for (size_t i = 1; i < run.at.size(); ++i)
      gap = std::max(gap, std::chrono::duration<double>(run.at[i] - run.at[i - 1]).count());
    return gap;
  }

  SimulatedClock clock_;
  std::shared_ptr<SimulatedChain> chain_;
  std::unique_ptr<PipelineBackend> backend_;
};

TEST_P(PipelineFailoverSimTest, AKilledStageIsReplacedByItsTwinWithinASecondAndTheTextIsTheSame) {
  const Run run =
      generate(40, [&](const std::vector<ChainStage>& c) { chain_->kill(c[1].address); });
  ASSERT_TRUE(run.status.ok()) << run.status.ToString();
  EXPECT_EQ(run.tokens, want(40));
  ASSERT_EQ(run.chains.size(), 2u);
  EXPECT_NE(run.chains[1][1].address, run.chains[0][1].address);
  EXPECT_EQ(backend_->recoveries(), 1);
  EXPECT_EQ(backend_->node_failures(), 1);
  EXPECT_LT(longest_gap_s(run), 1.0);
  if (GetParam()) {
    EXPECT_GT(run.result.speculation.accepted, 0);
  }
  std::printf("killed: the longest wait for a token was %.3f s\n", longest_gap_s(run));
}

// SIGSTOP: the stage answers nothing, not even Info. The step is overdue at
// the deadline's floor, the probe names the silent stage, and its twin
// replays the session: the same text, late by the floor and one probe.
TEST_P(PipelineFailoverSimTest, AStoppedStageIsRoutedAroundAtItsDeadline) {
  const Run run =
      generate(40, [&](const std::vector<ChainStage>& c) { chain_->stop(c[1].address); });
  ASSERT_TRUE(run.status.ok()) << run.status.ToString();
  EXPECT_EQ(run.tokens, want(40));
  ASSERT_EQ(run.chains.size(), 2u);
  EXPECT_NE(run.chains[1][1].address, run.chains[0][1].address);
  EXPECT_EQ(backend_->recoveries(), 1);
  const StepDeadlineOptions d;
  const double noticed_s = std::chrono::duration<double>(d.floor + d.probe_timeout).count();
  EXPECT_GE(longest_gap_s(run), noticed_s);
  EXPECT_LT(longest_gap_s(run), noticed_s + 0.5);
  std::printf("stopped: the longest wait for a token was %.3f s\n", longest_gap_s(run));
}

// One step takes longer than the step timeout (a node's queue full of other
// sessions' prompts), and every stage answers Info.
constexpr auto kPastCeiling = std::chrono::seconds(70);

// With a twin, the step is given up at the ceiling and replayed on the twin.
TEST_P(PipelineFailoverSimTest, AStepPastTheStepTimeoutFailsOverToATwin) {
  const Run run = generate(40, [&](const std::vector<ChainStage>& c) {
    chain_->set_step_time(c[1].address, kPastCeiling, milliseconds(1));
  });
  ASSERT_TRUE(run.status.ok()) << run.status.ToString();
  EXPECT_EQ(run.tokens, want(40));
  ASSERT_EQ(run.chains.size(), 2u);
  EXPECT_NE(run.chains[1][1].address, run.chains[0][1].address);
  EXPECT_EQ(backend_->recoveries(), 1);
  EXPECT_EQ(backend_->ceiling_waits(), 0);
}

// With no other chain a replay would queue the same tokens on the same
// stages, throwing away the queued work: the step is waited on instead, and
// nothing runs twice.
TEST_P(PipelineFailoverSimTest, AStepPastTheStepTimeoutOnTheOnlyChainIsWaitedOnNotReplayed) {
  build({"a0:1"}, {"b0:1"});
  const Run run = generate(
      20,
      [&](const std::vector<ChainStage>& c) {
        chain_->set_step_time(c[1].address, kPastCeiling, milliseconds(1));
      },
      [&](const std::vector<ChainStage>& c) {
        chain_->set_step_time(c[1].address, milliseconds(10), milliseconds(1));
      });
  ASSERT_TRUE(run.status.ok()) << run.status.ToString();
  EXPECT_EQ(run.tokens, want(20));
  ASSERT_EQ(run.chains.size(), 1u);
  EXPECT_EQ(backend_->recoveries(), 0);
  EXPECT_GE(backend_->ceiling_waits(), 1);
  EXPECT_LE(backend_->ceiling_waits(), PipelineOptions{}.max_recoveries);
  EXPECT_EQ(chain_->steps_run("a0:1"), chain_->steps_run("b0:1"));
  EXPECT_GE(longest_gap_s(run), 70.0);
}

// A stage that answers Info and never computes holds the request no longer
// than replays would have: each wait past the timeout costs a failover.
TEST_P(PipelineFailoverSimTest, AStageThatAnswersButNeverComputesFailsAfterTheFailoverBudget) {
  build({"a0:1"}, {"b0:1"});
  Clock::time_point slowed_at{};
  const Run run = generate(20, [&](const std::vector<ChainStage>& c) {
    chain_->set_step_time(c[1].address, std::chrono::hours(24), milliseconds(1));
    slowed_at = clock_.now();
  });
  ASSERT_FALSE(run.status.ok());
  EXPECT_EQ(run.status.code(), Status::Code::kDeadlineExceeded) << run.status.ToString();
  const PipelineOptions o;
  EXPECT_EQ(backend_->ceiling_waits(), o.max_recoveries);
  EXPECT_EQ(backend_->recoveries(), 0);
  const double held_s = std::chrono::duration<double>(clock_.now() - slowed_at).count();
  const double ceiling_s = std::chrono::duration<double>(o.deadlines.ceiling).count();
  // Timed from its send: with speculation the awaited run left a little
  // before the fault.
  EXPECT_GE(held_s, (o.max_recoveries + 1) * ceiling_s - 1);
  EXPECT_LT(held_s, (o.max_recoveries + 1) * ceiling_s + 10);
}

INSTANTIATE_TEST_SUITE_P(PlainAndSpeculative, PipelineFailoverSimTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Speculative" : "Plain"; });

}  // namespace
}  // namespace swarm
