// A skill provider's admission (api/skill_proxy.h): at most `capacity`
// requests forwarded at once, up to `max_queue` more waiting in the order they
// came, each for at most its timeout.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>

namespace swarm {

// At most `capacity` holders at once; up to `max_queue` more wait, served in
// the order they came.
class Admission {
 public:
  enum class Outcome { kAdmitted, kQueueFull, kTimedOut, kStopping };

  Admission(int capacity, int max_queue) : capacity_(capacity), max_queue_(max_queue) {}

  Outcome acquire(std::chrono::steady_clock::duration timeout) {
    std::unique_lock<std::mutex> lk(mu_);
    if (stopping_) return Outcome::kStopping;
    if (active_ < capacity_ && waiting_.empty()) {
      ++active_;
      return Outcome::kAdmitted;
    }
    if (static_cast<int>(waiting_.size()) >= max_queue_) return Outcome::kQueueFull;
    const uint64_t ticket = next_ticket_++;
    waiting_.push_back(ticket);
    const bool got = cv_.wait_for(lk, timeout, [&] {
      return stopping_ || (active_ < capacity_ && waiting_.front() == ticket);
    });
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), ticket));
    cv_.notify_all();  // the next in line may fit too, or be first now
    if (stopping_) return Outcome::kStopping;
    if (!got) return Outcome::kTimedOut;
    ++active_;
    return Outcome::kAdmitted;
  }

  void release() {
    std::lock_guard<std::mutex> lk(mu_);
    --active_;
    cv_.notify_all();
  }

  void stop() {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
    cv_.notify_all();
  }

  void counts(int* active, int* queued) const {
    std::lock_guard<std::mutex> lk(mu_);
    *active = active_;
    *queued = static_cast<int>(waiting_.size());
  }

 private:
  const int capacity_, max_queue_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int active_ = 0;
  std::deque<uint64_t> waiting_;
  uint64_t next_ticket_ = 0;
  bool stopping_ = false;
};

}  // namespace swarm
