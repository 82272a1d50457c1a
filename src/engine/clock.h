// The time a component reads and waits on, as a seam (LevelDB's Env): the
// node's timer, reaper, scheduler and rebalancer take a Clock, production gives
// them the real one (steady_clock), and tests give them a FakeClock that moves
// only when told, so what they decide at a given time is tested without
// waiting for it and without luck.
//
// Waits have condition-variable semantics: `wait_until` returns when the
// deadline came on this clock, when `cv` is notified, or spuriously; callers
// re-check what they wait for.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>

namespace swarm {

class Clock {
 public:
  // Every clock counts on steady_clock's scale, so time points of the real
  // clock and of a fake one have the same type (a fake one starts at its epoch).
  using duration = std::chrono::steady_clock::duration;
  using time_point = std::chrono::steady_clock::time_point;
  // A deadline that never comes: wait until notified.
  static constexpr time_point kNever = time_point::max();

  virtual ~Clock() = default;

  virtual time_point now() const = 0;
  // With `lock` held on the mutex that guards what the caller waits for (and
  // under which `cv` is notified): releases it while waiting, as
  // std::condition_variable::wait_until does, until `deadline` on this clock or
  // a notify of `cv`.
  virtual void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                          time_point deadline) = 0;

  // Waits until `done()` or `deadline`; returns `done()`.
  template <class Predicate>
  bool wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                  time_point deadline, Predicate done) {
    while (!done()) {
      if (now() >= deadline) return done();
      wait_until(lock, cv, deadline);
    }
    return true;
  }

  // The process's real clock (steady_clock); lives as long as the process.
  static Clock& real();
};

class RealClock final : public Clock {
 public:
  using Clock::wait_until;
  time_point now() const override { return std::chrono::steady_clock::now(); }
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                  time_point deadline) override;
};

// A clock for tests: it starts at its epoch plus `start` and moves only by
// advance(), which wakes every waiter whose deadline came. A test that wants
// to know a thread finished reacting to an advance waits, with
// wait_for_waiters, until the thread is back waiting on the clock.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(duration start = std::chrono::hours(1)) : now_(time_point() + start) {}
  FakeClock(const FakeClock&) = delete;
  FakeClock& operator=(const FakeClock&) = delete;
  using Clock::wait_until;

  time_point now() const override;
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                  time_point deadline) override;

  // Moves time forward by `d` (>= 0) and wakes the waiters now due. Returns
  // once each of them was notified (it may not have run yet). Call it without
  // holding a mutex a waiter waits under: it notifies under that mutex.
  void advance(duration d);
  void advance_to(time_point t);
  // Threads waiting on this clock for a deadline not yet come (kNever included).
  size_t waiters() const;
  // Blocks until at least `n` threads wait on this clock.
  void wait_for_waiters(size_t n) const;

 private:
  struct Waiter {
    uint64_t id;
    std::mutex* mu;
    std::condition_variable* cv;
    time_point deadline;
  };
  mutable std::mutex mu_;  // taken after a waiter's own mutex, never before
  mutable std::condition_variable changed_;
  time_point now_;
  std::list<Waiter> waiting_;
  uint64_t next_id_ = 0;
};

// A discrete-event clock for a simulation driven by one thread (a test, or a
// simulated chain of stages): time jumps. Work is scheduled at points in time;
// when the thread waits, the next piece of work due no later than its deadline
// runs on that thread (with the waiter's lock released), and time moves to
// when it was due; with none due, time jumps to the deadline. So a session
// that waits 100 simulated ms for a stage waits no real time at all, and the
// same inputs give the same run, event for event.
//
// Only one thread may wait on it; work must not wait on it.
class SimulatedClock final : public Clock {
 public:
  explicit SimulatedClock(duration start = std::chrono::hours(1)) : now_(time_point() + start) {}
  SimulatedClock(const SimulatedClock&) = delete;
  SimulatedClock& operator=(const SimulatedClock&) = delete;
  using Clock::wait_until;

  time_point now() const override;
  // Runs the next work due by `deadline` (or jumps to it). Waiting forever with
  // nothing scheduled can never end: that aborts, naming the clock.
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                  time_point deadline) override;

  // Runs `work` at `at` (now, if `at` has passed); work due at the same time
  // runs in the order scheduled.
  void schedule(time_point at, std::function<void()> work);
  void schedule_after(duration d, std::function<void()> work) { schedule(now() + d, std::move(work)); }
  // From the driving thread, when it does not wait: runs everything due by `t`
  // and moves time to `t`.
  void run_until(time_point t);
  size_t scheduled() const;

 private:
  // Pops the next work due by `deadline` and moves time to it; false (time
  // moved to `deadline`) when there is none.
  bool pop_due(time_point deadline, std::function<void()>* work);

  mutable std::mutex mu_;
  time_point now_;
  // By (due, order scheduled).
  std::map<std::pair<time_point, uint64_t>, std::function<void()>> agenda_;
  uint64_t next_order_ = 0;
};

}  // namespace swarm
