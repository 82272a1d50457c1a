#include "engine/backend_select.h"

#include <cctype>

#include "engine/compute_devices.h"
#include "engine/cpu_backend.h"
#ifdef SWARM_HAVE_VULKAN_KERNELS
#include "engine/vulkan_backend.h"
#endif

namespace swarm {
namespace {

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 4) return false;  // more GPUs than that is a typo
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// "vulkan": the first Vulkan device the drivers list; "vulkan:N": device N.
Result<std::unique_ptr<ComputeBackend>> open_vulkan(const std::string& device, int index) {
#ifdef SWARM_HAVE_VULKAN_KERNELS
  if (index < 0) {
    const DeviceList list = list_compute_devices();
    for (const ComputeDevice& d : list.devices)
      if (d.backend == "vulkan") {
        index = d.index;
        break;
      }
    if (index < 0) return Status::NotFound("device '" + device + "': no Vulkan device: " + list.vulkan_note);
  }
  Result<std::unique_ptr<VulkanBackend>> b = VulkanBackend::open(index);
  if (!b.ok()) return b.status().annotate("device '" + device + "'");
  return std::unique_ptr<ComputeBackend>(std::move(b).value());
#else
  (void)index;
  return Status::Unsupported("device '" + device +
                             "': this build has no Vulkan kernels (it needs libvulkan-dev and glslc)");
#endif
}

}  // namespace

Result<std::unique_ptr<ComputeBackend>> select_backend(const std::string& device) {
  if (device == "cpu") return std::unique_ptr<ComputeBackend>(std::make_unique<CpuBackend>());
  const std::string vulkan = "vulkan";
  if (device == vulkan) return open_vulkan(device, -1);
  if (device.rfind(vulkan + ":", 0) == 0 && all_digits(device.substr(vulkan.size() + 1)))
    return open_vulkan(device, std::stoi(device.substr(vulkan.size() + 1)));
  return Status::InvalidArgument("device '" + device.substr(0, 64) +
                                 "' is not one of: cpu, vulkan, vulkan:N");
}

}  // namespace swarm
