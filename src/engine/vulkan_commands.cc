#include "engine/vulkan_commands.h"

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include "engine/vulkan_status.h"
#include "engine/vulkan_struct.h"

namespace swarm::vk {
namespace {

constexpr uint32_t kSetsPerPool = 256;
constexpr uint32_t kBuffersPerSet = 8;  // the most any kernel binds
constexpr uint32_t kMaxGroups = 65535;  // maxComputeWorkGroupCount's guaranteed minimum

}  // namespace

CommandBatch::CommandBatch(VulkanContext& ctx) : ctx_(ctx) {
  VkCommandBufferAllocateInfo alloc =
      vk_struct<VkCommandBufferAllocateInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO);
  alloc.commandPool = ctx_.command_pool();
  alloc.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  alloc.commandBufferCount = 1;
  VkResult r = vkAllocateCommandBuffers(ctx_.device(), &alloc, &cmd_);
  if (r != VK_SUCCESS) {
    cmd_ = VK_NULL_HANDLE;
    status_ = vk_status(r, "vkAllocateCommandBuffers");
    return;
  }
  VkCommandBufferBeginInfo begin =
      vk_struct<VkCommandBufferBeginInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO);
  begin.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  r = vkBeginCommandBuffer(cmd_, &begin);
  if (r != VK_SUCCESS) status_ = vk_status(r, "vkBeginCommandBuffer");
}

CommandBatch::~CommandBatch() {
  if (cmd_ != VK_NULL_HANDLE) {
    // A batch never run may still be recording; a failed run may be in flight.
    if (!ran_ || !status_.ok()) vkQueueWaitIdle(ctx_.queue());
    vkFreeCommandBuffers(ctx_.device(), ctx_.command_pool(), 1, &cmd_);
  }
  for (VkDescriptorPool p : pools_) vkDestroyDescriptorPool(ctx_.device(), p, nullptr);
}

VkDescriptorSet CommandBatch::descriptor_set(VkDescriptorSetLayout layout) {
  if (pools_.empty() || sets_in_last_pool_ == kSetsPerPool) {
    VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSetsPerPool * kBuffersPerSet};
    VkDescriptorPoolCreateInfo info =
        vk_struct<VkDescriptorPoolCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO);
    info.maxSets = kSetsPerPool;
    info.poolSizeCount = 1;
    info.pPoolSizes = &size;
    VkDescriptorPool pool = VK_NULL_HANDLE;
    const VkResult r = vkCreateDescriptorPool(ctx_.device(), &info, nullptr, &pool);
    if (r != VK_SUCCESS) {
      fail(vk_status(r, "vkCreateDescriptorPool"));
      return VK_NULL_HANDLE;
    }
    pools_.push_back(pool);
    sets_in_last_pool_ = 0;
  }
  VkDescriptorSetAllocateInfo alloc =
      vk_struct<VkDescriptorSetAllocateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO);
  alloc.descriptorPool = pools_.back();
  alloc.descriptorSetCount = 1;
  alloc.pSetLayouts = &layout;
  VkDescriptorSet set = VK_NULL_HANDLE;
  const VkResult r = vkAllocateDescriptorSets(ctx_.device(), &alloc, &set);
  if (r != VK_SUCCESS) {
    fail(vk_status(r, "vkAllocateDescriptorSets"));
    return VK_NULL_HANDLE;
  }
  ++sets_in_last_pool_;
  return set;
}

void CommandBatch::barrier() {
  // Everything written by a dispatch or copy is visible to every later one.
  VkMemoryBarrier b = vk_struct<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
  b.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  b.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                    VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  const VkPipelineStageFlags stages =
      VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  vkCmdPipelineBarrier(cmd_, stages, stages, 0, 1, &b, 0, nullptr, 0, nullptr);
}

void CommandBatch::dispatch(const VulkanPipeline& p,
                            std::initializer_list<const VulkanBuffer*> buffers, const void* push,
                            uint32_t groups_x, uint32_t groups_y, uint32_t groups_z) {
  if (!status_.ok()) return;
  if (ran_) return fail(Status::Internal("CommandBatch: dispatch after run()"));
  if (buffers.size() != p.buffers || buffers.size() > kBuffersPerSet)
    return fail(Status::Internal("CommandBatch: " + std::to_string(buffers.size()) +
                                 " buffers for a kernel of " + std::to_string(p.buffers)));
  if (groups_x > kMaxGroups || groups_y > kMaxGroups || groups_z > kMaxGroups)
    return fail(Status::InvalidArgument(
        "a dispatch of " + std::to_string(groups_x) + " x " + std::to_string(groups_y) + " x " +
        std::to_string(groups_z) + " workgroups (at most 65535 each)"));
  if (groups_x == 0 || groups_y == 0 || groups_z == 0) return;  // nothing to do
  const VkDescriptorSet set = descriptor_set(p.set_layout);
  if (set == VK_NULL_HANDLE) return;
  VkDescriptorBufferInfo infos[kBuffersPerSet];
  VkWriteDescriptorSet writes[kBuffersPerSet];
  uint32_t i = 0;
  for (const VulkanBuffer* b : buffers) {
    if (b == nullptr || !b->valid())
      return fail(Status::InvalidArgument("CommandBatch: an unset buffer"));
    infos[i] = {b->handle(), 0, VK_WHOLE_SIZE};
    writes[i] = vk_struct<VkWriteDescriptorSet>(VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET);
    writes[i].dstSet = set;
    writes[i].dstBinding = i;
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[i].pBufferInfo = &infos[i];
    ++i;
  }
  vkUpdateDescriptorSets(ctx_.device(), i, writes, 0, nullptr);
  vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline);
  vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &set, 0, nullptr);
  if (p.push_bytes > 0)
    vkCmdPushConstants(cmd_, p.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, p.push_bytes, push);
  vkCmdDispatch(cmd_, groups_x, groups_y, groups_z);
  barrier();
  recorded_ = true;
}

void CommandBatch::copy(const VulkanBuffer& src, uint64_t src_offset, const VulkanBuffer& dst,
                        uint64_t dst_offset, uint64_t bytes) {
  if (!status_.ok()) return;
  if (ran_) return fail(Status::Internal("CommandBatch: copy after run()"));
  if (src_offset > src.size() || bytes > src.size() - src_offset || dst_offset > dst.size() ||
      bytes > dst.size() - dst_offset)
    return fail(Status::InvalidArgument("CommandBatch: a copy of " + std::to_string(bytes) +
                                        " bytes past the end of a buffer"));
  if (bytes == 0) return;
  const VkBufferCopy region{src_offset, dst_offset, bytes};
  vkCmdCopyBuffer(cmd_, src.handle(), dst.handle(), 1, &region);
  barrier();
  recorded_ = true;
}

void CommandBatch::copy_rows(const VulkanBuffer& src, uint64_t src_offset, uint64_t src_stride,
                             const VulkanBuffer& dst, uint64_t dst_offset, uint64_t dst_stride,
                             uint64_t row_bytes, uint64_t rows) {
  if (!status_.ok()) return;
  if (ran_) return fail(Status::Internal("CommandBatch: copy after run()"));
  if (rows == 0 || row_bytes == 0) return;
  // The last row's end, in each buffer, without overflow.
  auto fits = [&](const VulkanBuffer& b, uint64_t offset, uint64_t stride) {
    if (offset > b.size() || row_bytes > b.size() - offset) return false;
    return stride == 0 ? true : (rows - 1) <= (b.size() - offset - row_bytes) / stride;
  };
  if (!fits(src, src_offset, src_stride) || !fits(dst, dst_offset, dst_stride))
    return fail(Status::InvalidArgument("CommandBatch: a copy of " + std::to_string(rows) +
                                        " rows of " + std::to_string(row_bytes) +
                                        " bytes past the end of a buffer"));
  std::vector<VkBufferCopy> regions(rows);
  for (uint64_t i = 0; i < rows; ++i)
    regions[i] = {src_offset + i * src_stride, dst_offset + i * dst_stride, row_bytes};
  vkCmdCopyBuffer(cmd_, src.handle(), dst.handle(), static_cast<uint32_t>(rows), regions.data());
  barrier();
  recorded_ = true;
}

Status CommandBatch::run(uint64_t timeout_ns) {
  if (ran_) return Status::Internal("CommandBatch: run() twice");
  if (!status_.ok()) return status_;
  ran_ = true;
  SWARM_VK_RETURN_IF_ERROR(vkEndCommandBuffer(cmd_), "vkEndCommandBuffer");
  if (!recorded_) return Status::Ok();
  status_ = ctx_.submit_and_wait(cmd_, timeout_ns);
  return status_;
}

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
