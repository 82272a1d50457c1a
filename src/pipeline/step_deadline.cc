#include "pipeline/step_deadline.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace swarm {
namespace {

double median(const std::deque<double>& values) {
  std::vector<double> v(values.begin(), values.end());
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + mid, v.end());
  if (v.size() % 2 == 1) return v[mid];
  const double upper = v[mid];
  return (*std::max_element(v.begin(), v.begin() + mid) + upper) / 2;
}

void push_bounded(std::deque<double>& q, double x, size_t window) {
  q.push_back(x);
  while (q.size() > window) q.pop_front();
}

// A chain's histories kept at most (a long-running gateway sees many chains).
constexpr size_t kMaxChains = 256;

}  // namespace

void StepTimeHistory::observe(int tokens, double seconds, double compute_per_token) {
  if (tokens <= 0 || !(seconds >= 0) || !std::isfinite(seconds)) return;
  if (compute_per_token >= 0 && std::isfinite(compute_per_token))
    push_bounded(compute_, compute_per_token, window_);
  if (tokens <= kShortTokens)
    push_bounded(short_, seconds, window_);
  else
    push_bounded(per_token_, seconds / tokens, window_);
}

std::optional<double> StepTimeHistory::step_seconds(size_t min_samples) const {
  if (short_.empty() || short_.size() < min_samples) return std::nullopt;
  return median(short_);
}

std::optional<double> StepTimeHistory::token_seconds() const {
  if (!per_token_.empty()) return median(per_token_);
  if (!compute_.empty()) return median(compute_);
  return std::nullopt;
}

std::optional<double> expected_step_seconds(const StepTimeHistory& h, int tokens) {
  const auto step = h.step_seconds(kMinStepSamples);
  if (!step) return std::nullopt;
  if (tokens <= StepTimeHistory::kShortTokens) return *step;
  if (const auto per_token = h.token_seconds()) return *step + tokens * *per_token;
  return tokens * *step;
}

std::chrono::milliseconds step_deadline(const StepTimeHistory& h, int tokens,
                                        const StepDeadlineOptions& o) {
  const auto expected = expected_step_seconds(h, std::max(1, tokens));
  if (!expected) return std::min(o.unmeasured, o.ceiling);
  const double ms = o.multiplier * *expected * 1e3 + static_cast<double>(o.margin.count());
  // Clamped in double first: a huge product must not overflow the cast.
  const double clamped = std::min(static_cast<double>(o.ceiling.count()),
                                  std::max(static_cast<double>(o.floor.count()), std::ceil(ms)));
  return std::chrono::milliseconds(static_cast<int64_t>(clamped));
}

void StepTimeBook::observe(const std::string& chain, int tokens, double seconds,
                           double compute_per_token) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = chains_.find(chain);
  if (it == chains_.end()) {
    if (chains_.size() >= kMaxChains) chains_.erase(chains_.begin());
    it = chains_.emplace(chain, StepTimeHistory()).first;
  }
  it->second.observe(tokens, seconds, compute_per_token);
  pooled_.observe(tokens, seconds, compute_per_token);
}

std::chrono::milliseconds StepTimeBook::deadline(const std::string& chain, int tokens,
                                                 const StepDeadlineOptions& options) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = chains_.find(chain);
  const bool own = it != chains_.end() && it->second.short_samples() >= kMinStepSamples;
  return step_deadline(own ? it->second : pooled_, tokens, options);
}

}  // namespace swarm
