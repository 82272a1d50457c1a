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

uint64_t submit_workspace_bytes(const ModelConfig& c, int64_t rows, int context) {
  const uint64_t rope_bytes = 2 * rows * (c.rope_dim / 2) * sizeof(float);  // cos and sin
  // The scores of one query token at the full context (no chunk sees more
  // positions): `rows` of them, or the budget, or one token if it needs more.
  const uint64_t per_token = static_cast<uint64_t>(c.n_head) * std::max(context, 1);
  const uint64_t scratch = std::min(rows * per_token, std::max(kAttentionScoreBudget, per_token));
  return layer_buffers(c, rows, rope_bytes, static_cast<int>(rows), scratch, true).total();
}

uint64_t workspace_bytes(const ModelConfig& c, bool with_head, int context) {
  uint64_t bytes = submit_workspace_bytes(c, kKeptWorkspaceRows, context) +
                   submit_workspace_bytes(c, kMaxRowsPerSubmit, context);
  // The head's logits in the kept workspace (the head runs kKeptWorkspaceRows
  // rows a submit); its staging buffer takes no more than the layers' does
  // when the vocabulary is wider than the model, so it is counted once more.
  if (with_head) bytes += 2 * kKeptWorkspaceRows * static_cast<uint64_t>(c.n_vocab) * sizeof(float);
  return bytes;
}

}  // namespace swarm::vk
