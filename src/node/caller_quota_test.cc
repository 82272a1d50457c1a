// Per-caller quotas: one caller's sessions and queued steps are capped without
// touching another's, the total caps everyone, and every lease, however it
// ends, gives its unit back.
#include "node/caller_quota.h"

#include <gtest/gtest.h>

#include <vector>

namespace swarm::node {
namespace {

TEST(CallerQuota, CapsOneCallersSessionsWhileAnotherStillOpens) {
  CallerQuota q({.sessions_per_caller = 2, .sessions_total = 10, .steps_in_flight_per_caller = 4});
  auto a1 = q.open_session("node:a"), a2 = q.open_session("node:a");
  ASSERT_TRUE(a1.ok() && a2.ok());
  auto a3 = q.open_session("node:a");
  ASSERT_FALSE(a3.ok());
  EXPECT_EQ(a3.status().code(), Status::Code::kResourceExhausted);
  EXPECT_NE(a3.status().message().find("node:a"), std::string::npos) << a3.status().message();
  EXPECT_NE(a3.status().message().find("sessions per caller"), std::string::npos);
  auto b1 = q.open_session("node:b");
  EXPECT_TRUE(b1.ok());
  EXPECT_EQ(q.sessions("node:a"), 2);
  EXPECT_EQ(q.sessions("node:b"), 1);
  EXPECT_EQ(q.sessions_total(), 3);

  a1->release();  // closing one frees a place for the same caller
  EXPECT_EQ(q.sessions("node:a"), 1);
  EXPECT_TRUE(q.open_session("node:a").ok());  // and the temporary gives it back at once
  EXPECT_EQ(q.sessions("node:a"), 1);
}

TEST(CallerQuota, TheTotalCapsEveryCaller) {
  CallerQuota q({.sessions_per_caller = 5, .sessions_total = 3, .steps_in_flight_per_caller = 1});
  std::vector<CallerQuota::Lease> held;
  for (const char* c : {"ip:10.0.0.1", "ip:10.0.0.2", "ip:10.0.0.3"}) {
    auto l = q.open_session(c);
    ASSERT_TRUE(l.ok()) << c;
    held.push_back(std::move(l).value());
  }
  auto more = q.open_session("ip:10.0.0.4");
  ASSERT_FALSE(more.ok());
  EXPECT_NE(more.status().message().find("all 3"), std::string::npos) << more.status().message();
  held.pop_back();  // a destroyed lease gives its session back
  EXPECT_EQ(q.sessions_total(), 2);
  EXPECT_TRUE(q.open_session("ip:10.0.0.4").ok());
}

TEST(CallerQuota, StepsInFlightArePerCallerAndLeasesMoveWithoutDoubleRelease) {
  CallerQuota q({.sessions_per_caller = 1, .sessions_total = 1, .steps_in_flight_per_caller = 2});
  auto s1 = q.start_step("node:a");
  auto s2 = q.start_step("node:a");
  ASSERT_TRUE(s1.ok() && s2.ok());
  auto s3 = q.start_step("node:a");
  ASSERT_FALSE(s3.ok());
  EXPECT_EQ(s3.status().code(), Status::Code::kResourceExhausted);
  EXPECT_NE(s3.status().message().find("steps in flight"), std::string::npos);
  EXPECT_TRUE(q.start_step("node:b").ok());

  CallerQuota::Lease moved = std::move(s1).value();
  CallerQuota::Lease target = std::move(moved);  // the source no longer holds it
  EXPECT_FALSE(moved.held());
  EXPECT_TRUE(target.held());
  EXPECT_EQ(q.steps_in_flight("node:a"), 2);
  target.release();
  target.release();  // a second release does nothing
  EXPECT_EQ(q.steps_in_flight("node:a"), 1);
  target = std::move(s2).value();
  target = CallerQuota::Lease();  // assigning over a held lease releases it
  EXPECT_EQ(q.steps_in_flight("node:a"), 0);
}

TEST(CallerQuota, LeasesMayOutliveTheQuotaAndLimitsAreAtLeastOne) {
  CallerQuota::Lease kept;
  {
    CallerQuota q(
        {.sessions_per_caller = 0, .sessions_total = -3, .steps_in_flight_per_caller = 0});
    EXPECT_EQ(q.limits().sessions_per_caller, 1);
    EXPECT_EQ(q.limits().sessions_total, 1);
    EXPECT_EQ(q.limits().steps_in_flight_per_caller, 1);
    auto l = q.open_session("node:a");
    ASSERT_TRUE(l.ok());
    EXPECT_FALSE(q.open_session("node:b").ok());
    kept = std::move(l).value();
  }
  kept.release();  // the counters it points at are still alive
  EXPECT_FALSE(kept.held());
}

}  // namespace
}  // namespace swarm::node
