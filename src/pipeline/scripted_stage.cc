#include "pipeline/scripted_stage.h"

namespace swarm {

ScriptedSession::Outcome ScriptedSession::run(const v1::Step& st) {
  Outcome out;
  const int64_t p = st.position();
  const int n = st.tokens_size();
  if (st.rewind() && p <= cache_) {
    if (p < cache_) last_row_at_ = -1;
    cache_ = p;
  }
  if (st.continues_previous() && is_last_ && (p != cache_ || last_row_at_ != p)) {
    // The step it continues had a draft rejected here: it built on a wrong guess.
    out.kind = Outcome::Kind::kCancelled;
    return out;
  }
  if (p != cache_) {
    out.kind = Outcome::Kind::kBadPosition;
    out.error = "Step.position: " + std::to_string(p) + ", but the session's cache holds " +
                std::to_string(cache_) + " positions";
    return out;
  }
  cache_ += n;
  if (!is_last_) return out;
  if (st.sample_all()) {
    for (int j = 0; j < n; ++j) out.tokens.push_back(script_(p + j + 1));
    return out;
  }
  // Judge the drafts in order (greedy): the token at position x must be script(x).
  const int lead = n - st.n_drafts();
  bool all = true;
  for (int d = lead; d < n && all; ++d) {
    const int32_t want = script_(p + d);
    out.tokens.push_back(want);
    all = st.tokens(d) == want;
  }
  if (all) {
    out.tokens.push_back(script_(p + n));
    last_row_at_ = p + n;
  } else {
    cache_ = p + lead + static_cast<int64_t>(out.tokens.size()) - 1;
    last_row_at_ = -1;
  }
  out.accepted = st.n_drafts() > 0 ? static_cast<int>(out.tokens.size()) - 1 : 0;
  return out;
}

}  // namespace swarm
