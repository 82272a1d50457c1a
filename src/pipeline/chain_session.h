// One generation's session across a chain of stages, from the gateway's side:
// an owner stream to every stage (doc/protocol.md) over a StageTransport
// (gRPC in production, a simulated chain in tests), feeding one queue, waited
// on with a Clock. Plain decoding waits for each step (step()); speculation
// keeps several runs in flight (send_run(), next_result(), cancel()).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/clock.h"
#include "engine/logprobs.h"
#include "engine/sampler.h"
#include "engine/spec_verify.h"
#include "engine/status.h"
#include "pipeline/pipeline_backend.h"
#include "pipeline/stage_transport.h"
#include "pipeline/step_deadline.h"
#include "routing/chain.h"
#include "swarm/v1/stage.pb.h"
#include "trust/audit.h"

namespace swarm {

// One run of tokens through the chain (see Step in proto/swarm/v1/stage.proto).
struct ChainRun {
  std::vector<int32_t> tokens;
  int position = 0;
  int n_drafts = 0;                // the last n_drafts tokens are drafts to verify
  std::vector<SparseProbs> probs;  // one per draft, or none (deterministic drafts)
  bool continues_previous = false;
  bool rewind = false;
  bool sample_all = false;  // the last stage samples every position
  bool row_hashes = false;  // commitments list a hash per row (audit runs)
  bool sketches = false;    // every stage sketches its rows (Step.sketches)
};

// Deadlines (pipeline/step_deadline.h): every step's wait is due after a
// deadline derived from the step times `times` holds for this chain (for each
// stage in relay mode); every answer adds its own. When a step is overdue the
// stages are probed: one that does not answer is the suspect and the step
// fails (DeadlineExceeded); if all answer, the chain is slow, not hung, and the
// wait goes on, up to the absolute ceiling after the step was sent.
class ChainSession {
 public:
  // `times` (may be null: every step waits the ceiling) must outlive the
  // session. The stages are reached through options.transport and waited on
  // with options.clock, both set (PipelineBackend sets gRPC and the real clock
  // where its options give none).
  ChainSession(std::vector<ChainStage> chain, const PipelineOptions& options,
               StepTimeBook* times = nullptr);
  ~ChainSession();
  ChainSession(const ChainSession&) = delete;
  ChainSession& operator=(const ChainSession&) = delete;

  // Before open(): the last stage reports each sampled token's logprob with
  // `top` alternatives (OpenSession.logprobs); -1 (the default): none.
  void set_logprobs(int top) { logprobs_ = top; }
  Status open(const std::string& model_id, int n_layer, const SamplingParams& sp, int max_length);

  // Past the ceiling, a step is waited on a ceiling more (again and again)
  // while every stage it waits on answers Info and `may_wait(chain)` says yes;
  // a stage that does not answer is blamed instead. For a chain no failover
  // could leave: a replay on the same stages queues the same work again behind
  // the same queues, throwing away what they hold. `may_wait` keeps the count
  // (a request's failover budget); unset, the ceiling is final.
  using CeilingWait = std::function<bool(const std::vector<ChainStage>& chain)>;
  void set_ceiling_wait(CeilingWait may_wait) { may_wait_past_ceiling_ = std::move(may_wait); }

  // Runs one step (tokens at `position`) through the chain; returns the sampled
  // token. `score`: with logprobs, also the step's tokens after the first
  // (Step.score_tokens), in scores().
  Result<int32_t> step(const std::vector<int32_t>& tokens, int position, bool score = false);
  // With logprobs, after step(): the sampled token's, and the scores it asked for.
  const TokenLogprob& last_logprob() const { return last_logprob_; }
  const std::vector<TokenLogprob>& scores() const { return scores_; }

  // Push mode only: sends a run and returns its step id at once.
  Result<uint64_t> send_run(const ChainRun& run);
  // Asks every stage to drop runs [from, to] it has not started (they are
  // then answered CANCELLED, which next_result skips).
  Status cancel(uint64_t from, uint64_t to);
  // The next result from the last stage for a step id `wanted` says yes to.
  // Answers about other ids (cancelled or stale runs) are skipped; an error
  // about a wanted id, a lost stream or the step timeout is a failure.
  Result<v1::StepResult> next_result(const std::function<bool(uint64_t)>& wanted);

  // The stage believed to have failed the last step or open ("" if unknown,
  // e.g. after the ceiling in push mode, when every stage still answered Info).
  const std::string& suspect() const { return suspect_; }
  const std::vector<ChainStage>& chain() const { return chain_; }
  // The clock this session's waits and timings read.
  Clock& clock() const { return clock_; }
  // Every step the last stage answered, as sent, with the answer and the
  // stages' commitments (trust/audit.h), in arrival order: what audits check
  // and the ledger pays for.
  const std::vector<trust::StepRecord>& records() const { return records_; }

  // Drops the session without waiting for any stage: a dead or stalled peer
  // must not hold the gateway up (its streams are cancelled locally).
  void abandon();
  void close();

 private:
  using Event = StageEvent;
  class EventQueue {
   public:
    explicit EventQueue(Clock& clock) : clock_(clock) {}
    void push(Event e);
    bool pop(Event* e, Clock::time_point deadline);

   private:
    Clock& clock_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Event> events_;
  };
  // A run sent by send_run and not yet answered.
  struct Pending {
    Clock::time_point sent;
    int tokens = 0;
  };

  // The next event, for a step of `tokens` tokens sent at `sent`, whose
  // deadline is that of `key`'s step times (see the class comment); `probe`:
  // the stages that may hold it up. An error names the silent stage and sets
  // suspect_.
  Status await(Event* e, Clock::time_point sent, const std::string& key, int tokens,
               const std::vector<size_t>& probe, const std::string& what);
  std::chrono::milliseconds deadline_for(const std::string& key, int tokens) const;
  // Files the step time of an answer `r` to a step of `tokens` sent at `sent`.
  void observe(const std::string& key, int tokens, Clock::time_point sent, const v1::StepResult& r);
  std::vector<size_t> all_stages() const;

  void fill_step(v1::Step* st, uint64_t step_id, const std::vector<int32_t>& tokens, int position,
                 bool with_hops) const;
  Status finish_link(size_t i, const std::string& what);
  Status blame(size_t stage, Status st);
  // The failure an error answer means (a stage that cannot reach its next hop
  // blames the hop).
  Status failure_of(const Event& e);

  std::vector<ChainStage> chain_;
  const PipelineOptions& options_;
  StageTransport& transport_;
  Clock& clock_;
  StepTimeBook* times_;
  const std::string key_;  // the chain, as step times are filed under
  const std::string id_;
  std::map<uint64_t, Pending> pending_;
  // Steps sent and not yet answered, as sent (for records_).
  std::map<uint64_t, trust::StepRecord> sent_;
  std::vector<trust::StepRecord> records_;
  // Files the answer `r` to a step in records_ (relay: `commitments` are
  // those the stages before the last gave, in order).
  void record(const v1::StepResult& r, std::vector<v1::Commitment> earlier = {});
  std::vector<std::unique_ptr<StageLink>> links_;
  EventQueue events_;
  uint64_t step_id_ = 0;
  bool closed_ = false;
  std::string suspect_;
  CeilingWait may_wait_past_ceiling_;
  // The step (by when it was sent) last waited on past the ceiling, and until when.
  struct {
    Clock::time_point sent, ceiling;
  } extended_;
  int logprobs_ = -1;
  TokenLogprob last_logprob_;
  std::vector<TokenLogprob> scores_;
};

}  // namespace swarm
