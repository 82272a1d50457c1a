// AdmissionQueue driven with a made-up clock: who is served, who waits in
// which order, who is refused and what the refusal says.
#include "pipeline/admission.h"

#include <gtest/gtest.h>

namespace swarm {
namespace {

using std::chrono::milliseconds;
using Clock = AdmissionQueue::Clock;

const Clock::time_point t0{};

TEST(AdmissionQueue, AdmitsWhileSlotsAndCapacityLastThenQueuesInOrder) {
  AdmissionQueue q(
      {.max_active = 2, .capacity = 100, .max_queue = 4, .queue_timeout = milliseconds(1000)});
  auto a = q.arrive(40, t0);
  auto b = q.arrive(40, t0);
  auto c = q.arrive(10, t0);  // a slot is missing, not capacity
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(a->admitted);
  EXPECT_TRUE(b->admitted);
  EXPECT_FALSE(c->admitted);
  EXPECT_EQ(c->position, 1);
  EXPECT_EQ(q.cost_in_service(), 80u);
  EXPECT_TRUE(q.admit_waiting().empty());  // nothing freed yet

  q.release(a->ticket);
  EXPECT_EQ(q.admit_waiting(), std::vector<AdmissionQueue::Ticket>{c->ticket});
  EXPECT_EQ(q.cost_in_service(), 50u);
  EXPECT_EQ(q.active(), 2);
  EXPECT_EQ(q.waiting(), 0);
}

TEST(AdmissionQueue, AQueueHeadThatDoesNotFitIsNotOvertaken) {
  AdmissionQueue q(
      {.max_active = 8, .capacity = 100, .max_queue = 4, .queue_timeout = milliseconds(1000)});
  auto big0 = q.arrive(70, t0);
  auto big1 = q.arrive(70, t0);   // capacity is short
  auto small = q.arrive(10, t0);  // would fit, but waits behind big1: first come, first served
  ASSERT_TRUE(big0.ok() && big1.ok() && small.ok());
  EXPECT_TRUE(big0->admitted);
  EXPECT_FALSE(big1->admitted);
  EXPECT_FALSE(small->admitted);
  EXPECT_EQ(q.position(small->ticket), 2);
  EXPECT_TRUE(q.admit_waiting().empty());
  q.release(big0->ticket);
  EXPECT_EQ(q.admit_waiting(), (std::vector<AdmissionQueue::Ticket>{big1->ticket, small->ticket}));
}

TEST(AdmissionQueue, AFullQueueRefusesAtOnceNamingTheLimit) {
  AdmissionQueue q(
      {.max_active = 1, .capacity = 0, .max_queue = 2, .queue_timeout = milliseconds(1000)});
  ASSERT_TRUE(q.arrive(1, t0).ok());
  ASSERT_TRUE(q.arrive(1, t0).ok());
  ASSERT_TRUE(q.arrive(1, t0).ok());
  auto refused = q.arrive(1, t0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("--max-queue 2"), std::string::npos)
      << refused.status().message();
  EXPECT_NE(refused.status().message().find("2 wait"), std::string::npos);

  AdmissionQueue none(
      {.max_active = 1, .capacity = 0, .max_queue = 0, .queue_timeout = milliseconds(1000)});
  ASSERT_TRUE(none.arrive(1, t0).ok());
  EXPECT_FALSE(none.arrive(1, t0).ok());  // no queue: refused when it does not fit
}

TEST(AdmissionQueue, ARequestLargerThanTheCapacityIsABadRequest) {
  AdmissionQueue q(
      {.max_active = 4, .capacity = 100, .max_queue = 4, .queue_timeout = milliseconds(1000)});
  auto r = q.arrive(101, t0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(q.waiting(), 0);
}

TEST(AdmissionQueue, WaitersPastTheirDeadlineAreRefusedWithTheirPosition) {
  AdmissionQueue q(
      {.max_active = 1, .capacity = 0, .max_queue = 8, .queue_timeout = milliseconds(1000)});
  ASSERT_TRUE(q.arrive(1, t0).ok());                 // served
  auto early = q.arrive(1, t0 + milliseconds(100));  // deadline 1100
  auto late = q.arrive(1, t0 + milliseconds(600));   // deadline 1600
  ASSERT_TRUE(early.ok() && late.ok());
  EXPECT_EQ(q.next_deadline(), t0 + milliseconds(1100));
  EXPECT_TRUE(q.expire(t0 + milliseconds(1099)).empty());

  auto gone = q.expire(t0 + milliseconds(1100));
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].first, early->ticket);
  EXPECT_EQ(gone[0].second.code(), Status::Code::kResourceExhausted);
  const std::string& m = gone[0].second.message();
  EXPECT_NE(m.find("waited 1.0 s"), std::string::npos) << m;
  EXPECT_NE(m.find("number 1 of 2"), std::string::npos) << m;
  EXPECT_NE(m.find("--queue-timeout"), std::string::npos) << m;
  EXPECT_EQ(q.position(late->ticket), 1);
  EXPECT_EQ(q.next_deadline(), t0 + milliseconds(1600));

  q.withdraw(late->ticket);
  EXPECT_EQ(q.waiting(), 0);
  EXPECT_EQ(q.next_deadline(), Clock::time_point::max());
  EXPECT_TRUE(q.expire(t0 + milliseconds(5000)).empty());
}

TEST(AdmissionQueue, ReleasingUnknownTicketsChangesNothing) {
  AdmissionQueue q(
      {.max_active = 1, .capacity = 10, .max_queue = 1, .queue_timeout = milliseconds(1000)});
  auto a = q.arrive(10, t0);
  ASSERT_TRUE(a.ok() && a->admitted);
  q.release(a->ticket + 100);
  q.withdraw(a->ticket);  // served, not waiting
  EXPECT_EQ(q.active(), 1);
  EXPECT_EQ(q.cost_in_service(), 10u);
  q.release(a->ticket);
  q.release(a->ticket);
  EXPECT_EQ(q.active(), 0);
  EXPECT_EQ(q.cost_in_service(), 0u);
}

}  // namespace
}  // namespace swarm
