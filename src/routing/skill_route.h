// Choosing a skill provider for one request: the gateway's whole decision, as
// one pure function of what providers announce, what this gateway measured of
// them, the request and a random draw (doc/skills.md, "Routing").
//
//   1. Filter: the provider serves the request's task, is not excluded (it
//      failed this request already, or the gateway benched it), its price is
//      within the request's cap (`max_price`), its reputation is not under the
//      floor.
//   2. Rank by expected cost in credits, lower first:
//        (price x tokens + seconds_value x expected seconds x failure factor)
//        x reputation factor
//      expected seconds = (ttft + output tokens / tokens per second)
//                         x (1 + busy / capacity)
//      where speed and ttft are this gateway's own measurements once it has
//      `min_observations` of them, else what the provider announces, else a
//      cautious default; busy counts the provider's announced active and
//      queued requests (or this gateway's own in flight there, if more);
//      failure factor = (1 + failures this gateway saw recently) x (2 if the
//      provider says its backend is cold); reputation factor = 1 / (0.5 +
//      reputation), 1 when unknown.
//   3. Explore: with probability `explore`, the least-measured provider that
//      passed the filter goes first, so new providers get measured.
//
// Busy providers rank lower as their load grows, so traffic spreads over
// providers in proportion to their speed and price rather than all going to
// the best one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace swarm {

// What one gateway measured of one provider (SkillHistory keeps it).
struct ProviderObservations {
  int64_t completed = 0;          // requests it finished for this gateway
  double ttft_seconds = 0;        // mean (exponentially weighted) time to first token
  double tokens_per_second = 0;   // mean decode speed per stream
  double recent_failures = 0;     // failures, decaying with a 60 s half-life
  int in_flight = 0;              // this gateway's requests on it now
};

// One provider of the skill asked for, as the rule sees it.
struct SkillOffer {
  bool serves_task = true;
  double price = 0;               // per 1000 tokens (per image for images)
  int64_t capacity = 1, active = 0, queued = 0;  // announced
  double tokens_per_second = 0, ttft_seconds = 0;  // announced; 0: not measured
  bool warm = true;
  double reputation = -1;         // [0, 1]; negative: unknown
  bool excluded = false;
  ProviderObservations seen;
};

struct SkillAsk {
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 256;            // max_tokens, or the gateway's default guess
  std::optional<double> max_price;        // the request's cap, same unit as SkillOffer::price
  bool per_image = false;                 // price counts images (output_tokens of them), not tokens
  double seconds_value = 0.01;            // credits one second of waiting is worth
  double reputation_floor = 0.2;
  double explore = 0.05;
  int min_observations = 3;
};

// Defaults for a provider nobody measured: slow enough that measured ones win.
inline constexpr double kUnmeasuredTokensPerSecond = 5.0;
inline constexpr double kUnmeasuredTtftSeconds = 2.0;

struct RankedOffer {
  size_t index = 0;           // into the offers given
  double expected_seconds = 0;
  double expected_cost = 0;   // credits (price only)
  double score = 0;           // the ranking's value, lower first
};

struct SkillRoute {
  std::vector<RankedOffer> order;  // providers to try, best first
  size_t no_task = 0, excluded = 0, over_price = 0, below_reputation = 0;  // filtered out
  bool explored = false;           // the first one was put first to measure it
};

// `uniform01` is a draw in [0, 1) from the caller's random source.
SkillRoute rank_skill_offers(const SkillAsk& ask, std::span<const SkillOffer> offers,
                             double uniform01);

// Updates one provider's observations (pure: times are given, in seconds on
// any monotonic clock).
class SkillHistory {
 public:
  void started() { ++seen_.in_flight; }
  // A request that produced output: its time to first token and, when it
  // produced more than one token, its decode speed.
  void succeeded(double ttft_seconds, double tokens_per_second);
  // A request it failed (unreachable, 5xx, cut off) at `now`.
  void failed(double now);
  // Ends a request started with started() (either outcome).
  void ended() {
    if (seen_.in_flight > 0) --seen_.in_flight;
  }
  // The observations as of `now` (failures decayed to it).
  ProviderObservations at(double now) const;

 private:
  ProviderObservations seen_;
  double failures_at_ = 0;  // when recent_failures was last brought up to date
};

}  // namespace swarm
