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

namespace swarm {
namespace {

net::PeerAddress announced(const std::string& addr, int first, int last,
                           const std::string& pin = "") {
  net::PeerAddress p;
  p.address = addr;
  p.pin = pin;
  p.announced_first = first;
  p.announced_last = last;
  return p;
}

// Four layers, [0,2) covered by a reachable peer. A peer announcing [2,4) is
// unreachable since 500; one announcing [0,2) since 900 (irrelevant: covered).
TEST(NoRouteFactsTest, OnlyUnreachablePeersThatMayServeAMissingLayerCount) {
  const std::vector<bool> covered = {true, true, false, false};
  const std::vector<net::PeerAddress> peers = {announced("10.0.0.1:1", 0, 2),
                                               announced("10.0.0.2:1", 2, 4),
                                               announced("10.0.0.3:1", 0, 2)};
  PeerReachability r;
  r.failed(peer_key(peers[1]), at(500), at(600), true, "10.0.0.2:1: Deadline Exceeded");
  r.failed(peer_key(peers[2]), at(900), at(900), false, "refused");
  NoRouteView v;
  weigh_uncovered(covered, peers, r, /*can_look_up=*/true, v);
  EXPECT_FALSE(v.gap_nobody_announces);
  EXPECT_EQ(v.newest_unreachable_since, at(500));

  const Status st = explain_no_route(Status::Unavailable("no route: layer 2"), covered, peers, r);
  EXPECT_EQ(st.code(), Status::Code::kUnavailable);
  EXPECT_NE(st.message().find("no route: layer 2; uncovered layers [2,4)"), std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("10.0.0.2:1 (announces [2,4); 10.0.0.2:1: Deadline Exceeded)"),
            std::string::npos)
      << st.message();
  EXPECT_EQ(st.message().find("10.0.0.3:1"), std::string::npos) << st.message();
  // Other errors pass through untouched.
  EXPECT_EQ(explain_no_route(Status::InvalidArgument("x"), covered, peers, r).message(), "x");
}

TEST(NoRouteFactsTest, AGapNobodyMayServeIsOneOnlyALookUpCanFill) {
  const std::vector<bool> covered = {true, false};
  PeerReachability r;
  NoRouteView v;
  weigh_uncovered(covered, {announced("a:1", 0, 1)}, r, /*can_look_up=*/false, v);
  EXPECT_FALSE(v.gap_nobody_announces);  // --peers only: nothing new can come
  weigh_uncovered(covered, {announced("a:1", 0, 1)}, r, /*can_look_up=*/true, v);
  EXPECT_TRUE(v.gap_nobody_announces);
  EXPECT_FALSE(v.newest_unreachable_since.has_value());
  // A --peers entry announces nothing: unreachable, it may serve any layer, and
  // is named by its node id when pinned to one.
  const net::PeerAddress pinned = announced("b:2", 0, 0, std::string(40, 'c'));
  r.failed(peer_key(pinned), at(7), at(7), false, "refused");
  NoRouteView w;
  weigh_uncovered(covered, {pinned}, r, true, w);
  EXPECT_FALSE(w.gap_nobody_announces);
  EXPECT_EQ(w.newest_unreachable_since, at(7));
  EXPECT_NE(explain_no_route(Status::Unavailable("no route"), covered, {pinned}, r)
                .message()
                .find("node cccccccccccc at b:2 (refused)"),
            std::string::npos);
}

}  // namespace
}  // namespace swarm
