// The transformer's element-wise and attention kernels (everything but matmul).
// Each output depends only on its own token's inputs (and, for attention, its own
// sequence's cache), computed in a fixed order: batch-invariant like matmul.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/cpu_kv_storage.h"
#include "engine/matmul.h"
#include "engine/thread_pool.h"

namespace swarm {

// out[i] <- row tokens[i] of `table` ([rows, cols] in its file type),
// dequantised: the embedding lookup, cols floats per token.
void embedding_rows(const WeightMatrix& table, const int32_t* tokens, int64_t n, float* out);

// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w, for n rows of `dim`.
void rms_norm(const float* x, const float* w, int64_t n, int dim, float eps, float* out);

// The rotation of each token's rope_dim / 2 pairs: cos and sin of
// position * position_scale * inv_freq[i], worked out in double. inv_freq has
// rope_dim/2 entries (already divided by any per-dimension scaling factor). A batch's
// positions are the same in every layer, so a table serves all of them (sin and cos
// per layer were a tenth of the serial work in prefill).
struct RopeTable {
  int half = 0;           // rope_dim / 2
  std::vector<float> cs;  // [n][half]
  std::vector<float> sn;  // [n][half]
};
RopeTable rope_table(int64_t n, const int32_t* positions, int rope_dim,
                     const std::vector<double>& inv_freq, double position_scale);

// Rotary position embedding in place on `n_heads` heads of `head_dim` per token;
// the first `rope_dim` dims of each head rotate (rope_dim = 2 * table.half). neox:
// pairs (i, i+rope_dim/2), else adjacent pairs (2i, 2i+1).
void rope(float* x, int64_t n, int n_heads, int head_dim, const RopeTable& table, bool neox);


// Causal attention of `n` new tokens whose keys and values are already in
// `cache` at positions [start, start + n), against positions [0, start + i].
// (CPU kernels: the cache is the CPU backend's storage.)
// q: [n, n_head * head_dim]; out: [n, n_head * head_dim].
void attention(const float* q, int64_t n, int start, const CpuKvStorage& cache, int layer, int n_head,
               int n_head_kv, int head_dim, float* out, ThreadPool& pool);

}  // namespace swarm
