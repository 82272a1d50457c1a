// The seam between the transformer (Model: which tensors, which checks) and the
// device that runs it, in the spirit of ggml's backends. ("Compute", to tell it
// from pipeline's GenerationBackend, which serves whole requests.) A
// ComputeBackend holds a layer range's weights where it computes (the CPU reads
// them where the file maps them; a GPU uploads them), makes each sequence's KV
// storage, and runs whole layer ranges. The unit of work is "layers [a, b) over this batch", never one matmul:
// a GPU keeps every intermediate activation on the device for the whole range,
// and only the hidden states (what crosses the network anyway) come in and go
// out through host memory, once per call.
//
// What every backend must guarantee (the pipeline's replay, speculation and
// audits rest on it):
//  - Batch invariance: a token's outputs (hidden row, logits row, the K and V it
//    writes) depend only on its own inputs and its own sequence's cache, bit for
//    bit: not on what else shares the batch, how a prompt is chunked, the order
//    of the chunks, or the number of threads. Each output element is one fixed
//    sequence of operations (matmul.h's contract).
//  - Determinism: the same call on the same backend and device gives the same bits.
//  - Layer ranges compose: running [a, c) equals running [a, b) then [b, c).
// What may differ between backends: the bits themselves. The CPU backend's order
// of operations is the reference (matmul_internal.h); another backend may use its
// own fixed order (a GPU's reduction trees, fp16 K/V), so results agree across
// backends only within a tolerance: a backend says whether its bits are the
// CPU's (exact()), and a node on one that is not announces itself inexact, so
// audits judge it with a tolerance (doc/trust.md, "Inexact nodes"). Errors are
// Status values, never exceptions.
//
// Concurrency: like Model's, every const method may be called from several
// threads at once, each call with its own caches and buffers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/model_source.h"
#include "engine/model_weights.h"
#include "engine/status.h"
#include "engine/thread_pool.h"

namespace swarm {

// Contiguous tokens of one sequence within a batch. Their positions continue the
// sequence's cache: cache->length(), cache->length() + 1, ...
struct SeqChunk {
  KvCache* cache = nullptr;
  int n_tokens = 0;
};

class ComputeBackend {
 public:
  virtual ~ComputeBackend() = default;

  // "cpu", "vulkan:0": the device, as LoadOptions::device names it.
  virtual std::string name() const = 0;

  // True when every output is bit for bit the CPU backend's: audits of this
  // node's rows can then compare hashes instead of using a tolerance.
  virtual bool exact() const = 0;

  // Takes the tensors of the parts Model holds, once, before any other call. The
  // views stay valid for the backend's whole life (Model owns the mapping and
  // destroys the backend first), so a backend may compute from them in place. A
  // backend that copies them elsewhere checks first that they fit and returns
  // ResourceExhausted naming the bytes needed and free, before uploading any.
  // `context`: the most positions a sequence's cache will hold, so that such a
  // backend sets aside what attention over that many takes.
  virtual Status load(const ModelConfig& config, const ModelWeights& weights, int context) = 0;

  // Storage for one sequence's keys and values of layers [first_layer,
  // last_layer) (within the loaded range), `kv_dim` floats of each per position,
  // for at most `max_len` positions. Never fails: memory is taken in
  // KvStorage::grow_to, which may.
  virtual std::unique_ptr<KvStorage> new_kv_storage(int first_layer, int last_layer, int kv_dim,
                                                    int max_len) const = 0;

  // The calls below get arguments Model has checked: token ids within the
  // vocabulary, layers within the loaded range, the parts they need held, every
  // chunk non-empty with a cache that holds those layers, reserved for its
  // n_tokens more positions. Buffers are host memory.

  // hidden[n, n_embd] <- the embedding rows of `tokens`.
  virtual Status embed(const int32_t* tokens, int64_t n, float* hidden) const = 0;

  // Runs layers [first, last) (first < last) over the batch in `hidden` [n,
  // n_embd], whose rows are the chunks' tokens one after another; `positions[i]`
  // is row i's position in its sequence. Writes each token's keys and values of
  // every layer at its position in its chunk's cache; does not commit them (Model
  // does, once every layer has succeeded). Returns InvalidArgument if a cache's
  // storage was made by another kind of backend.
  virtual Status run_layers(float* hidden, const std::vector<SeqChunk>& chunks,
                            const std::vector<int32_t>& positions, int first, int last,
                            ThreadPool& pool) const = 0;

  // logits[n, n_vocab] <- output(final_norm(hidden)).
  virtual Status head(const float* hidden, int64_t n, float* logits, ThreadPool& pool) const = 0;

  // out[n, n_embd] <- the head's RMS norm of hidden, without the output matrix.
  virtual Status final_norm(const float* hidden, int64_t n, float* out) const = 0;
};

}  // namespace swarm
