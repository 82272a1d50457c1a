// A Vulkan context shared by a VulkanBackend and the KV storages it makes, with
// the lock that serialises their use of it. VulkanContext is not thread-safe
// (one queue, one command pool), while ComputeBackend's const methods and
// KvStorage::grow_to may be called from several threads at once; and a cache may
// outlive its model, so its buffers keep the context alive through this.
#pragma once

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <memory>
#include <mutex>

#include "engine/vulkan_context.h"

namespace swarm::vk {

struct SharedVulkanContext {
  std::unique_ptr<VulkanContext> ctx;
  std::mutex mu;  // held for every use of ctx
};

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
