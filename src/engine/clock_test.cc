#include "engine/clock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace swarm {
namespace {

using std::chrono::seconds;

TEST(FakeClockTest, MovesOnlyWhenAdvanced) {
  FakeClock clock;
  const Clock::time_point t0 = clock.now();
  EXPECT_EQ(clock.now(), t0);
  clock.advance(seconds(3));
  EXPECT_EQ(clock.now(), t0 + seconds(3));
  clock.advance(-seconds(1));  // time never goes back
  EXPECT_EQ(clock.now(), t0 + seconds(3));
  clock.advance_to(t0);
  EXPECT_EQ(clock.now(), t0 + seconds(3));
}

// A thread waiting for a deadline wakes when the clock reaches it, not
// before: after an advance short of it, it is still waiting on the clock.
TEST(FakeClockTest, WakesAWaiterExactlyWhenItsDeadlineComes) {
  FakeClock clock;
  const Clock::time_point deadline = clock.now() + seconds(10);
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> returned{false};
  Clock::time_point woke_at;
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    EXPECT_FALSE(clock.wait_until(lock, cv, deadline, [] { return false; }));
    woke_at = clock.now();
    returned = true;
  });
  clock.wait_for_waiters(1);
  clock.advance(seconds(9));
  EXPECT_EQ(clock.waiters(), 1u);  // not due: still registered, not woken
  EXPECT_FALSE(returned);
  clock.advance(seconds(1));
  waiter.join();
  EXPECT_TRUE(returned);
  EXPECT_EQ(woke_at, deadline);
  EXPECT_EQ(clock.waiters(), 0u);
}

// A notify of the waiter's own condition variable ends its wait before the
// deadline, as with a real clock.
TEST(FakeClockTest, ANotifyWakesAWaiterBeforeItsDeadline) {
  FakeClock clock;
  std::mutex mu;
  std::condition_variable cv;
  bool go = false;
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    EXPECT_TRUE(clock.wait_until(lock, cv, Clock::kNever, [&] { return go; }));
  });
  clock.wait_for_waiters(1);
  {
    std::lock_guard<std::mutex> lock(mu);
    go = true;
  }
  cv.notify_all();
  waiter.join();
}

// Many advances racing with a thread that waits again and again: no wake-up is
// lost (the thread sees every deadline pass, or the test hangs).
TEST(FakeClockTest, NoWakeUpIsLostUnderRacingAdvances) {
  FakeClock clock;
  std::mutex mu;
  std::condition_variable cv;
  constexpr int kRounds = 2000;
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    for (int i = 1; i <= kRounds; ++i) {
      const Clock::time_point deadline = clock.now() + seconds(1);
      clock.wait_until(lock, cv, deadline, [] { return false; });
    }
  });
  for (int i = 0; i < kRounds; ++i) {
    clock.wait_for_waiters(1);
    clock.advance(seconds(1));
  }
  waiter.join();
}

TEST(RealClockTest, APastDeadlineReturnsAtOnceAndANotifyWakes) {
  Clock& clock = Clock::real();
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_FALSE(clock.wait_until(lock, cv, clock.now() - seconds(1), [] { return false; }));
  bool go = false;
  std::thread notifier([&] {
    std::lock_guard<std::mutex> g(mu);
    go = true;
    cv.notify_all();
  });
  EXPECT_TRUE(clock.wait_until(lock, cv, Clock::kNever, [&] { return go; }));
  lock.unlock();
  notifier.join();
}

}  // namespace
}  // namespace swarm
