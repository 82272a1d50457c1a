// The gateway's own execution of a model's layers, to audit nodes against
// (`swarm gateway --audit-local MODEL`, doc/trust.md "Audits"): from a
// session's tokens it computes every stage boundary's rows exactly as honest
// nodes would (the same kernels, the same rounding to the wire dtype between
// stages) and the greedy token after each position.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/status.h"
#include "engine/thread_pool.h"
#include "swarm/v1/stage.pb.h"
#include "trust/audit.h"

namespace swarm {

class LocalReference;

// One session recomputed: caches per stage of the audited chain, grown step
// by step (--audit-sync) or all at once (a background audit).
class ReferenceRun {
 public:
  // `ranges`: the audited chain's stages, [first, last) each, covering layers
  // from 0 on.
  ReferenceRun(const LocalReference& reference, std::vector<std::pair<int, int>> ranges,
               v1::Tensor::DType wire_dtype, int max_length);
  // Computes positions [position, position + tokens) (forgetting any at or
  // after `position` first).
  Status extend(const std::vector<int32_t>& tokens, int position);
  const trust::ReferenceRows& rows() const { return rows_; }
  int length() const;

 private:
  const LocalReference& reference_;
  std::vector<std::pair<int, int>> ranges_;
  v1::Tensor::DType dtype_;
  std::vector<std::unique_ptr<KvCache>> caches_;
  trust::ReferenceRows rows_;
};

class LocalReference {
 public:
  static Result<std::unique_ptr<LocalReference>> Load(const std::string& model_path, int threads);
  const Model& model() const { return *model_; }
  ThreadPool& pool() const { return *pool_; }

  // All at once: rows of tokens [0, n) for the chain `ranges`.
  Result<trust::ReferenceRows> compute(const std::vector<int32_t>& tokens,
                                       const std::vector<std::pair<int, int>>& ranges,
                                       v1::Tensor::DType wire_dtype) const;

 private:
  std::unique_ptr<Model> model_;
  std::unique_ptr<ThreadPool> pool_;
};

}  // namespace swarm
