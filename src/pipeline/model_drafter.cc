#include "pipeline/model_drafter.h"

#include <algorithm>
#include <numeric>

namespace swarm {

Result<std::shared_ptr<DraftModel>> DraftModel::Load(const std::string& path, int n_vocab,
                                                     int threads) {
  auto model = Model::Load(path);
  if (!model.ok()) return model.status().annotate("draft model " + path);
  if ((*model)->config().n_vocab != n_vocab)
    return Status::InvalidArgument("draft model " + path + ": its vocabulary has " +
                                   std::to_string((*model)->config().n_vocab) +
                                   " tokens, the target's " + std::to_string(n_vocab) +
                                   " (drafts must use the same vocabulary)");
  if (!(*model)->has_embed() || !(*model)->has_head())
    return Status::InvalidArgument("draft model " + path + ": needs the embedding and the head");
  return std::shared_ptr<DraftModel>(new DraftModel(std::move(*model), threads, path));
}

namespace {

SamplingParams without_penalties(SamplingParams p) {
  p.repeat_penalty = 1.0f;
  p.presence_penalty = 0;
  p.frequency_penalty = 0;
  p.logit_bias.clear();
  return p;
}

}  // namespace

ModelDrafter::ModelDrafter(std::shared_ptr<DraftModel> draft, const SamplingParams& sampling,
                           int max_length, int max_q_entries)
    : draft_(std::move(draft)),
      sampler_(without_penalties(sampling), draft_->model().config().n_vocab),
      rng_(sampling.seed ^ 0x9e3779b97f4a7c15ull),
      max_q_entries_(std::max(1, max_q_entries)),
      cache_(draft_->model().new_cache(max_length)) {}

Result<std::vector<float>> ModelDrafter::sync(const std::vector<int32_t>& context) {
  if (context.empty()) return Status::InvalidArgument("draft: empty context");
  size_t common = 0;
  while (common < cached_.size() && common < context.size() && cached_[common] == context[common])
    ++common;
  // The last context token is always run again: its logits are what we need.
  common = std::min(common, context.size() - 1);
  SWARM_RETURN_IF_ERROR(cache_->truncate(static_cast<int>(common)));
  cached_.resize(common);
  const std::vector<int32_t> rest(context.begin() + static_cast<long>(common), context.end());
  auto logits = draft_->model().forward(rest, *cache_, draft_->pool());
  if (!logits.ok()) return logits.status().annotate("draft model");
  cached_.insert(cached_.end(), rest.begin(), rest.end());
  const int v = draft_->model().config().n_vocab;
  return std::vector<float>(logits->end() - v, logits->end());
}

Result<DraftProposal> ModelDrafter::propose(const std::vector<int32_t>& context, int n) {
  DraftProposal out;
  if (n <= 0) return out;
  std::lock_guard<std::mutex> lock(draft_->mu());
  // Room for the drafts in the cache: drafting stops where it would overflow.
  n = std::min<int>(n, cache_->max_len() - static_cast<int>(context.size()));
  if (n <= 0) return out;
  auto logits = sync(context);
  if (!logits.ok()) return logits.status();
  std::vector<float> row = std::move(*logits);
  const bool greedy = sampler_.params().temperature <= 0;
  for (int i = 0; i < n; ++i) {
    int32_t token;
    if (greedy) {
      token = sampler_.sample(row.data(), static_cast<int>(context.size()) + i);  // greedy: no draw
    } else {
      std::vector<float> p = sampler_.probabilities(row.data());
      std::vector<int32_t> ids(p.size());
      std::iota(ids.begin(), ids.end(), 0);
      const size_t keep = std::min<size_t>(max_q_entries_, ids.size());
      std::partial_sort(
          ids.begin(), ids.begin() + static_cast<long>(keep), ids.end(),
          [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
      SparseProbs q;
      double sum = 0;
      for (size_t j = 0; j < keep && p[ids[j]] > 0; ++j) {
        q.ids.push_back(ids[j]);
        q.probs.push_back(p[ids[j]]);
        sum += p[ids[j]];
      }
      for (float& x : q.probs) x = static_cast<float>(x / sum);
      const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
      double cum = 0;
      token = q.ids.back();
      for (size_t j = 0; j < q.ids.size(); ++j)
        if (u < (cum += q.probs[j])) {
          token = q.ids[j];
          break;
        }
      out.probs.resize(out.tokens.size());
      out.probs.push_back(std::move(q));
    }
    out.tokens.push_back(token);
    if (i + 1 == n) break;
    // Feed the draft to get the next row; the cache then holds it too.
    auto next = draft_->model().forward({token}, *cache_, draft_->pool());
    if (!next.ok()) return next.status().annotate("draft model");
    cached_.push_back(token);
    row = std::move(*next);
  }
  return out;
}

}  // namespace swarm
