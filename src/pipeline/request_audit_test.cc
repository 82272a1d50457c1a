#include "pipeline/request_audit.h"

#include <gtest/gtest.h>

namespace swarm {
namespace {

trust::AuditedSession two_stage_session() {
  trust::AuditedSession s;
  s.stages = {{"a:1", "", "", 0, 2}, {"b:2", "node-b", "", 2, 4}};
  for (int i = 0; i < 4; ++i) {
    trust::StepRecord r;
    r.step_id = static_cast<uint64_t>(i + 1);
    r.position = i == 0 ? 0 : 2 + i;
    r.tokens = i == 0 ? std::vector<int32_t>{1, 2, 3} : std::vector<int32_t>{10 + i};
    v1::Commitment c;
    c.set_step_id(r.step_id);
    r.commitments = {c, c};
    s.steps.push_back(r);
  }
  return s;
}

TEST(RequestAuditTest, ARateOfOneAuditsTheWholeSessionAndZeroNothing) {
  const std::vector<int32_t> history = {1, 2, 3, 11, 12, 13};
  std::mt19937_64 rng(7);
  auto all = plan_audit(two_stage_session(), history, v1::Tensor::F32, [](const std::string&) { return 1.0; }, rng);
  EXPECT_EQ(all.window, 6);
  auto none = plan_audit(two_stage_session(), history, v1::Tensor::F32, [](const std::string&) { return 0.0; }, rng);
  EXPECT_EQ(none.window, 0);
}

TEST(RequestAuditTest, TheHighestRateOfAStepsNodesSamplesIt) {
  const std::vector<int32_t> history = {1, 2, 3, 11, 12, 13};
  std::mt19937_64 rng(7);
  // Only node-b (on probation, say) is audited, and it serves every step.
  auto job = plan_audit(two_stage_session(), history, v1::Tensor::F32,
                        [](const std::string& key) { return key == "node-b" ? 1.0 : 0.0; }, rng);
  EXPECT_EQ(job.window, 6);
}

TEST(RequestAuditTest, WorkIsCountedPerNodeWithOneReceiptDigest) {
  const trust::AuditedSession s = two_stage_session();
  std::vector<NodeWork> work;
  add_node_work(s, [](const std::string& address) { return address == "b:2" ? 2.5 : 0.0; }, &work);
  ASSERT_EQ(work.size(), 2u);
  EXPECT_EQ(work[1].node_id, "node-b");
  EXPECT_EQ(work[1].steps, 4);
  EXPECT_EQ(work[1].tokens, 6);
  EXPECT_EQ(work[1].price_per_1k, 2.5);
  EXPECT_EQ(work[1].receipts.size(), 64u);
  const std::string first = work[1].receipts;
  // The same node again (a session after a failover): one entry, a new digest.
  add_node_work(s, [](const std::string&) { return 0.0; }, &work);
  ASSERT_EQ(work.size(), 2u);
  EXPECT_EQ(work[1].steps, 8);
  EXPECT_NE(work[1].receipts, first);
}

}  // namespace
}  // namespace swarm
