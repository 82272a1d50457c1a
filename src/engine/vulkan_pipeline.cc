#include "engine/vulkan_pipeline.h"

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include "engine/vulkan_spirv.h"
#include "engine/vulkan_status.h"
#include "engine/vulkan_struct.h"

namespace swarm::vk {

PipelineCache::~PipelineCache() {
  for (auto& [key, p] : cache_) {
    vkDestroyPipeline(device_, p->pipeline, nullptr);
    vkDestroyPipelineLayout(device_, p->layout, nullptr);
    vkDestroyDescriptorSetLayout(device_, p->set_layout, nullptr);
  }
}

Result<const VulkanPipeline*> PipelineCache::get(const PipelineSpec& spec) {
  auto key = std::make_tuple(spec.shader, spec.constants);
  auto it = cache_.find(key);
  if (it != cache_.end()) return static_cast<const VulkanPipeline*>(it->second.get());
  auto p = std::make_unique<VulkanPipeline>();
  const Status st = create(spec, p.get());
  if (!st.ok()) {
    vkDestroyPipeline(device_, p->pipeline, nullptr);
    vkDestroyPipelineLayout(device_, p->layout, nullptr);
    vkDestroyDescriptorSetLayout(device_, p->set_layout, nullptr);
    return st;
  }
  const VulkanPipeline* out = p.get();
  cache_.emplace(std::move(key), std::move(p));
  return out;
}

Status PipelineCache::create(const PipelineSpec& spec, VulkanPipeline* out) {
  const std::span<const uint32_t> words = find_spirv(spec.shader, subgroups_);
  if (words.empty())
    return Status::NotFound("no Vulkan shader named " + spec.shader + " in this build");
  if (spec.push_bytes > 128)
    return Status::InvalidArgument("shader " + spec.shader + ": push constants over 128 bytes");
  out->buffers = spec.buffers;
  out->push_bytes = spec.push_bytes;

  std::vector<VkDescriptorSetLayoutBinding> bindings(spec.buffers);
  for (uint32_t i = 0; i < spec.buffers; ++i) {
    bindings[i].binding = i;
    bindings[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    bindings[i].descriptorCount = 1;
    bindings[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo set_info = vk_struct<VkDescriptorSetLayoutCreateInfo>(
      VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO);
  set_info.bindingCount = spec.buffers;
  set_info.pBindings = bindings.data();
  SWARM_VK_RETURN_IF_ERROR(
      vkCreateDescriptorSetLayout(device_, &set_info, nullptr, &out->set_layout),
      "vkCreateDescriptorSetLayout (" + spec.shader + ")");

  VkPushConstantRange push{VK_SHADER_STAGE_COMPUTE_BIT, 0, spec.push_bytes};
  VkPipelineLayoutCreateInfo layout_info =
      vk_struct<VkPipelineLayoutCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO);
  layout_info.setLayoutCount = 1;
  layout_info.pSetLayouts = &out->set_layout;
  layout_info.pushConstantRangeCount = spec.push_bytes > 0 ? 1 : 0;
  layout_info.pPushConstantRanges = &push;
  SWARM_VK_RETURN_IF_ERROR(vkCreatePipelineLayout(device_, &layout_info, nullptr, &out->layout),
                           "vkCreatePipelineLayout (" + spec.shader + ")");

  VkShaderModuleCreateInfo module_info =
      vk_struct<VkShaderModuleCreateInfo>(VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO);
  module_info.codeSize = words.size() * sizeof(uint32_t);
  module_info.pCode = words.data();
  VkShaderModule module = VK_NULL_HANDLE;
  SWARM_VK_RETURN_IF_ERROR(vkCreateShaderModule(device_, &module_info, nullptr, &module),
                           "vkCreateShaderModule (" + spec.shader + ")");

  std::vector<VkSpecializationMapEntry> entries(spec.constants.size());
  for (uint32_t i = 0; i < entries.size(); ++i) entries[i] = {i, i * 4, 4};
  VkSpecializationInfo spec_info{};
  spec_info.mapEntryCount = static_cast<uint32_t>(entries.size());
  spec_info.pMapEntries = entries.data();
  spec_info.dataSize = spec.constants.size() * 4;
  spec_info.pData = spec.constants.data();

  VkComputePipelineCreateInfo info =
      vk_struct<VkComputePipelineCreateInfo>(VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO);
  info.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  info.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  info.stage.module = module;
  info.stage.pName = "main";
  info.stage.pSpecializationInfo = entries.empty() ? nullptr : &spec_info;
  if (subgroups_) info.stage.flags = VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT_EXT;
  info.layout = out->layout;
  const VkResult r =
      vkCreateComputePipelines(device_, VK_NULL_HANDLE, 1, &info, nullptr, &out->pipeline);
  vkDestroyShaderModule(device_, module, nullptr);
  return vk_status(r, "vkCreateComputePipelines (" + spec.shader + ")");
}

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
