// How much device memory the Vulkan backend computes in, as plain arithmetic
// (no Vulkan needed): the backend sizes its buffers with it, and a node
// choosing how many layers a GPU holds sets the workspace aside with it.
//
// Every buffer is bounded whatever a caller sends: a long prompt runs in
// submits of at most kMaxRowsPerSubmit rows, and attention computes as many
// query tokens per dispatch as its scratch holds scores for. So the workspace
// at its largest depends only on the model's shape and the context a session
// may reach, and load() can check it fits before it uploads anything.
#pragma once

#include <algorithm>
#include <cstdint>

#include "engine/model_source.h"

namespace swarm::vk {

// Calls of at most this many rows (decode steps, small batches) compute in the
// workspace the backend keeps; longer prompts in one of their own, freed after.
constexpr int64_t kKeptWorkspaceRows = 64;

// A call of more rows runs as several submits of at most this many, one after
// another (each token's bits are the same: the kernels are batch-invariant).
// 512 rows keep a device's matrix units busy, as llama.cpp's default ubatch.
constexpr int64_t kMaxRowsPerSubmit = 512;

// The attention scores a dispatch may keep, in floats (64 MiB): queries beyond
// wait for the next dispatch. One query token always fits, whatever it needs.
constexpr uint64_t kAttentionScoreBudget = uint64_t{16} << 20;

// Scratch `attention` needs for `n` query tokens from position `start`, in
// floats: one score per (token, head, position) for as many tokens as the
// budget holds, at least one.
inline uint64_t attention_scratch_floats(int64_t n, int start, int n_head) {
  const uint64_t per_token = static_cast<uint64_t>(n_head) * (static_cast<uint64_t>(start) + n);
  const uint64_t tokens = std::clamp<uint64_t>(kAttentionScoreBudget / std::max<uint64_t>(per_token, 1),
                                               1, static_cast<uint64_t>(n));
  return tokens * per_token;
}

// What each workspace buffer of one submit needs, in bytes: n rows, a RoPE
// table of `rope_bytes`, chunks of at most `max_chunk` tokens and attention
// scores of `scratch_floats`; qc and ac only with several chunks.
struct LayerBuffers {
  uint64_t x, h, q, k, v, attn, o, g, u, scratch, rope, qc, ac, staging;
  uint64_t total() const { return x + h + q + k + v + attn + o + g + u + scratch + rope + qc + ac + staging; }
};
LayerBuffers layer_buffers(const ModelConfig& c, int64_t n, uint64_t rope_bytes, int max_chunk,
                           uint64_t scratch_floats, bool several_chunks);

// The most the workspace of one submit of `rows` rows takes at a context of
// `context` positions (scratch and several chunks at their largest).
uint64_t submit_workspace_bytes(const ModelConfig& c, int64_t rows, int context);

// The backend's workspace at its largest, for sessions of at most `context`
// positions: the one it keeps (kKeptWorkspaceRows rows, and the head's logits
// for them `with_head`) and a long prompt's beside it (kMaxRowsPerSubmit rows).
uint64_t workspace_bytes(const ModelConfig& c, bool with_head, int context);

}  // namespace swarm::vk
