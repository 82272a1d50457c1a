// What the API's completions are doing, for the swarm page (GET /swarm): the
// live ones with the chain of nodes each runs through and its tokens so far,
// the last few that ended, and tokens per second over the last minutes.
// Thread-safe (HTTP and generation threads report at once); every time is the
// caller's.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "api/token_rate.h"
#include "routing/chain.h"

namespace swarm {

struct RequestView {
  std::string id, model;
  std::vector<ChainStage> chain;  // empty until routed (or with no chain: one model here)
  int chains = 0;                 // chains it was routed onto: 1 + failovers
  int prompt_tokens = 0, completion_tokens = 0;
  bool live = true;
  std::string outcome;  // once ended: "stop", "length", "error" or "cancelled"
  double seconds = 0;   // since it began (live), or how long it ran (ended)
};

class RequestActivity {
 public:
  using Clock = std::chrono::steady_clock;

  // Keeps the last `keep_ended` requests that ended; `rate` sizes the chart.
  explicit RequestActivity(size_t keep_ended = 8, TokenRate rate = TokenRate());
  RequestActivity(const RequestActivity&) = delete;
  RequestActivity& operator=(const RequestActivity&) = delete;

  // Calls naming an id that is not live are ignored.
  void begin(const std::string& id, const std::string& model, int prompt_tokens,
             Clock::time_point now);
  void route(const std::string& id, const std::vector<ChainStage>& chain);
  void token(const std::string& id, Clock::time_point now);
  void end(const std::string& id, const std::string& outcome, Clock::time_point now);

  // The live requests, oldest first (at most `max_live`), then those that
  // ended, newest first.
  std::vector<RequestView> requests(Clock::time_point now, size_t max_live = 64) const;
  size_t live_count() const;
  // TokenRate::rates and its bucket width.
  std::vector<double> rates(Clock::time_point now) const;
  double rate_bucket_seconds() const { return rate_bucket_seconds_; }

 private:
  struct Live {
    RequestView view;
    Clock::time_point began;
    uint64_t order = 0;
  };
  const size_t keep_ended_;
  const double rate_bucket_seconds_;
  mutable std::mutex mu_;
  std::map<std::string, Live> live_;
  std::deque<RequestView> ended_;  // newest first
  TokenRate rate_;
  uint64_t next_order_ = 0;
};

}  // namespace swarm
