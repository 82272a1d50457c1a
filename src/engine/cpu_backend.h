// The reference backend: the engine's own SIMD kernels (matmul.h, ops.h) on the
// host's threads, computing straight from the mapped file. Its order of
// operations is the one every other backend is compared against.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/compute_backend.h"
#include "engine/cpu_kv_storage.h"
#include "engine/ops.h"

namespace swarm {

class CpuBackend final : public ComputeBackend {
 public:
  std::string name() const override { return "cpu"; }
  bool exact() const override { return true; }  // the reference itself
  // Keeps the views: the weights stay where the file maps them.
  Status load(const ModelConfig& config, const ModelWeights& weights, int context) override;
  std::unique_ptr<KvStorage> new_kv_storage(int first_layer, int last_layer, int kv_dim,
                                            int max_len) const override;
  Status embed(const int32_t* tokens, int64_t n, float* hidden) const override;
  Status run_layers(float* hidden, const std::vector<SeqChunk>& chunks,
                    const std::vector<int32_t>& positions, int first, int last,
                    ThreadPool& pool) const override;
  Status head(const float* hidden, int64_t n, float* logits, ThreadPool& pool) const override;
  Status final_norm(const float* hidden, int64_t n, float* out) const override;

 private:
  // One layer over the batch; `kv[i]` is chunk i's storage.
  void run_layer(int il, float* hidden, const std::vector<SeqChunk>& chunks,
                 const std::vector<CpuKvStorage*>& kv, int64_t n, const RopeTable& rope_table,
                 ThreadPool& pool) const;

  ModelConfig config_;
  ModelWeights w_;
};

}  // namespace swarm
