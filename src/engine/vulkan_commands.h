// Records several kernel dispatches (and buffer copies) into one command buffer
// and runs them with one submit: each step waits for the ones before it (a
// memory barrier after every step), and run() waits on a fence. Transformer
// layers are chains of small kernels; one submit per token, not per kernel,
// keeps the host out of the loop.
//
//   CommandBatch batch(ctx);
//   batch.dispatch(pipeline, {&x, &w, &y}, &params, groups_x, groups_y);
//   SWARM_RETURN_IF_ERROR(batch.run());
//
// Buffers must stay alive until run() returns. A batch runs once; errors while
// recording are kept and returned by run(), so callers check once.
#pragma once

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <vulkan/vulkan.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "engine/status.h"
#include "engine/vulkan_context.h"
#include "engine/vulkan_pipeline.h"

namespace swarm::vk {

class CommandBatch {
 public:
  explicit CommandBatch(VulkanContext& ctx);
  ~CommandBatch();
  CommandBatch(const CommandBatch&) = delete;
  CommandBatch& operator=(const CommandBatch&) = delete;

  VulkanContext& context() { return ctx_; }
  // The first error met while recording (Ok if none).
  const Status& status() const { return status_; }
  // Records a failure from outside (a kernel wrapper's argument check) so that
  // run() reports it.
  void fail(const Status& st) {
    if (status_.ok()) status_ = st;
  }

  // One dispatch of `p` with `buffers` bound at 0, 1, ... and `push` (the
  // pipeline's push_bytes of it). Group counts past the device's limit of 65535
  // per dimension are refused.
  void dispatch(const VulkanPipeline& p, std::initializer_list<const VulkanBuffer*> buffers,
                const void* push, uint32_t groups_x, uint32_t groups_y = 1, uint32_t groups_z = 1);
  // dst[dst_offset ..] = src[src_offset ..], `bytes` bytes.
  void copy(const VulkanBuffer& src, uint64_t src_offset, const VulkanBuffer& dst,
            uint64_t dst_offset, uint64_t bytes);
  // `rows` rows of `row_bytes`, row i from src_offset + i * src_stride to
  // dst_offset + i * dst_stride, in one command: how new tokens' keys and values
  // ([n][kv_dim] from a matmul) go into their positions of a KV cache buffer.
  void copy_rows(const VulkanBuffer& src, uint64_t src_offset, uint64_t src_stride,
                 const VulkanBuffer& dst, uint64_t dst_offset, uint64_t dst_stride,
                 uint64_t row_bytes, uint64_t rows);
  // Submits everything recorded and waits; DeadlineExceeded if the device has not
  // finished after `timeout_ns`.
  Status run(uint64_t timeout_ns = 60ull * 1000 * 1000 * 1000);

 private:
  void barrier();
  VkDescriptorSet descriptor_set(VkDescriptorSetLayout layout);

  VulkanContext& ctx_;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  std::vector<VkDescriptorPool> pools_;  // a new one when the last is full
  uint32_t sets_in_last_pool_ = 0;
  bool recorded_ = false;
  bool ran_ = false;
  Status status_;
};

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
