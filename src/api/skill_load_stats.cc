#include "api/skill_load_stats.h"

namespace swarm {

void SkillLoadStats::ewma(double* mean, int64_t* samples, double sample) {
  // The first sample is the mean: no pull toward a made-up zero.
  *mean = *samples == 0 ? sample : (1 - kEwmaAlpha) * *mean + kEwmaAlpha * sample;
  ++*samples;
}

void SkillLoadStats::answered(Clock::time_point, const std::optional<Generation>& generation) {
  ++completed_;
  warm_ = true;
  if (!generation) return;
  using Seconds = std::chrono::duration<double>;
  ewma(&ttft_seconds_, &ttft_samples_,
       std::chrono::duration_cast<Seconds>(generation->ttft).count());
  // One token gives no rate: the rate is of the tokens after the first.
  if (generation->decode && generation->tokens >= 2) {
    const double s = std::chrono::duration_cast<Seconds>(*generation->decode).count();
    if (s > 0)
      ewma(&tokens_per_second_, &rate_samples_, static_cast<double>(generation->tokens - 1) / s);
  }
}

void SkillLoadStats::failed(Clock::time_point now) {
  warm_ = false;
  failures_.push_back(now);
  while (failures_.size() > kMaxFailuresKept) failures_.pop_front();
  failures_in_window(now);  // drops what fell out of the window
}

int64_t SkillLoadStats::failures_in_window(Clock::time_point now) {
  while (!failures_.empty() && failures_.front() <= now - failure_window_) failures_.pop_front();
  int64_t n = 0;
  for (auto it = failures_.rbegin(); it != failures_.rend() && *it <= now; ++it) ++n;
  return n;
}

}  // namespace swarm
