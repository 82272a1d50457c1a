// The tensors of the parts of a model one Model holds, as typed views of the
// mapped file (or of small float32 copies Model keeps): what a ComputeBackend receives
// to run those parts. Views, not copies: the CPU reads the weights where the file
// maps them; a GPU backend uploads what it needs once and may drop the views.
#pragma once

#include <vector>

#include "engine/matmul.h"

namespace swarm {

// One transformer layer. Norm weights and biases are float32 (converted once at
// load, whatever the file stored); the biases are null where the architecture
// has none (llama).
struct LayerWeights {
  const float* attn_norm = nullptr;  // [n_embd]
  const float* ffn_norm = nullptr;   // [n_embd]
  const float* bq = nullptr;         // [n_head * head_dim] or null
  const float* bk = nullptr;         // [n_head_kv * head_dim] or null
  const float* bv = nullptr;         // [n_head_kv * head_dim] or null
  WeightMatrix wq, wk, wv, wo, gate, up, down;
};

struct ModelWeights {
  int first_layer = 0;
  int last_layer = 0;
  std::vector<LayerWeights> layers;  // layers[i] is layer first_layer + i
  // [n_vocab rows, n_embd cols]; data is null unless the embedding is held (the
  // first part, or the last part of a model whose head reuses it).
  WeightMatrix token_embd;
  // The head: data null / nullptr unless the last part is held. `output` is
  // token_embd itself for tied embeddings.
  const float* output_norm = nullptr;  // [n_embd]
  WeightMatrix output;
  // RoPE's inverse frequencies, rope_dim / 2 of them, already divided by any
  // per-dimension factors the file gives (rope_freqs): every backend rotates by
  // position * position_scale * rope_inv_freq[i] (see RopeTable in ops.h).
  std::vector<double> rope_inv_freq;
  // What positions are multiplied by first: 1, or 1 / factor with linear RoPE
  // scaling. rope_table(n, positions, rope_dim, rope_inv_freq,
  // rope_position_scale) is the rotation every backend applies.
  double rope_position_scale = 1;
};

}  // namespace swarm
