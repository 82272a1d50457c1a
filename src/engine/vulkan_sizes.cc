#include "engine/vulkan_sizes.h"

namespace swarm::vk {

LayerBuffers layer_buffers(const ModelConfig& c, int64_t n, uint64_t rope_bytes, int max_chunk,
                           uint64_t scratch_floats, bool several_chunks) {
  const uint64_t d = c.n_embd, q_dim = uint64_t{1} * c.n_head * c.head_dim,
                 kv_dim = uint64_t{1} * c.n_head_kv * c.head_dim, ff = c.n_ff, f = sizeof(float);
  LayerBuffers b{};
  b.x = b.h = b.o = n * d * f;
  b.q = b.attn = n * q_dim * f;
  b.k = b.v = n * kv_dim * f;
  b.g = b.u = n * ff * f;
  b.scratch = scratch_floats * f;
  b.rope = rope_bytes;
  b.qc = b.ac = several_chunks ? max_chunk * q_dim * f : 0;
  b.staging = n * d * f + rope_bytes;  // hidden states and the table in, results out
  return b;
}

uint64_t kept_workspace_bytes(const ModelConfig& c, bool with_head) {
  const int64_t n = kKeptWorkspaceRows;
  const uint64_t f = sizeof(float);
  const uint64_t rope_bytes = 2 * n * (c.rope_dim / 2) * f;  // cos and sin, [n][rope_dim / 2] each
  uint64_t bytes =
      layer_buffers(c, n, rope_bytes, static_cast<int>(n), attention_scratch_floats(n, 0, c.n_head), false)
          .total();
  // The head's logits; its staging buffer takes no more than the layers' does
  // when the vocabulary is wider than the model, so it is counted once more.
  if (with_head) bytes += 2 * n * static_cast<uint64_t>(c.n_vocab) * f;
  return bytes;
}

}  // namespace swarm::vk
