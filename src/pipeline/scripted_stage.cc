#include "pipeline/scripted_stage.h"

namespace swarm {
namespace {

// grpc::StatusCode values, as v1::Error carries them (no gRPC here).
constexpr int kCancelled = 1;
constexpr int kFailedPrecondition = 9;

v1::StageResponse error_response(const std::string& session_id, uint64_t step_id, int code,
                                 const std::string& message) {
  v1::StageResponse r;
  v1::Error* e = r.mutable_error();
  e->set_session_id(session_id);
  e->set_step_id(step_id);
  e->set_code(code);
  e->set_message(message);
  return r;
}

}  // namespace

v1::StageResponse ScriptedSession::cancelled(const std::string& session_id, uint64_t step_id) {
  return error_response(session_id, step_id, kCancelled,
                        "Step " + std::to_string(step_id) + ": cancelled");
}

v1::StageResponse ScriptedSession::response(const v1::Step& st, const Outcome& o) const {
  switch (o.kind) {
    case Outcome::Kind::kCancelled:
      return cancelled(st.session_id(), st.step_id());
    case Outcome::Kind::kBadPosition:
      return error_response(st.session_id(), st.step_id(), kFailedPrecondition, o.error);
    case Outcome::Kind::kRan:
      break;
  }
  v1::StageResponse r;
  v1::StepResult* res = r.mutable_result();
  res->set_session_id(st.session_id());
  res->set_step_id(st.step_id());
  for (int32_t t : o.tokens) res->add_tokens(t);
  res->set_accepted_drafts(o.accepted);
  res->set_length(static_cast<int32_t>(cache_));
  return r;
}

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
