// Vulkan's C structs start with their type tag; this zeroes one and sets the tag,
// which `T x{TAG}` would do but for -Wmissing-field-initializers.
#pragma once

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <vulkan/vulkan.h>

namespace swarm::vk {

template <typename T>
T vk_struct(VkStructureType type) {
  T t{};
  t.sType = type;
  return t;
}

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
