// The batch runner: one batch of queued steps through the stage's layers (and
// at the last stage the head and the sampler, drafts verified), each step then
// answered to its owner or pushed to its next stage with its timing and its
// signed commitment. Runs on the scheduler thread; `--slowdown` stretches a
// batch on the node's clock.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <new>

#include "engine/logprobs.h"
#include "net/logprob_codec.h"
#include "net/status_convert.h"
#include "net/tensor_codec.h"
#include "node/inexact_emulation.h"
#include "node/stage_server_impl.h"
#include "trust/activation_sketch.h"
#include "trust/commitment.h"

namespace swarm::node {
namespace {

using grpc::StatusCode;
using v1::StageRequest;
using v1::StageResponse;

// CPU time this thread has used: with one compute thread (-t 1) the pool runs
// the kernels inline, so a batch's share is its compute's CPU cost whatever
// else the machine's cores were doing meanwhile.
int64_t thread_cpu_us() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<int64_t>(t.tv_sec) * 1000000 + t.tv_nsec / 1000;
}

int64_t us_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::microseconds>(b - a).count();
}

// Appends a hash per row of `rows` (n x d) as the wire carries them in `dtype`.
void append_row_hashes(const float* rows, int64_t n, int d, v1::Tensor::DType dtype,
                       std::vector<trust::Hash>* out) {
  std::vector<trust::Hash> h;
  if (dtype == v1::Tensor::F32) {
    h = trust::row_hashes(rows, n, static_cast<size_t>(d) * sizeof(float));
  } else {
    v1::Tensor t;
    net::encode_tensor(rows, n, d, dtype, &t);
    h = trust::row_hashes(t.data().data(), n, t.data().size() / static_cast<size_t>(n));
  }
  out->insert(out->end(), h.begin(), h.end());
}

// Verifies a step's drafts at the last stage (Step.n_drafts): judges them in
// order against the rows of `logits` from row `r` on (one per position from
// the one before the first draft; for a continuation, the first draft is
// judged against the session's last_row), appends the accepted drafts and the
// token after them to `out`, and rolls the cache back to the accepted length.
// The sampler needs no restoring on a rollback: its history already ends at
// the last accepted token. Draft d (the token at position p + d) is judged with
// the draws of that position, and the token after an accepted run with those of
// p + n, so an auditor replays every verdict from the seed (sampling_uniform).
// Returns the row after the step's last.
int64_t verify_drafts(Session& s, const v1::Step& step, const float* logits, int64_t r, int n_vocab,
                      std::vector<int32_t>* out) {
  Sampler& sampler = *s.sampler;
  const int n = step.tokens_size();
  const int lead = n - step.n_drafts();
  const int p = step.position();
  const int64_t end_row = r + n - std::max(0, lead - 1);
  auto judge = [&](const float* row, int d) {
    SparseProbs q;
    if (step.draft_probs_size() > 0) {
      const v1::DraftProbs& dp = step.draft_probs(d - lead);
      q.ids.assign(dp.ids().begin(), dp.ids().end());
      q.probs.assign(dp.probs().begin(), dp.probs().end());
    }
    const Judgement j = sampler.judge(row, step.tokens(d), q, p + d);
    out->push_back(j.token);
    return j.accepted;
  };
  bool all_accepted = lead > 0 || judge(s.last_row.data(), 0);
  for (int j = 0; j < n && all_accepted; ++j) {
    sampler.accept(step.tokens(j));
    if (j + 1 < n) snapshot_sampler(s, p + j + 1);
    if (j < lead - 1) continue;
    const float* row = logits + (r++) * n_vocab;
    if (j + 1 < n) {
      all_accepted = judge(row, j + 1);
    } else {
      remember_last_row(s, row, n_vocab, p + n);
      out->push_back(sampler.sample(row, p + n));
    }
  }
  if (!all_accepted) {
    const int valid = p + lead + static_cast<int>(out->size()) - 1;
    (void)s.cache->truncate(valid);
    s.prefix.truncate(valid);
    s.sampler_at.erase(s.sampler_at.upper_bound(valid), s.sampler_at.end());
    snapshot_sampler(s, valid);
    s.last_row_at = -1;
  }
  return end_row;
}

}  // namespace

std::vector<WorkItem> StageServer::Impl::run_batch_safely(std::vector<WorkItem>& batch) {
  std::vector<std::pair<std::shared_ptr<Session>, uint64_t>> steps;
  for (const WorkItem& w : batch) steps.emplace_back(w.session, w.step.step_id());
  int64_t tokens = 0;
  for (const WorkItem& w : batch) tokens += w.take;
  batches_.count(static_cast<int64_t>(batch.size()), tokens);
  std::string failure;
  StatusCode code = StatusCode::INTERNAL;
  try {
    return run_batch(batch);
  } catch (const std::bad_alloc&) {
    failure = "out of memory running a batch of " + std::to_string(steps.size()) + " steps";
    code = StatusCode::RESOURCE_EXHAUSTED;
  } catch (const std::exception& e) {
    failure = std::string("a batch failed: ") + e.what();
  }
  spdlog::error("{}", failure);
  for (const auto& [session, step_id] : steps)
    session->owner->send(error_response(session->id, step_id, code, failure));
  return {};
}

std::vector<WorkItem> StageServer::Impl::run_batch(std::vector<WorkItem>& items) {
  const auto start = clock_.now();
  const auto computing_since = Clock::real().now();
  const int64_t cpu_since = thread_cpu_us();
  const ModelConfig& c = model_->config();
  const int d = c.n_embd;
  // Steps whose position does not continue their cache fail alone.
  std::vector<WorkItem*> batch;
  for (WorkItem& w : items) {
    Session& s = *w.session;
    if (w.done == 0 && w.step.rewind() && w.step.position() <= s.cache->length())
      (void)rewind_session(s, w.step.position());
    if (w.step.continues_previous() && s.is_last &&
        (w.step.position() != s.cache->length() || s.last_row_at != w.step.position())) {
      // The step it continues had a draft rejected here (the cache was rolled
      // back): it built on a wrong guess.
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++steps_cancelled_;
      }
      s.owner->send(cancelled_response(s, w.step.step_id()));
      continue;
    }
    if (w.step.position() + w.done != s.cache->length()) {
      s.owner->send(error_response(s.id, w.step.step_id(), StatusCode::FAILED_PRECONDITION,
                                   "Step.position: " + std::to_string(w.step.position()) +
                                       (w.done ? " + " + std::to_string(w.done) + " run" : "") +
                                       ", but the session's cache holds " +
                                       std::to_string(s.cache->length()) + " positions"));
      continue;
    }
    batch.push_back(&w);
  }
  if (batch.empty()) return {};
  int64_t total = 0;
  for (WorkItem* w : batch) total += w->take;
  std::vector<float> hidden(static_cast<size_t>(total) * d);
  std::vector<SeqChunk> chunks;
  Status st;
  int64_t row = 0;
  for (WorkItem* w : batch) {
    const int64_t n = w->take;
    if (w->session->is_first)
      st = model_->embed(w->step.tokens().data() + w->done, n, hidden.data() + row * d);
    else
      std::copy(w->hidden.begin() + static_cast<int64_t>(w->done) * d,
                w->hidden.begin() + static_cast<int64_t>(w->done + n) * d,
                hidden.begin() + row * d);
    if (!st.ok()) break;
    chunks.push_back({w->session->cache.get(), static_cast<int>(n)});
    row += n;
  }
  const int first = batch[0]->session->first, last = batch[0]->session->last;
  // A cheating node (node/cheat.h) decides per batch.
  bool cheating = false;
  if (cheater_) {
    bool audit_like = false;
    for (WorkItem* w : batch) audit_like = audit_like || w->step.row_hashes();
    cheating = cheater_->cheat_on_batch(audit_like);
  }
  const int run_last = cheating && cheater_->skips_layer() ? last - 1 : last;
  if (st.ok()) st = model_->run_layers(hidden.data(), chunks, first, run_last, *pool_);
  // What each step's commitment names: its output rows (as the wire carries
  // them) and the token history the cache now holds.
  if (st.ok()) {
    row = 0;
    for (WorkItem* w : batch) {
      Session& s = *w->session;
      float* out_rows = hidden.data() + row * d;
      if (cheating) cheater_->alter(out_rows, w->take, d, &s.cheat_previous);
      const int at = w->step.position() + w->done;
      emulate_inexact(out_rows, w->take, d, at, opt_.emulate_inexact);
      if (opt_.emulate_inexact > 0 || w->step.sketches())
        for (int64_t i = 0; i < w->take; ++i)
          if (trust::is_sketched(w->step.position(), w->tokens(), w->done + static_cast<int>(i),
                                 w->step.row_hashes()))
            // An audit run's rows are a reference: sketched wider, to match
            // other sketches against.
            w->sketches.push_back(trust::sketch_row(
                out_rows + i * d, d, at + static_cast<int>(i),
                w->step.row_hashes() ? trust::kReferenceEntries : trust::kSketchEntries));
      s.prefix.truncate(w->step.position() + w->done);
      s.prefix.append(w->step.tokens().data() + w->done, w->take);
      if (w->final_chunk()) w->prefix_after = s.prefix.at(s.prefix.length());
      append_row_hashes(out_rows, w->take, d, w->step.wire_dtype(), &w->output_rows);
      row += w->take;
    }
  }
  // The head runs on the rows that are sampled: the last of each step, or all.
  std::vector<std::vector<int32_t>> sampled(batch.size());
  // A session with logprobs: one per sampled token (plain and sample_all
  // steps), and with score_tokens the step's own tokens after the first.
  std::vector<std::vector<TokenLogprob>> sampled_lps(batch.size()), scores(batch.size());
  if (st.ok()) {
    std::vector<float> rows;
    row = 0;
    for (WorkItem* w : batch) {
      const int64_t n = w->take;
      // A chunk before the last samples nothing: only the step's end does.
      if (w->session->is_last && w->final_chunk()) {
        const int64_t lead = n - w->step.n_drafts();
        const bool scored =
            w->step.score_tokens() && w->session->logprobs >= 0 && w->step.n_drafts() == 0;
        const int64_t from = w->step.sample_all() || scored ? 0
                             : w->step.n_drafts() > 0       ? std::max<int64_t>(0, lead - 1)
                                                            : n - 1;
        rows.insert(rows.end(), hidden.begin() + (row + from) * d, hidden.begin() + (row + n) * d);
      }
      row += n;
    }
    if (!rows.empty()) {
      const int64_t n_rows = static_cast<int64_t>(rows.size()) / d;
      std::vector<float> logits(static_cast<size_t>(n_rows) * c.n_vocab);
      st = model_->head(rows.data(), n_rows, logits.data(), *pool_);
      int64_t r = 0;
      for (size_t i = 0; st.ok() && i < batch.size(); ++i) {
        WorkItem& w = *batch[i];
        if (!w.session->is_last || !w.final_chunk()) continue;
        Sampler& sampler = *w.session->sampler;
        const int n = w.step.tokens_size();
        const int p = w.step.position();
        if (w.done == 0) snapshot_sampler(*w.session, p);
        if (w.step.n_drafts() > 0) {
          r = verify_drafts(*w.session, w.step, logits.data(), r, c.n_vocab, &sampled[i]);
        } else if (w.step.sample_all()) {
          // Position j is sampled with the history up to and including token j.
          for (int j = 0; j < n; ++j) {
            sampler.accept(w.step.tokens(j));
            if (j + 1 == n)
              remember_last_row(*w.session, logits.data() + r * c.n_vocab, c.n_vocab, p + n);
            sampled[i].push_back(sampler.sample(logits.data() + r * c.n_vocab, p + j + 1));
            if (w.session->logprobs >= 0)
              sampled_lps[i].push_back(token_logprob(logits.data() + r * c.n_vocab, c.n_vocab,
                                                     sampled[i].back(), w.session->logprobs));
            ++r;
            if (j + 1 < n) snapshot_sampler(*w.session, p + j + 1);
          }
        } else {
          const int top = w.session->logprobs;
          if (w.step.score_tokens() && top >= 0 &&
              !w.step.sample_all())  // rows 0 .. n-2: tokens 1 .. n-1
            for (int j = 0; j + 1 < n; ++j, ++r)
              scores[i].push_back(token_logprob(logits.data() + r * c.n_vocab, c.n_vocab,
                                                w.step.tokens(j + 1), top));
          for (int j = w.done; j < n; ++j) sampler.accept(w.step.tokens(j));
          const float* row = logits.data() + (r++) * c.n_vocab;
          remember_last_row(*w.session, row, c.n_vocab, p + n);
          sampled[i].push_back(sampler.sample(row, p + n));
          if (top >= 0)
            sampled_lps[i].push_back(token_logprob(row, c.n_vocab, sampled[i].back(), top));
        }
      }
    }
  }
  // A cheating last stage may answer another token than it sampled.
  if (st.ok() && cheating && cheater_->lies_about_tokens())
    for (auto& tokens : sampled)
      if (!tokens.empty()) tokens.back() = (tokens.back() + 1) % c.n_vocab;
  // A last stage's chunk before the step's end: its tokens enter the
  // sampler's history (the snapshot at the step's start is taken first).
  for (WorkItem* w : batch) {
    if (!st.ok() || !w->session->is_last || w->final_chunk()) continue;
    if (w->done == 0) snapshot_sampler(*w->session, w->step.position());
    for (int j = w->done; j < w->done + w->take; ++j)
      w->session->sampler->accept(w->step.tokens(j));
  }
  // The batch's compute is real work, measured on the real clock; the time a
  // slowdown adds passes on the node's clock (on a FakeClock, a slowed batch
  // lasts until the test moves the clock past it).
  const Clock::duration computed = Clock::real().now() - computing_since;
  Clock::duration waited{0};
  if (opt_.slowdown > 1) {
    // Emulates a slower machine: the scheduler is busy for the whole time, so
    // queues build as they would. Shutdown does not wait for it, nor a batch
    // whose every step a Cancel has covered meanwhile (a real machine would
    // still be computing; the emulated time is what a cancel saves).
    const auto extra = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(computed) * (opt_.slowdown - 1));
    std::unique_lock<std::mutex> lock(mu_);
    const Clock::time_point from = clock_.now();
    clock_.wait_until(lock, queue_cv_, from + extra, [&] {
      return stopping_ || std::all_of(batch.begin(), batch.end(), [](const WorkItem* w) {
               return is_cancelled(*w->session, w->step.step_id());
             });
    });
    waited = clock_.now() - from;
  }
  const int64_t compute_us =
      std::chrono::duration_cast<std::chrono::microseconds>(computed + waited).count();
  spdlog::debug("batch: {} tokens of {} steps, {} us, {} us CPU of this thread", total,
                batch.size(), compute_us, thread_cpu_us() - cpu_since);
  if (!st.ok()) {
    spdlog::error("batch of {} steps failed: {}", batch.size(), st.ToString());
    for (WorkItem* w : batch)
      w->session->owner->send(error_response(w->session->id, w->step.step_id(),
                                             net::to_grpc_code(st.code()), st.message()));
    return {};
  }
  // Steps a Cancel covered while they ran are answered as cancelled and not
  // pushed on; the others are remembered, with their share of the batch's
  // compute, in case a later Cancel covers them.
  std::vector<bool> cancelled(batch.size(), false);
  {
    std::lock_guard<std::mutex> lock(mu_);
    const double rate =
        static_cast<double>(total) * (last - first) / std::max(1e-6, compute_us * 1e-6);
    layer_tokens_per_s_ = layer_tokens_per_s_ == 0 ? rate : 0.8 * layer_tokens_per_s_ + 0.2 * rate;
    scheduler_state_.batch_speed(static_cast<int>(total), compute_us * 1e-6);
    compute_us_ += compute_us;
    for (size_t i = 0; i < batch.size(); ++i) {
      Session& s = *batch[i]->session;
      const uint64_t id = batch[i]->step.step_id();
      const int64_t share = compute_us * batch[i]->take / std::max<int64_t>(1, total);
      if (!batch[i]->final_chunk()) {
        batch[i]->compute_us += share;
        continue;
      }
      cancelled[i] = is_cancelled(s, id);
      if (cancelled[i]) {
        ++steps_cancelled_;
        cancelled_compute_us_ += share;
        continue;
      }
      forget_cancels_before(s, id);
      s.recent_runs.emplace_back(id, share);
      if (s.recent_runs.size() > kMaxRecentRuns) s.recent_runs.pop_front();
    }
  }
  std::vector<WorkItem> more;
  row = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    WorkItem& w = *batch[i];
    Session& s = *w.session;
    if (!w.final_chunk()) {
      // More to run: keep this chunk's output (a stage before the last) and
      // hand the step back to the queue.
      if (!s.is_last) {
        w.out.reserve(static_cast<size_t>(w.tokens()) * d);
        w.out.insert(w.out.end(), hidden.begin() + row * d, hidden.begin() + (row + w.take) * d);
      }
      row += w.take;
      w.done += w.take;
      w.take = 0;
      more.push_back(std::move(w));
      continue;
    }
    const int64_t n = w.tokens();
    // The step's output rows: this batch's, or the chunks' collected.
    const float* output = hidden.data() + row * d;
    if (w.done > 0 && !s.is_last) {
      w.out.insert(w.out.end(), hidden.begin() + row * d, hidden.begin() + (row + w.take) * d);
      output = w.out.data();
    }
    if (cancelled[i]) {
      s.owner->send(cancelled_response(s, w.step.step_id()));
      row += w.take;
      continue;
    }
    v1::StageTiming timing;
    timing.set_address(address_);
    timing.set_queue_us(us_between(w.arrived, start));
    timing.set_compute_us(compute_us + w.compute_us);
    timing.set_batch_tokens(static_cast<int32_t>(total));
    if (w.step.next_hops_size() > 0) {
      StageRequest req;
      v1::Step* out = req.mutable_step();
      out->set_session_id(s.id);
      out->set_step_id(w.step.step_id());
      *out->mutable_tokens() = w.step.tokens();
      out->set_position(w.step.position());
      net::encode_tensor(output, n, d, w.step.wire_dtype(), out->mutable_hidden());
      out->mutable_next_hops()->CopyFrom(w.step.next_hops());
      out->mutable_next_hops()->erase(out->mutable_next_hops()->begin());
      out->set_sample_all(w.step.sample_all());
      out->set_score_tokens(w.step.score_tokens());
      out->set_rewind(w.step.rewind());
      out->set_n_drafts(w.step.n_drafts());
      *out->mutable_draft_probs() = w.step.draft_probs();
      out->set_continues_previous(w.step.continues_previous());
      out->set_wire_dtype(w.step.wire_dtype());
      *out->mutable_timings() = w.step.timings();
      *out->add_timings() = timing;
      out->set_row_hashes(w.step.row_hashes());
      out->set_sketches(w.step.sketches());
      *out->mutable_commitments() = w.step.commitments();
      *out->add_commitments() = commitment(w, nullptr);
      push(w.session, w.step.next_hops(0), std::move(req));
    } else {
      StageResponse resp;
      v1::StepResult* r = resp.mutable_result();
      r->set_session_id(s.id);
      r->set_step_id(w.step.step_id());
      if (s.is_last) {
        r->mutable_tokens()->Add(sampled[i].begin(), sampled[i].end());
        // A cheating stage's altered token keeps the logprob of the one it
        // sampled: logprobs are reported, not audited (doc/protocol.md).
        if (sampled_lps[i].size() == sampled[i].size())
          for (const TokenLogprob& lp : sampled_lps[i]) net::encode_logprob(lp, r->add_logprobs());
        for (const TokenLogprob& lp : scores[i]) net::encode_logprob(lp, r->add_scores());
        if (w.step.n_drafts() > 0)
          r->set_accepted_drafts(static_cast<int32_t>(sampled[i].size()) - 1);
      } else
        net::encode_tensor(output, n, d, w.step.wire_dtype(), r->mutable_hidden());
      *r->mutable_timings() = w.step.timings();
      *r->add_timings() = timing;
      r->set_length(s.cache->length());
      *r->mutable_commitments() = w.step.commitments();
      *r->add_commitments() = commitment(w, s.is_last ? r : nullptr);
      s.owner->send(std::move(resp));
    }
    row += w.take;
  }
  return more;
}

v1::Commitment StageServer::Impl::commitment(const WorkItem& w,
                                             const v1::StepResult* result) const {
  const Session& s = *w.session;
  v1::Commitment c;
  c.set_model_id(model_id_);
  c.set_session_id(s.id);
  c.set_step_id(w.step.step_id());
  c.set_position(w.step.position());
  c.set_n_tokens(w.tokens());
  c.set_first_layer(s.first);
  c.set_last_layer(s.last);
  c.set_prefix_hash(std::string(trust::as_view(w.prefix_after)));
  c.set_input_hash(std::string(trust::as_view(trust::combine_rows(w.input_rows))));
  c.set_output_hash(std::string(trust::as_view(trust::combine_rows(w.output_rows))));
  if (result)
    c.set_tokens_hash(std::string(trust::as_view(
        trust::tokens_hash(result->tokens().data(), static_cast<size_t>(result->tokens_size()),
                           result->accepted_drafts()))));
  // Per row also for steps with drafts (a few rows): an audit then checks
  // the accepted part of a step whose later drafts were rejected.
  if (w.step.row_hashes() || w.step.n_drafts() > 0) {
    for (const trust::Hash& h : w.input_rows) c.add_input_rows(std::string(trust::as_view(h)));
    for (const trust::Hash& h : w.output_rows) c.add_output_rows(std::string(trust::as_view(h)));
  }
  for (const trust::RowSketch& s : w.sketches) trust::to_proto(s, c.add_sketches());
  if (identity_) trust::sign(&c, *identity_);
  return c;
}

}  // namespace swarm::node
