// A transformer (llama or qwen2) that runs in three separable parts, so that a
// node can hold any contiguous range of layers:
//   embed(tokens)                    -> hidden [n, d_model]   (first stage)
//   run_layers(hidden, chunks, a, b) -> hidden after layers [a, b)
//   head(hidden)                     -> logits [n, vocab]     (last stage)
// Only the tensors of the parts a Model was loaded for are mapped. Model decides
// which tensors, binds them and checks every call's arguments; the math runs on
// the ComputeBackend that LoadOptions::device names (compute_backend.h), which holds the
// weights and the KV caches' memory where it computes.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/compute_backend.h"
#include "engine/kv_cache.h"
#include "engine/mapped_file.h"
#include "engine/matmul.h"
#include "engine/model_source.h"
#include "engine/model_weights.h"
#include "engine/ops.h"
#include "engine/status.h"
#include "engine/thread_pool.h"

namespace swarm {

struct LoadOptions {
  int first_layer = 0;
  int last_layer = -1;        // -1: through the last layer
  int embed = -1;             // 1: map the embedding, 0: don't, -1: iff first_layer == 0
  int head = -1;              // 1: map the output head, 0: don't, -1: iff last_layer == n_layer
  bool no_mmap = false;       // read weights into (huge-page) memory instead of mapping the file
  bool progress = false;      // a bar on stderr while the weights are read in, if it is a terminal
  std::string device = "cpu"; // where the layers run: "cpu", "vulkan[:N]" (backend_select.h)
  int context = 0;            // positions a sequence's cache may hold, for the device's
                              // workspace check; 0: the model's trained context
};

class Model {
 public:
  // Opens a .gguf file or a Hugging Face folder.
  static Result<std::unique_ptr<Model>> Load(const std::string& path, const LoadOptions& options = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return source_.config; }
  const ModelSource& source() const { return source_; }
  int first_layer() const { return first_layer_; }
  int last_layer() const { return last_layer_; }
  bool has_embed() const { return has_embed_; }
  bool has_head() const { return has_head_; }
  int kv_dim() const { return config().n_head_kv * config().head_dim; }
  // Bytes of the file mapped for this model's parts.
  uint64_t mapped_bytes() const;
  // Where those bytes are (one span per mapped region), for a read pass over the
  // very memory decode streams (bench).
  std::vector<std::span<const uint8_t>> mapped_spans() const;
  // Bytes of the weights that 2 MiB pages back (see MappedRegion::huge_mapped_bytes).
  uint64_t huge_page_bytes() const;
  // Bytes of weights one decode step reads: every held matrix, plus one embedding row.
  uint64_t weight_bytes_per_token() const;
  // The type most of the held matrices have ("Q8_0"); for reports.
  std::string main_type() const;

  // The device the layers run on ("cpu").
  const ComputeBackend& backend() const { return *backend_; }

  // A fresh cache for this model's layers holding up to `max_len` positions, its
  // memory on this model's backend.
  std::unique_ptr<KvCache> new_cache(int max_len) const;
  // The same for layers [first, last) only (within those loaded): a stage that
  // runs part of the loaded range.
  std::unique_ptr<KvCache> new_cache(int first, int last, int max_len) const;

  // hidden[n, d_model] <- the embedding rows of `tokens`.
  Status embed(const int32_t* tokens, int64_t n, float* hidden) const;
  // Runs layers [first, last) (within those loaded) over the batch in `hidden`,
  // whose rows are the chunks' tokens one after another, appending each chunk's
  // keys and values to its cache.
  Status run_layers(float* hidden, const std::vector<SeqChunk>& chunks, int first, int last,
                    ThreadPool& pool) const;
  // logits[n, vocab] <- output(norm(hidden)).
  Status head(const float* hidden, int64_t n, float* logits, ThreadPool& pool) const;
  // out[n, d_model] <- norm(hidden): the final norm the head applies, without
  // the output matrix (embeddings). Needs the head's part of the model.
  Status final_norm(const float* hidden, int64_t n, float* out) const;

  // Convenience for tools and tests: embed + all loaded layers + head for one
  // sequence; returns logits for every token.
  Result<std::vector<float>> forward(const std::vector<int32_t>& tokens, KvCache& cache,
                                     ThreadPool& pool) const;

 private:
  Model() = default;
  Status map_and_bind(const LoadOptions& options);
  Result<WeightMatrix> matrix(const std::string& name);
  Result<const float*> vector(const std::string& name, int64_t expected_len);

  ModelSource source_;
  int first_layer_ = 0;
  int last_layer_ = 0;
  bool has_embed_ = false;
  bool has_head_ = false;
  std::vector<std::unique_ptr<MappedRegion>> regions_;       // one per file with tensors we use
  std::vector<const MappedRegion*> region_of_file_;
  std::vector<std::unique_ptr<std::vector<float>>> owned_;   // small vectors converted to f32
  ModelWeights weights_;                                     // views into regions_ and owned_
  // Last, so that it goes first: it may compute from the views above until then.
  std::unique_ptr<ComputeBackend> backend_;
};

}  // namespace swarm
