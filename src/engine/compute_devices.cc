#include "engine/compute_devices.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <thread>

#ifdef SWARM_HAVE_VULKAN
#include <vulkan/vulkan.h>
#endif

namespace swarm {
namespace {

ComputeDevice cpu_device() {
  ComputeDevice d;
  d.backend = "cpu";
  d.type = "cpu";
  d.threads = static_cast<int>(std::thread::hardware_concurrency());
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) d.memory_bytes = static_cast<uint64_t>(pages) * page;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      d.name = line.substr(line.find(':') + 1);
      d.name.erase(0, d.name.find_first_not_of(" \t"));
      d.name.erase(d.name.find_last_not_of(" \t") + 1);
      break;
    }
  if (d.name.empty()) d.name = "CPU";
  return d;
}

#ifdef SWARM_HAVE_VULKAN
std::string version_text(uint32_t v) {
  return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) +
         "." + std::to_string(VK_API_VERSION_PATCH(v));
}

const char* type_name(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
      return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
      return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
      return "cpu";
    default:
      return "other";
  }
}

ComputeDevice describe(VkPhysicalDevice dev, int index) {
  ComputeDevice d;
  d.backend = "vulkan";
  d.index = index;
  VkPhysicalDeviceSubgroupProperties subgroup{};
  subgroup.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
  VkPhysicalDeviceDriverProperties driver{};
  driver.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
  subgroup.pNext = &driver;
  VkPhysicalDeviceProperties2 props{};
  props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
  props.pNext = &subgroup;
  vkGetPhysicalDeviceProperties2(dev, &props);
  d.name = props.properties.deviceName;
  d.type = type_name(props.properties.deviceType);
  d.api_version = version_text(props.properties.apiVersion);
  if (props.properties.apiVersion >= VK_API_VERSION_1_2) {
    d.driver = driver.driverName;
    if (driver.driverInfo[0] != '\0') d.driver += std::string(" ") + driver.driverInfo;
  }
  d.subgroup_size = subgroup.subgroupSize;
  d.subgroup_arithmetic = (subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                          (subgroup.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
  VkPhysicalDeviceMemoryProperties memory;
  vkGetPhysicalDeviceMemoryProperties(dev, &memory);
  for (uint32_t i = 0; i < memory.memoryHeapCount; ++i)
    if (memory.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
      d.memory_bytes += memory.memoryHeaps[i].size;
  uint32_t n = 0;
  vkEnumerateDeviceExtensionProperties(dev, nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> extensions(n);
  vkEnumerateDeviceExtensionProperties(dev, nullptr, &n, extensions.data());
  for (const VkExtensionProperties& e : extensions)
    if (std::strcmp(e.extensionName, "VK_KHR_cooperative_matrix") == 0 ||
        std::strcmp(e.extensionName, "VK_NV_cooperative_matrix") == 0)
      d.cooperative_matrix = true;
  return d;
}

// The Vulkan devices, or why there are none.
std::vector<ComputeDevice> vulkan_devices(std::string* note) {
  VkApplicationInfo app{};
  app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
  app.pApplicationName = "swarm";
  app.apiVersion = VK_API_VERSION_1_2;
  VkInstanceCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
  info.pApplicationInfo = &app;
  VkInstance instance = VK_NULL_HANDLE;
  const VkResult r = vkCreateInstance(&info, nullptr, &instance);
  if (r != VK_SUCCESS) {
    *note = r == VK_ERROR_INCOMPATIBLE_DRIVER
                ? "no Vulkan driver is installed (a GPU's driver, or Mesa's mesa-vulkan-drivers "
                  "for the lavapipe software device)"
                : "the Vulkan loader could not start (VkResult " + std::to_string(r) + ")";
    return {};
  }
  uint32_t n = 0;
  vkEnumeratePhysicalDevices(instance, &n, nullptr);
  std::vector<VkPhysicalDevice> physical(n);
  vkEnumeratePhysicalDevices(instance, &n, physical.data());
  std::vector<ComputeDevice> out;
  for (uint32_t i = 0; i < n; ++i) out.push_back(describe(physical[i], static_cast<int>(i)));
  vkDestroyInstance(instance, nullptr);
  if (out.empty()) *note = "the Vulkan drivers report no device";
  return out;
}
#endif

}  // namespace

DeviceList list_compute_devices() {
  DeviceList list;
  list.devices.push_back(cpu_device());
#ifdef SWARM_HAVE_VULKAN
  for (ComputeDevice& d : vulkan_devices(&list.vulkan_note)) list.devices.push_back(std::move(d));
#else
  list.vulkan_note = "this build has no Vulkan (install libvulkan-dev and build again)";
#endif
  return list;
}

const ComputeDevice& default_device(const std::vector<ComputeDevice>& devices) {
  auto gpu = std::find_if(devices.begin(), devices.end(), [](const ComputeDevice& d) {
    return d.backend == "vulkan" && d.type == "discrete";
  });
  if (gpu != devices.end()) return *gpu;
  auto cpu = std::find_if(devices.begin(), devices.end(),
                          [](const ComputeDevice& d) { return d.backend == "cpu"; });
  return cpu != devices.end() ? *cpu : devices.front();
}

}  // namespace swarm
