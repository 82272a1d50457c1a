// Drafts from a small model run by the gateway: any model with the target's
// vocabulary (a Q4_0 copy of the target, a smaller model of the family). Each
// generation's drafter keeps its own KV cache of the context, truncated to
// the common prefix when the context was rolled back (a rejected draft).
#pragma once

#include <memory>
#include <mutex>
#include <random>

#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/thread_pool.h"
#include "pipeline/drafter.h"

namespace swarm {

// The draft model, loaded once and shared by every generation's drafter; one
// drafter computes at a time (the pool is not shared concurrently).
class DraftModel {
 public:
  // `n_vocab`: the target's; a draft model with another vocabulary is refused.
  static Result<std::shared_ptr<DraftModel>> Load(const std::string& path, int n_vocab,
                                                  int threads);
  const Model& model() const { return *model_; }
  ThreadPool& pool() { return pool_; }
  std::mutex& mu() { return mu_; }
  const std::string& path() const { return path_; }

 private:
  DraftModel(std::unique_ptr<Model> model, int threads, std::string path)
      : model_(std::move(model)), pool_(threads), path_(std::move(path)) {}
  std::unique_ptr<Model> model_;
  ThreadPool pool_;
  std::mutex mu_;
  std::string path_;
};

class ModelDrafter : public Drafter {
 public:
  // `sampling`: the request's. Greedy requests get the draft model's argmax
  // (deterministic, probs empty); sampled ones a draw from the draft model's
  // distribution under the same temperature and filters, cut to its
  // `max_q_entries` likeliest tokens (renormalised), which is what the draft
  // is drawn from and what travels as q. `max_length`: context + drafts.
  ModelDrafter(std::shared_ptr<DraftModel> draft, const SamplingParams& sampling, int max_length,
               int max_q_entries = 32);

  Result<DraftProposal> propose(const std::vector<int32_t>& context, int n) override;
  std::string name() const override { return "draft"; }

  // Positions of the context the cache holds (for tests).
  int cached() const { return static_cast<int>(cached_.size()); }

 private:
  // Brings the cache to `context` and returns the logits after its last token.
  Result<std::vector<float>> sync(const std::vector<int32_t>& context);

  std::shared_ptr<DraftModel> draft_;
  Sampler sampler_;  // for its distribution; never sees history (no penalties)
  std::mt19937_64 rng_;
  int max_q_entries_;
  std::unique_ptr<KvCache> cache_;
  std::vector<int32_t> cached_;  // the tokens in cache_, in order
};

}  // namespace swarm
