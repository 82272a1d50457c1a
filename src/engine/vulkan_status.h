// VkResult to Status: Vulkan's errors become values like every other error.
#pragma once

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <vulkan/vulkan.h>

#include <string>

#include "engine/status.h"

namespace swarm::vk {

// Ok for VK_SUCCESS; otherwise `what` failed, with the VkResult's name. Out of
// memory is ResourceExhausted, a lost device Unavailable, the rest Internal.
Status vk_status(VkResult r, const std::string& what);

}  // namespace swarm::vk

#define SWARM_VK_RETURN_IF_ERROR(call, what)                         \
  do {                                                               \
    const VkResult _vr = (call);                                     \
    if (_vr != VK_SUCCESS) return ::swarm::vk::vk_status(_vr, what); \
  } while (0)

#endif  // SWARM_HAVE_VULKAN_KERNELS
