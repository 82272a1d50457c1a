// Compute pipelines made from the embedded SPIR-V (engine/vulkan_spirv.h), one
// per (shader, specialization constants), created on first use and kept for the
// context's life. Every kernel has the same shape of interface: `buffers`
// storage buffers at bindings 0 .. buffers-1, and up to 128 bytes of push
// constants (the minimum every device has).
#pragma once

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <vulkan/vulkan.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "engine/status.h"

namespace swarm::vk {

struct PipelineSpec {
  std::string shader;               // "matmul_q4_k": shaders/vulkan/matmul_q4_k.comp
  uint32_t buffers = 0;             // storage buffers it binds
  uint32_t push_bytes = 0;          // size of its push-constant block
  std::vector<uint32_t> constants;  // specialization constants 0, 1, ... in order
};

struct VulkanPipeline {
  VkPipeline pipeline = VK_NULL_HANDLE;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  uint32_t buffers = 0;
  uint32_t push_bytes = 0;
};

class PipelineCache {
 public:
  // `subgroups`: use the shaders' subgroup variants, created with full subgroups
  // (reduce.glsl's slots need them; the device must have enabled
  // computeFullSubgroups).
  PipelineCache(VkDevice device, bool subgroups) : device_(device), subgroups_(subgroups) {}
  ~PipelineCache();
  PipelineCache(const PipelineCache&) = delete;
  PipelineCache& operator=(const PipelineCache&) = delete;

  // The pipeline for `spec`; NotFound for a shader this build does not have.
  Result<const VulkanPipeline*> get(const PipelineSpec& spec);

 private:
  Status create(const PipelineSpec& spec, VulkanPipeline* out);

  VkDevice device_;
  bool subgroups_;
  std::map<std::tuple<std::string, std::vector<uint32_t>>, std::unique_ptr<VulkanPipeline>> cache_;
};

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
