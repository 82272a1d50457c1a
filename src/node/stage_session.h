// A session as a stage server holds it (its cache, sampler, owner stream,
// pushes to next stages, cancelled steps), and a queued piece of its work (a
// Step or a Truncate) as the scheduler and the batch runner pass it on.
#pragma once

#include <grpcpp/support/status_code_enum.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine/clock.h"
#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "engine/status.h"
#include "node/caller_quota.h"
#include "node/outbound.h"
#include "swarm/v1/stage.pb.h"
#include "trust/activation_sketch.h"
#include "trust/commitment.h"

namespace swarm::node {

// Steps a session remembers having run (Session::recent_runs), to count the
// compute time of those a later Cancel covers.
inline constexpr size_t kMaxRecentRuns = 64;

class ServerStream;

// How far back a last stage can roll its sampler back exactly.
inline constexpr int kSnapshotWindow = 256;

struct Session {
  std::string id;
  int first = 0, last = 0;
  bool is_first = false, is_last = false;
  int max_length = 0;
  uint64_t kv_bytes = 0;
  uint64_t owner_stream = 0;
  std::shared_ptr<ServerStream> owner;
  // Touched only by the scheduler thread.
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<Sampler> sampler;
  int logprobs = -1;  // OpenSession.logprobs: the alternatives per token; -1: none
  // The sampler as it was when the cache held `length` positions (its history,
  // which the penalties read; its draws are keyed by position, so they need no
  // restoring), so a rollback restores it too and a replay samples exactly what
  // the first run did. Kept for the last kSnapshotWindow positions.
  std::map<int, Sampler> sampler_at;
  // The last stage's final logits row of the session's latest step, valid
  // while the cache holds `last_row_at` positions: a step that continues it
  // (Step.continues_previous) judges its first draft against this row.
  std::vector<float> last_row;
  int last_row_at = -1;
  std::atomic<int64_t> last_active{0};  // the node's Clock ticks at the last message
  std::atomic<int> queued{0};           // its items in the scheduler's queue
  // Guarded by the server's mu_: step id ranges [first, last] cancelled, and
  // (step id, compute microseconds) of the steps run most recently.
  std::deque<std::pair<uint64_t, uint64_t>> cancelled;
  std::deque<std::pair<uint64_t, int64_t>> recent_runs;

  std::atomic<bool> closed{false};
  std::mutex mu;  // guards outbound; closing takes it, so no push follows a close

  std::map<std::string, std::shared_ptr<Outbound>> outbound;  // by next hop "address@pin"
  CallerQuota::Lease quota_lease;  // its opener's session quota, given back at close
  // Its opener's connection (ServerStream::connection()) as the scheduler's
  // caller key: fair shares are per caller (step_scheduler.h).
  uintptr_t caller = 0;
  // Touched only by the scheduler thread: the token history of the cache
  // (commitments name it), and a cheating node's memory of its last output.
  trust::PrefixHashes prefix;
  std::vector<float> cheat_previous;

  void touch(const Clock& clock) { last_active = clock.now().time_since_epoch().count(); }
  Clock::time_point last_active_at() const {
    return Clock::time_point(Clock::duration(last_active.load()));
  }
};

// Rolls `s` back to `length` positions: its cache, and at the last stage its
// sampler (exactly when a snapshot at `length` exists, which it does at every
// step boundary and every sample_all position within the window).
Status rewind_session(Session& s, int length);
// Whether `step_id` lies in a range cancelled for `s`. Call with the server's
// mu_ held.
bool is_cancelled(const Session& s, uint64_t step_id);
// Step `step_id` ran: a session's steps reach a stage and run in step id order,
// so no step of a range that ends before it can still come. Call with mu_ held.
void forget_cancels_before(Session& s, uint64_t step_id);
// Keeps the sampler as it is when the cache holds `length` positions.
void snapshot_sampler(Session& s, int length);
// The last stage's final logits row of a step, valid at `at` positions.
void remember_last_row(Session& s, const float* row, int n_vocab, int at);

v1::StageResponse error_response(const std::string& session, uint64_t step, grpc::StatusCode code,
                                 const std::string& msg);
v1::StageResponse cancelled_response(const Session& s, uint64_t step_id);

// Bytes a stream delivered that wait in the node (a step's input, until the
// step ran): the stream counts them against its back-pressure limit.
class InputTicket {
 public:
  InputTicket(std::shared_ptr<ServerStream> stream, size_t bytes);
  ~InputTicket();
  InputTicket(const InputTicket&) = delete;
  InputTicket& operator=(const InputTicket&) = delete;

 private:
  std::shared_ptr<ServerStream> stream_;
  size_t bytes_;
};

struct WorkItem {
  std::unique_ptr<InputTicket> ticket;  // released when the step is done with
  std::shared_ptr<Session> session;
  bool truncate = false;
  int truncate_length = 0;
  v1::Step step;              // hidden cleared: decoded into `hidden`
  std::vector<float> hidden;  // input rows (empty at the first stage)
  Clock::time_point arrived;
  // A plain step may run in chunks (batch_plan.h): `done` tokens ran in
  // earlier batches, `take` run in this one; a stage that is not the last
  // collects the chunks' output rows in `out`.
  bool chunkable = false;
  int done = 0;
  int take = 0;
  std::vector<float> out;
  int64_t compute_us = 0;          // of the earlier chunks
  CallerQuota::Lease quota_lease;  // its sender's steps-in-flight quota, held while queued
  // For the step's commitment: a hash per input row (as on the wire), per
  // output row (collected chunk by chunk), and the token history after it ran.
  std::vector<trust::Hash> input_rows, output_rows;
  std::vector<trust::RowSketch> sketches;  // inexact nodes, Step.sketches
  trust::Hash prefix_after{};
  int tokens() const { return step.tokens_size(); }
  bool final_chunk() const { return done + take == tokens(); }
};

}  // namespace swarm::node
