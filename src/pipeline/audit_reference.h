// The gateway's own execution of a model's layers, to audit nodes against
// (`swarm gateway --audit-local MODEL`, doc/trust.md "Audits"): from a
// session's tokens it computes every stage boundary's rows exactly as honest
// nodes would (the same kernels, the same rounding to the wire dtype between
// stages) and the greedy token after each position.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/sampler.h"
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
  // Replays the last stage's sampler (non-greedy plain decoding): from now
  // on, rows().sampled gets the token `params` pick after each of `step_ends`,
  // as the node's sampler does (every token recorded, one draw per sample).
  // Needs extend() from the sampler's position on; a rewind ends the replay.
  void replay_sampling(const SamplingParams& params, std::vector<int> step_ends);
  const trust::ReferenceRows& rows() const { return rows_; }
  int length() const;

 private:
  const LocalReference& reference_;
  std::vector<std::pair<int, int>> ranges_;
  v1::Tensor::DType dtype_;
  std::vector<std::unique_ptr<KvCache>> caches_;
  trust::ReferenceRows rows_;
  std::unique_ptr<Sampler> replay_;  // with the positions it has recorded
  int replayed_ = 0;
  std::set<int> step_ends_;
};

class LocalReference {
 public:
  static Result<std::unique_ptr<LocalReference>> Load(const std::string& model_path, int threads);
  const Model& model() const { return *model_; }
  ThreadPool& pool() const { return *pool_; }

  // All at once: rows of tokens [0, n) for the chain `ranges`.
  // With `sampling`, the sampled choices after `step_ends` are replayed too.
  Result<trust::ReferenceRows> compute(const std::vector<int32_t>& tokens,
                                       const std::vector<std::pair<int, int>>& ranges,
                                       v1::Tensor::DType wire_dtype, const SamplingParams* sampling = nullptr,
                                       std::vector<int> step_ends = {}) const;

 private:
  std::unique_ptr<Model> model_;
  std::unique_ptr<ThreadPool> pool_;
};

}  // namespace swarm
