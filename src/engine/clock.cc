#include "engine/clock.h"

#include <algorithm>
#include <thread>

namespace swarm {

Clock& Clock::real() {
  // Never destroyed: threads that outlive static destruction may still ask.
  static RealClock* const clock = new RealClock();
  return *clock;
}

void RealClock::wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                           time_point deadline) {
  if (deadline == kNever)
    cv.wait(lock);
  else
    cv.wait_until(lock, deadline);
}

Clock::time_point FakeClock::now() const {
  std::lock_guard<std::mutex> g(mu_);
  return now_;
}

void FakeClock::wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                           time_point deadline) {
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (now_ >= deadline) return;
    id = next_id_++;
    waiting_.push_back({id, lock.mutex(), &cv, deadline});
    changed_.notify_all();
  }
  // The caller's lock is held from the check above until wait() releases it,
  // and advance() notifies only while holding it: no wake-up falls between.
  cv.wait(lock);
  std::lock_guard<std::mutex> g(mu_);
  waiting_.remove_if([&](const Waiter& w) { return w.id == id; });
}

void FakeClock::advance(duration d) { advance_to(now() + std::max(d, duration::zero())); }

void FakeClock::advance_to(time_point t) {
  for (;;) {
    std::unique_lock<std::mutex> g(mu_);
    now_ = std::max(now_, t);
    auto due = std::find_if(waiting_.begin(), waiting_.end(),
                            [&](const Waiter& w) { return w.deadline <= now_; });
    if (due == waiting_.end()) return;
    // A waiter between its check and its wait holds its own mutex (and may be
    // about to take ours): let it get there, then notify under its mutex.
    if (!due->mu->try_lock()) {
      g.unlock();
      std::this_thread::yield();
      continue;
    }
    due->cv->notify_all();
    due->mu->unlock();
    waiting_.erase(due);
  }
}

size_t FakeClock::waiters() const {
  std::lock_guard<std::mutex> g(mu_);
  return waiting_.size();
}

void FakeClock::wait_for_waiters(size_t n) const {
  std::unique_lock<std::mutex> g(mu_);
  changed_.wait(g, [&] { return waiting_.size() >= n; });
}

}  // namespace swarm
