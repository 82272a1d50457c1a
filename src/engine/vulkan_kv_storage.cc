#ifdef SWARM_HAVE_VULKAN_KERNELS

#include "engine/vulkan_kv_storage.h"

#include <algorithm>

namespace swarm::vk {

VulkanKvStorage::VulkanKvStorage(std::shared_ptr<SharedVulkanContext> device, int first_layer,
                                 int last_layer, int kv_dim, int max_len)
    : device_(std::move(device)), first_layer_(first_layer), kv_dim_(kv_dim), max_len_(max_len) {
  layers_.resize(std::max(0, last_layer - first_layer));
}

VulkanKvStorage::~VulkanKvStorage() {
  // Buffers give their bytes back to the context's account: under its lock.
  std::lock_guard<std::mutex> lock(device_->mu);
  layers_.clear();
}

Status VulkanKvStorage::grow_to(int positions) {
  if (positions <= capacity_) return Status::Ok();
  const int cap = std::max(positions, std::min(max_len_, std::max(64, capacity_ * 2)));
  std::lock_guard<std::mutex> lock(device_->mu);
  VulkanContext& ctx = *device_->ctx;
  const uint64_t bytes = static_cast<uint64_t>(cap) * position_bytes();
  const uint64_t need = bytes * layers_.size();
  if (need > ctx.free_bytes())
    return Status::ResourceExhausted(
        "KV cache of " + std::to_string(layers_.size()) + " layers x " + std::to_string(cap) +
        " positions needs " + std::to_string(need >> 20) + " MiB of device memory on " +
        ctx.device_name() + ", " + std::to_string(ctx.free_bytes() >> 20) + " MiB free");
  std::vector<VulkanBuffer> grown;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Result<VulkanBuffer> b = ctx.create_buffer(bytes, BufferKind::kDevice);
    if (!b.ok()) return b.status();
    grown.push_back(std::move(b).value());
  }
  if (capacity_ > 0) {
    // The positions written so far move along (truncate() keeps stale ones past
    // length() too; copying all of them is simplest and as cheap).
    CommandBatch batch(ctx);
    for (size_t i = 0; i < layers_.size(); ++i)
      batch.copy(layers_[i], 0, grown[i], 0, static_cast<uint64_t>(capacity_) * position_bytes());
    SWARM_RETURN_IF_ERROR(batch.run());
  }
  layers_ = std::move(grown);
  capacity_ = cap;
  return Status::Ok();
}

KvView VulkanKvStorage::view(int layer) const {
  return KvView{&buffer(layer), 0, static_cast<uint64_t>(kv_dim_),
                2 * static_cast<uint64_t>(kv_dim_)};
}

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
