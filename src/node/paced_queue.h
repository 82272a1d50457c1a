// The messages waiting to be written on one gRPC callback stream, each due at
// a time (the node's emulated link delay), with at most one write in flight:
// a callback stream allows one outstanding write. Not thread-safe: its owner
// guards it with its own mutex.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <utility>
#include <vector>

namespace swarm::node {

template <typename Msg>
class PacedQueue {
 public:
  using Clock = std::chrono::steady_clock;

  // Queues `m` (`bytes` on the wire), to be written no earlier than `due`.
  void push(Msg m, size_t bytes, Clock::time_point due) {
    bytes_ += bytes;
    queue_.push_back({due, bytes, std::move(m)});
  }

  enum class Next { kNothing, kWrite, kWait };
  // What the stream should do now: kWrite moves the next message into *out
  // and counts it in flight until written(); kWait sets *until to when the
  // next one is due; kNothing: a write is in flight or nothing is queued.
  Next next(Clock::time_point now, Msg* out, Clock::time_point* until) {
    if (in_flight_ || queue_.empty()) return Next::kNothing;
    if (queue_.front().due > now) {
      *until = queue_.front().due;
      return Next::kWait;
    }
    *out = std::move(queue_.front().msg);
    in_flight_bytes_ = queue_.front().bytes;
    in_flight_ = true;
    queue_.pop_front();
    return Next::kWrite;
  }
  // The write next() started has completed (well or not).
  void written() {
    in_flight_ = false;
    bytes_ -= in_flight_bytes_;
    in_flight_bytes_ = 0;
  }
  // Everything still queued (not the write in flight), oldest first.
  std::vector<Msg> take_all() {
    std::vector<Msg> out;
    for (auto& e : queue_) out.push_back(std::move(e.msg));
    queue_.clear();
    bytes_ = in_flight_bytes_;
    return out;
  }

  bool in_flight() const { return in_flight_; }
  bool empty() const { return queue_.empty(); }
  // Bytes queued or in flight.
  size_t bytes() const { return bytes_; }

 private:
  struct Entry {
    Clock::time_point due;
    size_t bytes;
    Msg msg;
  };
  std::deque<Entry> queue_;
  size_t bytes_ = 0;
  size_t in_flight_bytes_ = 0;
  bool in_flight_ = false;
};

}  // namespace swarm::node
