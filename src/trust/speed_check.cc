#include "trust/speed_check.h"

#include <algorithm>
#include <set>

namespace swarm::trust {

double measured_layer_tokens_per_second(const SpeedSample& s) {
  if (s.compute_us <= 0 || s.batch_tokens <= 0 || s.layers <= 0) return 0;
  return static_cast<double>(s.batch_tokens) * s.layers /
         (static_cast<double>(s.compute_us) * 1e-6);
}

SpeedVerdict check_speed(double announced, const std::vector<SpeedSample>& samples,
                         const SpeedCheckParams& params) {
  SpeedVerdict v;
  v.announced = announced;
  std::vector<double> rates;
  for (const SpeedSample& s : samples)
    if (const double r = measured_layer_tokens_per_second(s); r > 0) rates.push_back(r);
  v.samples = rates.size();
  if (rates.empty()) return v;
  // The median: one stalled or one lucky batch moves it little.
  std::sort(rates.begin(), rates.end());
  const size_t mid = rates.size() / 2;
  v.measured = rates.size() % 2 == 1 ? rates[mid] : (rates[mid - 1] + rates[mid]) / 2;
  v.lie = v.samples >= std::max<size_t>(1, params.min_samples) && announced > 0 &&
          announced > params.factor * v.measured;
  return v;
}

std::optional<SpeedVerdict> SpeedWatch::observe(const std::string& node_id, double announced,
                                                const SpeedSample& sample) {
  if (measured_layer_tokens_per_second(sample) <= 0) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
  std::deque<SpeedSample>& window = samples_[node_id];
  window.push_back(sample);
  while (window.size() > std::max<size_t>(1, params_.window)) window.pop_front();
  const SpeedVerdict v =
      check_speed(announced, std::vector<SpeedSample>(window.begin(), window.end()), params_);
  if (!v.lie) return std::nullopt;
  samples_.erase(node_id);
  return v;
}

void SpeedWatch::retain(const std::vector<std::string>& keep) {
  const std::set<std::string> kept(keep.begin(), keep.end());
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(samples_, [&](const auto& kv) { return !kept.contains(kv.first); });
}

}  // namespace swarm::trust
