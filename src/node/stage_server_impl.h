// The stage server's insides, shared by the files that implement it:
// stage_server.cc (the gRPC service, sessions, the scheduler thread) and
// batch_runner.cc (running a batch through the layers, the head and the
// sampler, and answering or pushing on its steps). Not for other code.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/clock.h"
#include "engine/grammar_vocab.h"
#include "engine/model.h"
#include "engine/thread_pool.h"
#include "net/caller.h"
#include "net/channel_cache.h"
#include "net/connection_acceptor.h"
#include "net/identity.h"
#include "node/batch_tally.h"
#include "node/caller_quota.h"
#include "node/cheat.h"
#include "node/idle_reaper.h"
#include "node/server_stream.h"
#include "node/stage_server.h"
#include "node/stage_session.h"
#include "node/step_scheduler.h"
#include "node/timer.h"
#include "swarm/v1/stage.pb.h"

namespace swarm::node {

class StageServer::Impl final : public StreamHandler {
 public:
  explicit Impl(const NodeOptions& o);
  ~Impl() override;  // shutdown()

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

  // StreamHandler: what the Session streams hand over (server_stream.h).
  void handle(v1::StageRequest& req, uint64_t stream_id,
              const std::shared_ptr<ServerStream>& writer) override;
  void close_sessions_of_stream(uint64_t stream_id) override;
  void answers_flowing() override;
  void stream_started() override;
  void stream_ended() override;

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
  // The batch runner (batch_runner.cc): runs one batch and returns the chunked
  // steps that have more to run, for the scheduler to queue again. Exceptions
  // (out of memory) fail the batch's steps, never the node.
  std::vector<WorkItem> run_batch_safely(std::vector<WorkItem>& batch);
  std::vector<WorkItem> run_batch(std::vector<WorkItem>& batch);
  void push(const std::shared_ptr<Session>& s, const v1::Hop& hop, v1::StageRequest req);
  // The signed commitment (trust/commitment.h) to a finished step; `result`:
  // the last stage's answer, whose tokens it commits to too.
  v1::Commitment commitment(const WorkItem& w, const v1::StepResult* result) const;
  // Closes the sessions over the idle limit at `now` (the IdleReaper's sweep).
  void reap_idle(Clock::time_point now);
  // The model's token bytes, read from its file the first time a session
  // brings a grammar (the node does not otherwise need its tokenizer).
  Result<std::shared_ptr<const GrammarVocab>> grammar_vocab();

  NodeOptions opt_;
  Clock& clock_ = opt_.clock ? *opt_.clock : Clock::real();
  std::mutex vocab_mu_;
  std::shared_ptr<const GrammarVocab> vocab_;  // guarded by vocab_mu_
  int context_ = 0;  // positions one session may hold (OpenSession.max_length)
  std::unique_ptr<Model> model_;
  std::unique_ptr<ThreadPool> pool_;
  net::ChannelCache channels_;
  std::shared_ptr<Timer> timer_ = std::make_shared<Timer>(clock_);
  std::string public_key_;                 // raw 32 bytes of --identity's key; empty: plaintext
  std::optional<net::Identity> identity_;  // signs commitments; none: plaintext
  std::unique_ptr<Cheater> cheater_;       // hidden --cheat flags only
  net::CallerPolicy caller_policy_;        // who may use the Session stream
  std::unique_ptr<CallerQuota> quota_;     // made in start()
  class Service;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  // Accepts a plaintext node's connections (null with TLS: gRPC accepts).
  std::unique_ptr<net::ConnectionAcceptor> acceptor_;

  std::mutex mu_;  // guards sessions_, kv_used_, draining_, queue_, stopping_, throughput
  std::condition_variable queue_cv_, drained_cv_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  uint64_t kv_used_ = 0;
  bool draining_ = false;
  bool stopping_ = false;
  std::deque<WorkItem> queue_;
  StepScheduler scheduler_state_;  // what runs next, and who had its share
  double layer_tokens_per_s_ = 0;
  int64_t steps_cancelled_ = 0;       // dropped by a Cancel
  int64_t compute_us_ = 0;            // all batches, slowdown included
  int64_t cancelled_compute_us_ = 0;  // of which on steps a Cancel covered after they ran
  BatchTally batches_;                // counted by run_batch_safely
  std::atomic<uint64_t> next_stream_id_{1};
  std::thread scheduler_;
  std::unique_ptr<IdleReaper> reaper_;  // made in start()
  std::mutex streams_mu_;
  std::condition_variable streams_cv_;
  int live_streams_ = 0;  // reactors gRPC has not yet called OnDone on
};

}  // namespace swarm::node
