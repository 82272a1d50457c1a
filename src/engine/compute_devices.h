// What a machine can compute on: its CPU, and the GPUs (and software
// rasterisers, such as Mesa's lavapipe) its Vulkan drivers report, with the
// figures a node needs to decide what it can hold and how fast: memory, and
// whether the device has the subgroup operations and cooperative matrices
// fast kernels use. `swarm devices` prints this list.
//
// Vulkan is optional: a build without its headers and loader (SWARM_HAVE_VULKAN
// unset) lists the CPU alone and says why.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace swarm {

struct ComputeDevice {
  std::string backend;  // "cpu" or "vulkan"
  int index = 0;        // vulkan: the device's place in the driver's list (--device vulkan:N)
  std::string name;     // "AMD EPYC 7B13", "NVIDIA H100 80GB HBM3", "llvmpipe (LLVM 15.0.6, 256 bits)"
  // cpu; vulkan: "discrete", "integrated", "virtual", "cpu" (a software
  // device), "other".
  std::string type;
  uint64_t memory_bytes = 0;  // cpu: RAM; vulkan: its device-local heaps
  int threads = 0;            // cpu: hardware threads
  std::string api_version;    // vulkan: "1.3.230"
  std::string driver;         // vulkan: the driver's name and version, where it says
  uint32_t subgroup_size = 0;              // vulkan: 0 when unknown
  bool subgroup_arithmetic = false;        // vulkan: subgroupAdd and friends in compute shaders
  bool cooperative_matrix = false;         // vulkan: VK_KHR_ or VK_NV_cooperative_matrix

  // "cpu" or "vulkan:N": what --device will name it.
  std::string id() const { return backend == "cpu" ? "cpu" : backend + ":" + std::to_string(index); }
};

struct DeviceList {
  std::vector<ComputeDevice> devices;  // the CPU first, then the Vulkan devices in driver order
  // Why no Vulkan device is listed, when none is ("" otherwise).
  std::string vulkan_note;
};

// Asks the OS and the Vulkan loader; never fails (the CPU is always there).
DeviceList list_compute_devices();

// The device a command uses when none is named: the first discrete GPU, else
// the CPU (a software Vulkan device is never chosen unasked). Pure; `devices`
// as list_compute_devices gives them, the CPU first.
const ComputeDevice& default_device(const std::vector<ComputeDevice>& devices);

}  // namespace swarm
