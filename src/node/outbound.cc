#include "node/outbound.h"

#include <optional>
#include <utility>
#include <vector>

namespace swarm::node {
namespace {

// How long a closed stream may take to end before it is cancelled: a hung
// next hop must not keep the stream (and its memory) forever.
constexpr auto kCloseGrace = std::chrono::seconds(10);

}  // namespace

std::shared_ptr<Outbound> Outbound::Create(std::shared_ptr<grpc::Channel> channel,
                                           std::chrono::milliseconds delay,
                                           std::shared_ptr<Timer> timer,
                                           size_t max_buffered_bytes, FailFn on_fail,
                                           ResponseFn on_response) {
  return std::shared_ptr<Outbound>(new Outbound(std::move(channel), delay, std::move(timer),
                                                max_buffered_bytes, std::move(on_fail),
                                                std::move(on_response)));
}

Outbound::Outbound(std::shared_ptr<grpc::Channel> channel, std::chrono::milliseconds delay,
                   std::shared_ptr<Timer> timer, size_t max_buffered_bytes, FailFn on_fail,
                   ResponseFn on_response)
    : stub_(v1::Stage::NewStub(std::move(channel))),
      delay_(delay),
      timer_(std::move(timer)),
      max_buffered_bytes_(max_buffered_bytes),
      on_fail_(std::move(on_fail)),
      on_response_(std::move(on_response)) {}

Outbound::~Outbound() = default;

void Outbound::send(v1::StageRequest r) {
  std::string why;
  bool start = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t bytes = r.ByteSizeLong();
    if (broken_) {
      why = broken_why_;
    } else if (closing_) {
      why = "the stream to it is closing";
    } else if (queue_.bytes() + bytes > max_buffered_bytes_) {
      why = "it does not keep up: " + std::to_string(queue_.bytes()) +
            " bytes already wait to be sent to it (limit " + std::to_string(max_buffered_bytes_) +
            ")";
    } else {
      queue_.push(std::move(r), bytes, timer_->clock().now() + delay_);
      if (!started_) {
        started_ = start = holding_ = true;
        self_ = shared_from_this();
      }
    }
  }
  if (!why.empty()) {
    if (on_fail_) on_fail_(r, why);
    return;
  }
  if (start) {
    stub_->async()->Session(&ctx_, this);
    // Writes start from other threads than gRPC's reactions: the hold keeps
    // the call from completing (OnDone) while one may still start.
    AddHold();
    StartRead(&response_);
    StartCall();
    std::lock_guard<std::mutex> lock(mu_);
    call_ready_ = true;
  }
  pump();
}

void Outbound::pump() {
  bool write = false, writes_done = false, arm = false, release = false;
  Clock::time_point until;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!call_ready_ || writes_done_) return;
    if (broken_ || reads_over_) {
      // No write will start again: let the call complete.
      release = !queue_.in_flight() && release_hold_locked();
    } else {
      switch (queue_.next(timer_->clock().now(), &writing_, &until)) {
        case PacedQueue<v1::StageRequest>::Next::kWrite:
          write = true;
          if (writing_.kind_case() == v1::StageRequest::kStep) {
            last_session_ = writing_.step().session_id();
            last_step_ = writing_.step().step_id();
          }
          break;
        case PacedQueue<v1::StageRequest>::Next::kWait:
          arm = !timer_armed_;
          timer_armed_ = true;
          break;
        case PacedQueue<v1::StageRequest>::Next::kNothing:
          if (closing_ && queue_.empty() && !queue_.in_flight()) {
            writes_done = writes_done_ = true;
            release = release_hold_locked();
          }
          break;
      }
    }
  }
  if (write) StartWrite(&writing_);
  if (writes_done) StartWritesDone();
  if (release) RemoveHold();
  if (arm) {
    std::weak_ptr<Outbound> weak = weak_from_this();
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

void Outbound::close() {
  bool started;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) return;
    closing_ = true;
    started = started_;
  }
  if (!started) return;
  pump();
  std::weak_ptr<Outbound> weak = weak_from_this();
  timer_->at(timer_->clock().now() + delay_ + kCloseGrace, [weak] {
    if (auto self = weak.lock()) self->ctx_.TryCancel();
  });
}

void Outbound::cancel() {
  bool started;
  {
    std::lock_guard<std::mutex> lock(mu_);
    started = started_;
    closing_ = true;
    if (!broken_) {
      broken_ = true;
      broken_why_ = "the stream to it was cancelled";
    }
  }
  if (!started) return;
  ctx_.TryCancel();
  fail_queued(broken_why_);
  pump();  // releases the hold once no write is in flight
}

void Outbound::OnWriteDone(bool ok) {
  if (!ok) {
    v1::StageRequest failed;
    std::string why;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.written();
      failed = std::move(writing_);
      if (!broken_) {
        broken_ = true;
        broken_why_ = "it is unreachable";
      }
      why = broken_why_;  // a cancel may have come first
    }
    if (on_fail_) on_fail_(failed, why);
    fail_queued(why);
    pump();  // releases the hold
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.written();
  }
  pump();
}

void Outbound::OnReadDone(bool ok) {
  if (!ok) {
    // The next stage ended the stream (it refused this node as a caller, or
    // went away): no write can succeed now, so let the call complete and
    // OnDone learn why.
    {
      std::lock_guard<std::mutex> lock(mu_);
      reads_over_ = true;
    }
    pump();
    return;
  }
  if (on_response_) on_response_(response_);
  StartRead(&response_);
}

void Outbound::OnDone(const grpc::Status& status) {
  // The last reaction: nothing of gRPC refers to this object after it, so the
  // reference gRPC held is dropped as the function ends.
  std::shared_ptr<Outbound> keep;
  // The next stage refused this node as a caller (not on its --allow list, no
  // identity): the step written last fails with that answer instead of
  // waiting for a result that will not come.
  std::optional<v1::StageResponse> refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    keep = std::move(self_);
    if ((status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
         status.error_code() == grpc::StatusCode::UNAUTHENTICATED) &&
        !last_session_.empty()) {
      refused.emplace();
      v1::Error* e = refused->mutable_error();
      e->set_session_id(last_session_);
      e->set_step_id(last_step_);
      e->set_code(status.error_code());
      e->set_message(status.error_message());
    }
    if (!broken_) {
      broken_ = true;
      broken_why_ = status.ok() ? "its stream ended" : "it is unreachable (" + status.error_message() + ")";
    }
  }
  if (refused && on_response_) on_response_(*refused);
  fail_queued(broken_why_);
}

bool Outbound::release_hold_locked() {
  if (!holding_) return false;
  holding_ = false;
  return true;
}

void Outbound::fail_queued(const std::string& why) {
  std::vector<v1::StageRequest> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left = queue_.take_all();
  }
  if (on_fail_)
    for (const v1::StageRequest& r : left) on_fail_(r, why);
}

}  // namespace swarm::node
