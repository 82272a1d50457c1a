#include "engine/backend_select.h"

#include <cctype>

#include "engine/cpu_backend.h"

namespace swarm {
namespace {

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 4) return false;  // more GPUs than that is a typo
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace

Result<std::unique_ptr<ComputeBackend>> select_backend(const std::string& device) {
  if (device == "cpu") return std::unique_ptr<ComputeBackend>(std::make_unique<CpuBackend>());
  const std::string vulkan = "vulkan";
  if (device == vulkan ||
      (device.rfind(vulkan + ":", 0) == 0 && all_digits(device.substr(vulkan.size() + 1))))
    return Status::Unsupported("device '" + device +
                               "': this build's Vulkan backend cannot run layers yet");
  return Status::InvalidArgument("device '" + device.substr(0, 64) +
                                 "' is not one of: cpu, vulkan, vulkan:N");
}

}  // namespace swarm
