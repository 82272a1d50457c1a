// When a step through a chain is overdue: a deadline derived from the step
// times the gateway measured on that chain (doc/failover.md). A step that
// misses it makes the gateway probe the chain's stages; a stage that does not
// answer the probe has failed (hung, stopped or unreachable) and the session
// fails over to a healthy twin, as after kill -9.
//
// Pure: measurements and step sizes in, durations out; no clock, so tests
// drive the rule with hand-made numbers.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace swarm {

struct StepDeadlineOptions {
  // deadline = clamp(multiplier x expected + margin, floor, ceiling), where
  // `expected` is what a step of that many tokens took lately on the chain.
  double multiplier = 4.0;
  std::chrono::milliseconds margin{200};
  // Below the floor a slow moment of a healthy node (a cold page of mmapped
  // weights, a 1 s TCP SYN retransmit, other sessions' batches ahead in the
  // queue) would look like a failure.
  std::chrono::milliseconds floor{2000};
  // The absolute ceiling (`swarm gateway --step-timeout`): a step with no
  // answer by then fails whatever its stages answer to a probe.
  std::chrono::milliseconds ceiling{60000};
  // The deadline while nothing is measured (a gateway's first steps; a hang
  // before any answer): a slow model cannot be told from a hung node yet, so
  // the stages are probed this often instead of waiting for the ceiling.
  std::chrono::milliseconds unmeasured{5000};
  // How long a stage has to answer the probe (Info) that follows an overdue
  // step before it counts as failed.
  std::chrono::milliseconds probe_timeout{1000};
};

// The recent step times of one chain (or stage): the last `window` answers,
// each a step's tokens and its wall time from send to answer (link delays,
// queueing and compute included).
class StepTimeHistory {
 public:
  // Steps of more than kShortTokens tokens (prompts, replays) are long: they
  // measure a per-token rate; the others (decode steps, speculative runs),
  // whose time is mostly latency, measure a step time.
  static constexpr int kShortTokens = 32;
  explicit StepTimeHistory(size_t window = 32) : window_(window == 0 ? 1 : window) {}

  // Non-positive tokens or negative seconds are ignored. `compute_per_token`
  // (seconds; negative: not reported): what the answer's StageTimings say one
  // token cost, summed over the stages: each stage's compute for its batch
  // over the batch's tokens.
  void observe(int tokens, double seconds, double compute_per_token = -1);

  // The median wall time of the recent short steps; none before min_samples.
  std::optional<double> step_seconds(size_t min_samples) const;
  // Seconds per token: the median of the recent long steps' wall time per
  // token; before any long step, the median compute per token the stages
  // reported (a batch of one token costs as much as a few: an overestimate);
  // none if neither was measured.
  std::optional<double> token_seconds() const;
  size_t short_samples() const { return short_.size(); }

 private:
  size_t window_;
  std::deque<double> short_;      // seconds per short step
  std::deque<double> per_token_;  // seconds per token of long steps
  std::deque<double> compute_;    // compute seconds per token, as the stages reported
};

// Short steps a chain must have answered before its own history sets deadlines.
constexpr size_t kMinStepSamples = 3;

// What a step of `tokens` tokens is expected to take on a chain with history
// `h`, in seconds; none without enough measurements. A short step: the median
// short step. A long one: that plus tokens x token_seconds(), or, with no
// per-token rate at all, tokens x the median short step (each token as slow as
// a whole decode step: a gross overestimate).
std::optional<double> expected_step_seconds(const StepTimeHistory& h, int tokens);

// The deadline of a step of `tokens` tokens (see StepDeadlineOptions); with
// no expected time, `unmeasured` (at most the ceiling).
std::chrono::milliseconds step_deadline(const StepTimeHistory& h, int tokens,
                                        const StepDeadlineOptions& options);

// The histories of every chain a gateway used, by a key naming the chain
// (describe_chain), and one pooled over all of them: a chain without enough
// history of its own (a new chain right after a failover) takes the pool's,
// as every chain serves the same model. Thread-safe; still no clock.
class StepTimeBook {
 public:
  void observe(const std::string& chain, int tokens, double seconds, double compute_per_token = -1);
  std::chrono::milliseconds deadline(const std::string& chain, int tokens,
                                     const StepDeadlineOptions& options) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, StepTimeHistory> chains_;
  StepTimeHistory pooled_{64};
};

}  // namespace swarm
