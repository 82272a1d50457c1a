#include "node/timer.h"

#include <gtest/gtest.h>

#include <mutex>
#include <stdexcept>
#include <vector>

namespace swarm::node {
namespace {

using std::chrono::milliseconds;

// What the callbacks ran, in order, for the test thread to wait on.
struct Log {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> ran;
  void add(int x) {
    std::lock_guard<std::mutex> lock(mu);
    ran.push_back(x);
    cv.notify_all();
  }
  std::vector<int> wait_for(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return ran.size() >= n; });
    return ran;
  }
  std::vector<int> now() {
    std::lock_guard<std::mutex> lock(mu);
    return ran;
  }
};

// Callbacks run when the clock reaches their time, in due order, and not
// before: the fake clock is advanced past each due time in turn.
TEST(TimerTest, RunsCallbacksWhenTheClockReachesThemInDueOrder) {
  FakeClock clock;
  Log log;
  Timer timer(clock);
  const auto t0 = clock.now();
  timer.at(t0 + milliseconds(30), [&] { log.add(30); });
  timer.at(t0 + milliseconds(10), [&] { log.add(10); });
  timer.at(t0 + milliseconds(20), [&] { log.add(20); });
  clock.wait_for_waiters(1);
  clock.advance(milliseconds(9));
  clock.wait_for_waiters(1);  // looked, found nothing due
  EXPECT_TRUE(log.now().empty());
  clock.advance(milliseconds(1));
  EXPECT_EQ(log.wait_for(1), std::vector<int>({10}));
  clock.wait_for_waiters(1);
  EXPECT_EQ(log.now(), std::vector<int>({10}));
  clock.advance(milliseconds(100));
  EXPECT_EQ(log.wait_for(3), std::vector<int>({10, 20, 30}));
}

// A callback due in the past runs at once, without the clock moving, and one
// that throws does not stop the timer.
TEST(TimerTest, RunsPastDueCallbacksAtOnceAndSurvivesAThrow) {
  FakeClock clock;
  Log log;
  Timer timer(clock);
  timer.at(clock.now() - milliseconds(5), [] { throw std::runtime_error("boom"); });
  timer.at(clock.now(), [&] { log.add(1); });
  EXPECT_EQ(log.wait_for(1), std::vector<int>({1}));
}

// Callbacks not yet due when the timer is destroyed never run.
TEST(TimerTest, DropsCallbacksNotDueAtDestruction) {
  FakeClock clock;
  Log log;
  {
    Timer timer(clock);
    timer.at(clock.now() + milliseconds(1), [&] { log.add(1); });
    clock.wait_for_waiters(1);
  }
  clock.advance(milliseconds(10));
  EXPECT_TRUE(log.now().empty());
}

}  // namespace
}  // namespace swarm::node
