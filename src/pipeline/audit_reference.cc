#include "pipeline/audit_reference.h"

#include <algorithm>

#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "net/tensor_codec.h"

namespace swarm {
namespace {

// Rows a batch of the reference holds at most, and head rows at once (a
// large vocabulary's logits are big).
constexpr int kChunk = 256;
constexpr int kHeadRows = 32;

}  // namespace

Result<std::unique_ptr<LocalReference>> LocalReference::Load(const std::string& model_path, int threads) {
  auto model = Model::Load(model_path);
  if (!model.ok()) return model.status().annotate("--audit-local");
  auto r = std::unique_ptr<LocalReference>(new LocalReference());
  r->model_ = std::move(model).value();
  // The token bytes a grammar-constrained session's replay checks against.
  if (auto tok = Tokenizer::Load(model_path); tok.ok())
    r->vocab_ = GrammarVocab::from_tokenizer(**tok);
  r->pool_ = std::make_unique<ThreadPool>(threads);
  return r;
}

Result<trust::ReferenceRows> LocalReference::compute(const std::vector<int32_t>& tokens,
                                                     const std::vector<std::pair<int, int>>& ranges,
                                                     v1::Tensor::DType wire_dtype, const SamplingParams* sampling,
                                                     std::vector<trust::StepRecord> steps, bool sketches) const {
  ReferenceRun run(*this, ranges, wire_dtype, static_cast<int>(tokens.size()));
  if (sampling) run.replay_sampling(*sampling, std::move(steps));
  if (sketches) run.keep_sketches();
  SWARM_RETURN_IF_ERROR(run.extend(tokens, 0));
  return run.rows();
}

ReferenceRun::ReferenceRun(const LocalReference& reference, std::vector<std::pair<int, int>> ranges,
                           v1::Tensor::DType wire_dtype, int max_length)
    : reference_(reference), ranges_(std::move(ranges)), dtype_(wire_dtype) {
  const Model& m = reference_.model();
  for (const auto& [first, last] : ranges_)
    caches_.push_back(m.new_cache(first, last, std::max(1, max_length)));
  rows_.output_rows.resize(ranges_.size());
}

void ReferenceRun::replay_sampling(const SamplingParams& params, std::vector<trust::StepRecord> steps) {
  // As a node builds it from OpenSession.sampling (top_p 0 and repeat_penalty
  // 0 mean off there).
  SamplingParams p = params;
  if (p.top_p <= 0) p.top_p = 1;
  if (p.repeat_penalty == 0) p.repeat_penalty = 1;
  replay_ = std::make_unique<Sampler>(std::move(p), reference_.model().config().n_vocab,
                                      reference_.grammar_vocab());
  if (!replay_->grammar_status().ok()) {
    // Without the grammar the replay would choose otherwise: no verdict on sampling.
    replay_.reset();
    return;
  }
  replayed_ = length();
  fed_.clear();
  steps_ = std::move(steps);
  decisions_at_.clear();
  decided_.assign(steps_.size(), {});
  rows_.sampled.clear();
  // Every position a step's answer may rest on: each draft's, and the one
  // after the step (trust::replay_step reads only those it reaches).
  for (size_t s = 0; s < steps_.size(); ++s) {
    const trust::StepRecord& r = steps_[s];
    const int n = static_cast<int>(r.tokens.size());
    if (r.n_drafts < 0 || r.n_drafts > n || r.position < replayed_) continue;
    for (int x = r.position + n - r.n_drafts; x <= r.position + n; ++x) decisions_at_.emplace(x, s);
  }
}

void ReferenceRun::decide(size_t s, int position, const float* row) {
  const trust::StepRecord& r = steps_[s];
  const int i = position - r.position;  // the step's token at `position`, or n: the one after
  const int n = static_cast<int>(r.tokens.size());
  // The node's history before this choice is the step's tokens before it.
  if (static_cast<int>(fed_.size()) != position ||
      !std::equal(r.tokens.begin(), r.tokens.begin() + i, fed_.begin() + r.position))
    return;
  if (i == n) {
    decided_[s][position] = {replay_->sample(row, position), false};
    return;
  }
  const size_t d = static_cast<size_t>(i - (n - r.n_drafts));
  static const SparseProbs kNone;
  const Judgement j = replay_->judge(row, r.tokens[static_cast<size_t>(i)],
                                     d < r.draft_probs.size() ? r.draft_probs[d] : kNone, position);
  decided_[s][position] = {j.token, j.accepted};
}

void ReferenceRun::finish_replay() {
  rows_.sampled.clear();
  for (size_t s = 0; s < steps_.size(); ++s) {
    const auto answer = trust::replay_step(
        steps_[s], [&](int position, int32_t, const SparseProbs&) -> std::optional<trust::Decision> {
          auto it = decided_[s].find(position);
          if (it == decided_[s].end()) return std::nullopt;
          return it->second;
        });
    if (answer) rows_.sampled[steps_[s].step_id] = *answer;
  }
}

void ReferenceRun::keep_sketches() {
  sketches_ = true;
  rows_.sketches.assign(ranges_.size(), std::vector<trust::RowSketch>(static_cast<size_t>(length())));
}

int ReferenceRun::length() const { return caches_.empty() ? 0 : caches_[0]->length(); }

Status ReferenceRun::extend(const std::vector<int32_t>& tokens, int position) {
  const Model& m = reference_.model();
  const ModelConfig& c = m.config();
  const int d = c.n_embd;
  if (ranges_.empty() || ranges_.front().first != 0)
    return Status::InvalidArgument("audit reference: the chain must start at layer 0");
  if (position > length())
    return Status::InvalidArgument("audit reference: position " + std::to_string(position) +
                                   " is past the " + std::to_string(length()) + " computed");
  if (replay_ && position != replayed_) {
    replay_.reset();  // a rewind: the sampler's history cannot follow
    rows_.sampled.clear();
    decisions_at_.clear();
  }
  for (auto& cache : caches_) SWARM_RETURN_IF_ERROR(cache->truncate(position));
  for (auto& rows : rows_.output_rows) rows.resize(static_cast<size_t>(position));
  for (auto& rows : rows_.sketches) rows.resize(static_cast<size_t>(position));
  const bool head = ranges_.back().second == c.n_layer;
  if (head) rows_.argmax.resize(static_cast<size_t>(position));
  SamplingParams greedy;
  greedy.temperature = 0;
  Sampler argmax(greedy, c.n_vocab);
  std::vector<float> hidden, logits;
  for (size_t at = 0; at < tokens.size(); at += kChunk) {
    const int64_t n = std::min<int64_t>(kChunk, static_cast<int64_t>(tokens.size() - at));
    hidden.assign(static_cast<size_t>(n) * d, 0.f);
    SWARM_RETURN_IF_ERROR(m.embed(tokens.data() + at, n, hidden.data()));
    for (size_t k = 0; k < ranges_.size(); ++k) {
      const std::vector<SeqChunk> chunk{{caches_[k].get(), static_cast<int>(n)}};
      SWARM_RETURN_IF_ERROR(
          m.run_layers(hidden.data(), chunk, ranges_[k].first, ranges_[k].second, reference_.pool()));
      if (sketches_)
        for (int64_t i = 0; i < n; ++i)
          rows_.sketches[k].push_back(trust::sketch_row(hidden.data() + i * d, d,
                                                        position + static_cast<int>(at + i),
                                                        trust::kReferenceEntries));
      // As the wire carries it to the next stage: rounded, then hashed.
      v1::Tensor t;
      net::encode_tensor(hidden.data(), n, d, dtype_, &t);
      const auto h = trust::row_hashes(t.data().data(), n, t.data().size() / static_cast<size_t>(n));
      rows_.output_rows[k].insert(rows_.output_rows[k].end(), h.begin(), h.end());
      if (dtype_ != v1::Tensor::F32 && k + 1 < ranges_.size())
        SWARM_RETURN_IF_ERROR(net::decode_tensor(t, n, d, &hidden, "audit reference"));
    }
    if (!head) continue;
    for (int64_t r = 0; r < n; r += kHeadRows) {
      const int64_t rows = std::min<int64_t>(kHeadRows, n - r);
      logits.resize(static_cast<size_t>(rows) * c.n_vocab);
      SWARM_RETURN_IF_ERROR(m.head(hidden.data() + r * d, rows, logits.data(), reference_.pool()));
      for (int64_t i = 0; i < rows; ++i) {
        const float* row = logits.data() + i * c.n_vocab;
        rows_.argmax.push_back(argmax.sample(row, 0));
        if (!replay_) continue;
        // Row pos predicts position pos + 1: the choices made there.
        const int pos = position + static_cast<int>(at + r + i);
        replay_->accept(tokens[at + r + i]);
        fed_.push_back(tokens[at + r + i]);
        replayed_ = pos + 1;
        const auto [first, end] = decisions_at_.equal_range(pos + 1);
        for (auto it = first; it != end; ++it) decide(it->second, pos + 1, row);
      }
    }
  }
  if (replay_) finish_replay();
  return Status::Ok();
}

}  // namespace swarm
