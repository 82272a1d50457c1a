#include "node/server_stream.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <vector>

#include "node/stage_session.h"

namespace swarm::node {
namespace {

using grpc::ByteBuffer;
using grpc::StatusCode;
using v1::StageRequest;
using v1::StageResponse;

// A stream that sends this many undecodable messages in a row is ended.
constexpr int kMaxBadMessagesInARow = 16;
// Bytes a stream holds in the node: its answers waiting to be written and
// its steps' inputs waiting to run. Past kPauseReadsBytes the node stops
// reading the stream (its caller's further requests wait in gRPC's flow
// control) until they fall to half; past kMaxStreamBytes of answers the caller
// does not read them at all, and the stream is ended.
constexpr size_t kPauseReadsBytes = 16u << 20;
constexpr size_t kMaxStreamBytes = 256u << 20;

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

}  // namespace

void ServerStream::send(const StageResponse& r) {
  ByteBuffer bb = to_buffer(r);
  const size_t bytes = bb.Length();
  bool overflow = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finish_wanted_) return;
    if (queue_.bytes() + bytes > kMaxStreamBytes) {
      overflow = true;
    } else {
      queue_.push(std::move(bb), bytes, timer_->clock().now() + delay_);
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

bool ServerStream::answer_stuck() const {
  return queue_.in_flight() && timer_->clock().now() - write_started_ >= stuck_write_;
}

bool ServerStream::taking_answers() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!answer_stuck()) return true;
  stall_seen_ = true;
  return false;
}

void ServerStream::hold_input(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  input_bytes_ += bytes;
}

void ServerStream::release_input(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    input_bytes_ -= std::min(bytes, input_bytes_);
  }
  read_next();
}

void ServerStream::start(Reactor* reactor) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    reactor_ = reactor;
    read_pending_ = true;
  }
  reactor->StartRead(&reading_);
}

void ServerStream::on_read_done(bool ok) {
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
      handler_->handle(req, id_, shared_from_this());
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

void ServerStream::on_write_done(bool ok) {
  bool stalled = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.written();
    std::swap(stalled, stall_seen_);
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
  if (stalled) handler_->answers_flowing();
  read_next();
  pump();
}

void ServerStream::on_cancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    broken_ = true;
    queue_.take_all();
  }
  end(grpc::Status(StatusCode::CANCELLED, "cancelled"));
}

void ServerStream::on_done() {
  std::lock_guard<std::mutex> lock(mu_);
  reactor_ = nullptr;
}

void ServerStream::read_next() {
  Reactor* r = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (read_pending_ || reads_over_ || finish_wanted_ || !reactor_) return;
    const size_t held = queue_.bytes() + input_bytes_;
    if (held > (reads_paused_ ? kPauseReadsBytes / 2 : kPauseReadsBytes)) {
      reads_paused_ = true;
      return;
    }
    if (answer_stuck()) {
      if (!reads_paused_)
        spdlog::info("stream {}: its caller has not taken an answer for {} s: reads pause", id_,
                     std::chrono::duration<double>(stuck_write_).count());
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

void ServerStream::end(const grpc::Status& status) {
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!finish_wanted_) {
      first = finish_wanted_ = true;
      end_status_ = status;
    }
  }
  if (first) handler_->close_sessions_of_stream(id_);
  pump();
}

void ServerStream::pump() {
  Reactor* r = nullptr;
  bool write = false, finish = false, arm = false;
  Clock::time_point until;
  grpc::Status status;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!reactor_ || finished_) return;
    switch (broken_ ? PacedQueue<ByteBuffer>::Next::kNothing
                    : queue_.next(timer_->clock().now(), &writing_, &until)) {
      case PacedQueue<ByteBuffer>::Next::kWrite:
        write = true;
        write_started_ = timer_->clock().now();
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

}  // namespace swarm::node
