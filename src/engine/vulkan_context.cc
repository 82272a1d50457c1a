#include "engine/vulkan_context.h"

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/vulkan_pipeline.h"
#include "engine/vulkan_status.h"
#include "engine/vulkan_struct.h"

namespace swarm::vk {
namespace {

bool has_extension(VkPhysicalDevice dev, const char* name) {
  uint32_t n = 0;
  vkEnumerateDeviceExtensionProperties(dev, nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> ext(n);
  vkEnumerateDeviceExtensionProperties(dev, nullptr, &n, ext.data());
  return std::any_of(ext.begin(), ext.end(), [&](const VkExtensionProperties& e) {
    return std::strcmp(e.extensionName, name) == 0;
  });
}

}  // namespace

Result<std::unique_ptr<VulkanContext>> VulkanContext::open(int index,
                                                           const VulkanOptions& options) {
  if (options.staging_chunk_bytes == 0) return Status::InvalidArgument("staging_chunk_bytes of 0");
  std::unique_ptr<VulkanContext> ctx(new VulkanContext());
  ctx->staging_chunk_ = options.staging_chunk_bytes;
  const Status st = ctx->init(index, options);
  if (!st.ok()) return st.annotate("vulkan:" + std::to_string(index));
  return ctx;
}

Status VulkanContext::init(int index, const VulkanOptions& options) {
  index_ = index;
  VkApplicationInfo app = vk_struct<VkApplicationInfo>(VK_STRUCTURE_TYPE_APPLICATION_INFO);
  app.pApplicationName = "swarm";
  app.apiVersion = VK_API_VERSION_1_2;
  VkInstanceCreateInfo instance_info =
      vk_struct<VkInstanceCreateInfo>(VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO);
  instance_info.pApplicationInfo = &app;
  SWARM_VK_RETURN_IF_ERROR(vkCreateInstance(&instance_info, nullptr, &instance_),
                           "vkCreateInstance");

  uint32_t n = 0;
  vkEnumeratePhysicalDevices(instance_, &n, nullptr);
  std::vector<VkPhysicalDevice> devices(n);
  vkEnumeratePhysicalDevices(instance_, &n, devices.data());
  if (index < 0 || static_cast<uint32_t>(index) >= n)
    return Status::NotFound("no such Vulkan device (the drivers report " + std::to_string(n) + ")");
  physical_ = devices[index];

  VkPhysicalDeviceSubgroupProperties subgroup = vk_struct<VkPhysicalDeviceSubgroupProperties>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES);
  VkPhysicalDeviceMaintenance3Properties maint3 = vk_struct<VkPhysicalDeviceMaintenance3Properties>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES);
  subgroup.pNext = &maint3;
  VkPhysicalDeviceProperties2 props =
      vk_struct<VkPhysicalDeviceProperties2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2);
  props.pNext = &subgroup;
  vkGetPhysicalDeviceProperties2(physical_, &props);
  name_ = props.properties.deviceName;
  if (props.properties.apiVersion < VK_API_VERSION_1_1)
    return Status::Unsupported(name_ + ": Vulkan 1.1 or newer is needed (SPIR-V 1.3)");
  max_buffer_ = std::min<uint64_t>(props.properties.limits.maxStorageBufferRange,
                                   maint3.maxMemoryAllocationSize);
  if (options.max_buffer_bytes > 0) max_buffer_ = std::min(max_buffer_, options.max_buffer_bytes);

  // Subgroup shuffles in compute, a size that divides the kernels' workgroups of
  // 64, and full subgroups on request (reduce.glsl numbers lanes by subgroup).
  VkPhysicalDeviceSubgroupSizeControlFeaturesEXT size_control =
      vk_struct<VkPhysicalDeviceSubgroupSizeControlFeaturesEXT>(
          VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES_EXT);
  const bool has_size_control =
      has_extension(physical_, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME);
  VkPhysicalDeviceSubgroupSizeControlPropertiesEXT size_props =
      vk_struct<VkPhysicalDeviceSubgroupSizeControlPropertiesEXT>(
          VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES_EXT);
  if (has_size_control) {
    VkPhysicalDeviceFeatures2 features =
        vk_struct<VkPhysicalDeviceFeatures2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2);
    features.pNext = &size_control;
    vkGetPhysicalDeviceFeatures2(physical_, &features);
    VkPhysicalDeviceProperties2 more =
        vk_struct<VkPhysicalDeviceProperties2>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2);
    more.pNext = &size_props;
    vkGetPhysicalDeviceProperties2(physical_, &more);
  }
  const uint32_t needed_ops = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_SHUFFLE_BIT;
  subgroup_size_ = subgroup.subgroupSize;
  subgroups_ = options.allow_subgroups &&
               (subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
               (subgroup.supportedOperations & needed_ops) == needed_ops && subgroup_size_ >= 2 &&
               subgroup_size_ <= 64 && (subgroup_size_ & (subgroup_size_ - 1)) == 0 &&
               has_size_control && size_control.computeFullSubgroups &&
               // Full subgroups need the workgroup (64) to be a multiple of the largest size.
               size_props.maxSubgroupSize <= 64;

  uint32_t families = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(physical_, &families, nullptr);
  std::vector<VkQueueFamilyProperties> family(families);
  vkGetPhysicalDeviceQueueFamilyProperties(physical_, &families, family.data());
  uint32_t qf = families;
  for (uint32_t i = 0; i < families && qf == families; ++i)
    if (family[i].queueFlags & VK_QUEUE_COMPUTE_BIT) qf = i;
  if (qf == families) return Status::Unsupported(name_ + ": no compute queue");

  const float priority = 1.0f;
  VkDeviceQueueCreateInfo queue_info =
      vk_struct<VkDeviceQueueCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO);
  queue_info.queueFamilyIndex = qf;
  queue_info.queueCount = 1;
  queue_info.pQueuePriorities = &priority;
  VkDeviceCreateInfo device_info =
      vk_struct<VkDeviceCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO);
  device_info.queueCreateInfoCount = 1;
  device_info.pQueueCreateInfos = &queue_info;
  std::vector<const char*> extensions;
  VkPhysicalDeviceSubgroupSizeControlFeaturesEXT enable =
      vk_struct<VkPhysicalDeviceSubgroupSizeControlFeaturesEXT>(
          VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES_EXT);
  if (subgroups_) {
    enable.computeFullSubgroups = VK_TRUE;
    device_info.pNext = &enable;
    extensions.push_back(VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME);
  }
  // The driver's count of what the whole process (every context) and, on
  // most drivers, other processes use of each heap.
  memory_budget_ = has_extension(physical_, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
  if (memory_budget_) extensions.push_back(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
  device_info.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  device_info.ppEnabledExtensionNames = extensions.data();
  SWARM_VK_RETURN_IF_ERROR(vkCreateDevice(physical_, &device_info, nullptr, &device_),
                           "vkCreateDevice");
  vkGetDeviceQueue(device_, qf, 0, &queue_);

  VkCommandPoolCreateInfo pool_info =
      vk_struct<VkCommandPoolCreateInfo>(VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO);
  pool_info.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pool_info.queueFamilyIndex = qf;
  SWARM_VK_RETURN_IF_ERROR(vkCreateCommandPool(device_, &pool_info, nullptr, &command_pool_),
                           "vkCreateCommandPool");

  vkGetPhysicalDeviceMemoryProperties(physical_, &memory_);
  for (uint32_t i = 0; i < memory_.memoryHeapCount; ++i)
    heap_size_[i] = memory_.memoryHeaps[i].size;
  // The heap device-local buffers come from: that of the first device-local type.
  for (uint32_t i = memory_.memoryTypeCount; i-- > 0;)
    if (memory_.memoryTypes[i].propertyFlags & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT)
      device_heap_ = memory_.memoryTypes[i].heapIndex;
  // And the heap staging buffers come from: that of the first host-visible type.
  for (uint32_t i = memory_.memoryTypeCount; i-- > 0;)
    if (memory_.memoryTypes[i].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)
      host_heap_ = memory_.memoryTypes[i].heapIndex;
  pipelines_ = std::make_unique<PipelineCache>(device_, subgroups_);
  return Status::Ok();
}

VulkanContext::~VulkanContext() {
  pipelines_.reset();
  if (device_ != VK_NULL_HANDLE) {
    vkDeviceWaitIdle(device_);
    vkDestroyCommandPool(device_, command_pool_, nullptr);
    vkDestroyDevice(device_, nullptr);
  }
  if (instance_ != VK_NULL_HANDLE) vkDestroyInstance(instance_, nullptr);
}

Status VulkanContext::submit_and_wait(VkCommandBuffer cmd, uint64_t timeout_ns) {
  VkFenceCreateInfo fence_info = vk_struct<VkFenceCreateInfo>(VK_STRUCTURE_TYPE_FENCE_CREATE_INFO);
  VkFence fence = VK_NULL_HANDLE;
  SWARM_VK_RETURN_IF_ERROR(vkCreateFence(device_, &fence_info, nullptr, &fence), "vkCreateFence");
  VkSubmitInfo submit = vk_struct<VkSubmitInfo>(VK_STRUCTURE_TYPE_SUBMIT_INFO);
  submit.commandBufferCount = 1;
  submit.pCommandBuffers = &cmd;
  VkResult r = vkQueueSubmit(queue_, 1, &submit, fence);
  if (r == VK_SUCCESS) r = vkWaitForFences(device_, 1, &fence, VK_TRUE, timeout_ns);
  if (r == VK_TIMEOUT) {
    // The fence may still be signalled later: wait for the device before freeing it.
    vkDeviceWaitIdle(device_);
  }
  vkDestroyFence(device_, fence, nullptr);
  return vk_status(r, "running commands on " + name_);
}

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
