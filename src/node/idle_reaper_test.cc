#include "node/idle_reaper.h"

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace swarm::node {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(IdleReaperTest, IsIdleOnlyPastTheLimit) {
  const Clock::time_point t0{seconds(100)};
  EXPECT_FALSE(is_idle(t0, t0 + seconds(10), seconds(10)));
  EXPECT_TRUE(is_idle(t0, t0 + seconds(10) + milliseconds(1), seconds(10)));
}

TEST(IdleReaperTest, LooksATenthOfTheLimitApartWithinBounds) {
  EXPECT_EQ(reaper_period(seconds(10)), seconds(1));
  EXPECT_EQ(reaper_period(seconds(300)), seconds(1));
  EXPECT_EQ(reaper_period(milliseconds(50)), milliseconds(10));
  EXPECT_EQ(reaper_period(seconds(2)), milliseconds(200));
}

// Sessions as the stage server keeps them for the reaper: when each last sent
// a message, and which the sweeps closed, at what time.
struct Sessions {
  std::mutex mu;
  std::map<std::string, Clock::time_point> last_active;
  std::vector<std::pair<std::string, Clock::time_point>> closed;

  void sweep(Clock::time_point now, Clock::duration limit) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto it = last_active.begin(); it != last_active.end();) {
      if (!is_idle(it->second, now, limit)) {
        ++it;
        continue;
      }
      closed.emplace_back(it->first, now);
      it = last_active.erase(it);
    }
  }
  void touch(const std::string& id, Clock::time_point t) {
    std::lock_guard<std::mutex> lock(mu);
    last_active[id] = t;
  }
  auto closed_now() {
    std::lock_guard<std::mutex> lock(mu);
    return closed;
  }
};

// An idle limit of 10 s: the reaper looks every second. A session silent since
// t0 is closed at the first look after t0 + 10 s (t0 + 11 s), not at t0 + 10 s;
// one that sent a message at t0 + 5 s lives until t0 + 16 s.
TEST(IdleReaperTest, ClosesASessionAtTheFirstLookAfterItsLimitPassed) {
  FakeClock clock;
  const Clock::time_point t0 = clock.now();
  const Clock::duration limit = seconds(10);
  Sessions sessions;
  sessions.touch("a", t0);
  sessions.touch("b", t0);
  IdleReaper reaper(clock, limit, [&](Clock::time_point now) { sessions.sweep(now, limit); });
  for (int s = 1; s <= 16; ++s) {
    clock.wait_for_waiters(1);  // the reaper waits for its next look
    if (s == 6) sessions.touch("b", t0 + seconds(5));
    clock.advance(seconds(1));
    clock.wait_for_waiters(1);  // it looked at t0 + s
    const auto closed = sessions.closed_now();
    if (s < 11) {
      EXPECT_TRUE(closed.empty()) << "at t0 + " << s << " s";
    } else if (s < 16) {
      ASSERT_EQ(closed.size(), 1u) << "at t0 + " << s << " s";
      EXPECT_EQ(closed[0], std::make_pair(std::string("a"), t0 + seconds(11)));
    } else {
      ASSERT_EQ(closed.size(), 2u);
      EXPECT_EQ(closed[1], std::make_pair(std::string("b"), t0 + seconds(16)));
    }
  }
}

// stop() ends the thread while it waits, without the clock moving.
TEST(IdleReaperTest, StopsWithoutTheClockMoving) {
  FakeClock clock;
  int sweeps = 0;
  IdleReaper reaper(clock, seconds(10), [&](Clock::time_point) { ++sweeps; });
  clock.wait_for_waiters(1);
  reaper.stop();
  EXPECT_EQ(sweeps, 0);
}

}  // namespace
}  // namespace swarm::node
