// From the device a user names (LoadOptions::device, --device) to the backend
// that runs a Model's layers there.
#pragma once

#include <memory>
#include <string>

#include "engine/compute_backend.h"
#include "engine/status.h"

namespace swarm {

// "cpu": the CPU backend. "vulkan" or "vulkan:N" (N as `swarm devices` lists
// it): the Vulkan backend on the first Vulkan device, or device N (NotFound past
// the last one); Unsupported in a build without the Vulkan kernels. Anything else is
// InvalidArgument naming the field and the accepted forms.
Result<std::unique_ptr<ComputeBackend>> select_backend(const std::string& device);

}  // namespace swarm
