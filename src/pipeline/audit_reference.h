// The gateway's own execution of a model's layers, to audit nodes against
// (`swarm gateway --audit-local MODEL`, doc/trust.md "Audits"): from a
// session's tokens it computes every stage boundary's rows exactly as honest
// nodes would (the same kernels, the same rounding to the wire dtype between
// stages), the greedy token after each position, and for sampled sessions the
// last stage's answer to each step.
#pragma once

#include <cstdint>
#include <memory>
#include <map>
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
  // Replays the last stage's sampler (non-greedy sessions, plain or
  // speculative): rows().sampled gets the answer a sampler with `params` gives
  // to each of `steps` whose tokens this run is fed, as the node's does (every
  // token recorded, each choice drawn by its position, engine/sampler.h).
  // Needs extend() from the sampler's position on; a rewind ends the replay.
  void replay_sampling(const SamplingParams& params, std::vector<trust::StepRecord> steps);
  // From now on, rows().sketches gets every stage's output rows sketched
  // (chains with an inexact stage, trust/activation_sketch.h).
  void keep_sketches();
  const trust::ReferenceRows& rows() const { return rows_; }
  int length() const;

 private:
  const LocalReference& reference_;
  std::vector<std::pair<int, int>> ranges_;
  v1::Tensor::DType dtype_;
  std::vector<std::unique_ptr<KvCache>> caches_;
  trust::ReferenceRows rows_;
  // Decides what `replay_` chooses for position `position` of step `s`, if
  // the step's tokens before it are the ones this run was fed.
  void decide(size_t s, int position, const float* row);
  void finish_replay();

  bool sketches_ = false;
  std::unique_ptr<Sampler> replay_;  // with the positions it has recorded
  int replayed_ = 0;
  std::vector<int32_t> fed_;  // the tokens extend() was given, [0, replayed_)
  std::vector<trust::StepRecord> steps_;
  std::multimap<int, size_t> decisions_at_;            // position -> index into steps_
  std::vector<std::map<int, trust::Decision>> decided_;  // [step][position]
};

class LocalReference {
 public:
  static Result<std::unique_ptr<LocalReference>> Load(const std::string& model_path, int threads);
  const Model& model() const { return *model_; }
  // The model's token bytes (null if its tokenizer could not be read).
  std::shared_ptr<const GrammarVocab> grammar_vocab() const { return vocab_; }
  ThreadPool& pool() const { return *pool_; }

  // All at once: rows of tokens [0, n) for the chain `ranges`.
  // With `sampling`, the last stage's answers to `steps` are replayed too;
  // with `sketches`, the rows are sketched.
  Result<trust::ReferenceRows> compute(const std::vector<int32_t>& tokens,
                                       const std::vector<std::pair<int, int>>& ranges,
                                       v1::Tensor::DType wire_dtype, const SamplingParams* sampling = nullptr,
                                       std::vector<trust::StepRecord> steps = {}, bool sketches = false) const;

 private:
  std::unique_ptr<Model> model_;
  std::shared_ptr<const GrammarVocab> vocab_;
  std::unique_ptr<ThreadPool> pool_;
};

}  // namespace swarm
