// The speculation controller on hand-made measurements whose right answers are
// worked out in the comments, and driven over simulated time to show that it
// backs off, probes and does not oscillate.
#include "pipeline/spec_controller.h"

#include <gtest/gtest.h>

#include <cmath>

#include "pipeline/stage_time_model.h"

namespace swarm {
namespace {

constexpr double kMs = 1e-3;

// A stage whose run of b tokens takes (base + per_token x b) ms, measured at b = 1 and 8.
StageTimes affine_stage(double base_ms, double per_token_ms) {
  return StageTimes{{{1, (base_ms + per_token_ms) * kMs}, {8, (base_ms + 8 * per_token_ms) * kMs}}};
}

// Four stages t(b) = 9 + b ms, except the last, 4x slower: 36 + 4b ms. Five
// one-way links of 20 ms (gateway -> 4 stages -> gateway).
PipelineMeasurements four_stages_one_slow() {
  PipelineMeasurements m;
  for (int i = 0; i < 3; ++i) m.stages.push_back(affine_stage(9, 1));
  m.stages.push_back(affine_stage(36, 4));
  m.link_delay_s.assign(5, 20 * kMs);
  return m;
}

SpecState speculating() {
  SpecState s;
  s.mode = SpecState::Mode::kSpeculating;
  return s;
}

// `rate` tokens over one second, ending at `now`.
GoodputWindow window(bool spec, double rate, double now) {
  return GoodputWindow{spec, rate, 1.0, now};
}

TEST(StageTimeTable, InterpolatesBetweenAndExtrapolatesAlongTheFittedSlope) {
  // Points (1, 10), (4, 11), (8, 16) ms. Between: linear. Beyond 8: the least
  // squares slope: mean b 13/3, mean t 37/3, slope 21.667 / 24.667 = 0.87838 ms.
  const auto t =
      stage_time_table(StageTimes{{{8, 16 * kMs}, {1, 10 * kMs}, {4, 11 * kMs}}}, 10, 0.05);
  ASSERT_EQ(t.size(), 10u);
  EXPECT_NEAR(t[0], 10 * kMs, 1e-12);
  EXPECT_NEAR(t[1], 31.0 / 3 * kMs, 1e-12);
  EXPECT_NEAR(t[3], 11 * kMs, 1e-12);
  EXPECT_NEAR(t[5], 13.5 * kMs, 1e-12);
  EXPECT_NEAR(t[7], 16 * kMs, 1e-12);
  EXPECT_NEAR(t[8], (16 + 65.0 / 74) * kMs, 1e-9);
  EXPECT_NEAR(t[9], (16 + 2 * 65.0 / 74) * kMs, 1e-9);
}

TEST(StageTimeTable, OnePointUsesTheAssumedSlopeAndNeverGoesBelowTheShare) {
  // Only b = 4 at 20 ms: t(b) = 20 x (1 + 0.05 (b - 4)): t(1) = 17, t(6) = 22.
  const auto t = stage_time_table(StageTimes{{{4, 20 * kMs}}}, 6, 0.05);
  EXPECT_NEAR(t[0], 17 * kMs, 1e-12);
  EXPECT_NEAR(t[5], 22 * kMs, 1e-12);
  // A steep assumed slope would put t(1) below a quarter of t(4): clamped to 5 ms.
  EXPECT_NEAR(stage_time_table(StageTimes{{{4, 20 * kMs}}}, 1, 0.5)[0], 5 * kMs, 1e-12);
}

TEST(StageTimeTable, RepeatsAreAveragedAndNoiseIsFlattened) {
  // b = 2 measured at 8 and 10 ms (mean 9), below t(1) = 10: flattened to 10.
  const auto t = stage_time_table(
      StageTimes{{{1, 10 * kMs}, {2, 8 * kMs}, {2, 10 * kMs}, {3, 12 * kMs}}}, 3, 0.05);
  EXPECT_NEAR(t[0], 10 * kMs, 1e-12);
  EXPECT_NEAR(t[1], 10 * kMs, 1e-12);
  EXPECT_NEAR(t[2], 12 * kMs, 1e-12);
  EXPECT_TRUE(stage_time_table(StageTimes{}, 4, 0.05).empty());
}

TEST(Width, LargestBatchWithinTheSlack) {
  EXPECT_EQ(width_for({10, 10.5, 11.4, 11.6, 12}, 1.15), 3);
  EXPECT_EQ(width_for({10, 12}, 1.15), 1);
  EXPECT_EQ(width_for({10, 10, 10, 10}, 1.15), 4);
  EXPECT_EQ(width_for({}, 1.15), 0);
}

TEST(InFlight, EnoughRunsToKeepTheBottleneckBusy) {
  EXPECT_EQ(in_flight_for(0.105, 0.010, 0, 64), 12);   // ceil(10.5) + 1
  EXPECT_EQ(in_flight_for(0.100, 0.010, 0, 64), 11);   // ceil(10) + 1
  EXPECT_EQ(in_flight_for(0.100, 0.010, 0.5, 64), 6);  // half the bottleneck is others'
  EXPECT_EQ(in_flight_for(0.100, 0.010, 1, 64), 1);
  EXPECT_EQ(in_flight_for(0.100, 0.010, 0, 8), 8);
  EXPECT_EQ(in_flight_for(0, 0.010, 0, 8), 1);
}

TEST(Drafts, SendWhileTheCumulativeProbabilityHoldsTheThreshold) {
  const std::vector<double> p = {0.9, 0.8, 0.5, 0.9};  // cumulative .9 .72 .36 .324
  EXPECT_EQ(drafts_to_send(p, 0.35, 10), 3);
  EXPECT_EQ(drafts_to_send(p, 0.5, 10), 2);
  EXPECT_EQ(drafts_to_send(p, 0, 10), 4);
  EXPECT_EQ(drafts_to_send(p, 0, 2), 2);
  EXPECT_EQ(drafts_to_send(p, 0.95, 10), 0);
  EXPECT_EQ(drafts_to_send({0.9, 0, 0.9}, 0, 10), 1);  // a certain rejection ends the chain
}

TEST(Drafts, ExpectedTokensMatchTheClosedFormAndTheBound) {
  // a = 0.5, D = 3: 1 + .5 + .25 + .125 = (1 - .5^4) / (1 - .5) = 1.875.
  EXPECT_DOUBLE_EQ(expected_tokens({0.5, 0.5, 0.5}, 3), 1.875);
  EXPECT_DOUBLE_EQ(expected_tokens({0.5, 0.5, 0.5}, 0), 1);
  // Latency-bound: 1.875 tokens per 100 ms round trip; the bottleneck could do 400/s.
  EXPECT_NEAR(goodput_bound(0.5, 3, 0.1, 4, 0.01), 18.75, 1e-9);
  EXPECT_NEAR(goodput_bound(1.0, 3, 0.1, 4, 0.01), 40, 1e-9);
  // Throughput-bound: 4 tokens per 100 ms at the bottleneck.
  EXPECT_NEAR(goodput_bound(0.9, 20, 0.1, 4, 0.1), 40, 1e-9);
  EXPECT_NEAR(goodput_bound(0, 5, 0.1, 4, 0.01), 10, 1e-9);  // a = 0: plain decoding
}

TEST(Load, BusyFractionFromInfoCounters) {
  // 2 s apart the stage computed 1.5 s, 0.5 s of it for us: others kept it 50% busy.
  EXPECT_DOUBLE_EQ(busy_fraction(1'000'000, 2'500'000, 500'000, 2), 0.5);
  EXPECT_DOUBLE_EQ(busy_fraction(0, 3'000'000, 0, 2), 1);  // clamped
  EXPECT_DOUBLE_EQ(busy_fraction(0, 1'000, 5'000, 2), 0);  // our batches were shared
  EXPECT_DOUBLE_EQ(busy_fraction(0, 1'000, 0, 0), 0);
}

TEST(Acceptance, PriorThenCountsPerPosition) {
  SpecConfig c;
  c.accept_decay = 1;  // no forgetting: exact counts
  SpecState s;
  EXPECT_DOUBLE_EQ(acceptance_rate(s, c), 0.5);
  for (int i = 0; i < 10; ++i) s = observe(s, c, DraftOutcome{4, 4});
  // Position 1 rejected once: judged at 1 and 2, never at 3 and 4.
  s = observe(s, c, DraftOutcome{4, 1});
  ASSERT_EQ(s.attempts.size(), 4u);
  EXPECT_EQ(s.attempts, (std::vector<double>{11, 11, 10, 10}));
  EXPECT_EQ(s.accepts, (std::vector<double>{11, 10, 10, 10}));
  // Pooled: (41 + 4 x .5) / (42 + 4) = 43 / 46.
  const double a = 43.0 / 46;
  EXPECT_DOUBLE_EQ(acceptance_rate(s, c), a);
  // Position 0 shrinks toward the prior, each later one toward the one before.
  const auto p = draft_accept_probs(s, c, 5);
  EXPECT_DOUBLE_EQ(p[0], (11 + 4 * 0.5) / (11 + 4));
  EXPECT_DOUBLE_EQ(p[1], (10 + 4 * p[0]) / (11 + 4));
  EXPECT_DOUBLE_EQ(p[2], (10 + 4 * p[1]) / (10 + 4));
  EXPECT_DOUBLE_EQ(p[3], (10 + 4 * p[2]) / (10 + 4));
  EXPECT_DOUBLE_EQ(p[4], p[3]);  // never judged: the position before's
  // After two that held, the estimates of the positions after them.
  EXPECT_EQ(draft_accept_probs(s, c, 3, 2), (std::vector<double>{p[2], p[3], p[4]}));
  // Nonsense outcomes are clamped, not trusted.
  SpecState t = observe(SpecState{}, c, DraftOutcome{2, 7});
  EXPECT_EQ(t.accepts, (std::vector<double>{1, 1}));
  EXPECT_TRUE(observe(SpecState{}, c, DraftOutcome{-3, 1}).attempts.empty());
}

// A chain after drafts that held goes on counting where they stopped, and
// only the positions it reached forget.
TEST(Acceptance, AChainAfterHeldDraftsIsJudgedAtThePositionsAfterThem) {
  SpecConfig c;
  c.accept_decay = 0.5;
  SpecState s;
  s = observe(s, c, DraftOutcome{2, 2});  // positions 0 and 1 held
  s = observe(s, c, DraftOutcome{3, 1, 2});  // position 2 held, 3 did not, 4 unjudged
  EXPECT_EQ(s.attempts, (std::vector<double>{1, 1, 1, 1}));
  EXPECT_EQ(s.accepts, (std::vector<double>{1, 1, 1, 0}));
  s = observe(s, c, DraftOutcome{1, 0});  // a first draft rejected
  EXPECT_EQ(s.attempts, (std::vector<double>{1.5, 1, 1, 1}));
  EXPECT_EQ(s.accepts, (std::vector<double>{0.5, 1, 1, 0}));
}

TEST(Acceptance, DecayFollowsAChangeOfText) {
  SpecConfig c;  // decay 0.97
  SpecState s;
  for (int i = 0; i < 200; ++i) s = observe(s, c, DraftOutcome{4, 4});
  EXPECT_GT(acceptance_rate(s, c), 0.95);
  // The text stops repeating: every first draft is rejected.
  for (int i = 0; i < 100; ++i) s = observe(s, c, DraftOutcome{4, 0});
  EXPECT_LT(draft_accept_probs(s, c, 1)[0], 0.1);
}

TEST(Plan, HandWorkedFourStagePipeline) {
  // Bottleneck t(b) = 36 + 4b ms; the other stages 9 + b; 100 ms of links. Prior
  // a = .5 and the idle threshold .2 admit two drafts (.5, .25; not .125), so a
  // chain yields 1.75 tokens. The width: the largest b with 36 + 4b <=
  // 1.15 x 40 = 46, k = 2: the chain takes two runs, rt(2) + bt(2) = 100 + 3 x 11
  // + 44 + 44 = 221 ms, 7.9 tok/s. k = 3 carries it in one run of rt(3) = 100 +
  // 3 x 12 + 48 = 184 ms, 9.5 tok/s: more than 1.05x, so k = 3, and W =
  // ceil(184 / 48) + 1 = 5. Wider runs add time for nothing.
  const PipelineMeasurements m = four_stages_one_slow();
  const auto p = plan(speculating(), SpecConfig{}, m, 0);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->speculate) << p->reason;
  EXPECT_FALSE(p->probe);
  EXPECT_EQ(p->width, 3);
  EXPECT_EQ(p->max_in_flight, 5);
  EXPECT_DOUBLE_EQ(p->min_accept_prob, 0.2);
  EXPECT_EQ(p->drafts, 2);
  // Plain: 1 token per 100 + 3 x 10 + 40 = 170 ms.
  EXPECT_NEAR(p->predicted_gain, (1.75 / 0.184) / (1 / 0.170), 1e-9);
  // Without the wider choice, the rule alone.
  SpecConfig narrow;
  narrow.wider_gain = 100;
  const auto q = plan(speculating(), narrow, m, 0);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->width, 2);
  EXPECT_EQ(q->max_in_flight, 6);  // ceil(177 / 44) + 1: the first run of the chain
  EXPECT_NEAR(q->predicted_gain, (1.75 / 0.221) / (1 / 0.170), 1e-9);
}

// Where drafts hold, a steep t(b) no longer keeps runs at one token: the plan
// widens to what the bottleneck can verify at the best rate; where they fail it
// keeps the width and (as before) backs off.
TEST(Plan, WidensRunsWhereDraftsHold) {
  PipelineMeasurements m;
  for (int i = 0; i < 3; ++i) m.stages.push_back(affine_stage(9, 1));
  m.stages.push_back(affine_stage(30, 12));  // a second token costs 29% more
  m.link_delay_s.assign(5, 20 * kMs);
  SpecConfig c;
  SpecState sure = speculating();
  for (int i = 0; i < 300; ++i) sure = observe(sure, c, DraftOutcome{8, 8});
  auto p = plan(sure, c, m, 0);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(width_for({42, 54}, c.width_slack), 1);
  EXPECT_TRUE(p->speculate) << p->reason;
  EXPECT_GT(p->width, 2);
  EXPECT_GT(p->predicted_gain, 2);
  SpecState failing = speculating();
  for (int i = 0; i < 300; ++i) failing = observe(failing, c, DraftOutcome{1, 0});
  p = plan(failing, c, m, 0);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->width, 1);
  EXPECT_FALSE(p->speculate);
}

TEST(Plan, LoadRaisesTheThresholdAndShrinksTheWindow) {
  PipelineMeasurements m = four_stages_one_slow();
  m.load = 0.5;  // threshold .2 + .7 x .5 = .55: not even the first draft (.5)
  auto p = plan(speculating(), SpecConfig{}, m, 0);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->speculate);
  EXPECT_EQ(p->drafts, 0);
  EXPECT_NEAR(p->min_accept_prob, 0.55, 1e-12);
  EXPECT_EQ(p->max_in_flight, 4);  // ceil(177 x .5 / 44) + 1
  // Drafts that are nearly always accepted still pass at that load.
  SpecState s = speculating();
  for (int i = 0; i < 50; ++i) s = observe(s, SpecConfig{}, DraftOutcome{6, 6});
  p = plan(s, SpecConfig{}, m, 0);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->speculate) << p->reason;
  EXPECT_GE(p->drafts, 3);
}

TEST(Plan, MeasuredRoundTripReplacesTheLinkSum) {
  PipelineMeasurements m = four_stages_one_slow();
  m.plain_round_trip_s = 0.250;  // 250 + (3 x 1 + 4) ms for 2 tokens = 257: ceil(5.84) + 1
  auto p = plan(speculating(), SpecConfig{}, m, 0);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->max_in_flight, 7);
}

TEST(Plan, RejectedDraftsTurnSpeculationOff) {
  SpecState s = speculating();
  for (int i = 0; i < 30; ++i) s = observe(s, SpecConfig{}, DraftOutcome{2, 0});
  auto p = plan(s, SpecConfig{}, four_stages_one_slow(), 0);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->speculate);
  EXPECT_EQ(p->drafts, 0);
}

TEST(Plan, ProbesWhenBackedOffAndDue) {
  SpecState s;  // a fresh controller measures plain decoding, then probes at once
  auto p = plan(s, SpecConfig{}, four_stages_one_slow(), 0);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->speculate);
  s = observe(s, SpecConfig{}, window(false, 6, 1));
  p = plan(s, SpecConfig{}, four_stages_one_slow(), 1);
  EXPECT_TRUE(p->speculate && p->probe);
  EXPECT_EQ(p->min_accept_prob, 0);
  s.probe_at_s = 10;
  p = plan(s, SpecConfig{}, four_stages_one_slow(), 9.5);
  EXPECT_FALSE(p->speculate);
  p = plan(s, SpecConfig{}, four_stages_one_slow(), 10);
  EXPECT_TRUE(p->speculate && p->probe);
}

// With acceptance judged while decoding plainly (shadow drafts), a due probe goes
// out only where the estimates predict min_gain, and it sends the drafts the
// threshold admits rather than full width.
TEST(Plan, ShadowAcceptanceProbesOnlyWherePredictedToPay) {
  SpecConfig c;
  PipelineMeasurements m = four_stages_one_slow();
  m.shadow_acceptance = true;
  SpecState failing;
  failing = observe(failing, c, window(false, 6, 1));
  for (int i = 0; i < 30; ++i) failing = observe(failing, c, DraftOutcome{4, 0});
  auto p = plan(failing, c, m, 5);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->speculate) << p->reason;
  EXPECT_FALSE(p->probe);
  // Without shadow acceptance the same state probes at full width.
  m.shadow_acceptance = false;
  p = plan(failing, c, m, 5);
  EXPECT_TRUE(p->speculate && p->probe);
  EXPECT_EQ(p->min_accept_prob, 0);

  m.shadow_acceptance = true;
  SpecState holding;
  holding = observe(holding, c, window(false, 6, 1));
  for (int i = 0; i < 30; ++i) holding = observe(holding, c, DraftOutcome{8, 8});
  p = plan(holding, c, m, 5);
  EXPECT_TRUE(p->speculate && p->probe) << p->reason;
  EXPECT_DOUBLE_EQ(p->min_accept_prob, c.min_accept_idle);
  EXPECT_GT(p->drafts, 0);
  EXPECT_GE(p->predicted_gain, c.min_gain);
  // Not due yet: plain, whatever the estimates say.
  holding.probe_at_s = 10;
  p = plan(holding, c, m, 9);
  EXPECT_FALSE(p->speculate);
}

TEST(Plan, UnmeasuredIsPlainAndMalformedIsAnError) {
  PipelineMeasurements m = four_stages_one_slow();
  m.stages[2].points.clear();
  auto p = plan(speculating(), SpecConfig{}, m, 0);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->speculate);
  EXPECT_NE(p->reason.find("stage 2"), std::string::npos);
  EXPECT_FALSE(plan(speculating(), SpecConfig{}, PipelineMeasurements{}, 0)->speculate);

  m = four_stages_one_slow();
  m.load = 1.5;
  EXPECT_EQ(plan(speculating(), SpecConfig{}, m, 0).status().code(),
            Status::Code::kInvalidArgument);
  m = four_stages_one_slow();
  m.stages[1].points.push_back({0, 0.01});
  EXPECT_NE(plan(speculating(), SpecConfig{}, m, 0).status().message().find("stage 1"),
            std::string::npos);
  m = four_stages_one_slow();
  m.stages[1].points.push_back({3, std::nan("")});
  EXPECT_FALSE(plan(speculating(), SpecConfig{}, m, 0).ok());
  m = four_stages_one_slow();
  m.link_delay_s[0] = -1;
  EXPECT_FALSE(plan(speculating(), SpecConfig{}, m, 0).ok());
  SpecConfig c;
  c.width_slack = 0.9;
  EXPECT_NE(
      plan(speculating(), c, four_stages_one_slow(), 0).status().message().find("width_slack"),
      std::string::npos);
}

TEST(Goodput, BacksOffProbesWithDoublingWaitsAndResumes) {
  SpecConfig c;  // min_gain 1.05, back_off 1.0, probe 2 s doubling to 64 s, EWMA .5
  SpecState s;
  s = observe(s, c, window(false, 10, 1));
  EXPECT_EQ(s.plain_rate, 10);
  s = observe(s, c, window(true, 12, 2));  // probe: 12 >= 10.5
  EXPECT_EQ(s.mode, SpecState::Mode::kSpeculating);
  s = observe(s, c, window(true, 8.8, 3));  // EWMA 10.4: gains < 5%: pickier
  EXPECT_EQ(s.mode, SpecState::Mode::kSpeculating);
  EXPECT_DOUBLE_EQ(s.bias, 0.05);
  s = observe(s, c, window(true, 7, 4));  // EWMA 8.7 < 10: back off, probe 2 s later
  EXPECT_EQ(s.mode, SpecState::Mode::kPlain);
  EXPECT_DOUBLE_EQ(s.probe_at_s, 6);
  EXPECT_DOUBLE_EQ(s.bias, 0.1);
  s = observe(s, c, window(false, 10, 5));
  s = observe(s, c, window(true, 9, 6));  // a failed probe: wait 4 s
  EXPECT_EQ(s.mode, SpecState::Mode::kPlain);
  EXPECT_DOUBLE_EQ(s.probe_at_s, 10);
  s = observe(s, c, window(true, 9, 10));  // and then 8 s
  EXPECT_DOUBLE_EQ(s.probe_at_s, 18);
  s = observe(s, c, window(true, 15, 18));  // the text turned friendly
  EXPECT_EQ(s.mode, SpecState::Mode::kSpeculating);
  for (int i = 0; i < 3; ++i) s = observe(s, c, window(true, 15, 19 + i));
  EXPECT_DOUBLE_EQ(s.bias, 0);  // paying windows bring the threshold back
  EXPECT_DOUBLE_EQ(s.probe_interval_s, 16);
  for (int i = 0; i < 5; ++i) s = observe(s, c, window(true, 15, 22 + i));
  EXPECT_DOUBLE_EQ(s.probe_interval_s, 0);  // 8 good windows in a row: waits start at 2 s again
  // Bad windows are ignored.
  EXPECT_EQ(observe(s, c, GoodputWindow{true, 5, 0, 30}).spec_rate, s.spec_rate);
  EXPECT_EQ(observe(s, c, GoodputWindow{true, NAN, 1, 30}).spec_rate, s.spec_rate);
}

// Drives plan() and observe() over 1000 simulated one-second windows of a
// pipeline where speculation yields `spec_factor` x the plain rate, and
// returns the fraction of windows that speculated after the first 10.
double simulate(double spec_factor, int* switches) {
  const SpecConfig c;
  const PipelineMeasurements m = four_stages_one_slow();
  SpecState s;
  const double plain = 6;
  *switches = 0;
  int speculated = 0;
  bool last = false;
  for (int t = 0; t < 1000; ++t) {
    auto p = plan(s, c, m, t);
    EXPECT_TRUE(p.ok());
    // Drafts accepted at 70% (so the estimates allow speculation).
    if (p->speculate) s = observe(s, c, DraftOutcome{4, 2});
    s = observe(s, c, window(p->speculate, p->speculate ? plain * spec_factor : plain, t + 1));
    if (t >= 10 && p->speculate) ++speculated;
    if (t > 0 && p->speculate != last) ++*switches;
    last = p->speculate;
  }
  return speculated / 990.0;
}

TEST(Goodput, NoOscillationWhenSpeculationDoesNotPay) {
  int switches = 0;
  // Probes at 2, 4, 8, 16, 32, then every 64 s: about 20 probe windows in 1000.
  const double frac = simulate(0.95, &switches);
  EXPECT_GT(frac, 0);  // it does keep probing
  EXPECT_LT(frac, 0.03);
  EXPECT_GT(switches, 10);
  EXPECT_LT(switches, 50);
}

TEST(Goodput, StaysOnWhenSpeculationPays) {
  int switches = 0;
  EXPECT_GT(simulate(1.5, &switches), 0.99);
  EXPECT_LE(switches, 2);
}

TEST(StageTimeModel, AveragesPerAddressAndBatchSize) {
  StageTimeModel model(0.5, 64);
  model.observe("a:1", 1, 10000);
  model.observe("a:1", 1, 20000);  // EWMA: 15 ms
  model.observe("a:1", 4, 12000);
  model.observe("b:2", 2, 30000);
  model.observe("b:2", 100, 90000);  // a prompt batch: not a decode run
  model.observe("b:2", 0, 5000);     // nonsense: ignored
  model.observe("b:2", 3, -1);
  const StageTimes a = model.times("a:1");
  ASSERT_EQ(a.points.size(), 2u);
  EXPECT_EQ(a.points[0].first, 1);
  EXPECT_DOUBLE_EQ(a.points[0].second, 0.015);
  EXPECT_EQ(a.points[1].first, 4);
  EXPECT_DOUBLE_EQ(a.points[1].second, 0.012);
  const auto chain = model.chain_times({"b:2", "c:3", "a:1"});
  ASSERT_EQ(chain.size(), 3u);
  ASSERT_EQ(chain[0].points.size(), 1u);
  EXPECT_EQ(chain[0].points[0].first, 2);
  EXPECT_TRUE(chain[1].points.empty());
  // Fed straight into the controller: c:3 unmeasured means plain decoding.
  PipelineMeasurements m;
  m.stages = chain;
  auto p = plan(speculating(), SpecConfig{}, m, 0);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->speculate);
}

}  // namespace
}  // namespace swarm
