// Whole simulations, each in a child process (SimGrid allows one engine per
// process), checked against numbers computed by hand.
#include "sim/simulation.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace swarm::sim {
namespace {

std::string scenario_path(const std::string& name) {
  return std::string(SWARM_SOURCE_DIR) + "/sim/scenarios/" + name + ".toml";
}

// Runs `s` in a child process; its JSON lines (the summary last).
std::vector<std::string> run_in_child(const Scenario& s) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    Result<SimResult> r = run_simulation(s);
    std::string out;
    if (r.ok())
      for (const std::string& l : r->lines) out += l + "\n";
    else
      out = "error: " + r.status().message() + "\n";
    for (size_t off = 0; off < out.size();) {
      const ssize_t n = write(fds[1], out.data() + off, out.size() - off);
      if (n <= 0) break;
      off += n;
    }
    _exit(0);
  }
  close(fds[1]);
  std::string text;
  char buf[65536];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, n);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the simulation's process failed";
  std::vector<std::string> lines;
  for (size_t at = 0; at < text.size();) {
    const size_t nl = text.find('\n', at);
    lines.push_back(text.substr(at, nl - at));
    at = nl == std::string::npos ? text.size() : nl + 1;
  }
  return lines;
}

nlohmann::json summary(const std::vector<std::string>& lines) {
  EXPECT_FALSE(lines.empty());
  if (lines.empty()) return {};
  nlohmann::json j = nlohmann::json::parse(lines.back(), nullptr, false);
  EXPECT_TRUE(j.is_object() && j.contains("summary")) << lines.back();
  return j;
}

// The line reporting the run as loadgen would ({"run": true, ...}).
nlohmann::json run_line(const std::vector<std::string>& lines) {
  for (const std::string& l : lines) {
    nlohmann::json j = nlohmann::json::parse(l, nullptr, false);
    if (j.is_object() && j.value("run", false)) return j;
  }
  ADD_FAILURE() << "no run line";
  return {};
}

Scenario load(const std::string& name) {
  Result<Scenario> s = load_scenario(scenario_path(name));
  EXPECT_TRUE(s.ok()) << s.status().message();
  return s.ok() ? *s : Scenario{};
}

// The two-stage test scenario with speculation on, drafts holding
// independently at `acceptance`.
Scenario speculating(double acceptance, int max_drafts = 8) {
  Scenario s = load("two-stage-test");
  s.speculation.enabled = true;
  s.speculation.acceptance = acceptance;
  s.speculation.max_drafts = max_drafts;
  return s;
}

// Two stages of 4 layers at 2 ms each, every one-way hop 10 ms (half the
// region's 20 ms RTT: two access links of 5 ms), one stream: a decode step is
// 3 hops x 10 ms + 2 x 8 ms = 46 ms, so 1 / 0.046 = 21.74 tokens/s. Message
// transfer (384 bytes at 10 Gb/s) adds well under a microsecond.
TEST(SimulationTest, TwoStagesOneStreamMatchTheHandComputedRate) {
  const std::vector<std::string> lines = run_in_child(load("two-stage-test"));
  const nlohmann::json j = summary(lines);
  EXPECT_NEAR(j.value("latency_ms_p50", 0.0), 46.0, 0.46);
  EXPECT_NEAR(j.value("latency_ms_p99", 0.0), 46.0, 0.46);
  // Within 1%: the run's first step is the prompt, and its last is cut off.
  EXPECT_NEAR(j.value("tok_s", 0.0), 1 / 0.046, 0.01 / 0.046);
  // Utilisation: each node computes 8 ms per 46 ms step.
  EXPECT_NEAR(j.value("utilisation", 0.0), 8.0 / 46.0, 0.005);
  EXPECT_EQ(j.value("recoveries", -1), 0);
}

TEST(SimulationTest, SameSeedSameOutput) {
  Scenario s = load("small-swarm");
  s.duration_s = 30;
  std::vector<std::string> a = run_in_child(s), b = run_in_child(s);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_GE(a.size(), 4u);
  for (size_t i = 0; i + 1 < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << "window " << i;
  nlohmann::json sa = summary(a), sb = summary(b);
  sa.erase("wall_s");
  sb.erase("wall_s");
  EXPECT_EQ(sa, sb);
  EXPECT_GT(sa.value("tokens", 0), 0);
  // Another seed gives another run.
  s.seed += 1;
  std::vector<std::string> c = run_in_child(s);
  EXPECT_NE(a[0], c[0]);
}

// Two replicas of each half; the stream's chain goes through node 0 (ties
// break towards the earlier address) until it is killed at 5 s: the gateway's
// step deadline expires, its probe finds node 0 gone, and the request is
// replayed on node 1's replica and completes.
TEST(SimulationTest, ANodeDiesMidRequestAndTheRequestStillCompletes) {
  Scenario s = load("two-stage-test");
  s.classes[0].count = 4;
  s.fixed_ranges = {{0, 4}, {0, 4}, {4, 8}, {4, 8}};
  s.kills = {{0, 5.0}};
  s.requests.output = LengthDist{"fixed", 400, 0, 0, 0};  // 12.4 s per request: one spans the kill
  s.duration_s = 40;
  const nlohmann::json j = summary(run_in_child(s));
  EXPECT_EQ(j.value("recoveries", 0), 1);
  EXPECT_EQ(j.value("requests_failed", -1), 0);
  EXPECT_GE(j.value("requests_done", 0), 2);
  // Detection: the deadline's 2 s floor and a 1 s probe; the replay itself is short.
  // (The kill lands on node 0 whichever stage it is; its twin takes over.)
  EXPECT_GT(j.value("recovery_ms_p50", 0.0), 2000);
  EXPECT_LT(j.value("recovery_ms_p50", 0.0), 5000);
}

TEST(SimulationTest, SpeculationYieldsMoreTokensPerStepOnTheSameSwarm) {
  Scenario plain = load("two-stage-test");
  Scenario spec = speculating(0.8, 4);
  const double plain_rate = summary(run_in_child(plain)).value("tok_s", 0.0);
  const double spec_rate = summary(run_in_child(spec)).value("tok_s", 0.0);
  // With fixed t(b) (a run of 5 tokens costs what one does) and 0.8
  // acceptance, a step yields up to 1 + 0.8 + ... ~ 3.4 tokens.
  EXPECT_GT(spec_rate, 1.5 * plain_rate) << plain_rate << " vs " << spec_rate;
}

}  // namespace
}  // namespace swarm::sim

namespace swarm::sim {
namespace {

// Drafts that always fail: the controller backs off (doc/speculation.md), so
// speculation costs next to nothing against plain decoding.
TEST(SimulationTest, SpeculationWithFailingDraftsStaysNearPlain) {
  Scenario plain = load("two-stage-test");
  Scenario spec = speculating(0);
  const double plain_rate = summary(run_in_child(plain)).value("tok_s", 0.0);
  const nlohmann::json s = summary(run_in_child(spec));
  EXPECT_GT(s.value("tok_s", 0.0), 0.95 * plain_rate);
  EXPECT_LT(s.value("speculative_step_share", 1.0), 0.1);
}

}  // namespace
}  // namespace swarm::sim

namespace swarm::sim {
namespace {

// Drafts that hold in runs (right after a right one 95% of the time) against
// drafts that hold independently, both starting right 40% of the time after
// a wrong one: runs give longer accepted chains, so more tokens per step.
TEST(SimulationTest, DraftsThatHoldInRunsYieldMoreThanIndependentOnes) {
  Scenario independent = speculating(0.4, 6);
  Scenario runs = independent;
  runs.speculation.acceptance_after_hit = 0.95;
  const double independent_rate = summary(run_in_child(independent)).value("tok_s", 0.0);
  const double runs_rate = summary(run_in_child(runs)).value("tok_s", 0.0);
  EXPECT_GT(runs_rate, 1.3 * independent_rate) << independent_rate << " vs " << runs_rate;
}

// A drafter that has a guess at only some positions (as the n-gram drafter
// finds a match only where the text repeats): fewer steps carry drafts and
// fewer tokens come per step than from one that always has a guess, with the
// same drafts where it does.
TEST(SimulationTest, ADrafterWithoutAGuessAtMostPositionsYieldsLess) {
  Scenario always = speculating(0.8, 4);
  Scenario sometimes = always;
  sometimes.speculation.proposal_rate = 0.3;
  const nlohmann::json a = summary(run_in_child(always));
  const nlohmann::json s = summary(run_in_child(sometimes));
  EXPECT_LT(s.value("speculative_step_share", 1.0), a.value("speculative_step_share", 0.0));
  EXPECT_GT(s.value("speculative_step_share", 0.0), 0.0);
  EXPECT_LT(s.value("tok_s", 0.0), a.value("tok_s", 0.0));
}

// A warm-up request runs alone before the streams and is left out of the run
// line; the gateway's speculation memory keeps what it learned, so the
// measured requests start speculating sooner.
TEST(SimulationTest, AWarmUpRunsFirstAndIsLeftOutOfTheRun) {
  Scenario s = speculating(0.8, 4);
  s.requests.streams = 1;
  s.requests.total = 1;
  s.requests.output.value = 16;
  const nlohmann::json cold = run_line(run_in_child(s));
  s.requests.warmup_output = 16;
  const nlohmann::json warm = run_line(run_in_child(s));
  EXPECT_EQ(cold.value("requests", 0), 1) << cold.dump();
  EXPECT_EQ(warm.value("requests", 0), 1) << warm.dump();
  EXPECT_GT(warm.value("stream_tok_s", 0.0), cold.value("stream_tok_s", 0.0))
      << cold.dump() << "\n" << warm.dump();
}

// Eight streams through two stages: the answers of one batch leave one after
// another (message_overhead_s each), so the next stage starts on the first
// as soon as it lands and the rest run in its next batch, as a real node's
// scheduler does. Sent at one instant, all eight would land together and
// run as one batch every time, which made the simulated pipeline faster
// than real ones under load (bench/sim_validate.sh).
TEST(SimulationTest, AnswersOfOneBatchLandOneAfterAnother) {
  Scenario s = load("two-stage-test");
  s.requests.streams = 8;
  s.duration_s = 5;
  for (NodeClass& c : s.classes) c.message_overhead_s = 0;
  const nlohmann::json together = summary(run_in_child(s));
  for (NodeClass& c : s.classes) c.message_overhead_s = 20e-6;
  const nlohmann::json spread = summary(run_in_child(s));
  EXPECT_LT(together.value("single_token_batch_share", 1.0), 0.05) << together.dump();
  EXPECT_GT(spread.value("single_token_batch_share", 0.0), 0.3) << spread.dump();
  EXPECT_LT(spread.value("batch_tokens_mean", 99.0), together.value("batch_tokens_mean", 0.0));
}

// A session is active while it sends, not while its steps wait: a node busy
// with 16 prompts for seconds sees the sessions quiet after a second and,
// as a real node does (node/step_scheduler.h), runs what is left of them in
// whole batches, the first ones done first. Taking every queued step's
// session as active, it kept giving each prompt an eighth of the batch, so
// all 16 first tokens came together, last (37.0 s for each; now the median
// 19.5 s, the last 29.1 s). Two stages of 4 layers at 4 ms a token each
// (t(b) linear, batches of 512), a warm-up request (the node learns its
// prompt chunk, 8 tokens), then 16 streams of one 72-token prompt each.
TEST(SimulationTest, PromptsRunInWholeBatchesOnceTheSessionsAreQuiet) {
  Scenario s = load("two-stage-test");
  s.classes[0].layer_time_points = {{1, 0.004}, {512, 2.048}};
  s.classes[0].max_batch_tokens = 512;
  s.requests.streams = 16;
  s.requests.total = 16;
  s.requests.prompt.value = 72;
  s.requests.output.value = 4;
  s.requests.warmup_output = 4;
  s.duration_s = 600;
  const nlohmann::json j = summary(run_in_child(s));
  const double median = j.value("ttft_ms_p50", 0.0), last = j.value("ttft_ms_p95", 0.0);
  EXPECT_GT(median, 0);
  EXPECT_LT(median, 0.75 * last) << j.dump();
  EXPECT_LT(last, 33000) << j.dump();
  EXPECT_EQ(j.value("requests_failed", -1), 0);
}

// Runs in flight over a long link: the last stage answers them a stage time
// apart, and they reach the gateway that far apart too, each after its own
// latency, as on a gRPC stream. Two stages of 8 ms a token (t(b) grows with
// b, so each run carries one token), 100 ms one-way hops, drafts that hold,
// always speculating with 8 drafts in flight: about 9 tokens per 316 ms
// round trip (28 tokens/s), against 3.2 for plain decoding. When the
// simulated inbox took its answers one at a time, a latency each, they came
// 100 ms apart: 9 tokens per 1.1 s.
TEST(SimulationTest, RunsInFlightComeBackAStageTimeApart) {
  Scenario s = speculating(0.999, 8);
  s.speculation.always = true;
  s.network.rtt_s = {{0.2}};
  s.classes[0].layer_time_points = {{1, 0.002}, {64, 0.128}};
  const double rate = summary(run_in_child(s)).value("tok_s", 0.0);
  EXPECT_GT(rate, 20) << "tokens/s";
  std::printf("runs in flight over 100 ms hops: %.1f tokens/s\n", rate);
  EXPECT_LT(rate, 1 / 0.008) << "tokens/s";  // the bottleneck stage's one token per 8 ms
}

// A Cancel travels the chain as steps do, and the last stage does not run a
// step built on a draft it rejected. Stage A takes 40 ms a run, stage B 5 ms,
// hops 100 ms, drafts that always fail, 8 of them in flight (one a run):
// A gets a chain's 9 runs at t = 100 ms and finishes them at 140 ... 460; B
// finishes run 1 at 245 and run 2 (its draft rejected) at 285, and skips the
// 7 built on it; the verdict is back at 385, and the Cancel reaches A at 485,
// after all 9 ran. Wasted: runs 3-9 at A, 280 ms of 360 + 10 = 0.757 of the
// compute. (Dropped at every stage when the gateway sends it, A would have
// skipped run 9: 0.727; with B running the 7 doomed runs too, 0.778.)
TEST(SimulationTest, ACancelReachesEachStageAfterTheLinksBeforeIt) {
  Scenario s = speculating(0, 8);
  s.speculation.always = true;
  s.network.rtt_s = {{0.2}};
  s.classes.push_back(s.classes[0]);
  s.classes[0].count = s.classes[1].count = 1;
  s.classes[0].layer_time_points = {{1, 0.010}, {64, 0.64}};    // A: 4 layers, 40 ms a token
  s.classes[1].layer_time_points = {{1, 0.00125}, {64, 0.08}};  // B: 5 ms
  const std::vector<std::string> lines = run_in_child(s);
  int windows = 0;
  for (const std::string& l : lines) {
    const nlohmann::json j = nlohmann::json::parse(l, nullptr, false);
    // After the first window: the controller's first chains differ.
    if (!j.is_object() || j.contains("summary") || j.value("t_s", 0.0) <= s.window_s) continue;
    EXPECT_NEAR(j.value("cancelled_compute_share", 0.0), 280.0 / 370, 0.005) << l;
    ++windows;
  }
  EXPECT_GE(windows, 2);
}

// A block loses both its nodes: nodes that re-check their layers (the
// node's own Rebalancer, on simulated time) move one node into the gap and
// the model is served again; nodes that never re-check leave it unserved.
TEST(SimulationTest, RebalancingNodesFillABlockThatLostItsNodes) {
  Scenario s = load("rebalance-test");
  const nlohmann::json fixed = summary(run_in_child(s));
  s.rebalance.interval_s = 10;
  const nlohmann::json moving = summary(run_in_child(s));
  EXPECT_EQ(fixed.value("rebalance_moves", -1), 0) << fixed.dump();
  // 10 s of two streams at 46 ms a token before the kill, nothing after.
  EXPECT_LT(fixed.value("tokens", 0), 500) << fixed.dump();
  EXPECT_GE(moving.value("rebalance_moves", 0), 1) << moving.dump();
  // Served again within a check or two (and a 0.4 s reload) of the kill.
  EXPECT_GT(moving.value("tokens", 0), 1500) << moving.dump();
}

}  // namespace
}  // namespace swarm::sim

namespace swarm::sim {
namespace {

// One stream on the only chain there is, its 1,024-token prompt taking longer
// than the gateway's 60 s step timeout (16 chunks of 2 s on each stage, one
// stage after the other): every stage answers Info, so the gateway waits on
// rather than replaying the prompt on the same two nodes, where it would take
// as long again (and then again, until the request failed).
TEST(SimulationTest, APromptPastTheStepTimeoutOnTheOnlyChainIsWaitedOn) {
  Scenario s = load("two-stage-test");
  s.classes[0].layer_time_points = {{1, 0.002}, {64, 0.5}};
  s.requests.prompt = LengthDist{"fixed", 1024, 0, 0, 0};
  s.requests.output = LengthDist{"fixed", 8, 0, 0, 0};
  s.requests.total = 1;
  s.duration_s = 600;
  s.window_s = 600;
  const nlohmann::json j = summary(run_in_child(s));
  EXPECT_EQ(j.value("requests_done", 0), 1) << j.dump();
  EXPECT_EQ(j.value("requests_failed", -1), 0);
  EXPECT_EQ(j.value("recoveries", -1), 0);
  EXPECT_EQ(j.value("ceiling_waits", 0), 1);
  EXPECT_GT(j.value("ttft_ms_p50", 0.0), 60000);
  EXPECT_LT(j.value("ttft_ms_p50", 0.0), 80000);
}

// On a shared machine the gateway's own work per answer is computed on its
// one core too: with the stream alone, nothing overlaps, and each 46 ms step
// (TwoStagesOneStreamMatchTheHandComputedRate) takes 8 ms more.
TEST(SimulationTest, TheGatewaysWorkOnASharedMachineAddsToEachStep) {
  Scenario s = load("two-stage-test");
  s.machine_cores = 1;
  s.machine_gateway_step_s = 0.008;
  for (NodeClass& c : s.classes) c.message_overhead_s = 0;
  const nlohmann::json j = summary(run_in_child(s));
  EXPECT_NEAR(j.value("latency_ms_p50", 0.0), 54.0, 0.54);
  EXPECT_NEAR(j.value("tok_s", 0.0), 1 / 0.054, 0.01 / 0.054);
}

}  // namespace
}  // namespace swarm::sim
