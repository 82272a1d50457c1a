// What the Vulkan kernel tests share: opening a device (or skipping, saying why,
// where there is none), moving float arrays in and out, and random data.
#pragma once

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/compute_devices.h"
#include "engine/vulkan_commands.h"
#include "engine/vulkan_context.h"

namespace swarm::vk::testing {

// The first Vulkan device the drivers list (lavapipe where there is no GPU), with
// subgroup reductions allowed or not. Sets *skip to why not, if it cannot.
inline std::unique_ptr<VulkanContext> open_test_device(bool subgroups, std::string* skip,
                                                       int* opened_index = nullptr) {
  const DeviceList list = list_compute_devices();
  int index = -1;
  for (const ComputeDevice& d : list.devices)
    if (d.backend == "vulkan") {
      index = d.index;
      break;
    }
  if (index < 0) {
    *skip = "no Vulkan device: " + list.vulkan_note;
    return nullptr;
  }
  VulkanOptions options;
  options.allow_subgroups = subgroups;
  Result<std::unique_ptr<VulkanContext>> ctx = VulkanContext::open(index, options);
  if (!ctx.ok()) {
    *skip = "cannot open vulkan:" + std::to_string(index) + ": " + ctx.status().ToString();
    return nullptr;
  }
  if (subgroups && !(*ctx)->subgroups()) {
    *skip = (*ctx)->device_name() +
            " has no subgroup shuffles with full subgroups; the shared-memory path is tested";
    return nullptr;
  }
  if (opened_index != nullptr) *opened_index = index;
  return std::move(ctx).value();
}

// Parameter of every kernel test: reduce by subgroups (true) or shared memory.
inline std::string path_name(const ::testing::TestParamInfo<bool>& info) {
  return info.param ? "Subgroups" : "SharedMemory";
}

inline VulkanBuffer device_buffer(VulkanContext& ctx, uint64_t bytes) {
  Result<VulkanBuffer> b = ctx.create_buffer(bytes, BufferKind::kDevice);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? std::move(b).value() : VulkanBuffer();
}

template <typename T>
VulkanBuffer upload(VulkanContext& ctx, const std::vector<T>& v) {
  VulkanBuffer b = device_buffer(ctx, v.size() * sizeof(T));
  const Status st = ctx.upload(b, 0, v.data(), v.size() * sizeof(T));
  EXPECT_TRUE(st.ok()) << st.ToString();
  return b;
}

template <typename T>
std::vector<T> download(VulkanContext& ctx, const VulkanBuffer& b, size_t count) {
  std::vector<T> v(count);
  const Status st = ctx.download(b, 0, v.data(), count * sizeof(T));
  EXPECT_TRUE(st.ok()) << st.ToString();
  return v;
}

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

inline uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace swarm::vk::testing

#endif  // SWARM_HAVE_VULKAN_KERNELS
