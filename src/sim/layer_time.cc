#include "sim/layer_time.h"

#include <algorithm>
#include <cmath>

#include "pipeline/spec_controller.h"

namespace swarm::sim {

LayerTime::LayerTime(const NodeClass& c, const ModelShape& m)
    : LayerTime(c.layer_time_points, c.max_batch_tokens) {
  if (!table_.empty()) {
    for (double& t : table_) t += c.overhead_s;
    return;
  }
  memory_s_ = m.bytes_per_layer / (c.memory_bandwidth * c.memory_efficiency);
  flop_s_ = m.flops_per_token_layer / (c.peak_flops * c.compute_efficiency);
  overhead_s_ = c.overhead_s;
}

LayerTime::LayerTime(const std::vector<std::pair<int, double>>& points, int max_batch) {
  if (points.empty()) return;  // the roofline's terms stay 0
  StageTimes st;
  st.points = points;
  table_ = stage_time_table(st, std::max(64, max_batch), 0.05);
}

double LayerTime::seconds(int b) const {
  b = std::max(1, b);
  if (table_.empty()) return overhead_s_ + std::max(memory_s_, b * flop_s_);
  const int n = static_cast<int>(table_.size());
  if (b <= n) return table_[b - 1];
  const double slope = n >= 2 ? table_[n - 1] - table_[n - 2] : 0;
  return table_[n - 1] + slope * (b - n);
}

int capacity_layers(const NodeClass& c, const ModelShape& m) {
  int n =
      static_cast<int>(std::floor(c.memory_bytes * c.usable_memory_fraction / m.bytes_per_layer));
  if (c.max_layers > 0) n = std::min(n, c.max_layers);
  return std::clamp(n, 0, m.n_layer);
}

}  // namespace swarm::sim
