#include "engine/vulkan_context.h"

#ifdef SWARM_HAVE_VULKAN_KERNELS

// VulkanContext's memory: buffers, the account of what they take, and moving
// data in and out through staging buffers.

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

#include "engine/vulkan_status.h"
#include "engine/vulkan_struct.h"

namespace swarm::vk {
namespace {

// Sizes in error messages: MiB, or bytes below one. What is needed rounds up,
// what is free rounds down, so neither is overstated.
std::string mib(uint64_t bytes) {
  if (bytes < (1 << 20)) return std::to_string(bytes) + " bytes";
  return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB";
}
std::string mib_free(uint64_t bytes) {
  if (bytes < (1 << 20)) return std::to_string(bytes) + " bytes";
  return std::to_string(bytes >> 20) + " MiB";
}

constexpr uint64_t kCopyTimeoutNs = 60ull * 1000 * 1000 * 1000;

}  // namespace

VulkanBuffer& VulkanBuffer::operator=(VulkanBuffer&& o) noexcept {
  if (this == &o) return *this;
  reset();
  ctx_ = o.ctx_;
  buffer_ = o.buffer_;
  memory_ = o.memory_;
  size_ = o.size_;
  charged_ = o.charged_;
  heap_ = o.heap_;
  kind_ = o.kind_;
  mapped_ = o.mapped_;
  o.ctx_ = nullptr;
  o.buffer_ = VK_NULL_HANDLE;
  o.memory_ = VK_NULL_HANDLE;
  o.mapped_ = nullptr;
  o.size_ = o.charged_ = 0;
  return *this;
}

void VulkanBuffer::reset() {
  if (ctx_ == nullptr) return;
  if (mapped_ != nullptr) vkUnmapMemory(ctx_->device(), memory_);
  vkDestroyBuffer(ctx_->device(), buffer_, nullptr);
  vkFreeMemory(ctx_->device(), memory_, nullptr);
  ctx_->release(heap_, charged_);
  ctx_ = nullptr;
  buffer_ = VK_NULL_HANDLE;
  memory_ = VK_NULL_HANDLE;
  mapped_ = nullptr;
  size_ = charged_ = 0;
}

Result<uint32_t> VulkanContext::memory_type(BufferKind kind, uint32_t allowed) const {
  const VkMemoryPropertyFlags want =
      kind == BufferKind::kDevice
          ? VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT
          : VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  for (uint32_t i = 0; i < memory_.memoryTypeCount; ++i)
    if ((allowed & (1u << i)) && (memory_.memoryTypes[i].propertyFlags & want) == want) return i;
  return Status::Unsupported(
      name_ + ": no " + (kind == BufferKind::kDevice ? "device-local" : "host-visible coherent") +
      " memory for storage buffers");
}

namespace {

// What every context of this process holds, by (device number, heap): each
// Model opens a context of its own, and one context's count alone would let
// two stages loaded side by side each take the whole device.
struct ProcessAccount {
  std::mutex mu;
  std::map<std::pair<int, uint32_t>, uint64_t> used;
};
ProcessAccount& process_account() {
  static ProcessAccount account;
  return account;
}
void charge_process(int device, uint32_t heap, int64_t bytes) {
  ProcessAccount& a = process_account();
  std::lock_guard<std::mutex> lock(a.mu);
  a.used[{device, heap}] += static_cast<uint64_t>(bytes);  // wraps back for a release
}
uint64_t process_used(int device, uint32_t heap) {
  ProcessAccount& a = process_account();
  std::lock_guard<std::mutex> lock(a.mu);
  auto it = a.used.find({device, heap});
  return it == a.used.end() ? 0 : it->second;
}

}  // namespace

void VulkanContext::release(uint32_t heap, uint64_t bytes) {
  heap_used_[heap] -= bytes;
  charge_process(index_, heap, -static_cast<int64_t>(bytes));
}

uint64_t VulkanContext::heap_free(uint32_t heap) const {
  // This context's buffers are in the process's count too.
  const uint64_t used = process_used(index_, heap);
  const uint64_t counted = heap_size_[heap] > used ? heap_size_[heap] - used : 0;
  if (!memory_budget_ || heap != device_heap_) return counted;
  VkPhysicalDeviceMemoryBudgetPropertiesEXT budget =
      vk_struct<VkPhysicalDeviceMemoryBudgetPropertiesEXT>(
          VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT);
  VkPhysicalDeviceMemoryProperties2 props = vk_struct<VkPhysicalDeviceMemoryProperties2>(
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2);
  props.pNext = &budget;
  vkGetPhysicalDeviceMemoryProperties2(physical_, &props);
  const uint64_t b = budget.heapBudget[heap], u = budget.heapUsage[heap];
  // A driver that fills in nothing (budget 0) leaves our own count.
  if (b == 0) return counted;
  return std::min(counted, b > u ? b - u : 0);
}

Result<VulkanBuffer> VulkanContext::create_buffer(uint64_t bytes, BufferKind kind) {
  if (bytes == 0) return Status::InvalidArgument("a Vulkan buffer of 0 bytes");
  const char* what = kind == BufferKind::kDevice ? "device" : "staging";
  // A first check on the size asked for (the driver's rounding is checked below),
  // before the driver sees it: drivers differ in what they do with a request they
  // cannot meet, and the caller needs the numbers.
  const uint64_t available = heap_free(kind == BufferKind::kDevice ? device_heap_ : host_heap_);
  if (bytes > available)
    return Status::ResourceExhausted("a " + std::string(what) + " buffer needs " + mib(bytes) +
                                     ", " + name_ + " has " + mib_free(available) + " free");
  if (bytes > max_buffer_)
    return Status::ResourceExhausted("a buffer of " + mib(bytes) + " is larger than " + name_ +
                                     " can bind at once (" + mib(max_buffer_) +
                                     "); split the tensor");
  VkBufferCreateInfo info = vk_struct<VkBufferCreateInfo>(VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
  info.size = bytes;
  info.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
               VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VulkanBuffer b;
  b.kind_ = kind;
  b.size_ = bytes;
  SWARM_VK_RETURN_IF_ERROR(vkCreateBuffer(device_, &info, nullptr, &b.buffer_), "vkCreateBuffer");
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(device_, b.buffer_, &req);
  Result<uint32_t> type = memory_type(kind, req.memoryTypeBits);
  if (!type.ok()) {
    vkDestroyBuffer(device_, b.buffer_, nullptr);
    return type.status();
  }
  const uint32_t heap = memory_.memoryTypes[*type].heapIndex;
  if (const uint64_t left = heap_free(heap); req.size > left) {
    vkDestroyBuffer(device_, b.buffer_, nullptr);
    return Status::ResourceExhausted("a " + std::string(what) + " buffer needs " + mib(req.size) +
                                     ", " + name_ + " has " + mib_free(left) + " free");
  }
  VkMemoryAllocateInfo alloc =
      vk_struct<VkMemoryAllocateInfo>(VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO);
  alloc.allocationSize = req.size;
  alloc.memoryTypeIndex = *type;
  VkResult r = vkAllocateMemory(device_, &alloc, nullptr, &b.memory_);
  if (r != VK_SUCCESS) {
    vkDestroyBuffer(device_, b.buffer_, nullptr);
    return vk_status(r, "vkAllocateMemory of " + mib(req.size) + " on " + name_);
  }
  // From here on the buffer owns what it holds and gives it back if we fail.
  b.ctx_ = this;
  b.heap_ = heap;
  b.charged_ = req.size;
  heap_used_[heap] += req.size;
  if (heap == device_heap_) heap_peak_ = std::max(heap_peak_, heap_used_[heap]);
  charge_process(index_, heap, static_cast<int64_t>(req.size));
  SWARM_VK_RETURN_IF_ERROR(vkBindBufferMemory(device_, b.buffer_, b.memory_, 0),
                           "vkBindBufferMemory");
  if (kind == BufferKind::kStaging)
    SWARM_VK_RETURN_IF_ERROR(vkMapMemory(device_, b.memory_, 0, VK_WHOLE_SIZE, 0, &b.mapped_),
                             "vkMapMemory");
  return b;
}

Status VulkanContext::copy(VkBuffer src, uint64_t src_offset, VkBuffer dst, uint64_t dst_offset,
                           uint64_t bytes) {
  VkCommandBufferAllocateInfo alloc =
      vk_struct<VkCommandBufferAllocateInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO);
  alloc.commandPool = command_pool_;
  alloc.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  alloc.commandBufferCount = 1;
  VkCommandBuffer cmd = VK_NULL_HANDLE;
  SWARM_VK_RETURN_IF_ERROR(vkAllocateCommandBuffers(device_, &alloc, &cmd),
                           "vkAllocateCommandBuffers");
  VkCommandBufferBeginInfo begin =
      vk_struct<VkCommandBufferBeginInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO);
  begin.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  vkBeginCommandBuffer(cmd, &begin);
  const VkBufferCopy region{src_offset, dst_offset, bytes};
  vkCmdCopyBuffer(cmd, src, dst, 1, &region);
  vkEndCommandBuffer(cmd);
  const Status st = submit_and_wait(cmd, kCopyTimeoutNs);
  vkFreeCommandBuffers(device_, command_pool_, 1, &cmd);
  return st;
}

namespace {

// `bytes` at `offset` lie within `buffer`, or InvalidArgument naming the move.
Status check_range(const char* what, const VulkanBuffer& buffer, uint64_t offset, uint64_t bytes) {
  if (offset <= buffer.size() && bytes <= buffer.size() - offset) return Status::Ok();
  return Status::InvalidArgument(std::string(what) + " of " + std::to_string(bytes) +
                                 " bytes at " + std::to_string(offset) + " past a buffer of " +
                                 std::to_string(buffer.size()));
}

}  // namespace

Status VulkanContext::upload(const VulkanBuffer& dst, uint64_t offset, const void* src,
                             uint64_t bytes) {
  SWARM_RETURN_IF_ERROR(check_range("upload", dst, offset, bytes));
  if (bytes == 0) return Status::Ok();
  if (dst.mapped() != nullptr) {
    std::memcpy(static_cast<uint8_t*>(dst.mapped()) + offset, src, bytes);
    return Status::Ok();
  }
  Result<VulkanBuffer> staging =
      create_buffer(std::min(bytes, staging_chunk_), BufferKind::kStaging);
  if (!staging.ok()) return staging.status();
  for (uint64_t done = 0; done < bytes;) {
    const uint64_t n = std::min(bytes - done, staging->size());
    std::memcpy(staging->mapped(), static_cast<const uint8_t*>(src) + done, n);
    SWARM_RETURN_IF_ERROR(copy(staging->handle(), 0, dst.handle(), offset + done, n));
    done += n;
  }
  return Status::Ok();
}

Status VulkanContext::download(const VulkanBuffer& src, uint64_t offset, void* dst,
                               uint64_t bytes) {
  SWARM_RETURN_IF_ERROR(check_range("download", src, offset, bytes));
  if (bytes == 0) return Status::Ok();
  if (src.mapped() != nullptr) {
    SWARM_VK_RETURN_IF_ERROR(vkQueueWaitIdle(queue_), "vkQueueWaitIdle");
    std::memcpy(dst, static_cast<const uint8_t*>(src.mapped()) + offset, bytes);
    return Status::Ok();
  }
  Result<VulkanBuffer> staging =
      create_buffer(std::min(bytes, staging_chunk_), BufferKind::kStaging);
  if (!staging.ok()) return staging.status();
  for (uint64_t done = 0; done < bytes;) {
    const uint64_t n = std::min(bytes - done, staging->size());
    SWARM_RETURN_IF_ERROR(copy(src.handle(), offset + done, staging->handle(), 0, n));
    std::memcpy(static_cast<uint8_t*>(dst) + done, staging->mapped(), n);
    done += n;
  }
  return Status::Ok();
}

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
