// The one writer of a gRPC stream. gRPC's sync streams allow one Write at a
// time (concurrently with one Read), and a Write blocks while the peer is slow,
// so nobody but this writer's own thread ever writes: senders queue a message
// and return at once.
//
// Every message leaves `delay` after it was queued (the node's --link-delay-ms,
// emulating a WAN link), in the order queued. Once a write fails the stream is
// broken: that message and every later one go to `on_fail` instead (which must
// not block; it typically queues an error for someone else).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

namespace swarm::node {

template <typename Msg>
class DelayedWriter {
 public:
  using Clock = std::chrono::steady_clock;
  using WriteFn = std::function<bool(const Msg&)>;  // false: the stream is broken
  using FailFn = std::function<void(const Msg&)>;

  DelayedWriter(std::chrono::milliseconds delay, WriteFn write, FailFn on_fail = {})
      : delay_(delay),
        write_(std::move(write)),
        on_fail_(std::move(on_fail)),
        thread_([this] { loop(); }) {}
  ~DelayedWriter() { close(); }
  DelayedWriter(const DelayedWriter&) = delete;
  DelayedWriter& operator=(const DelayedWriter&) = delete;

  // Queues `m`; never blocks on the network. After close() the message is
  // dropped; after a failed write it goes to on_fail, on the caller's thread.
  void send(Msg m) {
    std::unique_lock<std::mutex> lock(mu_);
    if (closing_) return;
    if (broken_) {
      lock.unlock();
      if (on_fail_) on_fail_(m);
      return;
    }
    queue_.emplace_back(Clock::now() + delay_, std::move(m));
    cv_.notify_one();
  }

  // Writes what is queued (each at its time), then stops the thread. Idempotent.
  void close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

  bool broken() const {
    std::lock_guard<std::mutex> lock(mu_);
    return broken_;
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closing and flushed
      const auto due = queue_.front().first;
      if (Clock::now() < due) {
        cv_.wait_until(lock, due);  // a later message is never due earlier
        continue;
      }
      Msg m = std::move(queue_.front().second);
      queue_.pop_front();
      if (broken_) {
        lock.unlock();
        if (on_fail_) on_fail_(m);
        lock.lock();
        continue;
      }
      lock.unlock();
      const bool ok = write_(m);
      if (!ok && on_fail_) on_fail_(m);
      lock.lock();
      if (!ok) broken_ = true;
    }
  }

  const std::chrono::milliseconds delay_;
  WriteFn write_;
  FailFn on_fail_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Clock::time_point, Msg>> queue_;
  bool closing_ = false;
  bool broken_ = false;
  std::thread thread_;  // last: starts after every other member exists
};

}  // namespace swarm::node
