#include "node/step_scheduler.h"

#include <gtest/gtest.h>

namespace swarm::node {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uintptr_t kA = 1, kB = 2;

// Each session its own caller unless one is named.
QueuedWork prompt(uintptr_t session, int tokens, uintptr_t caller = 0) {
  return {.session = session,
          .caller = caller ? caller : session,
          .tokens = tokens,
          .chunkable = true,
          .first_layer = 0,
          .last_layer = 4};
}
QueuedWork decode(uintptr_t session, uintptr_t caller = 0) {
  return {.session = session,
          .caller = caller ? caller : session,
          .tokens = 1,
          .first_layer = 0,
          .last_layer = 4};
}
using Seen = StepScheduler::SessionSeen;

// A session counts as active for a second after its last message, closed or
// not; at exactly a second it no longer does.
TEST(StepSchedulerTest, SessionsAreActiveForASecondAfterTheirLastMessage) {
  FakeClock clock;
  StepScheduler s;
  const Clock::time_point t0 = clock.now();
  const std::vector<Seen> open = {{t0, kA}};
  s.session_closed(t0 + milliseconds(500), kB);
  EXPECT_EQ(s.active_sessions(open, clock.now()), 2);
  clock.advance(milliseconds(999));
  EXPECT_EQ(s.active_sessions(open, clock.now()), 2);
  clock.advance(milliseconds(1));
  EXPECT_EQ(s.active_sessions(open, clock.now()), 1);  // the open one's second is over
  clock.advance(milliseconds(500));
  EXPECT_EQ(s.active_sessions(open, clock.now()), 0);
}

// A client's sessions closed lately count beside the work of another
// connection, not beside its own: its next prompt, with nobody else's work
// queued, runs as a lone prompt does (whole batches), while a stranger's
// prompt still shares the node with the client's sessions in between.
TEST(StepSchedulerTest, ClosedSessionsDoNotCountAgainstTheirOwnConnection) {
  FakeClock clock;
  StepScheduler s;
  const uintptr_t gateway = 40000, stranger = 40001;
  s.session_closed(clock.now(), gateway);
  s.session_closed(clock.now(), gateway);
  const std::vector<Seen> open = {{clock.now(), gateway}};  // the new request's session
  EXPECT_EQ(s.active_sessions(open, clock.now(), &gateway), 1);
  EXPECT_EQ(s.active_sessions(open, clock.now(), &stranger), 3);
  EXPECT_EQ(s.active_sessions(open, clock.now()), 3);  // work from several connections
  const std::vector<QueuedWork> queue = {prompt(kA, 4096)};
  EXPECT_EQ(s.next_batch(queue, 512, 1, clock.now()).plan.take, std::vector<int>({512}));
  EXPECT_EQ(s.next_batch(queue, 512, 3, clock.now()).plan.take, std::vector<int>({64}));
}

// A session that had most of the node lately while another is active: its
// prompt waits, and the scheduler looks again soon; as the clock moves on its
// share decays below an equal one (0.8 s of the last second decays under half
// after ln 1.6 = 0.47 s) and the prompt runs, an eighth of a batch at a time.
TEST(StepSchedulerTest, APromptOverItsShareWaitsUntilTheShareDecays) {
  FakeClock clock;
  StepScheduler s;
  const std::vector<std::pair<uintptr_t, int>> ran = {{kA, 512}};
  s.batch_ran(ran, 0.8, clock.now(), /*contended=*/true);
  const std::vector<QueuedWork> queue = {prompt(kA, 4096)};
  const std::vector<Seen> both = {{clock.now(), kA}, {clock.now(), kB}};
  ASSERT_EQ(s.active_sessions(both, clock.now()), 2);

  StepScheduler::Decision d = s.next_batch(queue, 512, /*active=*/2, clock.now());
  EXPECT_TRUE(d.plan.batch.empty());
  EXPECT_TRUE(d.waiting_on_shares);

  clock.advance(milliseconds(450));
  d = s.next_batch(queue, 512, 2, clock.now());
  EXPECT_TRUE(d.waiting_on_shares) << "share " << s.share(kA, clock.now());

  clock.advance(milliseconds(50));
  d = s.next_batch(queue, 512, 2, clock.now());
  EXPECT_FALSE(d.waiting_on_shares);
  ASSERT_EQ(d.plan.batch, std::vector<size_t>({0}));
  EXPECT_EQ(d.plan.take, std::vector<int>({64}));
  EXPECT_TRUE(d.contended);  // another session is active

  // Alone on the node, the same session is never over its share.
  clock.advance(seconds(10));
  s.batch_ran(ran, 0.8, clock.now(), true);
  const std::vector<Seen> alone = {{clock.now(), kA}};
  ASSERT_EQ(s.active_sessions(alone, clock.now()), 1);
  d = s.next_batch(queue, 512, /*active=*/1, clock.now());
  EXPECT_EQ(d.plan.take, std::vector<int>({512}));
  EXPECT_FALSE(d.contended);
}

// Shares are per caller, weighted by its sessions: one caller's sessions never
// hold each other's prompts back however much the caller had (a gateway with
// many users alone on a node); beside another caller, one with 3 of the 4
// active sessions may have 3/4 of the node, and past that its prompt waits.
TEST(StepSchedulerTest, SharesArePerCallerWeightedBySessions) {
  FakeClock clock;
  StepScheduler s;
  constexpr uintptr_t kGateway = 100, kStranger = 200;
  const std::vector<std::pair<uintptr_t, int>> most = {{kGateway, 512}};
  s.batch_ran(most, 0.9, clock.now(), /*contended=*/true);
  const Clock::time_point t = clock.now();
  const std::vector<Seen> one_caller = {{t, kGateway}, {t, kGateway}, {t, kGateway}};
  ASSERT_EQ(s.active_sessions(one_caller, t), 3);
  StepScheduler::Decision d = s.next_batch({prompt(1, 4096, kGateway), decode(2, kGateway)}, 512, 3, t);
  EXPECT_FALSE(d.waiting_on_shares);
  EXPECT_EQ(d.plan.batch.size(), 2u) << "the gateway's prompt ran beside its own decode step";

  const std::vector<Seen> with_stranger = {
      {t, kGateway}, {t, kGateway}, {t, kGateway}, {t, kStranger}};
  ASSERT_EQ(s.active_sessions(with_stranger, t), 4);
  d = s.next_batch({prompt(1, 4096, kGateway)}, 512, 4, t);
  EXPECT_TRUE(d.waiting_on_shares) << "share " << s.share(kGateway, t) << " over 3/4";
  // 0.9 s of the last second decays under 3/4 after ln(1.2) = 0.18 s.
  clock.advance(milliseconds(200));
  ASSERT_EQ(s.active_sessions(with_stranger, clock.now()), 4);
  d = s.next_batch({prompt(1, 4096, kGateway)}, 512, 4, clock.now());
  EXPECT_FALSE(d.waiting_on_shares) << "share " << s.share(kGateway, clock.now());
}

// A batch is charged only when it runs beside or ahead of another session's
// work: alone, it costs its session nothing.
TEST(StepSchedulerTest, OnlyContendedBatchesAreCharged) {
  FakeClock clock;
  StepScheduler s;

  StepScheduler::Decision alone = s.next_batch({decode(kA)}, 512, 1, clock.now());
  EXPECT_FALSE(alone.contended);
  const std::vector<std::pair<uintptr_t, int>> a = {{kA, 1}};
  s.batch_ran(a, 0.5, clock.now(), alone.contended);
  EXPECT_EQ(s.share(kA, clock.now()), 0);

  StepScheduler::Decision beside = s.next_batch({decode(kA), decode(kB)}, 512, 1, clock.now());
  EXPECT_EQ(beside.plan.batch.size(), 2u);
  EXPECT_TRUE(beside.contended);
  // Charged by tokens: A ran 3 of the batch's 4.
  const std::vector<std::pair<uintptr_t, int>> ab = {{kA, 3}, {kB, 1}};
  s.batch_ran(ab, 0.4, clock.now(), beside.contended);
  EXPECT_NEAR(s.share(kA, clock.now()), 0.3, 1e-9);
  EXPECT_NEAR(s.share(kB, clock.now()), 0.1, 1e-9);

  // Ahead of another session's work that waits (another layer range).
  QueuedWork other = decode(kB);
  other.first_layer = 4;
  other.last_layer = 8;
  StepScheduler::Decision ahead = s.next_batch({decode(kA), other}, 512, 1, clock.now());
  EXPECT_EQ(ahead.plan.batch, std::vector<size_t>({0}));
  EXPECT_TRUE(ahead.contended);
}

// Work that cannot run only because its callers take no answers is waited
// on (woken when an answer goes through), not polled as shares are; with
// work over its share beside it, the share's quick retry wins.
TEST(StepSchedulerTest, StalledWorkIsWaitedOnAndNotRetriedAsShares) {
  FakeClock clock;
  StepScheduler s;
  QueuedWork stalled = prompt(kA, 256);
  stalled.stalled = true;
  StepScheduler::Decision d = s.next_batch({stalled}, 512, 1, clock.now());
  EXPECT_TRUE(d.plan.batch.empty());
  EXPECT_TRUE(d.waiting_on_answers);
  EXPECT_FALSE(d.waiting_on_shares);
  // Beside runnable work: that runs, and nothing waits.
  d = s.next_batch({stalled, prompt(kB, 4)}, 512, 1, clock.now());
  EXPECT_EQ(d.plan.batch, std::vector<size_t>({1}));
  EXPECT_FALSE(d.waiting_on_answers || d.waiting_on_shares);
  // Beside a prompt over its share: the shares' retry.
  const std::vector<std::pair<uintptr_t, int>> ran = {{kB, 512}};
  s.batch_ran(ran, 0.8, clock.now(), /*contended=*/true);
  const std::vector<Seen> both = {{clock.now(), kA}, {clock.now(), kB}};
  ASSERT_EQ(s.active_sessions(both, clock.now()), 2);
  d = s.next_batch({stalled, prompt(kB, 4096)}, 512, 2, clock.now());
  EXPECT_TRUE(d.plan.batch.empty());
  EXPECT_TRUE(d.waiting_on_shares);
  EXPECT_FALSE(d.waiting_on_answers);
}

TEST(StepSchedulerTest, TheSoleCallerIsTheOneEveryQueuedStepCameFrom) {
  EXPECT_FALSE(StepScheduler::sole_caller({}).has_value());
  std::vector<QueuedWork> q(3);
  for (QueuedWork& w : q) w.caller = 7;
  EXPECT_EQ(StepScheduler::sole_caller(q), std::optional<uintptr_t>(7));
  q[2].caller = 8;
  EXPECT_FALSE(StepScheduler::sole_caller(q).has_value());
}

}  // namespace
}  // namespace swarm::node
