// The CPU backend's KV memory: one host buffer per layer, [capacity][2][kv_dim],
// K then V of each position, so attention walks one layer's keys (or values) with
// a fixed stride. Capacity grows geometrically up to max_len, so a short
// conversation in a long context does not take the whole context's memory.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/kv_cache.h"

namespace swarm {

class CpuKvStorage final : public KvStorage {
 public:
  CpuKvStorage(int first_layer, int last_layer, int kv_dim, int max_len);

  Status grow_to(int positions) override;

  // Floats from one position's K (or V) to the next position's.
  int64_t position_stride() const { return 2 * int64_t{kv_dim_}; }
  float* k(int layer, int pos) { return data_for(layer, pos, 0); }
  float* v(int layer, int pos) { return data_for(layer, pos, 1); }
  const float* k(int layer, int pos) const {
    return const_cast<CpuKvStorage*>(this)->data_for(layer, pos, 0);
  }
  const float* v(int layer, int pos) const {
    return const_cast<CpuKvStorage*>(this)->data_for(layer, pos, 1);
  }

 private:
  float* data_for(int layer, int pos, int which) {
    std::vector<float>& buf = layers_[layer - first_layer_];
    return buf.data() + (static_cast<size_t>(pos) * 2 + which) * kv_dim_;
  }

  int first_layer_;
  int kv_dim_;
  int max_len_;
  int capacity_ = 0;  // positions allocated so far
  std::vector<std::vector<float>> layers_;
};

}  // namespace swarm
