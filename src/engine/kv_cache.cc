#include "engine/kv_cache.h"

#include <string>
#include <utility>

namespace swarm {

KvCache::KvCache(int first_layer, int last_layer, int kv_dim, int max_len,
                 std::unique_ptr<KvStorage> storage)
    : first_layer_(first_layer),
      last_layer_(last_layer),
      kv_dim_(kv_dim),
      max_len_(max_len),
      storage_(std::move(storage)) {}

Status KvCache::reserve(int n) {
  if (n < 0 || n > max_len_ - length_)
    return Status::ResourceExhausted("KV cache full: " + std::to_string(length_) + " + " +
                                     std::to_string(n) + " positions exceed the limit of " +
                                     std::to_string(max_len_));
  return storage_->grow_to(length_ + n);
}

Status KvCache::truncate(int new_length) {
  if (new_length < 0 || new_length > length_)
    return Status::InvalidArgument("cannot truncate a KV cache of length " +
                                   std::to_string(length_) + " to " + std::to_string(new_length));
  length_ = new_length;
  return Status::Ok();
}

}  // namespace swarm
