// How much device memory the Vulkan backend computes in, as plain arithmetic
// (no Vulkan needed): the backend sizes its buffers with it, and a node
// choosing how many layers a GPU holds sets the workspace aside with it.
#pragma once

#include <cstdint>

#include "engine/model_source.h"

namespace swarm::vk {

// Calls of at most this many rows (decode steps, small batches) compute in the
// workspace the backend keeps; longer prompts in one of their own, freed after,
// whose allocation their many tokens share.
constexpr int64_t kKeptWorkspaceRows = 64;

// Scratch `attention` needs, in floats: one score per (token, head, position).
inline uint64_t attention_scratch_floats(int64_t n, int start, int n_head) {
  return static_cast<uint64_t>(n) * n_head * (static_cast<uint64_t>(start) + n);
}

// What each workspace buffer of one run of layers needs, in bytes: n rows, a
// RoPE table of `rope_bytes`, chunks of at most `max_chunk` tokens and
// attention scores of `scratch_floats`; qc and ac only with several chunks.
struct LayerBuffers {
  uint64_t x, h, q, k, v, attn, o, g, u, scratch, rope, qc, ac, staging;
  uint64_t total() const { return x + h + q + k + v + attn + o + g + u + scratch + rope + qc + ac + staging; }
};
LayerBuffers layer_buffers(const ModelConfig& c, int64_t n, uint64_t rope_bytes, int max_chunk,
                           uint64_t scratch_floats, bool several_chunks);

// The workspace kept for decode-sized calls (kKeptWorkspaceRows rows, and the
// head's logits for them `with_head`) at its largest short of long contexts.
// A long prompt or context takes more while it runs; a device out of memory
// then fails that call only.
uint64_t kept_workspace_bytes(const ModelConfig& c, bool with_head);

}  // namespace swarm::vk
