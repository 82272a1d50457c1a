// Tokens generated per second over the last minutes, for the swarm page's
// chart: a ring of fixed-width buckets (one second by default, five minutes of
// them). Pure: every time is the caller's; not thread-safe (RequestActivity
// guards it).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace swarm {

class TokenRate {
 public:
  using Clock = std::chrono::steady_clock;

  // `bucket` must be positive and `buckets` at least 1.
  explicit TokenRate(std::chrono::milliseconds bucket = std::chrono::seconds(1),
                     size_t buckets = 300);

  // `tokens` were generated at `now`.
  void add(int64_t tokens, Clock::time_point now);
  // Tokens per second in each of the `buckets` whole buckets before the one
  // `now` falls in (which is still filling), oldest first; 0 where nothing
  // was generated.
  std::vector<double> rates(Clock::time_point now) const;
  double bucket_seconds() const { return std::chrono::duration<double>(bucket_).count(); }

 private:
  struct Slot {
    int64_t index = INT64_MIN;  // which bucket of time the slot holds now
    int64_t tokens = 0;
  };
  int64_t index_of(Clock::time_point t) const;
  Slot& slot(int64_t index);
  const Slot& slot(int64_t index) const;

  const std::chrono::milliseconds bucket_;
  std::vector<Slot> ring_;
};

}  // namespace swarm
