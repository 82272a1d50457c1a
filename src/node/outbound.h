// One push stream from this node to the next stage of a session's chain
// (doc/protocol.md, "Push"): the steps this node ran, forwarded with their
// output. It is a gRPC callback stream, so it costs no thread: a node serving
// many sessions over many hops runs on gRPC's fixed pool, its scheduler and
// one timer.
//
// Bounded: at most `max_buffered_bytes` wait to be written; a message beyond
// that, like every message once the stream has failed, goes to `on_fail`
// instead, with the reason. `on_fail` and `on_response` run on gRPC's or the
// caller's thread and must not block.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "node/paced_queue.h"
#include "node/timer.h"
#include "swarm/v1/stage.grpc.pb.h"

namespace swarm::node {

class Outbound : public grpc::ClientBidiReactor<v1::StageRequest, v1::StageResponse>,
                 public std::enable_shared_from_this<Outbound> {
 public:
  using FailFn = std::function<void(const v1::StageRequest&, const std::string& why)>;
  using ResponseFn = std::function<void(const v1::StageResponse&)>;

  // The stream opens on the first message sent. `timer` paces messages by
  // `delay` (the emulated link delay) and ends streams that do not close.
  static std::shared_ptr<Outbound> Create(std::shared_ptr<grpc::Channel> channel,
                                          std::chrono::milliseconds delay,
                                          std::shared_ptr<Timer> timer, size_t max_buffered_bytes,
                                          FailFn on_fail, ResponseFn on_response);
  ~Outbound() override;

  // Queues `r`; never blocks.
  void send(v1::StageRequest r);
  // Writes what is queued, then half-closes; a peer that has not ended the
  // stream some seconds later is cancelled. Never blocks.
  void close();
  // Ends the stream now; what is queued fails.
  void cancel();

  void OnWriteDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnWritesDoneDone(bool ok) override {}
  void OnDone(const grpc::Status& status) override;

 private:
  Outbound(std::shared_ptr<grpc::Channel> channel, std::chrono::milliseconds delay,
           std::shared_ptr<Timer> timer, size_t max_buffered_bytes, FailFn on_fail,
           ResponseFn on_response);
  // Starts the next write, or the half-close, when one is due.
  void pump();
  // Fails what is queued (the stream broke), outside the lock.
  void fail_queued(const std::string& why);
  // Whether the hold taken at the start is still to be removed (then it is
  // marked removed: the caller removes it, outside the lock).
  bool release_hold_locked();

  using Clock = std::chrono::steady_clock;
  std::unique_ptr<v1::Stage::Stub> stub_;
  const std::chrono::milliseconds delay_;
  const std::shared_ptr<Timer> timer_;
  const size_t max_buffered_bytes_;
  const FailFn on_fail_;
  const ResponseFn on_response_;
  grpc::ClientContext ctx_;
  v1::StageResponse response_;  // the read in progress

  std::mutex mu_;
  PacedQueue<v1::StageRequest> queue_;
  v1::StageRequest writing_;  // the write in flight
  std::shared_ptr<Outbound> self_;  // from the call's start to OnDone: gRPC holds a raw pointer
  bool started_ = false;
  // The call is bound to this reactor and started: until then (send() binds it
  // outside the lock) no other thread's pump() may write, half-close or remove
  // the hold, or it would use the reactor's unbound (uninitialised) stream.
  bool call_ready_ = false;
  bool holding_ = false;  // AddHold was called and RemoveHold not yet
  bool closing_ = false;
  bool writes_done_ = false;
  bool broken_ = false;
  std::string broken_why_;
  bool timer_armed_ = false;
  bool reads_over_ = false;   // the peer ended the stream
  std::string last_session_;  // of the step written last (a refusal fails it)
  uint64_t last_step_ = 0;
};

}  // namespace swarm::node
