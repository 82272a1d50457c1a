// The device buffers one VulkanBackend call computes in (activations, attention
// scratch, the RoPE table and the staging buffer the hidden states cross in and
// out by), kept between calls: a decode step then allocates nothing, where
// fresh buffers would cost a dozen driver allocations per token. Each buffer is
// replaced by a larger one when a call needs more, never shrunk; the backend
// keeps one workspace for small batches and gives a long prompt a workspace of
// its own, so what stays allocated is bounded by the small batches' needs.
#pragma once

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <cstdint>

#include "engine/status.h"
#include "engine/vulkan_context.h"
#include "engine/vulkan_kernels.h"

namespace swarm::vk {

struct VulkanWorkspace {
  VulkanBuffer x, h, q, k, v, attn, o, g, u;
  VulkanBuffer scratch;  // attention's scores, sized for the largest chunk
  VulkanBuffer qc, ac;   // one chunk's queries and output, when a batch has several
  VulkanBuffer rope;     // the RoPE table: cos [n][half], then sin [n][half]
  VulkanBuffer logits;   // the head's output
  VulkanBuffer staging;  // host-visible: hidden states (and table) in, results out

  // Makes `b` at least `bytes` (> 0 is enforced) of `kind`, replacing it if smaller.
  static Status reserve(VulkanContext& ctx, VulkanBuffer& b, uint64_t bytes,
                        BufferKind kind = BufferKind::kDevice) {
    bytes = bytes == 0 ? 4 : bytes;
    if (b.valid() && b.size() >= bytes && b.kind() == kind) return Status::Ok();
    b.reset();  // first, so that its memory counts as free for the new one
    Result<VulkanBuffer> nb = ctx.create_buffer(bytes, kind);
    if (!nb.ok()) return nb.status();
    b = std::move(nb).value();
    return Status::Ok();
  }
};

}  // namespace swarm::vk

#endif  // SWARM_HAVE_VULKAN_KERNELS
