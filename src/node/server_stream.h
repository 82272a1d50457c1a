// The streams of the Stage service's Session method: what a caller opened to
// this node, read and written on gRPC's callback API (no thread per stream),
// paced by the emulated link delay on the node's Timer, and bounded against a
// caller that does not read its answers (doc/protocol.md, "Limits").
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "node/paced_queue.h"
#include "node/timer.h"
#include "swarm/v1/stage.pb.h"

namespace swarm::node {

class ServerStream;

// What the streams hand their requests to: the stage server.
class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  // One request read from stream `stream_id`, whose answers go to `writer`.
  virtual void handle(v1::StageRequest& req, uint64_t stream_id,
                      const std::shared_ptr<ServerStream>& writer) = 0;
  // The stream ended: the sessions it owns close.
  virtual void close_sessions_of_stream(uint64_t stream_id) = 0;
  // A stream that was found not taking answers (ServerStream::taking_answers)
  // had one written: its sessions' steps may run again.
  virtual void answers_flowing() = 0;
  // A stream's reactor began or ended (shutdown waits for every one to end).
  virtual void stream_started() = 0;
  virtual void stream_ended() = 0;
};

// One Session stream a caller opened to this node (a gateway's owner stream,
// or a previous stage pushing to this one). It reads requests and hands them
// to the server, and writes answers in order, each `delay` after it was sent
// (the emulated link), one write at a time, on gRPC's callback threads: no
// thread of its own.
//
// Bounded: past kPauseReadsBytes of unwritten answers, or while an answer's
// write has waited on the caller's flow control for `stuck_write`, it stops
// reading, and in the second case its steps already read wait too (a caller
// that does not read its answers gets no more work done); past
// kMaxStreamBytes it ends the stream. This object outlives its reactor as long
// as a session names it as owner; what is sent after the stream ended is
// dropped.
class ServerStream : public std::enable_shared_from_this<ServerStream> {
 public:
  using Reactor = grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>;

  // `stuck_write`: how long an answer may wait on the caller's flow control
  // before the caller counts as not reading.
  ServerStream(StreamHandler* handler, uint64_t id, std::chrono::milliseconds delay,
               std::chrono::milliseconds stuck_write, std::shared_ptr<Timer> timer,
               std::string caller, std::string connection)
      : handler_(handler),
        id_(id),
        delay_(delay),
        stuck_write_(stuck_write),
        timer_(std::move(timer)),
        caller_(std::move(caller)),
        connection_(std::move(connection)) {}

  // Who opened the stream: net::CallerIdentity::quota_key().
  const std::string& caller() const { return caller_; }
  // The connection it came over (gRPC's peer string, address and port): one
  // client's channel, such as a gateway's, whose sessions follow each other.
  const std::string& connection() const { return connection_; }

  // Queues an answer; never blocks.
  void send(const v1::StageResponse& r);

  // Whether the caller takes this stream's answers: false while one has
  // waited on its flow control for `stuck_write` or more. The scheduler runs
  // no step of such a stream (a step run for a caller that does not read
  // is compute taken from the others); once an answer goes through, the
  // stream tells its handler (StreamHandler::answers_flowing).
  bool taking_answers();

  // Bytes of a request read from this stream that wait in the node, until
  // release_input.
  void hold_input(size_t bytes);
  void release_input(size_t bytes);

  // Called by the reactor.
  void start(Reactor* reactor);
  void on_read_done(bool ok);
  void on_write_done(bool ok);
  void on_cancel();
  void on_done();

 private:
  // Starts the next read unless one is pending, the stream is ending, or
  // what the stream holds in the node is over the limit; a paused stream
  // resumes once that falls to half (a write done, a step run).
  void read_next();
  // Whether the write in flight has waited `stuck_write` or more. Under mu_.
  bool answer_stuck() const;
  // The stream ends with `status` once what is queued is written (at once
  // when it is broken); the sessions it owns close now. A later call keeps
  // the first status but still pumps: a stream that ended itself and then
  // broke (its caller cancelled while a write was in flight) finishes only
  // here, and an unfinished stream holds the node's shutdown forever.
  void end(const grpc::Status& status);
  void pump();

  StreamHandler* const handler_;
  const uint64_t id_;
  const std::chrono::milliseconds delay_;
  const std::chrono::milliseconds stuck_write_;
  const std::shared_ptr<Timer> timer_;
  const std::string caller_;
  const std::string connection_;
  grpc::ByteBuffer reading_;  // touched only by the read in progress and its reaction
  int bad_in_a_row_ = 0;

  std::mutex mu_;
  Reactor* reactor_ = nullptr;  // null before start and after OnDone
  PacedQueue<grpc::ByteBuffer> queue_;
  grpc::ByteBuffer writing_;
  Clock::time_point write_started_;  // of the write in flight
  size_t input_bytes_ = 0;  // see hold_input
  bool read_pending_ = false;
  bool reads_paused_ = false;
  bool stall_seen_ = false;     // taking_answers said no since the last write done
  bool reads_over_ = false;     // the caller half-closed
  bool read_starting_ = false;  // a StartRead call is under way
  bool timer_armed_ = false;
  bool broken_ = false;         // a write failed or the call was cancelled
  bool finish_wanted_ = false;  // end() was called
  bool finished_ = false;       // Finish was called
  grpc::Status end_status_;
};

// gRPC's side of a ServerStream: gRPC owns it from Session() to OnDone.
class SessionReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  SessionReactor(StreamHandler* handler, std::shared_ptr<ServerStream> stream)
      : handler_(handler), stream_(std::move(stream)) {
    handler_->stream_started();
    stream_->start(this);
  }
  void OnReadDone(bool ok) override { stream_->on_read_done(ok); }
  void OnWriteDone(bool ok) override { stream_->on_write_done(ok); }
  void OnCancel() override { stream_->on_cancel(); }
  void OnDone() override {
    stream_->on_done();
    StreamHandler* handler = handler_;
    delete this;
    handler->stream_ended();
  }

 private:
  StreamHandler* const handler_;
  const std::shared_ptr<ServerStream> stream_;
};

// A Session stream refused before it began: it ends with `status`.
class RefusedStream final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit RefusedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace swarm::node
