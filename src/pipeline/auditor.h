// Background audits (doc/trust.md, "Audits"): a finished session whose steps
// were sampled is recomputed by a reference (this process's engine, or other
// nodes serving the same layers) and judged (trust/audit.h), off the request's
// critical path: one thread at the lowest CPU priority, a bounded queue (a
// full queue drops the job and counts it), verdicts handed to a callback that
// feeds reputation, proofs and the ledger.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "engine/sampler.h"
#include "engine/status.h"
#include "swarm/v1/stage.pb.h"
#include "trust/audit.h"

namespace swarm {

struct AuditJob {
  trust::AuditedSession session;
  std::vector<int32_t> history;  // the session's tokens as its caches held them
  int window = 0;                // recompute positions [0, window)
  v1::Tensor::DType wire_dtype = v1::Tensor::F32;
  // Sampled sessions: the request's sampling, to replay the last stage's
  // choices (--audit-local only). None for greedy.
  std::optional<SamplingParams> sampling;
};

// What audits did since start: their cost shows (doc/trust.md).
struct AuditStats {
  int64_t submitted = 0, dropped = 0, done = 0, failed = 0;  // jobs
  int64_t steps_checked = 0;  // stage commitments compared
  int64_t choices_checked = 0, draft_choices_checked = 0;  // last stages' answers compared (trust::Verdict)
  int64_t sketches_checked = 0;  // inexact chains: row sketches compared within the tolerance
  int64_t passes = 0, frauds = 0, disputes = 0, missing = 0;  // verdicts
  int64_t positions = 0;      // token positions recomputed
  int64_t second_opinions = 0;  // references run again on other nodes to confirm a fraud
  double seconds = 0;         // spent recomputing and judging
  int queued = 0;
};

// A recomputation of a job's window: rows [0, window) at every stage
// boundary of its chain.
struct Reference {
  trust::ReferenceRows rows;
  // This process's own engine. Other nodes' work is not proof on its own: a
  // fraud it shows is confirmed by a second reference on other nodes first.
  bool trusted = false;
  std::vector<std::string> nodes;  // per stage of the chain: the address of the node that computed it
};
// Computes a reference for `job`; `avoid`: empty, or per stage the address
// of a node not to use there (""). Errors when none can run it.
using ReferenceFn = std::function<Result<Reference>(const AuditJob&, const std::vector<std::string>& avoid)>;
using VerdictFn = std::function<void(const AuditJob&, const std::vector<trust::Verdict>&)>;

class Auditor {
 public:
  Auditor(ReferenceFn reference, VerdictFn on_verdicts, int max_queue = 64);
  ~Auditor();
  Auditor(const Auditor&) = delete;
  Auditor& operator=(const Auditor&) = delete;

  // Queues `job`; false when the queue is full (the job is dropped).
  bool submit(AuditJob job);
  AuditStats stats() const;
  // Blocks until every job submitted so far is judged (tests, shutdown).
  void wait_idle();

 private:
  void loop();
  // A fraud shown by a reference that is not proof on its own (other nodes')
  // stands only if a second reference on yet other nodes shows it too; with
  // no second reference it is a dispute.
  void confirm_frauds(const AuditJob& job, const std::vector<int32_t>& history, const Reference& first,
                      std::vector<trust::Verdict>* verdicts);

  ReferenceFn reference_;
  VerdictFn on_verdicts_;
  const size_t max_queue_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<AuditJob> queue_;
  bool busy_ = false;
  bool stopping_ = false;
  AuditStats stats_;
  std::thread thread_;
};

}  // namespace swarm
