#include "engine/clock.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
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

Clock::time_point SimulatedClock::now() const {
  std::lock_guard<std::mutex> g(mu_);
  return now_;
}

void SimulatedClock::schedule(time_point at, std::function<void()> work) {
  std::lock_guard<std::mutex> g(mu_);
  agenda_.emplace(std::make_pair(std::max(at, now_), next_order_++), std::move(work));
}

size_t SimulatedClock::scheduled() const {
  std::lock_guard<std::mutex> g(mu_);
  return agenda_.size();
}

bool SimulatedClock::pop_due(time_point deadline, std::function<void()>* work) {
  std::lock_guard<std::mutex> g(mu_);
  if (agenda_.empty() || agenda_.begin()->first.first > deadline) {
    if (deadline == kNever) {
      std::fprintf(stderr, "SimulatedClock: a wait without deadline, and nothing scheduled\n");
      std::abort();
    }
    now_ = std::max(now_, deadline);
    return false;
  }
  auto next = agenda_.begin();
  now_ = std::max(now_, next->first.first);
  *work = std::move(next->second);
  agenda_.erase(next);
  return true;
}

void SimulatedClock::wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable&,
                                time_point deadline) {
  std::function<void()> work;
  if (!pop_due(deadline, &work)) return;
  // The work may notify, or take, what the waiter waits under.
  lock.unlock();
  work();
  lock.lock();
}

void SimulatedClock::run_until(time_point t) {
  std::function<void()> work;
  while (pop_due(t, &work)) work();
}

}  // namespace swarm
