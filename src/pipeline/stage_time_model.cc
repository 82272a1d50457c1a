#include "pipeline/stage_time_model.h"

#include <algorithm>

namespace swarm {

StageTimeModel::StageTimeModel(double weight_new, int max_batch_tokens)
    : weight_new_(std::clamp(weight_new, 1e-6, 1.0)), max_batch_tokens_(max_batch_tokens) {}

void StageTimeModel::observe(const std::string& address, int batch_tokens, int64_t compute_us) {
  if (batch_tokens < 1 || batch_tokens > max_batch_tokens_ || compute_us <= 0) return;
  const double s = static_cast<double>(compute_us) * 1e-6;
  auto [it, fresh] = seconds_[address].try_emplace(batch_tokens, s);
  if (!fresh) it->second = (1 - weight_new_) * it->second + weight_new_ * s;
}

StageTimes StageTimeModel::times(const std::string& address) const {
  StageTimes t;
  auto it = seconds_.find(address);
  if (it == seconds_.end()) return t;
  for (const auto& [b, s] : it->second) t.points.emplace_back(b, s);
  return t;
}

std::vector<StageTimes> StageTimeModel::chain_times(
    const std::vector<std::string>& addresses) const {
  std::vector<StageTimes> out;
  for (const std::string& a : addresses) out.push_back(times(a));
  return out;
}

}  // namespace swarm
