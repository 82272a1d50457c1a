#include "engine/kv_cache.h"

#include <algorithm>

namespace swarm {

KvCache::KvCache(int first_layer, int last_layer, int kv_dim, int max_len)
    : first_layer_(first_layer), last_layer_(last_layer), kv_dim_(kv_dim), max_len_(max_len) {
  layers_.resize(std::max(0, last_layer - first_layer));
}

Status KvCache::reserve(int n) {
  if (n < 0 || n > max_len_ - length_)
    return Status::ResourceExhausted("KV cache full: " + std::to_string(length_) + " + " +
                                     std::to_string(n) + " positions exceed the limit of " +
                                     std::to_string(max_len_));
  grow_to(length_ + n);
  return Status::Ok();
}

Status KvCache::truncate(int new_length) {
  if (new_length < 0 || new_length > length_)
    return Status::InvalidArgument("cannot truncate a KV cache of length " + std::to_string(length_) +
                                   " to " + std::to_string(new_length));
  length_ = new_length;
  return Status::Ok();
}

void KvCache::grow_to(int positions) {
  if (positions <= capacity_) return;
  int cap = std::max(positions, std::min(max_len_, std::max(64, capacity_ * 2)));
  for (auto& buf : layers_) buf.resize(static_cast<size_t>(cap) * 2 * kv_dim_);
  capacity_ = cap;
}

float* KvCache::data_for(int layer, int pos, int which) {
  std::vector<float>& buf = layers_[layer - first_layer_];
  return buf.data() + (static_cast<size_t>(pos) * 2 + which) * kv_dim_;
}

}  // namespace swarm
