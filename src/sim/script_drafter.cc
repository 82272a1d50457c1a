#include "sim/script_drafter.h"

#include <algorithm>

#include "engine/mix64.h"

namespace swarm::sim {

int32_t script_token(uint64_t seed, int64_t position) {
  return static_cast<int32_t>(1 + mix64(seed ^ mix64(static_cast<uint64_t>(position))) % 32000);
}

namespace {

// The rate after a question without a guess that keeps `share` the
// stationary share of questions with one, when one follows one with
// `after_guess`: share = h / (1 - g + h), so h = share (1 - g) / (1 - share).
double guess_after_none(double share, double after_guess) {
  if (share >= 1) return 1;
  return std::clamp(share * (1 - after_guess) / (1 - share), 0.0, 1.0);
}

}  // namespace

ScriptDrafter::ScriptDrafter(uint64_t seed, const Speculation& s, int64_t prompt_tokens,
                             uint64_t rng_seed)
    : seed_(seed),
      trace_(s.trace),
      prompt_tokens_(prompt_tokens),
      acceptance_(s.acceptance),
      after_hit_(s.acceptance_after_hit >= 0 ? s.acceptance_after_hit : s.acceptance),
      proposal_rate_(s.proposal_rate),
      guess_after_guess_(s.guess_after_guess >= 0 ? s.guess_after_guess : s.proposal_rate),
      guess_after_none_(guess_after_none(proposal_rate_, guess_after_guess_)),
      rng_(rng_seed),
      guess_rng_(rng_seed ^ 0x9e3779b97f4a7c15ull) {}

Result<DraftProposal> ScriptDrafter::propose(const std::vector<int32_t>& context, int n) {
  DraftProposal p;
  const int64_t at = static_cast<int64_t>(context.size());
  // From the trace: the drafts that hold, then wrong ones. After a wrong
  // draft of its own the context is off the text the trace was taken on; a
  // real drafter then still guesses from the drafts (they came from a
  // pattern it matched), and those runs are cancelled with the draft.
  int holding = n;
  if (!trace_.empty()) {
    const int64_t i = at - prompt_tokens_ - 1;
    if (off_script(context)) {
      holding = 0;
    } else if (i < 0 || i >= static_cast<int64_t>(trace_.size()) || trace_[i] < 0) {
      return p;
    } else {
      holding = trace_[i];
    }
  } else if (!guesses(at)) {
    return p;
  }
  for (int i = 0; i < n; ++i) {
    const int64_t pos = at + i;
    const int32_t right = script_token(seed_, pos);
    const bool ok = trace_.empty() ? holds(pos) : i < holding;
    p.tokens.push_back(ok ? right : wrong(right));
    if (!ok && !trace_.empty()) wrong_at_.insert(pos);
  }
  return p;
}

bool ScriptDrafter::off_script(const std::vector<int32_t>& context) const {
  for (int64_t pos : wrong_at_) {
    if (pos >= static_cast<int64_t>(context.size())) break;
    if (context[pos] == wrong(script_token(seed_, pos))) return true;
  }
  return false;
}

bool ScriptDrafter::holds(int64_t pos) {
  while (static_cast<int64_t>(right_.size()) <= pos) {
    const bool after_hit = !right_.empty() && right_.back();
    right_.push_back(u_(rng_) < (after_hit ? after_hit_ : acceptance_));
  }
  return right_[static_cast<size_t>(pos)];
}

bool ScriptDrafter::guesses(int64_t pos) {
  auto [it, fresh] = has_guess_.try_emplace(pos, false);
  if (fresh) {
    const double p = !any_asked_ ? proposal_rate_ : last_guessed_ ? guess_after_guess_ : guess_after_none_;
    it->second = last_guessed_ = u_(guess_rng_) < p;
    any_asked_ = true;
  }
  return it->second;
}

}  // namespace swarm::sim
