#include "node/stage_server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/method_handler.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/logprobs.h"
#include "engine/model.h"
#include "engine/model_loader.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "engine/thread_pool.h"
#include "net/caller.h"
#include "net/channel_cache.h"
#include "net/identity.h"
#include "net/logprob_codec.h"
#include "net/model_id.h"
#include "net/status_convert.h"
#include "net/tensor_codec.h"
#include "net/tls.h"
#include "net/wire_format.h"
#include "node/batch_plan.h"
#include "node/cheat.h"
#include "node/inexact_emulation.h"
#include "node/compute_share.h"
#include "node/outbound.h"
#include "node/paced_queue.h"
#include "node/request_size_limit.h"
#include "node/timer.h"
#include "swarm/v1/stage.grpc.pb.h"
#include "trust/activation_sketch.h"
#include "trust/commitment.h"

namespace swarm::node {
namespace {

using Clock = std::chrono::steady_clock;
using grpc::ByteBuffer;
using grpc::StatusCode;
using v1::StageRequest;
using v1::StageResponse;

// Session ids longer than this are refused (they are echoed in every message).
constexpr size_t kMaxSessionIdBytes = 256;
// A stream that sends this many undecodable messages in a row is ended.
constexpr int kMaxBadMessagesInARow = 16;
// Steps and truncates one session may have waiting; more is a flood, refused.
constexpr int kMaxQueuedPerSession = 256;
// Closed sessions remembered for the fair-share count (recently_closed_).
constexpr size_t kMaxRecentlyClosed = 4096;
// Hops one Step may name (a chain longer than this is not a chain we build).
constexpr int kMaxHopsPerStep = 64;
// Distinct next stages one session may push to over its life: a chain that
// fails over moves to a twin now and then, but a session naming hundreds of
// addresses is using the node to dial strangers.
constexpr size_t kMaxNextHopsPerSession = 4;
// Rows the head runs on for one step (sample_all or drafts): each is a row of
// vocabulary logits, so a verification step is capped where a prefill is not.
constexpr int kMaxSampledRows = 256;
// Bytes a stream holds in the node: its answers waiting to be written and
// its steps' inputs waiting to run. Past kPauseReadsBytes the node stops
// reading the stream (its caller's further requests wait in gRPC's flow
// control) until they fall to half; past kMaxStreamBytes of answers the caller
// does not read them at all, and the stream is ended.
constexpr size_t kPauseReadsBytes = 16u << 20;
constexpr size_t kMaxStreamBytes = 256u << 20;
// Bytes waiting to be pushed to one next hop before a step pushed there fails.
constexpr size_t kMaxOutboundBytes = 256u << 20;
// A session's context when neither --ctx-size nor the model says one.
constexpr int kDefaultContext = 4096;
// How far back a last stage can roll its sampler back exactly.
constexpr int kSnapshotWindow = 256;
// Cancelled step ranges a session remembers (to drop steps that arrive after
// their Cancel), and steps it remembers having run (to count the compute time
// of those a later Cancel covers).
constexpr size_t kMaxCancelRanges = 16;
constexpr size_t kMaxRecentRuns = 64;
// Commitments a step may carry from the stages before (one per stage; a chain
// has at most kMaxHopsPerStep + 1).
constexpr int kMaxCommitmentsPerStep = kMaxHopsPerStep + 1;

int64_t us_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::microseconds>(b - a).count();
}

ByteBuffer to_buffer(const google::protobuf::MessageLite& m) {
  const std::string s = m.SerializeAsString();
  grpc::Slice slice(s);
  return ByteBuffer(&slice, 1);
}

bool from_buffer(const ByteBuffer& bb, google::protobuf::MessageLite* m) {
  std::vector<grpc::Slice> slices;
  if (!bb.Dump(&slices).ok()) return false;
  std::string s;
  for (const grpc::Slice& sl : slices)
    s.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  return m->ParseFromString(s);
}

StageResponse error_response(const std::string& session, uint64_t step, StatusCode code,
                             const std::string& msg) {
  StageResponse r;
  v1::Error* e = r.mutable_error();
  e->set_session_id(session);
  e->set_step_id(step);
  e->set_code(code);
  e->set_message(msg);
  return r;
}

std::string range_str(int a, int b) { return std::to_string(a) + ":" + std::to_string(b); }

// A next hop as a session's pushes are keyed: address and pinned key.
std::string hop_key(const v1::Hop& h) {
  return h.address() + "@" + h.public_key();
}

SamplingParams sampling_from_proto(const v1::SamplingConfig& c) {
  SamplingParams p;
  p.temperature = c.temperature();
  p.top_k = c.top_k();
  // proto3 cannot tell "unset" from 0: an unset top_p or repeat_penalty means off.
  p.top_p = c.top_p() <= 0 ? 1.0f : c.top_p();
  p.min_p = c.min_p();
  p.repeat_penalty = c.repeat_penalty() == 0 ? 1.0f : c.repeat_penalty();
  p.repeat_last_n = c.repeat_last_n();
  p.presence_penalty = c.presence_penalty();
  p.frequency_penalty = c.frequency_penalty();
  p.seed = c.seed();
  for (const v1::LogitBias& b : c.logit_bias()) p.logit_bias.emplace_back(b.token(), b.bias());
  p.grammar = c.grammar();
  p.grammar_start = c.grammar_start();
  p.stop_tokens.assign(c.stop_tokens().begin(), c.stop_tokens().end());
  return p;
}

}  // namespace

class ServerStream;

namespace {

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
  std::atomic<int64_t> last_active{0};  // Clock ticks of the last message
  std::atomic<int> queued{0};           // its items in the scheduler's queue
  // Guarded by the server's mu_: step id ranges [first, last] cancelled, and
  // (step id, compute microseconds) of the steps run most recently.
  std::deque<std::pair<uint64_t, uint64_t>> cancelled;
  std::deque<std::pair<uint64_t, int64_t>> recent_runs;

  std::atomic<bool> closed{false};
  std::mutex mu;  // guards outbound; closing takes it, so no push follows a close

  std::map<std::string, std::shared_ptr<Outbound>> outbound;  // by next hop "address@pin"
  CallerQuota::Lease quota_lease;  // its opener's session quota, given back at close
  // Touched only by the scheduler thread: the token history of the cache
  // (commitments name it), and a cheating node's memory of its last output.
  trust::PrefixHashes prefix;
  std::vector<float> cheat_previous;

  void touch() { last_active = Clock::now().time_since_epoch().count(); }
};

// Rolls `s` back to `length` positions: its cache, and at the last stage its
// sampler (exactly when a snapshot at `length` exists, which it does at every
// step boundary and every sample_all position within the window).
Status rewind_session(Session& s, int length) {
  const int before = s.cache->length();
  SWARM_RETURN_IF_ERROR(s.cache->truncate(length));
  s.prefix.truncate(length);
  if (!s.sampler || length == before) return Status::Ok();
  auto it = s.sampler_at.find(length);
  if (it != s.sampler_at.end())
    *s.sampler = it->second;
  else
    spdlog::warn(
        "session '{}': no sampler state at length {}; penalties keep the rolled-back tokens",
        s.id.substr(0, 64), length);
  s.sampler_at.erase(s.sampler_at.upper_bound(length), s.sampler_at.end());
  return Status::Ok();
}

// Whether `step_id` lies in a range cancelled for `s`. Call with the server's
// mu_ held.
bool is_cancelled(const Session& s, uint64_t step_id) {
  for (const auto& [first, last] : s.cancelled)
    if (first <= step_id && step_id <= last) return true;
  return false;
}

// Step `step_id` ran: a session's steps reach a stage and run in step id order,
// so no step of a range that ends before it can still come. Call with mu_ held.
void forget_cancels_before(Session& s, uint64_t step_id) {
  std::erase_if(s.cancelled, [&](const auto& r) { return r.second < step_id; });
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

StageResponse cancelled_response(const Session& s, uint64_t step_id) {
  return error_response(s.id, step_id, StatusCode::CANCELLED,
                        "Step " + std::to_string(step_id) + ": cancelled");
}

void snapshot_sampler(Session& s, int length) {
  s.sampler_at.insert_or_assign(length, *s.sampler);
  s.sampler_at.erase(s.sampler_at.begin(), s.sampler_at.lower_bound(length - kSnapshotWindow));
}

void remember_last_row(Session& s, const float* row, int n_vocab, int at) {
  s.last_row.assign(row, row + n_vocab);
  s.last_row_at = at;
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
  int64_t compute_us = 0;  // of the earlier chunks
  CallerQuota::Lease quota_lease;  // its sender's steps-in-flight quota, held while queued
  // For the step's commitment: a hash per input row (as on the wire), per
  // output row (collected chunk by chunk), and the token history after it ran.
  std::vector<trust::Hash> input_rows, output_rows;
  std::vector<trust::RowSketch> sketches;  // inexact nodes, Step.sketches
  trust::Hash prefix_after{};
  int tokens() const { return step.tokens_size(); }
  bool final_chunk() const { return done + take == tokens(); }
};

}  // namespace

class StageServer::Impl {
 public:
  explicit Impl(const NodeOptions& o) : opt_(o) {}
  ~Impl() { shutdown(); }

  Status start();
  void drain() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!draining_) spdlog::info("draining: refusing new sessions, {} open", sessions_.size());
    draining_ = true;
    drained_cv_.notify_all();
  }
  void wait_drained() {
    std::unique_lock<std::mutex> lock(mu_);
    drained_cv_.wait(lock, [&] { return draining_ && sessions_.empty(); });
  }
  void shutdown();

  void info(v1::InfoResponse* r);
  BatchTally::Snapshot batches() const { return batches_.snapshot(); }

  // What a ServerStream hands over: one request read from stream `stream_id`,
  // whose answers go to `writer`.
  void handle(StageRequest& req, uint64_t stream_id, const std::shared_ptr<ServerStream>& writer);
  void close_sessions_of_stream(uint64_t stream_id);
  // A stream's reactor began or ended (shutdown waits for every one to end).
  void stream_started();
  void stream_ended();

  std::string address_;
  std::string model_id_;
  std::string layout_id_;
  std::string node_id_;

 private:
  void open(const v1::OpenSession& o, uint64_t stream_id,
            const std::shared_ptr<ServerStream>& writer);
  void step(v1::Step& s, const std::shared_ptr<ServerStream>& writer);
  void cancel(const v1::Cancel& c, const std::shared_ptr<ServerStream>& writer);
  void enqueue(WorkItem item);
  std::shared_ptr<Session> find(const std::string& id);
  // Removes the session (if still open), frees its budget and ends its pushes.
  void close_session(const std::shared_ptr<Session>& s, const std::string& why);
  void scheduler_loop();
  // Runs one batch and returns the chunked steps that have more to run, for
  // the scheduler to queue again. Exceptions (out of memory) fail the batch's
  // steps, never the node.
  std::vector<WorkItem> run_batch_safely(std::vector<WorkItem>& batch);
  std::vector<WorkItem> run_batch(std::vector<WorkItem>& batch);
  void push(const std::shared_ptr<Session>& s, const v1::Hop& hop, StageRequest req);
  // The signed commitment (trust/commitment.h) to a finished step; `result`:
  // the last stage's answer, whose tokens it commits to too.
  v1::Commitment commitment(const WorkItem& w, const v1::StepResult* result) const;
  void reaper_loop();
  // The model's token bytes, read from its file the first time a session
  // brings a grammar (the node does not otherwise need its tokenizer).
  Result<std::shared_ptr<const GrammarVocab>> grammar_vocab();

  NodeOptions opt_;
  std::mutex vocab_mu_;
  std::shared_ptr<const GrammarVocab> vocab_;  // guarded by vocab_mu_
  int context_ = 0;  // positions one session may hold (OpenSession.max_length)
  std::unique_ptr<Model> model_;
  std::unique_ptr<ThreadPool> pool_;
  net::ChannelCache channels_;
  std::shared_ptr<Timer> timer_ = std::make_shared<Timer>();
  std::string public_key_;  // raw 32 bytes of --identity's key; empty: plaintext
  std::optional<net::Identity> identity_;  // signs commitments; none: plaintext
  std::unique_ptr<Cheater> cheater_;       // hidden --cheat flags only
  net::CallerPolicy caller_policy_;  // who may use the Session stream
  std::unique_ptr<CallerQuota> quota_;  // made in start()
  class Service;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;

  std::mutex mu_;  // guards sessions_, kv_used_, draining_, queue_, stopping_, throughput
  std::condition_variable queue_cv_, drained_cv_, reaper_cv_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  uint64_t kv_used_ = 0;
  bool draining_ = false;
  bool stopping_ = false;
  std::deque<WorkItem> queue_;
  // When each session closed within about the last second last sent a message
  // (Clock ticks, oldest first, at most kMaxRecentlyClosed): a caller whose
  // requests are many short sessions (a gateway) shares the node as the
  // sessions it ran lately, not only the few open at this instant.
  std::deque<int64_t> recently_closed_;
  ComputeShare compute_share_;  // touched only by the scheduler thread
  double layer_tokens_per_s_ = 0;
  int64_t steps_cancelled_ = 0;       // dropped by a Cancel
  int64_t compute_us_ = 0;            // all batches, slowdown included
  int64_t cancelled_compute_us_ = 0;  // of which on steps a Cancel covered after they ran
  BatchTally batches_;  // counted by run_batch_safely
  std::atomic<uint64_t> next_stream_id_{1};
  std::thread scheduler_, reaper_;
  std::mutex streams_mu_;
  std::condition_variable streams_cv_;
  int live_streams_ = 0;  // reactors gRPC has not yet called OnDone on
};

// One Session stream a caller opened to this node (a gateway's owner stream,
// or a previous stage pushing to this one). It reads requests and hands them
// to the server, and writes answers in order, each `delay` after it was sent
// (the emulated link), one write at a time, on gRPC's callback threads: no
// thread of its own.
//
// Bounded: past kPauseReadsBytes of unwritten answers it stops reading (a
// caller that does not read its answers gets no more work done), past
// kMaxStreamBytes it ends the stream. This object outlives its reactor as long
// as a session names it as owner; what is sent after the stream ended is
// dropped.
class ServerStream : public std::enable_shared_from_this<ServerStream> {
 public:
  using Reactor = grpc::ServerBidiReactor<ByteBuffer, ByteBuffer>;

  ServerStream(StageServer::Impl* impl, uint64_t id, std::chrono::milliseconds delay,
               std::shared_ptr<Timer> timer, std::string caller)
      : impl_(impl), id_(id), delay_(delay), timer_(std::move(timer)), caller_(std::move(caller)) {}

  // Who opened the stream: net::CallerIdentity::quota_key().
  const std::string& caller() const { return caller_; }

  // Queues an answer; never blocks.
  void send(const StageResponse& r) {
    ByteBuffer bb = to_buffer(r);
    const size_t bytes = bb.Length();
    bool overflow = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finish_wanted_) return;
      if (queue_.bytes() + bytes > kMaxStreamBytes) {
        overflow = true;
      } else {
        queue_.push(std::move(bb), bytes, Clock::now() + delay_);
      }
    }
    if (overflow) {
      spdlog::warn("stream {}: its caller does not read its answers ({} bytes wait): ended", id_,
                   kMaxStreamBytes);
      end(grpc::Status(StatusCode::RESOURCE_EXHAUSTED,
                       "the stream's answers are not being read: more than " +
                           std::to_string(kMaxStreamBytes) + " bytes wait"));
      return;
    }
    pump();
  }

  // Bytes of a request read from this stream that wait in the node, until
  // release_input.
  void hold_input(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    input_bytes_ += bytes;
  }
  void release_input(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      input_bytes_ -= std::min(bytes, input_bytes_);
    }
    read_next();
  }

  // Called by the reactor.
  void start(Reactor* reactor) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      reactor_ = reactor;
      read_pending_ = true;
    }
    reactor->StartRead(&reading_);
  }
  void on_read_done(bool ok) {
    // Until this reaction ends, no other read starts (read_pending_ stays
    // set): a stream's requests are handled one at a time, in order, and the
    // read buffer is this reaction's alone.
    if (!ok) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        read_pending_ = false;
        reads_over_ = true;
      }
      // The caller half-closed (or went away): its sessions end; answers
      // already queued are still written.
      end(grpc::Status::OK);
      return;
    }
    StageRequest req;
    const bool parsed = from_buffer(reading_, &req);
    reading_.Clear();
    if (!parsed) {
      send(error_response("", 0, StatusCode::INVALID_ARGUMENT,
                          "malformed StageRequest: the bytes are not a swarm.v1.StageRequest"));
      if (++bad_in_a_row_ >= kMaxBadMessagesInARow) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          read_pending_ = false;
        }
        end(grpc::Status(StatusCode::INVALID_ARGUMENT, "too many malformed messages"));
        return;
      }
    } else {
      bad_in_a_row_ = 0;
      try {
        impl_->handle(req, id_, shared_from_this());
      } catch (const std::exception& e) {
        // Nothing a caller sends may take the node down; the request fails.
        spdlog::error("stream {}: a request failed: {}", id_, e.what());
        send(error_response("", 0, StatusCode::INTERNAL,
                            std::string("the node failed to handle the request: ") + e.what()));
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      read_pending_ = false;
    }
    read_next();
  }
  void on_write_done(bool ok) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.written();
      if (!ok) {
        // The caller is gone: nothing more can be written.
        broken_ = true;
        queue_.take_all();
      }
    }
    if (!ok) {
      end(grpc::Status(StatusCode::UNAVAILABLE, "write failed"));
      return;
    }
    read_next();
    pump();
  }
  void on_cancel() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      broken_ = true;
      queue_.take_all();
    }
    end(grpc::Status(StatusCode::CANCELLED, "cancelled"));
  }
  void on_done() {
    std::lock_guard<std::mutex> lock(mu_);
    reactor_ = nullptr;
  }

 private:
  // Starts the next read unless one is pending, the stream is ending, or
  // what the stream holds in the node is over the limit; a paused stream
  // resumes once that falls to half (a write done, a step run).
  void read_next() {
    Reactor* r = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (read_pending_ || reads_over_ || finish_wanted_ || !reactor_) return;
      const size_t held = queue_.bytes() + input_bytes_;
      if (held > (reads_paused_ ? kPauseReadsBytes / 2 : kPauseReadsBytes)) {
        reads_paused_ = true;
        return;
      }
      reads_paused_ = false;
      read_pending_ = true;
      // The stream does not finish (and its reactor is not deleted) while a
      // read is being started.
      read_starting_ = true;
      r = reactor_;
    }
    r->StartRead(&reading_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      read_starting_ = false;
    }
    pump();  // a finish that waited for this
  }
  // The stream ends with `status` once what is queued is written (at once
  // when it is broken); the sessions it owns close now. A later call keeps
  // the first status but still pumps: a stream that ended itself and then
  // broke (its caller cancelled while a write was in flight) finishes only
  // here, and an unfinished stream holds the node's shutdown forever.
  void end(const grpc::Status& status) {
    bool first = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!finish_wanted_) {
        first = finish_wanted_ = true;
        end_status_ = status;
      }
    }
    if (first) impl_->close_sessions_of_stream(id_);
    pump();
  }
  void pump() {
    Reactor* r = nullptr;
    bool write = false, finish = false, arm = false;
    Clock::time_point until;
    grpc::Status status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!reactor_ || finished_) return;
      switch (broken_ ? PacedQueue<ByteBuffer>::Next::kNothing
                      : queue_.next(Clock::now(), &writing_, &until)) {
        case PacedQueue<ByteBuffer>::Next::kWrite:
          write = true;
          break;
        case PacedQueue<ByteBuffer>::Next::kWait:
          arm = !timer_armed_;
          timer_armed_ = true;
          break;
        case PacedQueue<ByteBuffer>::Next::kNothing:
          // A read still pending completes (not ok) once the stream finishes.
          if (finish_wanted_ && !read_starting_ && !queue_.in_flight() &&
              (queue_.empty() || broken_)) {
            finish = finished_ = true;
            status = end_status_;
          }
          break;
      }
      r = reactor_;
    }
    if (write) r->StartWrite(&writing_);
    if (finish) r->Finish(status);
    if (arm) {
      std::weak_ptr<ServerStream> weak = weak_from_this();
      timer_->at(until, [weak] {
        if (auto self = weak.lock()) {
          {
            std::lock_guard<std::mutex> lock(self->mu_);
            self->timer_armed_ = false;
          }
          self->pump();
        }
      });
    }
  }

  StageServer::Impl* const impl_;
  const uint64_t id_;
  const std::chrono::milliseconds delay_;
  const std::shared_ptr<Timer> timer_;
  const std::string caller_;
  ByteBuffer reading_;  // touched only by the read in progress and its reaction
  int bad_in_a_row_ = 0;

  std::mutex mu_;
  Reactor* reactor_ = nullptr;  // null before start and after OnDone
  PacedQueue<ByteBuffer> queue_;
  ByteBuffer writing_;
  size_t input_bytes_ = 0;     // see hold_input
  bool read_pending_ = false;
  bool reads_paused_ = false;
  bool reads_over_ = false;    // the caller half-closed
  bool read_starting_ = false; // a StartRead call is under way
  bool timer_armed_ = false;
  bool broken_ = false;         // a write failed or the call was cancelled
  bool finish_wanted_ = false;  // end() was called
  bool finished_ = false;       // Finish was called
  grpc::Status end_status_;
};

InputTicket::InputTicket(std::shared_ptr<ServerStream> stream, size_t bytes)
    : stream_(std::move(stream)), bytes_(bytes) {
  stream_->hold_input(bytes_);
}
InputTicket::~InputTicket() { stream_->release_input(bytes_); }

// gRPC's side of a ServerStream: gRPC owns it from Session() to OnDone.
class SessionReactor final : public grpc::ServerBidiReactor<ByteBuffer, ByteBuffer> {
 public:
  SessionReactor(StageServer::Impl* impl, std::shared_ptr<ServerStream> stream)
      : impl_(impl), stream_(std::move(stream)) {
    impl_->stream_started();
    stream_->start(this);
  }
  void OnReadDone(bool ok) override { stream_->on_read_done(ok); }
  void OnWriteDone(bool ok) override { stream_->on_write_done(ok); }
  void OnCancel() override { stream_->on_cancel(); }
  void OnDone() override {
    stream_->on_done();
    StageServer::Impl* impl = impl_;
    delete this;
    impl->stream_ended();
  }

 private:
  StageServer::Impl* const impl_;
  const std::shared_ptr<ServerStream> stream_;
};

// A Session stream refused before it began: it ends with `status`.
class RefusedStream final : public grpc::ServerBidiReactor<ByteBuffer, ByteBuffer> {
 public:
  explicit RefusedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

// The Stage service on gRPC's callback API: streams cost no thread each.
// Session speaks raw bytes so that a message that does not parse gets an Error
// answer on its stream (a generated handler would just end the stream).
class StageServer::Impl::Service final
    : public v1::Stage::WithRawCallbackMethod_Session<
          v1::Stage::WithCallbackMethod_Info<v1::Stage::Service>> {
 public:
  explicit Service(Impl* impl) : impl_(impl) {}

  grpc::ServerBidiReactor<ByteBuffer, ByteBuffer>* Session(
      grpc::CallbackServerContext* ctx) override {
    // Who calls, and whether they may (net/caller.h): a refused caller's
    // stream ends at once with the reason.
    auto caller = net::caller_identity(*ctx);
    if (!caller.ok())
      return new RefusedStream(grpc::Status(StatusCode::UNAUTHENTICATED, caller.status().message()));
    const grpc::Status admitted = net::admit_session_caller(*caller, impl_->caller_policy_);
    if (!admitted.ok()) {
      spdlog::info("Session stream of {} refused: {}", caller->describe(),
                   admitted.error_message());
      return new RefusedStream(admitted);
    }
    const uint64_t id = impl_->next_stream_id_++;
    return new SessionReactor(impl_, std::make_shared<ServerStream>(
                                         impl_, id,
                                         std::chrono::milliseconds(impl_->opt_.link_delay_ms),
                                         impl_->timer_, caller->quota_key()));
  }
  grpc::ServerUnaryReactor* Info(grpc::CallbackServerContext* ctx, const v1::InfoRequest*,
                                 v1::InfoResponse* r) override {
    impl_->info(r);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  Impl* impl_;
};

Status StageServer::Impl::start() {
  auto source = open_model_source(opt_.model_path);
  if (!source.ok()) return source.status();
  const int n_layer = source->config.n_layer;
  if (opt_.last_layer < 0) opt_.last_layer = n_layer;
  if (opt_.first_layer < 0 || opt_.last_layer > n_layer || opt_.first_layer >= opt_.last_layer)
    return Status::InvalidArgument("--layers " + range_str(opt_.first_layer, opt_.last_layer) +
                                   " is not within the model's 0:" + std::to_string(n_layer));
  auto ids = net::model_ids(*source);
  if (!ids.ok()) return ids.status();
  model_id_ = ids->model_id;
  layout_id_ = ids->layout_id;
  const CheatOptions& cheat = opt_.cheat;
  if (!cheat.mode.empty() || !cheat.claim_model.empty() || cheat.speed_factor != 1) {
    SWARM_RETURN_IF_ERROR(validate(cheat, opt_.last_layer - opt_.first_layer));
    if (!cheat.claim_model.empty()) {
      auto claimed = open_model_source(cheat.claim_model);
      if (!claimed.ok()) return claimed.status().annotate("--cheat-claim-model");
      auto claimed_ids = net::model_ids(*claimed);
      if (!claimed_ids.ok()) return claimed_ids.status().annotate("--cheat-claim-model");
      model_id_ = claimed_ids->model_id;
      layout_id_ = claimed_ids->layout_id;
    }
    cheater_ = std::make_unique<Cheater>(cheat);
    spdlog::warn("this node CHEATS on purpose (--cheat {}, rate {}, speed x{}{}{}): for tests only",
                 cheat.mode.empty() ? "none" : cheat.mode, cheat.rate, cheat.speed_factor,
                 cheat.unaudited_only ? ", only when not audited" : "",
                 cheat.claim_model.empty() ? "" : ", claims the model id of " + cheat.claim_model);
  }
  context_ = opt_.context > 0                  ? opt_.context
             : source->config.n_ctx_train > 0 ? source->config.n_ctx_train
                                              : kDefaultContext;
  if (opt_.max_sessions < 1)
    return Status::InvalidArgument("--max-sessions " + std::to_string(opt_.max_sessions) +
                                   " is not >= 1");
  LoadOptions lo;
  lo.first_layer = opt_.first_layer;
  lo.last_layer = opt_.last_layer;
  lo.no_mmap = opt_.no_mmap;
  lo.progress = opt_.progress;
  auto model = Model::Load(opt_.model_path, lo);
  if (!model.ok()) return model.status();
  model_ = std::move(model).value();
  pool_ = std::make_unique<ThreadPool>(opt_.threads);
  if (opt_.max_batch_tokens < 1) opt_.max_batch_tokens = 1;
  if (!(opt_.slowdown >= 1))
    return Status::InvalidArgument("slowdown " + std::to_string(opt_.slowdown) + " is not >= 1");

  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!opt_.identity_path.empty()) {
    auto identity = net::Identity::Load(opt_.identity_path);
    if (!identity.ok())
      return identity.status().annotate(
          "--identity" + std::string(identity.status().code() == Status::Code::kNotFound
                                         ? " (create one with swarm keygen -o FILE)"
                                         : ""));
    auto tls = net::identity_server_credentials(*identity);
    if (!tls.ok()) return tls.status();
    credentials = *tls;
    node_id_ = identity->node_id();
    public_key_.assign(identity->public_key().begin(), identity->public_key().end());
    // Its pushes to the next stage present its own identity.
    auto client = net::client_certificate_of(*identity);
    if (!client.ok()) return client.status();
    channels_.set_client_certificate(*client);
    caller_policy_.tls = true;
    caller_policy_.allow_anonymous = opt_.allow_anonymous;
    identity_.emplace(std::move(identity).value());
  }
  if (!opt_.allow.empty()) {
    if (node_id_.empty())
      return Status::InvalidArgument("--allow needs --identity: only TLS callers have identities");
    auto allow = net::AllowList::Parse(opt_.allow);
    if (!allow.ok()) return allow.status().annotate("--allow");
    caller_policy_.allow = std::move(allow).value();
    spdlog::info("serving sessions only to the {} identities --allow lists",
                 caller_policy_.allow->size());
  }
  // The total is --max-sessions, which open() checks itself.
  CallerQuotaLimits limits = opt_.quota;
  limits.sessions_total = std::numeric_limits<int>::max();
  quota_ = std::make_unique<CallerQuota>(limits);

  service_ = std::make_unique<Service>(this);
  grpc::ServerBuilder builder;
  net::configure_server(builder);
  // A longer request is refused by gRPC before it is read (request_size_limit.h).
  const ModelConfig& mc = model_->config();
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_request_bytes(
      {.context = context_, .d_model = mc.n_embd, .n_vocab = mc.n_vocab, .n_layer = mc.n_layer,
       .max_hops = kMaxHopsPerStep, .max_sampled_rows = kMaxSampledRows,
       .max_session_id_bytes = static_cast<int>(kMaxSessionIdBytes)})));
  int port = 0;
  builder.AddListeningPort(opt_.listen, credentials, &port);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0)
    return Status::IOError("cannot listen on " + opt_.listen +
                           " (is another process listening there?)");
  const size_t colon = opt_.listen.rfind(':');
  address_ = opt_.listen.substr(0, colon) + ":" + std::to_string(port);
  scheduler_ = std::thread([this] { scheduler_loop(); });
  reaper_ = std::thread([this] { reaper_loop(); });
  spdlog::info("serving {} layers {} of {} (model id {}) on {}, {}", model_->config().name,
               range_str(opt_.first_layer, opt_.last_layer), n_layer, model_id_.substr(0, 16),
               address_, node_id_.empty() ? "plaintext" : "TLS as node " + node_id_);
  if (opt_.slowdown > 1)
    spdlog::info("slowdown {}: every batch's compute is made to take {} times as long",
                 opt_.slowdown, opt_.slowdown);
  return Status::Ok();
}

void StageServer::Impl::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    queue_cv_.notify_all();
    reaper_cv_.notify_all();
  }
  if (scheduler_.joinable()) scheduler_.join();
  if (reaper_.joinable()) reaper_.join();
  std::vector<std::shared_ptr<Session>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, s] : sessions_) left.push_back(s);
  }
  std::vector<std::shared_ptr<Outbound>> pushes;
  for (auto& s : left) {
    std::lock_guard<std::mutex> lock(s->mu);
    for (auto& [addr, out] : s->outbound) pushes.push_back(out);
  }
  for (auto& out : pushes) out->cancel();
  for (auto& s : left) close_session(s, "node shutting down");
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  // Reactors call into this object until gRPC is done with them.
  std::unique_lock<std::mutex> lock(streams_mu_);
  streams_cv_.wait_for(lock, std::chrono::seconds(5), [&] { return live_streams_ == 0; });
}

std::shared_ptr<Session> StageServer::Impl::find(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

void StageServer::Impl::stream_started() {
  std::lock_guard<std::mutex> lock(streams_mu_);
  ++live_streams_;
}

void StageServer::Impl::stream_ended() {
  std::lock_guard<std::mutex> lock(streams_mu_);
  --live_streams_;
  streams_cv_.notify_all();
}

void StageServer::Impl::handle(StageRequest& req, uint64_t stream_id,
                               const std::shared_ptr<ServerStream>& writer) {
  switch (req.kind_case()) {
    case StageRequest::kOpen:
      open(req.open(), stream_id, writer);
      return;
    case StageRequest::kStep:
      step(*req.mutable_step(), writer);
      return;
    case StageRequest::kCancel:
      cancel(req.cancel(), writer);
      return;
    case StageRequest::kTruncate:
    case StageRequest::kClose: {
      const bool is_close = req.kind_case() == StageRequest::kClose;
      const std::string& id = is_close ? req.close().session_id() : req.truncate().session_id();
      auto s = find(id);
      if (!s) {
        writer->send(error_response(id, 0, StatusCode::NOT_FOUND, "unknown session '" + id + "'"));
        return;
      }
      if (s->owner_stream != stream_id) {
        writer->send(error_response(id, 0, StatusCode::PERMISSION_DENIED,
                                    std::string(is_close ? "Close" : "Truncate") +
                                        ": only the stream that opened session '" + id +
                                        "' may send this"));
        return;
      }
      s->touch();
      if (is_close) {
        close_session(s, "closed by its owner");
      } else {
        WorkItem w;
        w.session = s;
        w.truncate = true;
        w.truncate_length = req.truncate().length();
        w.arrived = Clock::now();
        enqueue(std::move(w));
      }
      return;
    }
    case StageRequest::KIND_NOT_SET:
      writer->send(
          error_response("", 0, StatusCode::INVALID_ARGUMENT, "StageRequest: no message kind set"));
      return;
  }
}

Result<std::shared_ptr<const GrammarVocab>> StageServer::Impl::grammar_vocab() {
  std::lock_guard<std::mutex> lock(vocab_mu_);
  if (vocab_) return vocab_;
  auto tok = Tokenizer::Load(opt_.model_path);
  if (!tok.ok()) return tok.status().annotate("reading the model's vocabulary");
  if ((*tok)->vocab_size() < model_->config().n_vocab)
    return Status::Unsupported("the model's tokenizer has fewer tokens than its head");
  vocab_ = GrammarVocab::from_tokenizer(**tok);
  return vocab_;
}

void StageServer::Impl::open(const v1::OpenSession& o, uint64_t stream_id,
                             const std::shared_ptr<ServerStream>& writer) {
  const std::string& id = o.session_id();
  auto refuse = [&](StatusCode code, const std::string& msg) {
    spdlog::info("session '{}' refused: {}", id.substr(0, 64), msg);
    writer->send(error_response(id, 0, code, msg));
  };
  const ModelConfig& c = model_->config();
  if (id.empty() || id.size() > kMaxSessionIdBytes)
    return refuse(StatusCode::INVALID_ARGUMENT, "OpenSession.session_id: must be 1 to " +
                                                    std::to_string(kMaxSessionIdBytes) +
                                                    " bytes, got " + std::to_string(id.size()));
  if (o.model_id() != model_id_)
    return refuse(
        StatusCode::FAILED_PRECONDITION,
        "OpenSession.model_id: '" + o.model_id() + "', but this node serves '" + model_id_ + "'" +
            (o.layout_id().empty() ? "" : ": " + net::model_mismatch_reason(o.layout_id(), layout_id_)));
  if (o.first_layer() < opt_.first_layer || o.last_layer() > opt_.last_layer ||
      o.first_layer() >= o.last_layer())
    return refuse(
        StatusCode::INVALID_ARGUMENT,
        "OpenSession.first_layer:last_layer: " + range_str(o.first_layer(), o.last_layer()) +
            " is not a non-empty part of the served range " +
            range_str(opt_.first_layer, opt_.last_layer));
  if (o.is_first() && (o.first_layer() != 0 || !model_->has_embed()))
    return refuse(StatusCode::FAILED_PRECONDITION,
                  "OpenSession.is_first: needs first_layer 0, got " +
                      std::to_string(o.first_layer()) + " (this node serves " +
                      range_str(opt_.first_layer, opt_.last_layer) + ")");
  if (o.is_last() && (o.last_layer() != c.n_layer || !model_->has_head()))
    return refuse(StatusCode::FAILED_PRECONDITION,
                  "OpenSession.is_last: needs last_layer " + std::to_string(c.n_layer) + ", got " +
                      std::to_string(o.last_layer()) + " (this node serves " +
                      range_str(opt_.first_layer, opt_.last_layer) + ")");
  if (o.max_length() <= 0 || o.max_length() > context_)
    return refuse(StatusCode::INVALID_ARGUMENT,
                  "OpenSession.max_length: must be 1 to " + std::to_string(context_) +
                      " (this node's context), got " + std::to_string(o.max_length()));
  auto lease = quota_->open_session(writer->caller());
  if (!lease.ok()) return refuse(StatusCode::RESOURCE_EXHAUSTED, lease.status().message());
  auto s = std::make_shared<Session>();
  s->quota_lease = std::move(lease).value();
  if (o.is_last()) {
    SamplingParams p = sampling_from_proto(o.sampling());
    const Status st = p.validate(c.n_vocab);
    if (!st.ok())
      return refuse(StatusCode::INVALID_ARGUMENT, "OpenSession.sampling: " + st.message());
    std::shared_ptr<const GrammarVocab> vocab;
    if (!p.grammar.empty()) {
      auto v = grammar_vocab();
      if (!v.ok())
        return refuse(StatusCode::FAILED_PRECONDITION,
                      "OpenSession.sampling.grammar: " + v.status().message());
      vocab = *v;
    }
    s->sampler = std::make_unique<Sampler>(std::move(p), c.n_vocab, std::move(vocab));
    if (const Status& g = s->sampler->grammar_status(); !g.ok())
      return refuse(StatusCode::INVALID_ARGUMENT, "OpenSession.sampling.grammar: " + g.message());
    if (o.top_logprobs() < 0 || o.top_logprobs() > kMaxTopLogprobs)
      return refuse(StatusCode::INVALID_ARGUMENT,
                    "OpenSession.top_logprobs: must be 0 to " + std::to_string(kMaxTopLogprobs) +
                        ", got " + std::to_string(o.top_logprobs()));
    if (o.logprobs()) s->logprobs = o.top_logprobs();
  }
  s->id = id;
  s->first = o.first_layer();
  s->last = o.last_layer();
  s->is_first = o.is_first();
  s->is_last = o.is_last();
  s->max_length = o.max_length();
  s->kv_bytes = KvCache::bytes_for(s->last - s->first, model_->kv_dim(), s->max_length);
  s->owner_stream = stream_id;
  s->owner = writer;
  s->touch();
  // Answers are sent outside mu_: a stream's send may end the stream, which
  // closes its sessions under mu_.
  std::optional<StageResponse> refusal;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) {
      refusal = error_response(id, 0, StatusCode::UNAVAILABLE, "node is draining: no new sessions");
    } else if (sessions_.size() >= static_cast<size_t>(opt_.max_sessions)) {
      refusal = error_response(id, 0, StatusCode::RESOURCE_EXHAUSTED,
                               "sessions: this node holds its limit of " +
                                   std::to_string(opt_.max_sessions) + " (--max-sessions)");
    } else if (sessions_.count(id)) {
      refusal = error_response(id, 0, StatusCode::ALREADY_EXISTS,
                               "OpenSession.session_id: '" + id + "' is already open on this node");
    } else if (s->kv_bytes > opt_.kv_memory_bytes - kv_used_) {
      refusal = error_response(id, 0, StatusCode::RESOURCE_EXHAUSTED,
                               "KV memory: need " + std::to_string(s->kv_bytes) + " bytes, " +
                                   std::to_string(opt_.kv_memory_bytes - kv_used_) + " free of " +
                                   std::to_string(opt_.kv_memory_bytes));
    } else {
      s->cache = std::make_unique<KvCache>(s->first, s->last, model_->kv_dim(), s->max_length);
      kv_used_ += s->kv_bytes;
      sessions_[id] = s;
    }
  }
  if (refusal) {
    spdlog::info("session '{}' refused: {}", id.substr(0, 64), refusal->error().message());
    writer->send(*refusal);
    return;
  }
  spdlog::info("session '{}' opened by {}: layers {}{}{}, max_length {}, {} KV bytes",
               id.substr(0, 64), writer->caller(), range_str(s->first, s->last),
               s->is_first ? " +embed" : "",
               s->is_last ? " +head" : "", s->max_length, s->kv_bytes);
  StageResponse r;
  r.mutable_opened()->set_session_id(id);
  writer->send(std::move(r));
}

void StageServer::Impl::step(v1::Step& st, const std::shared_ptr<ServerStream>& writer) {
  auto s = find(st.session_id());
  if (!s) {
    writer->send(error_response(st.session_id(), st.step_id(), StatusCode::NOT_FOUND,
                                "Step: unknown session '" + st.session_id() + "' (open it first)"));
    return;
  }
  s->touch();
  auto fail = [&](StatusCode code, const std::string& msg) {
    spdlog::warn("session '{}' step {}: {}", s->id.substr(0, 64), st.step_id(), msg);
    s->owner->send(error_response(s->id, st.step_id(), code, msg));
  };
  if (s->queued.load() >= kMaxQueuedPerSession)
    return fail(StatusCode::RESOURCE_EXHAUSTED,
                "Step: " + std::to_string(kMaxQueuedPerSession) +
                    " messages of this session already wait to run");
  const ModelConfig& c = model_->config();
  const int64_t n = st.tokens_size();
  if (n == 0) return fail(StatusCode::INVALID_ARGUMENT, "Step.tokens: empty");
  for (int64_t i = 0; i < n; ++i)
    if (st.tokens(i) < 0 || st.tokens(i) >= c.n_vocab)
      return fail(StatusCode::INVALID_ARGUMENT,
                  "Step.tokens[" + std::to_string(i) + "]: " + std::to_string(st.tokens(i)) +
                      " is outside the vocabulary [0, " + std::to_string(c.n_vocab) + ")");
  if (st.position() < 0 || st.position() > s->max_length - n)
    return fail(StatusCode::OUT_OF_RANGE,
                "Step.position: " + std::to_string(st.position()) + " + " + std::to_string(n) +
                    " tokens exceeds the session's max_length " + std::to_string(s->max_length));
  if (net::tensor_element_size(st.wire_dtype()) == 0)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.wire_dtype: unknown dtype " + std::to_string(st.wire_dtype()));
  if (st.n_drafts() < 0 || st.n_drafts() > n)
    return fail(StatusCode::INVALID_ARGUMENT, "Step.n_drafts: " + std::to_string(st.n_drafts()) +
                                                  " for a step of " + std::to_string(n) +
                                                  " tokens");
  if (st.draft_probs_size() != 0 && st.draft_probs_size() != st.n_drafts())
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.draft_probs: " + std::to_string(st.draft_probs_size()) + " entries for " +
                    std::to_string(st.n_drafts()) + " drafts (give one per draft, or none)");
  for (int i = 0; i < st.draft_probs_size(); ++i) {
    const v1::DraftProbs& dp = st.draft_probs(i);
    const Status qs = validate_sparse_probs(
        {{dp.ids().begin(), dp.ids().end()}, {dp.probs().begin(), dp.probs().end()}}, c.n_vocab);
    if (!qs.ok())
      return fail(StatusCode::INVALID_ARGUMENT,
                  "Step.draft_probs[" + std::to_string(i) + "]: " + qs.message());
  }
  if (st.continues_previous() && st.n_drafts() != n)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.continues_previous: every token must be a draft (n_drafts " +
                    std::to_string(st.n_drafts()) + ", tokens " + std::to_string(n) + ")");
  if (st.continues_previous() && st.rewind())
    return fail(StatusCode::INVALID_ARGUMENT, "Step.continues_previous: cannot rewind");
  if (s->is_last && st.next_hops_size() > 0)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.next_hops: given to the last stage (it holds the head)");
  if (st.next_hops_size() > kMaxHopsPerStep)
    return fail(StatusCode::INVALID_ARGUMENT, "Step.next_hops: " +
                                                  std::to_string(st.next_hops_size()) +
                                                  " hops, at most " +
                                                  std::to_string(kMaxHopsPerStep));
  if ((st.sample_all() || st.n_drafts() > 0) && n > kMaxSampledRows)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.tokens: " + std::to_string(n) + " tokens in a step sampled at every " +
                    "position (sample_all or drafts); at most " + std::to_string(kMaxSampledRows));
  if (st.score_tokens() && n > kMaxSampledRows)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.tokens: " + std::to_string(n) + " tokens in a step scored at every " +
                    "position (score_tokens); at most " + std::to_string(kMaxSampledRows));
  if (st.sketches() && st.row_hashes() && n > kMaxSampledRows)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.tokens: " + std::to_string(n) + " tokens in an audit run with every row " +
                    "sketched (row_hashes and sketches); at most " + std::to_string(kMaxSampledRows));
  if (st.commitments_size() > kMaxCommitmentsPerStep)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.commitments: " + std::to_string(st.commitments_size()) + ", at most " +
                    std::to_string(kMaxCommitmentsPerStep));
  for (const v1::Hop& h : st.next_hops()) {
    if (h.address().empty() || h.address().size() > 1024)
      return fail(StatusCode::INVALID_ARGUMENT, "Step.next_hops: a hop without a valid address");
    // A node with an identity dials only nodes whose identity the chain pins.
    if (!public_key_.empty() && h.public_key().empty())
      return fail(StatusCode::INVALID_ARGUMENT,
                  "Step.next_hops.public_key: missing for hop " + h.address().substr(0, 256) +
                      " (a node with an identity pushes only to pinned nodes)");
    if (!h.public_key().empty() && h.public_key().size() != net::kPublicKeyBytes)
      return fail(StatusCode::INVALID_ARGUMENT,
                  "Step.next_hops: public_key of " + std::to_string(h.public_key().size()) +
                      " bytes (an Ed25519 key has " + std::to_string(net::kPublicKeyBytes) + ")");
  }
  if (st.next_hops_size() > 0) {
    const v1::Hop& h = st.next_hops(0);
    std::lock_guard<std::mutex> lock(s->mu);
    if (!s->outbound.count(hop_key(h)) && s->outbound.size() >= kMaxNextHopsPerSession)
      return fail(StatusCode::RESOURCE_EXHAUSTED,
                  "Step.next_hops[0]: " + h.address() + " would be this session's " +
                      std::to_string(kMaxNextHopsPerSession + 1) +
                      "th next stage; at most " + std::to_string(kMaxNextHopsPerSession));
  }
  WorkItem w;
  auto lease = quota_->start_step(writer->caller());
  if (!lease.ok()) return fail(StatusCode::RESOURCE_EXHAUSTED, "Step: " + lease.status().message());
  w.quota_lease = std::move(lease).value();
  // A plain run (a prefill or a replay) may run a part at a time; runs the
  // last stage samples at every position may not.
  w.chunkable = !st.sample_all() && st.n_drafts() == 0 && !st.continues_previous() &&
                !(s->is_last && st.score_tokens());
  if (s->is_first) {
    if (st.has_hidden())
      return fail(StatusCode::INVALID_ARGUMENT, "Step.hidden: must be absent at the first stage");
  } else {
    if (!st.has_hidden())
      return fail(
          StatusCode::INVALID_ARGUMENT,
          "Step.hidden: missing (this stage starts at layer " + std::to_string(s->first) + ")");
    const Status ds = net::decode_tensor(st.hidden(), n, c.n_embd, &w.hidden, "Step.hidden");
    if (!ds.ok()) return fail(StatusCode::INVALID_ARGUMENT, ds.message());
    // Decoding checked the size: n rows of equal width, as they came.
    w.input_rows = trust::row_hashes(st.hidden().data().data(), n, st.hidden().data().size() / n);
    st.clear_hidden();
  }
  if (s->is_first) w.input_rows = trust::token_row_hashes(st.tokens().data(), n);
  // Held against the stream the step came on until it ran: its input, and
  // the output it will make (the hidden states a stage before the last sends
  // on), so a caller cannot queue cheap steps whose answers it never reads.
  const size_t output_bytes =
      s->is_last ? static_cast<size_t>(n) * sizeof(int32_t)
                 : static_cast<size_t>(n) * static_cast<size_t>(c.n_embd) *
                       net::tensor_element_size(st.wire_dtype());
  w.ticket = std::make_unique<InputTicket>(
      writer, w.hidden.size() * sizeof(float) + static_cast<size_t>(n) * sizeof(int32_t) +
                  output_bytes);
  w.session = std::move(s);
  w.step = std::move(st);
  w.arrived = Clock::now();
  enqueue(std::move(w));
}

void StageServer::Impl::enqueue(WorkItem item) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (item.truncate || !is_cancelled(*item.session, item.step.step_id())) {
      ++item.session->queued;
      queue_.push_back(std::move(item));
      queue_cv_.notify_one();
      return;
    }
    ++steps_cancelled_;
  }
  // Its Cancel came first (from the gateway directly, or a race with the
  // previous stage's push): it is dropped on arrival.
  item.session->owner->send(cancelled_response(*item.session, item.step.step_id()));
}

void StageServer::Impl::cancel(const v1::Cancel& c, const std::shared_ptr<ServerStream>& writer) {
  auto s = find(c.session_id());
  if (!s) {
    writer->send(error_response(c.session_id(), c.from_step_id(), StatusCode::NOT_FOUND,
                                "Cancel: unknown session '" + c.session_id() + "'"));
    return;
  }
  s->touch();
  if (c.to_step_id() < c.from_step_id()) {
    s->owner->send(error_response(s->id, c.from_step_id(), StatusCode::INVALID_ARGUMENT,
                                  "Cancel.to_step_id: " + std::to_string(c.to_step_id()) +
                                      " is below from_step_id " +
                                      std::to_string(c.from_step_id())));
    return;
  }
  auto covers = [&](uint64_t id) { return c.from_step_id() <= id && id <= c.to_step_id(); };
  std::vector<uint64_t> dropped;
  int64_t wasted_us = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s->cancelled.emplace_back(c.from_step_id(), c.to_step_id());
    if (s->cancelled.size() > kMaxCancelRanges) s->cancelled.pop_front();
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->session != s || it->truncate || !covers(it->step.step_id())) {
        ++it;
        continue;
      }
      dropped.push_back(it->step.step_id());
      --s->queued;
      it = queue_.erase(it);
    }
    // Steps that already ran here were wasted work; each is counted once.
    std::erase_if(s->recent_runs, [&](const auto& run) {
      if (!covers(run.first)) return false;
      wasted_us += run.second;
      return true;
    });
    steps_cancelled_ += static_cast<int64_t>(dropped.size());
    cancelled_compute_us_ += wasted_us;
  }
  queue_cv_.notify_all();  // a slowed batch this Cancel covers stops waiting
  for (uint64_t id : dropped) s->owner->send(cancelled_response(*s, id));
  // The next stages hear it after the steps already pushed to them, on the same
  // streams, so those are still queued there (or running) when it arrives.
  std::vector<std::shared_ptr<Outbound>> hops;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    if (!s->closed)
      for (auto& [addr, out] : s->outbound) hops.push_back(out);
  }
  const size_t forwarded = hops.size();
  for (const auto& out : hops) {
    StageRequest fwd;
    *fwd.mutable_cancel() = c;
    out->send(std::move(fwd));
  }
  spdlog::debug("session '{}': cancel steps {}..{}: {} dropped here, {} us wasted, {} hops told",
                s->id.substr(0, 64), c.from_step_id(), c.to_step_id(), dropped.size(), wasted_us,
                forwarded);
}

void StageServer::Impl::close_session(const std::shared_ptr<Session>& s, const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(s->id);
    if (it == sessions_.end() || it->second != s) return;
    sessions_.erase(it);
    recently_closed_.push_back(s->last_active.load());
    if (recently_closed_.size() > kMaxRecentlyClosed) recently_closed_.pop_front();
    kv_used_ -= s->kv_bytes;
    s->quota_lease.release();
    drained_cv_.notify_all();
  }
  std::map<std::string, std::shared_ptr<Outbound>> outbound;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->closed = true;
    outbound.swap(s->outbound);
  }
  for (auto& [addr, out] : outbound) out->close();
  spdlog::info("session '{}' closed: {}", s->id.substr(0, 64), why);
}

void StageServer::Impl::close_sessions_of_stream(uint64_t stream_id) {
  std::vector<std::shared_ptr<Session>> owned;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, s] : sessions_)
      if (s->owner_stream == stream_id) owned.push_back(s);
  }
  for (auto& s : owned) close_session(s, "its owner's stream ended");
}

void StageServer::Impl::reaper_loop() {
  const auto timeout = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(opt_.idle_timeout_s));
  const auto period = std::clamp<Clock::duration>(timeout / 10, std::chrono::milliseconds(10),
                                                  std::chrono::seconds(1));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    reaper_cv_.wait_for(lock, period);
    if (stopping_) break;
    const auto now = Clock::now().time_since_epoch().count();
    std::vector<std::shared_ptr<Session>> idle;
    for (auto& [id, s] : sessions_)
      if (now - s->last_active.load() > timeout.count()) idle.push_back(s);
    if (idle.empty()) continue;
    lock.unlock();
    for (auto& s : idle) {
      s->owner->send(error_response(
          s->id, 0, StatusCode::DEADLINE_EXCEEDED,
          "session idle for more than " + std::to_string(opt_.idle_timeout_s) + " s: closed"));
      close_session(s, "idle");
    }
    lock.lock();
  }
}

void StageServer::Impl::scheduler_loop() {
  auto seconds = [](Clock::time_point t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
  };
  bool waiting_on_shares = false;  // the last plan ran nothing: work waits for its share
  bool contended = false;  // the batch ran beside or ahead of another session's queued work
  for (;;) {
    std::vector<WorkItem> batch;
    std::vector<std::pair<std::shared_ptr<Session>, std::string>> truncate_errors;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (waiting_on_shares)  // a share decays with time: look again soon
        queue_cv_.wait_for(lock, std::chrono::milliseconds(5));
      else
        queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      // Sessions that sent a message within the last second share the node,
      // those closed since included.
      const auto now = Clock::now();
      const int64_t recent = (now - std::chrono::seconds(1)).time_since_epoch().count();
      int active = 0;
      for (const auto& [id, s] : sessions_) active += s->last_active.load() > recent;
      while (!recently_closed_.empty() && recently_closed_.front() <= recent)
        recently_closed_.pop_front();
      active += static_cast<int>(std::count_if(recently_closed_.begin(), recently_closed_.end(),
                                               [&](int64_t t) { return t > recent; }));
      // The order is batch_plan.h's rule; this applies it to the queue.
      std::vector<QueuedWork> work;
      work.reserve(queue_.size());
      for (const WorkItem& w : queue_) {
        const Session& s = *w.session;
        const auto key = reinterpret_cast<uintptr_t>(&s);
        work.push_back({.session = key,
                        .session_closed = s.closed.load(),
                        .truncate = w.truncate,
                        .continuation = !w.truncate && w.step.continues_previous(),
                        .tokens = w.truncate ? 0 : w.tokens() - w.done,
                        .chunkable = w.chunkable,
                        .first_layer = s.first,
                        .last_layer = s.last,
                        .over_share = compute_share_.over_share(key, active, seconds(now)),
                        .background = !w.truncate && w.step.row_hashes()});
      }
      const BatchPlan plan = plan_next_batch(work, opt_.max_batch_tokens, active >= 2);
      waiting_on_shares = plan.batch.empty() && plan.truncates.empty() && plan.dropped.empty() &&
                          !queue_.empty();
      std::vector<bool> leaves(queue_.size(), false);
      auto leave = [&](size_t i) {
        --queue_[i].session->queued;
        leaves[i] = true;
      };
      for (size_t i : plan.dropped) leave(i);
      for (size_t i : plan.truncates) {
        Session& s = *queue_[i].session;
        const Status st = rewind_session(s, queue_[i].truncate_length);
        if (!st.ok()) truncate_errors.emplace_back(queue_[i].session, st.message());
        leave(i);
      }
      for (size_t k = 0; k < plan.batch.size(); ++k) {
        const size_t i = plan.batch[k];
        leave(i);
        queue_[i].take = plan.take[k];
        batch.push_back(std::move(queue_[i]));
      }
      std::deque<WorkItem> stay;
      for (size_t i = 0; i < queue_.size(); ++i)
        if (!leaves[i]) stay.push_back(std::move(queue_[i]));
      queue_.swap(stay);
      // Time a session takes while no other wants the node costs nobody:
      // a batch is charged when it runs beside, or ahead of, another
      // session's work, or while other sessions are active (their next steps
      // are on their way: a caller whose prompts fill the gaps between their
      // steps would otherwise take most of the node uncharged).
      contended = active >= 2;
      for (const WorkItem& w : batch) contended = contended || w.session != batch.front().session;
      for (const WorkItem& w : queue_)
        contended = contended || (!batch.empty() && w.session != batch.front().session);
    }
    for (const auto& [s, message] : truncate_errors)
      s->owner->send(error_response(s->id, 0, StatusCode::OUT_OF_RANGE, "Truncate.length: " + message));
    if (batch.empty()) continue;
    // Each session is charged the batch's time in proportion to its tokens.
    std::vector<std::pair<uintptr_t, int>> charged;
    int batch_tokens = 0;
    for (const WorkItem& w : batch) {
      charged.emplace_back(reinterpret_cast<uintptr_t>(w.session.get()), w.take);
      batch_tokens += w.take;
    }
    const auto started = Clock::now();
    // Chunked steps with more to run go back to the front of the queue,
    // ahead of their sessions' later items.
    std::vector<WorkItem> more = run_batch_safely(batch);
    const auto ended = Clock::now();
    const double took = std::chrono::duration<double>(ended - started).count();
    if (contended)
      for (const auto& [key, take] : charged)
        compute_share_.charge(key, took * take / std::max(1, batch_tokens), seconds(ended));
    std::vector<WorkItem> cancelled;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = more.rbegin(); it != more.rend(); ++it) {
        if (is_cancelled(*it->session, it->step.step_id())) {
          ++steps_cancelled_;
          cancelled.push_back(std::move(*it));
          continue;
        }
        ++it->session->queued;
        queue_.push_front(std::move(*it));
      }
    }
    for (WorkItem& w : cancelled) w.session->owner->send(cancelled_response(*w.session, w.step.step_id()));
  }
}

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
  const auto start = Clock::now();
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
        const bool scored = w->step.score_tokens() && w->session->logprobs >= 0 &&
                            w->step.n_drafts() == 0;
        const int64_t from = w->step.sample_all() || scored ? 0
                             : w->step.n_drafts() > 0      ? std::max<int64_t>(0, lead - 1)
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
          if (w.step.score_tokens() && top >= 0 && !w.step.sample_all())  // rows 0 .. n-2: tokens 1 .. n-1
            for (int j = 0; j + 1 < n; ++j, ++r)
              scores[i].push_back(
                  token_logprob(logits.data() + r * c.n_vocab, c.n_vocab, w.step.tokens(j + 1), top));
          for (int j = w.done; j < n; ++j) sampler.accept(w.step.tokens(j));
          const float* row = logits.data() + (r++) * c.n_vocab;
          remember_last_row(*w.session, row, c.n_vocab, p + n);
          sampled[i].push_back(sampler.sample(row, p + n));
          if (top >= 0) sampled_lps[i].push_back(token_logprob(row, c.n_vocab, sampled[i].back(), top));
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
    for (int j = w->done; j < w->done + w->take; ++j) w->session->sampler->accept(w->step.tokens(j));
  }
  auto done = Clock::now();
  if (opt_.slowdown > 1) {
    // Emulates a slower machine: the scheduler is busy for the whole time, so
    // queues build as they would. Shutdown does not wait for it, nor a batch
    // whose every step a Cancel has covered meanwhile (a real machine would
    // still be computing; the emulated time is what a cancel saves).
    const auto extra = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(done - start) * (opt_.slowdown - 1));
    std::unique_lock<std::mutex> lock(mu_);
    queue_cv_.wait_for(lock, extra, [&] {
      return stopping_ || std::all_of(batch.begin(), batch.end(), [](const WorkItem* w) {
               return is_cancelled(*w->session, w->step.step_id());
             });
    });
    done = Clock::now();
  }
  const int64_t compute_us = us_between(start, done);
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

v1::Commitment StageServer::Impl::commitment(const WorkItem& w, const v1::StepResult* result) const {
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
    c.set_tokens_hash(std::string(trust::as_view(trust::tokens_hash(
        result->tokens().data(), static_cast<size_t>(result->tokens_size()),
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

void StageServer::Impl::push(const std::shared_ptr<Session>& s, const v1::Hop& hop,
                             StageRequest req) {
  // Sent outside the session's lock: a send that fails at once answers the
  // owner, which may end its stream and close this session.
  std::shared_ptr<Outbound> target;
  {
  std::lock_guard<std::mutex> lock(s->mu);
  if (s->closed) return;
  // Validated in step(): empty or exactly one key's bytes.
  net::PublicKey key{};
  std::copy(hop.public_key().begin(), hop.public_key().end(), key.begin());
  const std::string pin =
      hop.public_key().empty() ? std::string() : net::to_hex(key.data(), key.size());
  auto& out = s->outbound[hop_key(hop)];
  if (!out) {
    std::weak_ptr<Session> weak = s;
    const std::string addr = hop.address();
    const std::string hop_desc =
        addr + " (layers " + range_str(hop.first_layer(), hop.last_layer()) +
        (pin.empty() ? ")" : ", pinned to node " + net::node_id_of(key) + ")");
    out = Outbound::Create(
        channels_.get(addr, pin), std::chrono::milliseconds(opt_.link_delay_ms), timer_,
        kMaxOutboundBytes,
        [weak, hop_desc](const StageRequest& r, const std::string& why) {
          // A forwarded Cancel that cannot be delivered needs no answer: the
          // steps it was about failed to reach the hop too, and said so.
          if (r.kind_case() != StageRequest::kStep) return;
          if (auto s = weak.lock())
            s->owner->send(error_response(s->id, r.step().step_id(), StatusCode::UNAVAILABLE,
                                          "next hop " + hop_desc + ": " + why));
        },
        [weak, hop_desc](const StageResponse& resp) {
          // The next stage answers its sessions' owner, not us; what comes back
          // here is an error about a message we pushed. Tell our owner.
          auto s = weak.lock();
          if (!s || resp.kind_case() != StageResponse::kError) return;
          StageResponse copy = resp;
          copy.mutable_error()->set_message("next hop " + hop_desc + ": " + resp.error().message());
          s->owner->send(std::move(copy));
        });
  }
  target = out;
  }
  target->send(std::move(req));
}

void StageServer::Impl::info(v1::InfoResponse* r) {
  const ModelConfig& c = model_->config();
  r->set_version(net::kProtocolVersion);
  r->set_model_id(model_id_);
  r->set_layout_id(layout_id_);
  r->set_model_name(c.name);
  r->set_n_layer(c.n_layer);
  r->set_first_layer(opt_.first_layer);
  r->set_last_layer(opt_.last_layer);
  r->set_d_model(c.n_embd);
  std::lock_guard<std::mutex> lock(mu_);
  r->set_active_sessions(static_cast<int32_t>(sessions_.size()));
  r->set_kv_bytes_total(static_cast<int64_t>(opt_.kv_memory_bytes));
  r->set_kv_bytes_free(static_cast<int64_t>(opt_.kv_memory_bytes - kv_used_));
  r->set_layer_tokens_per_second(layer_tokens_per_s_ * (cheater_ ? cheater_->speed_factor() : 1));
  r->set_draining(draining_);
  r->set_queued_steps(static_cast<int32_t>(queue_.size()));
  r->set_public_key(public_key_);
  r->set_node_id(node_id_);
  r->set_price_per_1k(opt_.price_per_1k);
  r->set_inexact(opt_.emulate_inexact > 0);
  r->set_slowdown(opt_.slowdown);
  r->set_steps_cancelled(steps_cancelled_);
  r->set_compute_us(compute_us_);
  r->set_cancelled_compute_us(cancelled_compute_us_);
}

StageServer::StageServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StageServer::~StageServer() = default;

Result<std::unique_ptr<StageServer>> StageServer::Start(const NodeOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  SWARM_RETURN_IF_ERROR(impl->start());
  return std::unique_ptr<StageServer>(new StageServer(std::move(impl)));
}

const std::string& StageServer::address() const { return impl_->address_; }
const std::string& StageServer::model_id() const { return impl_->model_id_; }
const std::string& StageServer::node_id() const { return impl_->node_id_; }
namespace {
StageLoad load_from(const v1::InfoResponse& info) {
  StageLoad l;
  l.first_layer = info.first_layer();
  l.last_layer = info.last_layer();
  l.n_layer = info.n_layer();
  l.layer_tokens_per_second = info.layer_tokens_per_second();
  l.kv_bytes_free = static_cast<uint64_t>(std::max<int64_t>(info.kv_bytes_free(), 0));
  l.draining = info.draining();
  return l;
}
}  // namespace
StageLoad StageServer::load() {
  v1::InfoResponse info;
  impl_->info(&info);
  return load_from(info);
}
StageStats StageServer::stats() {
  v1::InfoResponse info;
  impl_->info(&info);
  StageStats s;
  s.load = load_from(info);
  s.sessions = info.active_sessions();
  s.queued_steps = info.queued_steps();
  s.kv_bytes_total = static_cast<uint64_t>(std::max<int64_t>(info.kv_bytes_total(), 0));
  s.steps_cancelled = info.steps_cancelled();
  s.compute_seconds = static_cast<double>(info.compute_us()) * 1e-6;
  s.cancelled_compute_seconds = static_cast<double>(info.cancelled_compute_us()) * 1e-6;
  s.batches = impl_->batches();
  return s;
}
void StageServer::drain() { impl_->drain(); }
void StageServer::wait_drained() { impl_->wait_drained(); }
void StageServer::shutdown() { impl_->shutdown(); }

}  // namespace swarm::node
