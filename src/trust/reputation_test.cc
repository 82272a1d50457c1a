// The reputation rule on hand-made histories: each test is one clause of
// doc/trust.md, "Reputation".
#include "trust/reputation.h"

#include <gtest/gtest.h>

namespace swarm::trust {
namespace {

constexpr double kDay = 24 * 3600.0;

ReputationState after(std::initializer_list<ReputationEvent> events, double at = 0,
                      const ReputationParams& p = {}) {
  ReputationState s = initial_state(at, p);
  for (ReputationEvent e : events) s = record(s, e, at, p);
  return s;
}

TEST(Reputation, ANewNodeHasThePriorsMean) {
  ReputationParams p;
  EXPECT_DOUBLE_EQ(score(initial_state(0, p), 0, p),
                   p.prior_alpha / (p.prior_alpha + p.prior_beta));
  EXPECT_FALSE(initial_state(0, p).excluded);
}

TEST(Reputation, PassedAuditsRaiseTheScoreAndFailuresLowerIt) {
  const double prior = score(initial_state(0), 0);
  const double passed = score(after({ReputationEvent::kAuditPassed}), 0);
  EXPECT_GT(passed, prior);
  for (ReputationEvent bad : {ReputationEvent::kAuditDisputed, ReputationEvent::kTimeout,
                              ReputationEvent::kDisconnect, ReputationEvent::kSpeedLie}) {
    EXPECT_LT(score(after({bad}), 0), prior) << event_name(bad);
    EXPECT_FALSE(after({bad}).excluded) << event_name(bad);
  }
  // Weights: a dispute costs more than a timeout, a timeout more than a disconnect.
  EXPECT_LT(score(after({ReputationEvent::kAuditDisputed}), 0),
            score(after({ReputationEvent::kTimeout}), 0));
  EXPECT_LT(score(after({ReputationEvent::kTimeout}), 0),
            score(after({ReputationEvent::kDisconnect}), 0));
}

TEST(Reputation, ScoreIsThePosteriorMean) {
  ReputationParams p;
  const ReputationState s = after(
      {ReputationEvent::kAuditPassed, ReputationEvent::kAuditPassed, ReputationEvent::kTimeout}, 0,
      p);
  EXPECT_DOUBLE_EQ(s.alpha, p.prior_alpha + 2 * p.audit_passed_weight);
  EXPECT_DOUBLE_EQ(s.beta, p.prior_beta + p.timeout_weight);
  EXPECT_DOUBLE_EQ(score(s, 0, p), s.alpha / (s.alpha + s.beta));
  EXPECT_EQ(s.audits_passed, 2);
  EXPECT_EQ(s.timeouts, 1);
}

TEST(Reputation, EvidenceHalvesEveryHalfLifeTowardThePrior) {
  ReputationParams p;
  p.half_life_s = kDay;
  ReputationState s = initial_state(0, p);
  for (int i = 0; i < 8; ++i) s = record(s, ReputationEvent::kTimeout, 0, p);
  const double extra_beta = s.beta - p.prior_beta;
  const ReputationState day = decayed(s, kDay, p);
  EXPECT_NEAR(day.beta - p.prior_beta, extra_beta / 2, 1e-9);
  EXPECT_NEAR(decayed(s, 2 * kDay, p).beta - p.prior_beta, extra_beta / 4, 1e-9);
  // The score climbs back toward the prior's mean with time, never past it.
  const double prior = score(initial_state(0, p), 0, p);
  double last = score(s, 0, p);
  for (double t : {0.5 * kDay, kDay, 3 * kDay, 30 * kDay}) {
    const double now = score(s, t, p);
    EXPECT_GT(now, last) << t;
    EXPECT_LE(now, prior + 1e-12) << t;
    last = now;
  }
  EXPECT_NEAR(score(s, 60 * kDay, p), prior, 1e-6);
  // Merits fade too: a node audited long ago is back near a newcomer.
  ReputationState good = initial_state(0, p);
  for (int i = 0; i < 50; ++i) good = record(good, ReputationEvent::kAuditPassed, 0, p);
  EXPECT_GT(score(good, 0, p), score(good, 10 * kDay, p));
  EXPECT_NEAR(score(good, 60 * kDay, p), prior, 1e-6);
}

TEST(Reputation, NewEvidenceWeighsMoreThanOld) {
  // The same two events in the other order: the recent one counts more.
  ReputationParams p;
  ReputationState bad_then_good = record(initial_state(0, p), ReputationEvent::kTimeout, 0, p);
  bad_then_good = record(bad_then_good, ReputationEvent::kAuditPassed, kDay, p);
  ReputationState good_then_bad = record(initial_state(0, p), ReputationEvent::kAuditPassed, 0, p);
  good_then_bad = record(good_then_bad, ReputationEvent::kTimeout, kDay, p);
  EXPECT_GT(score(bad_then_good, kDay, p), score(good_then_bad, kDay, p));
}

TEST(Reputation, AClockThatStepsBackFadesNothing) {
  ReputationState s = after({ReputationEvent::kTimeout, ReputationEvent::kTimeout}, 100);
  EXPECT_DOUBLE_EQ(score(s, 50), score(s, 100));
  const ReputationState back = record(s, ReputationEvent::kTimeout, 50);
  EXPECT_DOUBLE_EQ(back.updated_at, 100);  // time never runs backwards in the state
  EXPECT_EQ(back.timeouts, 3);
}

TEST(Reputation, ProvenFraudExcludesForGood) {
  ReputationParams p;
  ReputationState s = initial_state(0, p);
  for (int i = 0; i < 100; ++i) s = record(s, ReputationEvent::kAuditPassed, 0, p);
  s = record(s, ReputationEvent::kAuditFailed, 1, p);
  EXPECT_TRUE(s.excluded);
  EXPECT_EQ(score(s, 1, p), 0);
  // Neither time nor later good work lifts it.
  for (int i = 0; i < 100; ++i) s = record(s, ReputationEvent::kAuditPassed, 2, p);
  EXPECT_TRUE(decayed(s, 1000 * kDay, p).excluded);
  EXPECT_EQ(score(s, 1000 * kDay, p), 0);
  EXPECT_EQ(s.audits_failed, 1);
}

TEST(Reputation, AFewTimeoutsLowerButDoNotExclude) {
  ReputationParams p;
  ReputationState s = initial_state(0, p);
  double last = score(s, 0, p);
  for (int i = 0; i < 5; ++i) {
    s = record(s, ReputationEvent::kTimeout, i, p);
    const double now = score(s, i, p);
    EXPECT_LT(now, last);
    EXPECT_GT(now, 0);
    last = now;
  }
  EXPECT_FALSE(s.excluded);
  // And many of them leave a node at a low score, still not excluded.
  for (int i = 0; i < 200; ++i) s = record(s, ReputationEvent::kTimeout, 5, p);
  EXPECT_FALSE(s.excluded);
  EXPECT_LT(score(s, 5, p), 0.05);
}

TEST(Reputation, ProbationAuditsNewNodesMoreUntilEnoughPasses) {
  ReputationParams p;  // defaults: 20 passes, 0.25
  ReputationState s = initial_state(0, p);
  EXPECT_DOUBLE_EQ(audit_rate(s, 0.05, p), 0.25);
  EXPECT_DOUBLE_EQ(audit_rate(s, 0.5, p), 0.5);  // a higher base rate stands
  for (int i = 0; i < 19; ++i) s = record(s, ReputationEvent::kAuditPassed, i, p);
  EXPECT_DOUBLE_EQ(audit_rate(s, 0.05, p), 0.25);
  // Failures of other kinds do not count toward it.
  s = record(s, ReputationEvent::kTimeout, 20, p);
  EXPECT_DOUBLE_EQ(audit_rate(s, 0.05, p), 0.25);
  s = record(s, ReputationEvent::kAuditPassed, 21, p);
  EXPECT_EQ(s.audits_passed, 20);
  EXPECT_DOUBLE_EQ(audit_rate(s, 0.05, p), 0.05);
  // Passes do not fade: probation stays over after a long silence.
  EXPECT_DOUBLE_EQ(audit_rate(decayed(s, 365 * kDay, p), 0.05, p), 0.05);
  // The rate stays a share.
  EXPECT_DOUBLE_EQ(audit_rate(s, 3.0, p), 1.0);
  EXPECT_DOUBLE_EQ(audit_rate(s, -1.0, p), 0.0);
}

TEST(Reputation, EventNamesRoundTrip) {
  for (ReputationEvent e : {ReputationEvent::kAuditPassed, ReputationEvent::kAuditFailed,
                            ReputationEvent::kAuditDisputed, ReputationEvent::kTimeout,
                            ReputationEvent::kDisconnect, ReputationEvent::kSpeedLie}) {
    auto back = event_from_name(event_name(e));
    ASSERT_TRUE(back.has_value()) << event_name(e);
    EXPECT_EQ(*back, e);
  }
  EXPECT_FALSE(event_from_name("nonsense").has_value());
}

}  // namespace
}  // namespace swarm::trust
