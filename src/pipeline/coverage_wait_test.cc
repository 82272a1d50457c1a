// The rule a request without a route follows (look again, wait for coverage,
// refuse) and the memory of unreachable peers, driven over hand-made times.
#include "pipeline/coverage_wait.h"

#include <gtest/gtest.h>

#include "pipeline/peer_reachability.h"

namespace swarm {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const Clock::time_point kT0 = Clock::time_point{} + std::chrono::hours(1);
Clock::time_point at(int ms) { return kT0 + milliseconds(ms); }

// A gateway started at 0; a request that arrives at `arrived` and is asked
// about at `now`; the last look finished at `looked`.
NoRouteView view(int arrived, int now, int looked) {
  NoRouteView v;
  v.gateway_started = at(0);
  v.request_arrived = at(arrived);
  v.now = at(now);
  v.last_look = looked < 0 ? Clock::time_point{} : at(looked);
  return v;
}

TEST(CoverageWaitTest, ARequestAlwaysGetsALookThatFinishedAfterItArrived) {
  // Even a gateway running for hours with nothing coming looks once first.
  NoRouteView v = view(3'600'000, 3'600'000, 10);
  EXPECT_EQ(next_no_route_step(v).action, NoRouteAction::kLookNow);
  v.last_look = at(3'600'001);  // a look that finished after it arrived
  EXPECT_EQ(next_no_route_step(v).action, NoRouteAction::kRefuse);
}

TEST(CoverageWaitTest, AYoungGatewayWaitsForAGapNobodyAnnouncesYet) {
  // Started at 0, request at 100, looked at 120: the DHT may still bring nodes.
  NoRouteView v = view(100, 130, 120);
  v.gap_nobody_announces = true;
  NoRouteStep s = next_no_route_step(v);
  EXPECT_EQ(s.action, NoRouteAction::kWait);
  EXPECT_EQ(s.wake_at, at(120 + 250));  // the next look
  // At the next look's time: look.
  v.now = at(370);
  EXPECT_EQ(next_no_route_step(v).action, NoRouteAction::kLookNow);
  // Never past max_wait after arriving: the wake is clipped, then refused.
  v.now = at(5000);
  v.last_look = at(4990);
  s = next_no_route_step(v);
  EXPECT_EQ(s.action, NoRouteAction::kWait);
  EXPECT_EQ(s.wake_at, at(5100));
  v.now = at(5100);
  EXPECT_EQ(next_no_route_step(v).action, NoRouteAction::kRefuse);
}

TEST(CoverageWaitTest, AnOldGatewayRefusesAGapNobodyAnnounces) {
  // 30 s after start, nobody announcing a layer is news waiting will not change.
  NoRouteView v = view(40'000, 40'010, 40'005);
  v.gap_nobody_announces = true;
  EXPECT_EQ(next_no_route_step(v).action, NoRouteAction::kRefuse);
}

TEST(CoverageWaitTest, APeerThatJustBecameUnreachableIsWaitedForUntilItSettles) {
  // An hour-old gateway; the only peer for a layer failed at 60'000 (restarting?).
  NoRouteView v = view(61'000, 61'010, 61'005);
  v.newest_unreachable_since = at(60'000);
  EXPECT_EQ(next_no_route_step(v).action, NoRouteAction::kWait);
  // Unreachable for `settle` (5 s): down, not coming; refuse without waiting.
  v.now = at(65'000);
  v.last_look = at(64'990);
  EXPECT_EQ(next_no_route_step(v).action, NoRouteAction::kRefuse);
  // The next request pays no wait: one look, then the refusal.
  v = view(70'000, 70'000, 64'990);
  v.newest_unreachable_since = at(60'000);
  EXPECT_EQ(next_no_route_step(v).action, NoRouteAction::kLookNow);
  v.last_look = at(70'002);
  v.now = at(70'002);
  EXPECT_EQ(next_no_route_step(v).action, NoRouteAction::kRefuse);
}

TEST(CoverageWaitTest, TheWaitIsBoundedByMaxWaitWhateverElseHolds) {
  CoverageWaitOptions o;
  o.max_wait = milliseconds(1000);
  NoRouteView v = view(100, 1100, 1090);
  v.gap_nobody_announces = true;
  v.newest_unreachable_since = at(1000);
  EXPECT_EQ(next_no_route_step(v, o).action, NoRouteAction::kRefuse);
  o.max_wait = milliseconds(0);  // no waiting at all: one look, then refuse
  v = view(100, 100, 50);
  v.gap_nobody_announces = true;
  EXPECT_EQ(next_no_route_step(v, o).action, NoRouteAction::kLookNow);
  v.last_look = at(101);
  v.now = at(101);
  EXPECT_EQ(next_no_route_step(v, o).action, NoRouteAction::kRefuse);
}

TEST(PeerReachabilityTest, FastFailuresAreAskedAgainSlowOnesAreSetAsideWithBackoff) {
  PeerReachability r({milliseconds(1000), milliseconds(4000)});
  EXPECT_TRUE(r.survey_asks("a"));
  EXPECT_FALSE(r.next_due().has_value());
  // Refused at once: cheap to ask again, so every survey does.
  r.failed("a", at(0), at(0), /*slow=*/false, "connection refused");
  EXPECT_TRUE(r.survey_asks("a"));
  EXPECT_FALSE(r.next_due().has_value());
  ASSERT_NE(r.find("a"), nullptr);
  EXPECT_EQ(r.find("a")->since, at(0));
  // Ran into the deadline: set aside; due after 1 s, then 2 s, then 4 s (the cap),
  // counted from the failure; unreachable since the probe was sent.
  r.failed("b", at(-2000), at(0), /*slow=*/true, "deadline exceeded");
  EXPECT_FALSE(r.survey_asks("b"));
  EXPECT_EQ(r.next_due(), at(1000));
  EXPECT_TRUE(r.due(at(999)).empty());
  EXPECT_EQ(r.due(at(1000)), std::vector<std::string>{"b"});
  r.failed("b", at(1000), at(1000), true, "deadline exceeded");
  EXPECT_EQ(r.next_due(), at(3000));
  r.failed("b", at(3000), at(3000), true, "deadline exceeded");
  EXPECT_EQ(r.next_due(), at(7000));
  r.failed("b", at(7000), at(7000), true, "deadline exceeded");
  EXPECT_EQ(r.next_due(), at(11000));
  EXPECT_EQ(r.find("b")->since, at(-2000));  // unreachable since the first probe was sent
  EXPECT_EQ(r.find("b")->failures, 4);
  // It answers: forgotten, asked by surveys again; a later failure starts afresh.
  r.reached("b");
  EXPECT_EQ(r.find("b"), nullptr);
  EXPECT_TRUE(r.survey_asks("b"));
  r.failed("b", at(20000), at(20000), true, "deadline exceeded");
  EXPECT_EQ(r.find("b")->since, at(20000));
  EXPECT_EQ(r.next_due(), at(21000));
  // Peers no longer known are forgotten.
  r.retain({"a"});
  EXPECT_EQ(r.find("b"), nullptr);
  EXPECT_NE(r.find("a"), nullptr);
}

}  // namespace
}  // namespace swarm
