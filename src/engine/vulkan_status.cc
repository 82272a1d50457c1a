#include "engine/vulkan_status.h"

#ifdef SWARM_HAVE_VULKAN_KERNELS

namespace swarm::vk {
namespace {

const char* result_name(VkResult r) {
  switch (r) {
    case VK_ERROR_OUT_OF_HOST_MEMORY:
      return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
      return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED:
      return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST:
      return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED:
      return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_EXTENSION_NOT_PRESENT:
      return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT:
      return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER:
      return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS:
      return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_OUT_OF_POOL_MEMORY:
      return "VK_ERROR_OUT_OF_POOL_MEMORY";
    case VK_ERROR_INVALID_SHADER_NV:
      return "VK_ERROR_INVALID_SHADER_NV";
    case VK_TIMEOUT:
      return "VK_TIMEOUT";
    default:
      return nullptr;
  }
}

}  // namespace

Status vk_status(VkResult r, const std::string& what) {
  if (r == VK_SUCCESS) return Status::Ok();
  const char* name = result_name(r);
  const std::string msg =
      what + " failed (" + (name ? name : "VkResult " + std::to_string(r)) + ")";
  switch (r) {
    case VK_ERROR_OUT_OF_HOST_MEMORY:
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
    case VK_ERROR_OUT_OF_POOL_MEMORY:
    case VK_ERROR_TOO_MANY_OBJECTS:
      return Status::ResourceExhausted(msg);
    case VK_ERROR_DEVICE_LOST:
      return Status::Unavailable(msg);
    case VK_TIMEOUT:
      return Status::DeadlineExceeded(msg);
    default:
      return Status::Internal(msg);
  }
}

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
