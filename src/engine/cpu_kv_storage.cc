#include "engine/cpu_kv_storage.h"

#include <algorithm>

namespace swarm {

CpuKvStorage::CpuKvStorage(int first_layer, int last_layer, int kv_dim, int max_len)
    : first_layer_(first_layer), kv_dim_(kv_dim), max_len_(max_len) {
  layers_.resize(std::max(0, last_layer - first_layer));
}

Status CpuKvStorage::grow_to(int positions) {
  if (positions <= capacity_) return Status::Ok();
  const int cap = std::max(positions, std::min(max_len_, std::max(64, capacity_ * 2)));
  for (auto& buf : layers_) buf.resize(static_cast<size_t>(cap) * 2 * kv_dim_);
  capacity_ = cap;
  return Status::Ok();
}

}  // namespace swarm
