#include "pipeline/chain_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>
#include <tuple>

#include "net/logprob_codec.h"
#include "net/status_convert.h"
#include "net/tls.h"

namespace swarm {
namespace {

Status from_error(const v1::Error& e, const std::string& where) {
  return net::from_grpc(grpc::Status(static_cast<grpc::StatusCode>(e.code()), e.message()))
      .annotate(where);
}

// The raw bytes of a hex public key, for Hop.public_key ("" stays "").
std::string key_bytes(const std::string& hex) {
  auto bytes = net::from_hex(hex);
  return bytes.ok() ? *bytes : std::string();
}

std::string random_session_id() {
  std::random_device rd;
  char buf[33];
  for (int i = 0; i < 4; ++i) std::snprintf(buf + 8 * i, 9, "%08x", rd());
  return std::string("g-") + buf;
}

}  // namespace

void ChainSession::EventQueue::push(Event e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_one();
}

bool ChainSession::EventQueue::pop(Event* e, Clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!clock_.wait_until(lock, cv_, deadline, [&] { return !events_.empty(); })) return false;
  *e = std::move(events_.front());
  events_.pop_front();
  return true;
}

ChainSession::ChainSession(std::vector<ChainStage> chain, const PipelineOptions& options,
                           StepTimeBook* times)
    : chain_(std::move(chain)),
      options_(options),
      transport_(*options.transport),
      clock_(*options.clock),
      times_(times),
      key_(describe_chain(chain_)),
      id_(random_session_id()),
      events_(clock_) {}

ChainSession::~ChainSession() { close(); }

std::chrono::milliseconds ChainSession::deadline_for(const std::string& key, int tokens) const {
  if (times_ == nullptr) return options_.deadlines.ceiling;
  return times_->deadline(key, tokens, options_.deadlines);
}

void ChainSession::observe(const std::string& key, int tokens, Clock::time_point sent,
                           const v1::StepResult& r) {
  if (options_.on_step_result) options_.on_step_result(chain_, r);
  if (times_ == nullptr) return;
  // What one token cost the stages: each one's compute over its batch's tokens.
  double per_token = r.timings_size() > 0 ? 0 : -1;
  for (const v1::StageTiming& t : r.timings())
    per_token += t.compute_us() * 1e-6 / std::max<int64_t>(1, t.batch_tokens());
  times_->observe(key, tokens, std::chrono::duration<double>(clock_.now() - sent).count(),
                  per_token);
}

std::vector<size_t> ChainSession::all_stages() const {
  std::vector<size_t> all(chain_.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  return all;
}

Status ChainSession::await(Event* e, Clock::time_point sent, const std::string& key, int tokens,
                           const std::vector<size_t>& probe, const std::string& what) {
  auto ceiling = sent + options_.deadlines.ceiling;
  // A wait already extended past the ceiling stays extended when the caller
  // comes back for the same step (after an answer it skips).
  if (extended_.sent == sent) ceiling = std::max(ceiling, extended_.ceiling);
  // After a probe that every stage answered, the next is a deadline later.
  Clock::time_point not_before = sent;
  for (;;) {
    // Looked up again at every wake-up: answers to other sessions may have
    // measured the chain since this step went out (a cold chain has none).
    const auto deadline = deadline_for(key, tokens);
    const auto due = std::min(std::max(sent, not_before) + deadline, ceiling);
    const auto wake = std::min(due, clock_.now() + std::chrono::seconds(1));
    if (events_.pop(e, wake)) return Status::Ok();
    const auto now = clock_.now();
    if (now < due) continue;
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - sent);
    const bool at_ceiling = now >= ceiling;
    auto step_timeout = [&] {
      suspect_.clear();
      return Status::DeadlineExceeded(what + ": no answer within the step timeout (" +
                                      std::to_string(options_.deadlines.ceiling.count()) + " ms)");
    };
    if (at_ceiling && !may_wait_past_ceiling_) return step_timeout();
    std::vector<ChainStage> stages;
    for (size_t i : probe) stages.push_back(chain_[i]);
    const int silent = transport_.first_silent_stage(stages, options_.deadlines.probe_timeout);
    if (at_ceiling && silent < 0) {
      if (!may_wait_past_ceiling_(chain_)) return step_timeout();
      spdlog::warn("{}: no answer after {} ms, past the step timeout ({} ms), but every stage "
                   "answers and no other chain could take the session; waiting on",
                   what, waited.count(), options_.deadlines.ceiling.count());
      ceiling = clock_.now() + options_.deadlines.ceiling;
      extended_ = {sent, ceiling};
      not_before = clock_.now();
      continue;
    }
    if (silent >= 0) {
      const size_t stage = probe[static_cast<size_t>(silent)];
      return blame(stage, Status::DeadlineExceeded(
                              what + ": no answer after " + std::to_string(waited.count()) +
                              " ms (deadline " + std::to_string(deadline.count()) + " ms), and " +
                              chain_[stage].address + " does not answer Info"));
    }
    // Every stage answers: slow, not hung. Wait on, up to the ceiling.
    spdlog::warn("{}: no answer after {} ms (deadline {} ms), but every stage answers; waiting on",
                 what, waited.count(), deadline.count());
    not_before = clock_.now();
  }
}

Status ChainSession::open(const std::string& model_id, int n_layer, const SamplingParams& sp,
                          int max_length) {
  for (size_t i = 0; i < chain_.size(); ++i) {
    links_.push_back(
        transport_.open(chain_[i], i, [this](StageEvent e) { events_.push(std::move(e)); }));
    v1::StageRequest req;
    v1::OpenSession* open = req.mutable_open();
    open->set_session_id(id_);
    open->set_model_id(model_id);
    open->set_layout_id(options_.layout_id);
    open->set_first_layer(chain_[i].first_layer);
    open->set_last_layer(chain_[i].last_layer);
    open->set_max_length(max_length);
    open->set_is_first(chain_[i].first_layer == 0);
    open->set_is_last(chain_[i].last_layer == n_layer);
    v1::SamplingConfig* s = open->mutable_sampling();
    s->set_temperature(sp.temperature);
    s->set_top_k(sp.top_k);
    s->set_top_p(sp.top_p);
    s->set_min_p(sp.min_p);
    s->set_repeat_penalty(sp.repeat_penalty);
    s->set_repeat_last_n(sp.repeat_last_n);
    s->set_presence_penalty(sp.presence_penalty);
    s->set_frequency_penalty(sp.frequency_penalty);
    s->set_seed(sp.seed);
    if (chain_[i].last_layer == n_layer && logprobs_ >= 0) {
      open->set_logprobs(true);
      open->set_top_logprobs(logprobs_);
    }
    for (const auto& [tok, bias] : sp.logit_bias) {
      v1::LogitBias* b = s->add_logit_bias();
      b->set_token(tok);
      b->set_bias(bias);
    }
    if (!sp.grammar.empty()) {
      s->set_grammar(sp.grammar);
      s->set_grammar_start(sp.grammar_start);
      for (int32_t t : sp.stop_tokens) s->add_stop_tokens(t);
    }
    if (!links_[i]->write(req)) return finish_link(i, "opening a session");
  }
  // Every stage must confirm before the first step goes out.
  const auto sent = clock_.now();
  for (size_t confirmed = 0; confirmed < chain_.size();) {
    Event e;
    SWARM_RETURN_IF_ERROR(await(&e, sent, key_, 1, all_stages(), "OpenSession"));
    if (e.ended) return blame(e.stage, e.status.annotate(chain_[e.stage].address));
    if (e.response.has_error())
      return from_error(e.response.error(), chain_[e.stage].address + " refused the session");
    if (e.response.has_opened()) ++confirmed;
  }
  return Status::Ok();
}

void ChainSession::fill_step(v1::Step* st, uint64_t step_id, const std::vector<int32_t>& tokens,
                             int position, bool with_hops) const {
  st->set_session_id(id_);
  st->set_step_id(step_id);
  for (int32_t t : tokens) st->add_tokens(t);
  st->set_position(position);
  st->set_wire_dtype(options_.wire_f16 ? v1::Tensor::F16 : v1::Tensor::F32);
  // A chain with an inexact stage: every stage sketches its rows, since every
  // stage from that one on is judged by its sketches.
  st->set_sketches(std::any_of(chain_.begin(), chain_.end(), [](const ChainStage& c) { return c.inexact; }));
  if (!with_hops) return;
  for (size_t h = 1; h < chain_.size(); ++h) {
    v1::Hop* hop = st->add_next_hops();
    hop->set_address(chain_[h].address);
    hop->set_first_layer(chain_[h].first_layer);
    hop->set_last_layer(chain_[h].last_layer);
    if (!chain_[h].public_key.empty()) hop->set_public_key(key_bytes(chain_[h].public_key));
  }
}

Status ChainSession::failure_of(const Event& e) {
  if (e.ended) return blame(e.stage, e.status.annotate(chain_[e.stage].address));
  // A stage that cannot reach its next hop says so: the hop is the suspect.
  const bool next_hop = e.response.error().code() == grpc::StatusCode::UNAVAILABLE &&
                        options_.push && e.stage + 1 < chain_.size();
  return blame(next_hop ? e.stage + 1 : e.stage,
               from_error(e.response.error(), chain_[e.stage].address));
}

Result<int32_t> ChainSession::step(const std::vector<int32_t>& tokens, int position, bool score) {
  const uint64_t step_id = ++step_id_;
  v1::Tensor hidden;
  const size_t n_hops = options_.push ? 1 : chain_.size();
  const int n_tokens = static_cast<int>(tokens.size());
  trust::StepRecord& sent_record = sent_[step_id];
  sent_record.step_id = step_id;
  sent_record.position = position;
  sent_record.tokens = tokens;
  std::vector<v1::Commitment> relayed;  // relay mode: the commitments of stages before the last
  for (size_t i = 0; i < n_hops; ++i) {
    v1::StageRequest req;
    v1::Step* st = req.mutable_step();
    fill_step(st, step_id, tokens, position, options_.push);
    st->set_score_tokens(score && logprobs_ >= 0);
    if (i > 0) *st->mutable_hidden() = std::move(hidden);
    // Push mode times the whole chain; relay mode each stage on its own.
    const std::string key = options_.push ? key_ : describe_chain({chain_[i]});
    const std::vector<size_t> probe = options_.push ? all_stages() : std::vector<size_t>{i};
    const auto sent = clock_.now();
    if (!links_[i]->write(req)) return finish_link(i, "sending a step");
    // Wait for the stage that ends this hop: the last one in push mode.
    const size_t answering = options_.push ? chain_.size() - 1 : i;
    for (;;) {
      Event e;
      SWARM_RETURN_IF_ERROR(
          await(&e, sent, key, n_tokens, probe,
                "step " + std::to_string(step_id) + " of " + std::to_string(n_tokens) + " tokens"));
      if (e.ended || e.response.has_error()) return failure_of(e);
      if (!e.response.has_result() || e.response.result().step_id() != step_id ||
          e.stage != answering)
        continue;
      v1::StepResult* r = e.response.mutable_result();
      observe(key, n_tokens, sent, *r);
      if (answering + 1 < chain_.size()) {
        hidden = std::move(*r->mutable_hidden());
        for (v1::Commitment& c : *r->mutable_commitments()) relayed.push_back(std::move(c));
        break;
      }
      if (r->tokens_size() < 1)
        return Status::Internal(chain_[answering].address + " returned no token");
      if (logprobs_ >= 0) {
        if (r->logprobs_size() != r->tokens_size())
          return Status::Internal(chain_[answering].address + " returned no logprobs");
        last_logprob_ = net::decode_logprob(r->logprobs(r->logprobs_size() - 1));
        scores_.clear();
        if (score && r->scores_size() != n_tokens - 1)
          return Status::Internal(chain_[answering].address + " returned " +
                                  std::to_string(r->scores_size()) + " scores for " +
                                  std::to_string(n_tokens) + " tokens");
        for (const v1::TokenLogprob& lp : r->scores()) scores_.push_back(net::decode_logprob(lp));
      }
      record(*r, std::move(relayed));
      return r->tokens(r->tokens_size() - 1);
    }
  }
  return Status::Internal("unreachable");
}

Result<uint64_t> ChainSession::send_run(const ChainRun& run) {
  if (!options_.push) return Status::Unsupported("speculative runs need push mode");
  const uint64_t step_id = ++step_id_;
  v1::StageRequest req;
  v1::Step* st = req.mutable_step();
  fill_step(st, step_id, run.tokens, run.position, true);
  st->set_n_drafts(run.n_drafts);
  st->set_continues_previous(run.continues_previous);
  st->set_rewind(run.rewind);
  st->set_sample_all(run.sample_all);
  st->set_row_hashes(run.row_hashes);
  if (run.sketches) st->set_sketches(true);
  for (const SparseProbs& q : run.probs) {
    v1::DraftProbs* dp = st->add_draft_probs();
    dp->mutable_ids()->Add(q.ids.begin(), q.ids.end());
    dp->mutable_probs()->Add(q.probs.begin(), q.probs.end());
  }
  pending_[step_id] = {clock_.now(), static_cast<int>(run.tokens.size())};
  trust::StepRecord& sent = sent_[step_id];
  sent.step_id = step_id;
  sent.position = run.position;
  sent.tokens = run.tokens;
  sent.n_drafts = run.n_drafts;
  sent.draft_probs = run.probs;
  if (!links_[0]->write(req)) return finish_link(0, "sending a step");
  return step_id;
}

Status ChainSession::cancel(uint64_t from, uint64_t to) {
  if (from > to) return Status::Ok();
  v1::StageRequest req;
  v1::Cancel* c = req.mutable_cancel();
  c->set_session_id(id_);
  c->set_from_step_id(from);
  c->set_to_step_id(to);
  if (!links_[0]->write(req)) return finish_link(0, "sending a cancel");
  return Status::Ok();
}

Result<v1::StepResult> ChainSession::next_result(const std::function<bool(uint64_t)>& wanted) {
  const size_t last = chain_.size() - 1;
  // The wait is due by the oldest wanted run's deadline; runs before it are
  // no longer awaited.
  while (!pending_.empty() && !wanted(pending_.begin()->first)) pending_.erase(pending_.begin());
  Pending oldest{clock_.now(), 1};
  uint64_t oldest_id = 0;
  if (!pending_.empty()) std::tie(oldest_id, oldest) = *pending_.begin();
  const std::string what =
      "run " + std::to_string(oldest_id) + " of " + std::to_string(oldest.tokens) + " tokens";
  for (;;) {
    Event e;
    SWARM_RETURN_IF_ERROR(await(&e, oldest.sent, key_, oldest.tokens, all_stages(), what));
    if (e.ended) return failure_of(e);
    if (e.response.has_error()) {
      const v1::Error& err = e.response.error();
      pending_.erase(err.step_id());
      sent_.erase(err.step_id());
      // Session-wide errors (step id 0) are always failures.
      if (err.step_id() != 0 &&
          (err.code() == grpc::StatusCode::CANCELLED || !wanted(err.step_id())))
        continue;
      return failure_of(e);
    }
    if (!e.response.has_result() || e.stage != last) continue;
    if (auto p = pending_.find(e.response.result().step_id()); p != pending_.end()) {
      observe(key_, p->second.tokens, p->second.sent, e.response.result());
      pending_.erase(p);
    }
    record(e.response.result());
    if (!wanted(e.response.result().step_id())) continue;
    v1::StepResult* r = e.response.mutable_result();
    if (r->tokens_size() < 1) return Status::Internal(chain_[last].address + " returned no token");
    return std::move(*r);
  }
}

void ChainSession::record(const v1::StepResult& r, std::vector<v1::Commitment> earlier) {
  auto it = sent_.find(r.step_id());
  if (it == sent_.end()) return;  // not ours, or answered already
  trust::StepRecord rec = std::move(it->second);
  sent_.erase(it);
  rec.answer.assign(r.tokens().begin(), r.tokens().end());
  rec.accepted_drafts = r.accepted_drafts();
  rec.commitments = std::move(earlier);
  rec.commitments.insert(rec.commitments.end(), r.commitments().begin(), r.commitments().end());
  records_.push_back(std::move(rec));
}

void ChainSession::abandon() {
  if (closed_) return;
  closed_ = true;
  for (auto& l : links_) l->cancel();
  for (auto& l : links_) l->finish();
}

void ChainSession::close() {
  if (closed_) return;
  closed_ = true;
  for (auto& l : links_) {
    v1::StageRequest req;
    req.mutable_close()->set_session_id(id_);
    l->write(req);
    l->writes_done();
  }
  for (auto& l : links_) l->finish();
}

Status ChainSession::finish_link(size_t i, const std::string& what) {
  links_[i]->cancel();
  return blame(i, Status::Unavailable(chain_[i].address + ": connection lost while " + what));
}

Status ChainSession::blame(size_t stage, Status st) {
  suspect_ = chain_[stage].address;
  return st;
}

}  // namespace swarm
