#include "routing/skill_route.h"

#include <algorithm>
#include <cmath>

namespace swarm {
namespace {

constexpr double kEwmaWeight = 0.2;         // of the newest observation
constexpr double kFailureHalfLifeS = 60.0;  // a failure counts half after a minute

double ewma(double mean, int64_t samples, double x) {
  return samples == 0 ? x : (1 - kEwmaWeight) * mean + kEwmaWeight * x;
}

double positive_or(double v, double fallback) { return std::isfinite(v) && v > 0 ? v : fallback; }

}  // namespace

SkillRoute rank_skill_offers(const SkillAsk& ask, std::span<const SkillOffer> offers,
                             double uniform01) {
  SkillRoute route;
  route.order.reserve(offers.size());
  const double tokens = static_cast<double>(std::max<int64_t>(0, ask.prompt_tokens) +
                                            std::max<int64_t>(1, ask.output_tokens));
  const double output = static_cast<double>(std::max<int64_t>(1, ask.output_tokens));
  for (size_t i = 0; i < offers.size(); ++i) {
    const SkillOffer& o = offers[i];
    if (!o.serves_task) {
      ++route.no_task;
      continue;
    }
    if (o.excluded) {
      ++route.excluded;
      continue;
    }
    if (ask.max_price && o.price > *ask.max_price) {
      ++route.over_price;
      continue;
    }
    if (o.reputation >= 0 && o.reputation < ask.reputation_floor) {
      ++route.below_reputation;
      continue;
    }
    const bool measured = o.seen.completed >= ask.min_observations;
    const double tps =
        measured ? positive_or(o.seen.tokens_per_second,
                               positive_or(o.tokens_per_second, kUnmeasuredTokensPerSecond))
                 : positive_or(o.tokens_per_second, kUnmeasuredTokensPerSecond);
    const double ttft = measured ? positive_or(o.seen.ttft_seconds,
                                               positive_or(o.ttft_seconds, kUnmeasuredTtftSeconds))
                                 : positive_or(o.ttft_seconds, kUnmeasuredTtftSeconds);
    const double busy = static_cast<double>(
        std::max<int64_t>(std::max<int64_t>(0, o.active), o.seen.in_flight) +
        std::max<int64_t>(0, o.queued));
    const double capacity = static_cast<double>(std::max<int64_t>(1, o.capacity));
    const double work_seconds = ask.per_image ? ttft * output : ttft + output / tps;
    RankedOffer r;
    r.index = i;
    r.expected_seconds = work_seconds * (1 + busy / capacity);
    r.expected_cost = std::max(0.0, o.price) * (ask.per_image ? output : tokens / 1000.0);
    const double failure_factor = (1 + std::max(0.0, o.seen.recent_failures)) * (o.warm ? 1 : 2);
    const double reputation_factor = o.reputation >= 0 ? 1 / (0.5 + std::min(1.0, o.reputation)) : 1;
    r.score = (r.expected_cost + ask.seconds_value * r.expected_seconds * failure_factor) *
              reputation_factor;
    route.order.push_back(r);
  }
  std::stable_sort(route.order.begin(), route.order.end(),
                   [](const RankedOffer& a, const RankedOffer& b) { return a.score < b.score; });
  if (!route.order.empty() && uniform01 < ask.explore) {
    // The least measured, best-ranked among equals (stable order), goes first.
    auto least = std::min_element(route.order.begin(), route.order.end(),
                                  [&](const RankedOffer& a, const RankedOffer& b) {
                                    return offers[a.index].seen.completed <
                                           offers[b.index].seen.completed;
                                  });
    if (offers[least->index].seen.completed < ask.min_observations) {
      std::rotate(route.order.begin(), least, least + 1);
      route.explored = true;
    }
  }
  return route;
}

void SkillHistory::succeeded(double ttft_seconds, double tokens_per_second) {
  if (std::isfinite(ttft_seconds) && ttft_seconds >= 0)
    seen_.ttft_seconds = ewma(seen_.ttft_seconds, seen_.completed, ttft_seconds);
  if (std::isfinite(tokens_per_second) && tokens_per_second > 0)
    seen_.tokens_per_second = seen_.tokens_per_second > 0
                                  ? ewma(seen_.tokens_per_second, 1, tokens_per_second)
                                  : tokens_per_second;
  ++seen_.completed;
}

void SkillHistory::failed(double now) {
  seen_.recent_failures = at(now).recent_failures + 1;
  failures_at_ = now;
}

ProviderObservations SkillHistory::at(double now) const {
  ProviderObservations o = seen_;
  if (o.recent_failures > 0 && now > failures_at_)
    o.recent_failures *= std::exp2(-(now - failures_at_) / kFailureHalfLifeS);
  return o;
}

}  // namespace swarm
