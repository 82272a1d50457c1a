// One Vulkan device opened for compute: its queue, its memory (device-local
// buffers for weights, KV cache and activations; host-visible staging buffers for
// moving data in and out), with an account of what this context holds so that an
// allocation too big for the device fails with a clear Status instead of a crash
// or a driver error deep inside a run.
//
// Kernels (engine/vulkan_kernels.h) are recorded into a CommandBatch
// (engine/vulkan_commands.h) and run from pipelines this context caches
// (engine/vulkan_pipeline.h).
//
// Compiled only where the build has Vulkan and glslc (SWARM_HAVE_VULKAN_KERNELS).
#pragma once

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <vulkan/vulkan.h>

#include <cstdint>
#include <memory>
#include <string>

#include "engine/status.h"

namespace swarm::vk {

class VulkanContext;
class PipelineCache;

enum class BufferKind {
  kDevice,   // device-local: what kernels read and write
  kStaging,  // host-visible and mapped: the way in and out
};

// A buffer and its memory. Frees both, and gives the bytes back to its context's
// account, when destroyed; must not outlive its context. Move-only.
class VulkanBuffer {
 public:
  VulkanBuffer() = default;
  VulkanBuffer(VulkanBuffer&& o) noexcept { *this = std::move(o); }
  VulkanBuffer& operator=(VulkanBuffer&& o) noexcept;
  VulkanBuffer(const VulkanBuffer&) = delete;
  VulkanBuffer& operator=(const VulkanBuffer&) = delete;
  ~VulkanBuffer() { reset(); }

  bool valid() const { return buffer_ != VK_NULL_HANDLE; }
  VkBuffer handle() const { return buffer_; }
  uint64_t size() const { return size_; }
  BufferKind kind() const { return kind_; }
  // Staging buffers only: where the host reads and writes them (coherent memory).
  void* mapped() const { return mapped_; }
  void reset();

 private:
  friend class VulkanContext;
  VulkanContext* ctx_ = nullptr;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  uint64_t size_ = 0;
  uint64_t charged_ = 0;  // bytes of memory taken (>= size_, the driver's rounding)
  uint32_t heap_ = 0;
  BufferKind kind_ = BufferKind::kDevice;
  void* mapped_ = nullptr;
};

struct VulkanOptions {
  // Lets reductions use subgroup shuffles where the device has them. false forces
  // the shared-memory path everywhere; both give the same bits (reduce.glsl).
  bool allow_subgroups = true;
  // Uploads and downloads larger than this go through a staging buffer of this
  // size in pieces, so moving a 4 GiB model needs no 4 GiB of host-visible memory.
  uint64_t staging_chunk_bytes = 64ull << 20;
  // Caps max_buffer_bytes() below the device's own limit (0: no cap), so tests
  // can make a small matrix split as a large one would.
  uint64_t max_buffer_bytes = 0;
};

// Not thread-safe: one thread records and runs on a context at a time (it has
// one queue and one command pool). Buffers must be destroyed before it.
class VulkanContext {
 public:
  // Opens Vulkan device `index`, numbered as list_compute_devices() lists the
  // "vulkan:N" devices (engine/compute_devices.h). Unsupported where the device
  // has no compute queue or is older than Vulkan 1.1; NotFound past the last one.
  static Result<std::unique_ptr<VulkanContext>> open(int index, const VulkanOptions& options = {});
  ~VulkanContext();
  VulkanContext(const VulkanContext&) = delete;
  VulkanContext& operator=(const VulkanContext&) = delete;

  const std::string& device_name() const { return name_; }
  // Whether the kernels reduce with subgroup shuffles on this context.
  bool subgroups() const { return subgroups_; }
  uint32_t subgroup_size() const { return subgroup_size_; }

  // The device-local heap kernels' buffers come from, and what this context's
  // live buffers take of it.
  uint64_t heap_bytes() const { return heap_size_[device_heap_]; }
  uint64_t used_bytes() const { return heap_used_[device_heap_]; }
  // The most used_bytes() has been since the context was made or since
  // reset_peak(): what a call took at its largest, to check a bound with.
  uint64_t peak_used_bytes() const { return heap_peak_; }
  void reset_peak() { heap_peak_ = used_bytes(); }
  // What may still be allocated: the heap less what every context of this
  // process holds on the device (each Model opens its own) and, where the
  // driver has VK_EXT_memory_budget, no more than its budget less what it
  // counts used, which on most drivers takes in other processes too.
  uint64_t free_bytes() const { return heap_free(device_heap_); }
  // The largest buffer a kernel can bind whole (maxStorageBufferRange, at most
  // the largest single allocation): bigger tensors must be split.
  uint64_t max_buffer_bytes() const { return max_buffer_; }

  // A buffer of `bytes` (> 0). ResourceExhausted, naming the sizes in MiB, when
  // the heap cannot hold it or it is larger than max_buffer_bytes().
  Result<VulkanBuffer> create_buffer(uint64_t bytes, BufferKind kind);
  // Copies host memory into `dst` at `offset` (through a staging buffer for
  // device-local ones) and waits until it is there.
  Status upload(const VulkanBuffer& dst, uint64_t offset, const void* src, uint64_t bytes);
  // Copies `bytes` of `src` from `offset` to host memory, after all work
  // submitted before has finished.
  Status download(const VulkanBuffer& src, uint64_t offset, void* dst, uint64_t bytes);

  // For CommandBatch and PipelineCache.
  VkDevice device() const { return device_; }
  VkQueue queue() const { return queue_; }
  VkCommandPool command_pool() const { return command_pool_; }
  PipelineCache& pipelines() { return *pipelines_; }
  // Submits `cmd` (ended) and waits on a fence; a device that does not finish
  // in `timeout_ns` gives DeadlineExceeded.
  Status submit_and_wait(VkCommandBuffer cmd, uint64_t timeout_ns);

 private:
  friend class VulkanBuffer;
  VulkanContext() = default;
  Status init(int index, const VulkanOptions& options);
  Result<uint32_t> memory_type(BufferKind kind, uint32_t allowed) const;
  Status copy(VkBuffer src, uint64_t src_offset, VkBuffer dst, uint64_t dst_offset, uint64_t bytes);
  void release(uint32_t heap, uint64_t bytes);
  // free_bytes() for any heap; the budget is read for the device heap only.
  uint64_t heap_free(uint32_t heap) const;

  VkInstance instance_ = VK_NULL_HANDLE;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  VkCommandPool command_pool_ = VK_NULL_HANDLE;
  VkPhysicalDeviceMemoryProperties memory_{};
  std::string name_;
  bool subgroups_ = false;
  uint32_t subgroup_size_ = 0;
  uint32_t device_heap_ = 0;
  uint32_t host_heap_ = 0;
  uint64_t heap_size_[VK_MAX_MEMORY_HEAPS] = {};
  uint64_t heap_used_[VK_MAX_MEMORY_HEAPS] = {};
  uint64_t heap_peak_ = 0;  // of the device heap
  uint64_t max_buffer_ = 0;
  uint64_t staging_chunk_ = 0;
  bool memory_budget_ = false;
  int index_ = -1;  // the device's number, which the process-wide account goes by
  std::unique_ptr<PipelineCache> pipelines_;
};

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
