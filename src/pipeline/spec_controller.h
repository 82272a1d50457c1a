// The speculation controller: from measured stage times, link delays, draft
// acceptance and load, how many tokens each speculative run carries (width k),
// how many runs are in flight (W), which drafts are worth sending, and whether to
// speculate at all. doc/speculation.md states the rule, its defaults and why.
//
// Pure: the state is a value, updated by observe(state, measurement); plan()
// reads the state and the current measurements. No clock, no socket: the
// gateway, the simulator and the tests all drive the same code, and time comes
// in as `now_s` (any monotonic origin).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/status.h"

namespace swarm {

// One stage's measured compute time, in seconds, for runs (micro-batches) of b
// tokens. Sparse: any b >= 1, in any order, repeated b's averaged; the time at
// the b's not measured is interpolated (see stage_time_table).
struct StageTimes {
  std::vector<std::pair<int, double>> points;  // (b, seconds)
};

struct SpecConfig {
  // Width k: the largest b <= max_width with bottleneck(b) <= width_slack x bottleneck(1),
  // unless another b <= max_width is predicted to give at least wider_gain times
  // its tokens/s (then the best such b).
  int max_width = 16;
  double width_slack = 1.15;
  double wider_gain = 1.05;
  // With one measured point (b0, t0), growth is unknown: assume
  // t(b) = t0 x (1 + assumed_slope x (b - b0)) (decode is memory-bound, an extra
  // token costs a few percent of reading the weights).
  double assumed_slope = 0.05;
  // W at most (in-flight runs).
  int max_in_flight = 16;

  // Acceptance (per position, see SpecState): position 0's rate starts at
  // prior_accept with the weight of prior_weight verified drafts; each later
  // position's shrinks toward the one before it with position_weight. Each
  // position judged in a DraftOutcome multiplies its older counts by
  // accept_decay, so the estimates follow the text (about 1 / (1 - decay)
  // judgements); a position no run reached keeps what it knew, or the
  // threshold, once chains grew too short to reach it, would never let them
  // reach it again. The pooled rate over all positions (acceptance_rate) is
  // reported.
  double prior_accept = 0.5;
  double prior_weight = 4;
  double position_weight = 4;
  double accept_decay = 0.97;

  // A draft is sent when its probability of being accepted is at least
  // min_accept_idle + (min_accept_loaded - min_accept_idle) x load + bias,
  // where bias (>= 0, <= max_bias) rises by bias_step after each speculative
  // window whose goodput gains less than min_gain over plain decoding and falls
  // by bias_step after one that gains more.
  double min_accept_idle = 0.2;
  double min_accept_loaded = 0.9;
  double bias_step = 0.05;
  double max_bias = 0.5;

  // Back-off with hysteresis. Speculating continues while the predicted gain
  // (speculative over plain tokens/s) is >= 1 and the measured speculative
  // goodput is >= back_off_ratio x the plain goodput; after backing off, a probe
  // (full-width speculation for one window) runs probe_interval_s later and
  // resumes speculation only if it measures >= min_gain x plain. Each back-off
  // or failed probe doubles the interval (up to max_probe_interval_s);
  // stable_windows good speculative windows in a row reset it.
  double min_gain = 1.05;
  double back_off_ratio = 1.0;
  double goodput_weight = 0.5;  // EWMA weight of the newest window
  double probe_interval_s = 2;
  double max_probe_interval_s = 64;
  int stable_windows = 8;
};

// Checks the config's ranges (InvalidArgument naming the field).
Status validate(const SpecConfig& config);

// What the pipeline looks like now.
struct PipelineMeasurements {
  std::vector<StageTimes> stages;    // in chain order
  std::vector<double> link_delay_s;  // one-way delays of every hop around the ring (gateway ->
                                     // first ... last -> gateway)
  double plain_round_trip_s =
      0;            // measured round trip of a plain 1-token step; > 0: used instead of the sum
  double load = 0;  // [0, 1]: the bottleneck stage's busy fraction from other requests
  // Drafts verified to have held in a row right before the next draft to
  // send (0 after a rejection, or a step the drafter had no guess for): the
  // plan's drafts stand at the positions that follow (SpecState's).
  int held_in_a_row = 0;
  // True when the acceptance estimates stay current while decoding plainly: the
  // gateway drafts without sending and judges the drafts against the tokens that
  // come back (cheap for n-gram drafts). Then a probe goes out only where those
  // estimates predict at least min_gain, and uses the plan's own drafts.
  bool shadow_acceptance = false;
};

struct SpeculationPlan {
  bool speculate = false;
  int width = 1;               // k: tokens per run
  int max_in_flight = 1;       // W: runs in flight at once
  double min_accept_prob = 1;  // send a draft only if its acceptance probability is at least this
  // Why, for logs and benchmarks.
  bool probe = false;         // a probe after a back-off: send full width, measure
  int drafts = 0;             // how many drafts the controller's own estimates allow
  double predicted_gain = 0;  // predicted speculative / plain tokens/s
  std::string reason;
};

// Verified drafts (a run's, or a chain's): drafts 1..sent were checked in
// order, the first `accepted` of them matched (accepted < sent: draft
// accepted + 1 was rejected and the ones after it were never judged).
// `held_before`: the drafts that held in a row right before the first.
struct DraftOutcome {
  int sent = 0;
  int accepted = 0;
  int held_before = 0;
};

// Tokens produced over `seconds` of decoding, speculative or plain.
struct GoodputWindow {
  bool speculative = false;
  double tokens = 0;
  double seconds = 0;
  double now_s = 0;  // when the window ended
};

struct SpecState {
  enum class Mode { kSpeculating, kPlain };
  Mode mode = Mode::kPlain;  // a fresh controller measures plain decoding, then probes
  // Decayed counts per draft position: verified attempts and acceptances,
  // conditional on the drafts before being accepted. Position i is a draft
  // that follows i drafts that held in a row, across chains: drafts hold in
  // runs, so a chain's first draft after a rejection and one after a chain
  // that held are different bets (doc/speculation.md, "Inputs").
  std::vector<double> attempts, accepts;
  // Goodput EWMAs in tokens/s; 0 = not measured yet.
  double plain_rate = 0;
  double spec_rate = 0;
  double bias = 0;              // added to the draft threshold
  double probe_interval_s = 0;  // the next back-off's wait; 0: config's probe_interval_s
  double probe_at_s = 0;        // in kPlain, the time of the next probe
  int good_windows = 0;         // speculative windows in a row at >= min_gain x plain
};

// Conditional acceptance estimates of n drafts after `held` that held in a
// row: p_i = P(draft at position held + i accepted | the drafts before it
// accepted), i = 0..n-1.
std::vector<double> draft_accept_probs(const SpecState& state, const SpecConfig& config, int n,
                                       int held = 0);
// The pooled per-token acceptance rate a (all positions, the prior weighing
// prior_weight drafts).
double acceptance_rate(const SpecState& state, const SpecConfig& config);

SpecState observe(const SpecState& state, const SpecConfig& config, const DraftOutcome& outcome);
SpecState observe(const SpecState& state, const SpecConfig& config, const GoodputWindow& window);

// The plan for now. InvalidArgument on malformed measurements (b < 1,
// non-positive or non-finite times, negative delays, load outside [0, 1]). With
// a stage not measured yet the plan is plain decoding.
Result<SpeculationPlan> plan(const SpecState& state, const SpecConfig& config,
                             const PipelineMeasurements& m, double now_s);

// t(1..max_b) for one stage: measured b's exactly (repeats averaged), linear
// between them, beyond them along the least-squares slope of all points
// (clamped >= 0; one point: assumed_slope), never below t(b0) x b / b0 under the
// smallest measured b0, and made non-decreasing. Empty when nothing is measured.
std::vector<double> stage_time_table(const StageTimes& times, int max_b, double assumed_slope);

// The largest b in 1..bottleneck.size() with bottleneck[b-1] <= slack x bottleneck[0].
int width_for(const std::vector<double>& bottleneck, double slack);

// W = ceil(round_trip x (1 - load) / bottleneck_k) + 1, at least 1 and at most max_in_flight.
int in_flight_for(double round_trip_s, double bottleneck_k_s, double load, int max_in_flight);

// How many drafts to send: the largest n <= max_drafts such that every draft
// i <= n has p_1 x ... x p_i >= min_accept_prob, given conditional per-draft
// estimates (the controller's, or the draft model's own probabilities).
int drafts_to_send(const std::vector<double>& conditional_probs, double min_accept_prob,
                   int max_drafts);

// Expected tokens a chain of n drafts yields: 1 + sum_i p_1 x ... x p_i (the
// accepted drafts plus the token the verifier samples after them).
double expected_tokens(const std::vector<double>& conditional_probs, int n);

// The load input from two Info answers of the bottleneck stage `seconds` apart:
// the share of that time it computed for other sessions,
// (compute_us_after - compute_us_before - own_compute_us) / seconds, in [0, 1].
// `own_compute_us`: this gateway's steps' StageTiming.compute_us at that stage
// in between (their batches' time, so an overestimate when shared: load errs low).
double busy_fraction(int64_t compute_us_before, int64_t compute_us_after, int64_t own_compute_us,
                     double seconds);

// The first-order goodput bound (tokens/s) for per-token acceptance a,
// D drafts per round trip, width k and the bottleneck stage's time for k tokens:
// min((1 - a^(D+1)) / ((1 - a) x round_trip), k / bottleneck_k); at a = 1 the
// first term is (D + 1) / round_trip.
double goodput_bound(double a, int drafts, double round_trip_s, int k, double bottleneck_k_s);

}  // namespace swarm
