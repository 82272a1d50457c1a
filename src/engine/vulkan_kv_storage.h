// The Vulkan backend's KV memory: one device buffer per layer in the CPU's layout,
// [capacity][K, V][kv_dim] float32, so attention reads it through a KvView with
// k_offset 0, v_offset kv_dim, stride 2 * kv_dim. Capacity grows geometrically up
// to max_len as CpuKvStorage's does (a short conversation in a long context does
// not take the whole context's device memory); growing copies the positions
// already written into the new buffers on the device.
#pragma once

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <memory>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/vulkan_kernels.h"
#include "engine/vulkan_shared_context.h"

namespace swarm::vk {

class VulkanKvStorage final : public KvStorage {
 public:
  VulkanKvStorage(std::shared_ptr<SharedVulkanContext> device, int first_layer, int last_layer,
                  int kv_dim, int max_len);
  ~VulkanKvStorage() override;

  // ResourceExhausted (naming MiB needed and free) when the device cannot hold
  // the larger buffers; the old ones are kept then.
  Status grow_to(int positions) override;

  // Layer `layer`'s keys and values. The caller holds the device's lock.
  KvView view(int layer) const;
  const VulkanBuffer& buffer(int layer) const { return layers_[layer - first_layer_]; }
  // Bytes from one position to the next.
  uint64_t position_bytes() const { return 2ull * kv_dim_ * sizeof(float); }
  // The device this storage's buffers live on: a backend refuses others'.
  const SharedVulkanContext* device() const { return device_.get(); }

 private:
  std::shared_ptr<SharedVulkanContext> device_;
  int first_layer_;
  int kv_dim_;
  int max_len_;
  int capacity_ = 0;  // positions allocated so far
  std::vector<VulkanBuffer> layers_;
};

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
