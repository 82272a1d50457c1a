// What a skill provider's proxy measured of the answers it forwarded, as pure
// bookkeeping: every method takes the time it is told, so the proxy feeds it
// steady_clock readings and tests feed it hand-made ones.
//
// - time to first token and decode tokens/s per stream are exponentially
//   weighted means (alpha kEwmaAlpha) over completed generations;
// - failures (upstream unreachable, 5xx, cut off mid-answer) are counted over
//   a sliding window;
// - warm: the last answer or probe succeeded.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>

namespace swarm {

class SkillLoadStats {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr double kEwmaAlpha = 0.2;
  // Failure times kept at most; beyond, the oldest are dropped (the count
  // then reads as "at least this many").
  static constexpr size_t kMaxFailuresKept = 1 << 16;

  explicit SkillLoadStats(Clock::duration failure_window) : failure_window_(failure_window) {}

  // One generation as the proxy saw it: from forwarding the request, the first
  // piece with content came after `ttft`; `tokens` in all, and the stream
  // ended `decode` after the first of them. Non-streaming answers have only a
  // ttft (the whole answer) and no decode time.
  struct Generation {
    Clock::duration ttft{};
    int64_t tokens = 0;
    std::optional<Clock::duration> decode;
  };

  // The upstream answered (any status below 500, the body whole);
  // `generation` when it was a generation with something to measure.
  void answered(Clock::time_point now, const std::optional<Generation>& generation);
  // Unreachable, a 5xx, or an answer cut off part way.
  void failed(Clock::time_point now);
  // A probe of the upstream's model list: warm follows it.
  void probed(bool ok) { warm_ = ok; }

  double tokens_per_second() const { return tokens_per_second_; }
  double ttft_seconds() const { return ttft_seconds_; }
  int64_t completed() const { return completed_; }
  bool warm() const { return warm_; }
  // Failures in (now - failure_window, now].
  int64_t failures_in_window(Clock::time_point now);

 private:
  static void ewma(double* mean, int64_t* samples, double sample);

  const Clock::duration failure_window_;
  double tokens_per_second_ = 0, ttft_seconds_ = 0;
  int64_t ttft_samples_ = 0, rate_samples_ = 0;
  int64_t completed_ = 0;
  bool warm_ = false;
  std::deque<Clock::time_point> failures_;  // oldest first
};

}  // namespace swarm
