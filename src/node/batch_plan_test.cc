#include "node/batch_plan.h"

#include <gtest/gtest.h>

#include <vector>

namespace swarm::node {
namespace {

using Indices = std::vector<size_t>;

QueuedWork anchor(uintptr_t session, int tokens = 1) {
  return {.session = session, .tokens = tokens, .first_layer = 0, .last_layer = 2};
}
QueuedWork continuation(uintptr_t session, int tokens = 1) {
  QueuedWork w = anchor(session, tokens);
  w.continuation = true;
  return w;
}
QueuedWork truncate(uintptr_t session) {
  QueuedWork w = anchor(session, 0);
  w.truncate = true;
  return w;
}

TEST(BatchPlanTest, AnEmptyQueuePlansNothing) {
  const BatchPlan plan = plan_next_batch({}, 8);
  EXPECT_TRUE(plan.batch.empty());
  EXPECT_TRUE(plan.truncates.empty());
  EXPECT_TRUE(plan.dropped.empty());
}

TEST(BatchPlanTest, AnAnchorOvertakesQueuedSpeculativeContinuations) {
  const std::vector<QueuedWork> q = {continuation(1), continuation(2), continuation(2), anchor(3)};
  EXPECT_EQ(plan_next_batch(q, 8).batch, (Indices{3, 0, 1}));
  // One token a batch: the anchor alone.
  EXPECT_EQ(plan_next_batch(q, 1).batch, (Indices{3}));
}

// Plans batch after batch, as the scheduler does, until nothing is left;
// returns the order the queue's items ran in (indices into `queue`).
Indices run_order(std::vector<QueuedWork> queue, int max_batch_tokens) {
  std::vector<size_t> index(queue.size());
  for (size_t i = 0; i < index.size(); ++i) index[i] = i;
  Indices order;
  while (!queue.empty()) {
    const BatchPlan plan = plan_next_batch(queue, max_batch_tokens);
    EXPECT_FALSE(plan.batch.empty() && plan.truncates.empty() && plan.dropped.empty());
    if (plan.batch.empty() && plan.truncates.empty() && plan.dropped.empty()) break;
    std::vector<bool> leaves(queue.size(), false);
    for (size_t i : plan.batch) order.push_back(index[i]);
    for (const Indices* l : {&plan.batch, &plan.truncates, &plan.dropped})
      for (size_t i : *l) leaves[i] = true;
    std::vector<QueuedWork> stay;
    std::vector<size_t> stay_index;
    for (size_t i = 0; i < queue.size(); ++i) {
      if (leaves[i]) continue;
      stay.push_back(queue[i]);
      stay_index.push_back(index[i]);
    }
    queue.swap(stay);
    index.swap(stay_index);
  }
  return order;
}

// The queue NodeTest.AnAnchorRunOvertakesQueuedSpeculativeContinuations builds
// while a's prompt runs, one token a batch: a's anchor run is a's earliest
// item and keeps its place; b's plain step, queued behind a's three
// continuations, overtakes them.
TEST(BatchPlanTest, AnAnchorRunKeepsItsPlaceAndAPlainStepOvertakesContinuations) {
  const uintptr_t a = 1, b = 2;
  const std::vector<QueuedWork> q = {anchor(a, 2), continuation(a), continuation(a),
                                     continuation(a), anchor(b)};
  EXPECT_EQ(run_order(q, 1), (Indices{0, 4, 1, 2, 3}));
  // With room for all, still one item of a session a batch.
  EXPECT_EQ(run_order(q, 64), (Indices{0, 4, 1, 2, 3}));
}

TEST(BatchPlanTest, ASessionsItemsKeepTheirOrder) {
  // Session 1's continuation is its earliest item: its later anchor waits
  // behind it, and only one item of a session runs in a batch.
  const std::vector<QueuedWork> q = {continuation(1), anchor(1), anchor(2), anchor(2)};
  EXPECT_EQ(plan_next_batch(q, 8).batch, (Indices{2, 0}));
  // Its earliest step, waiting for lack of room, holds back its later ones.
  const std::vector<QueuedWork> big = {anchor(1, 4), anchor(2, 6), anchor(2, 1), anchor(3, 2)};
  EXPECT_EQ(plan_next_batch(big, 6).batch, (Indices{0, 3}));
}

TEST(BatchPlanTest, ItemsOfAClosedSessionNeverRun) {
  std::vector<QueuedWork> q = {anchor(1), continuation(2), truncate(1), anchor(1), anchor(3)};
  q[0].session_closed = q[2].session_closed = q[3].session_closed = true;
  const BatchPlan plan = plan_next_batch(q, 8);
  EXPECT_EQ(plan.dropped, (Indices{0, 2, 3}));
  EXPECT_TRUE(plan.truncates.empty());
  EXPECT_EQ(plan.batch, (Indices{4, 1}));
}

TEST(BatchPlanTest, TruncatesAheadOfASessionsFirstStepApplyAndTheStepMayRun) {
  const std::vector<QueuedWork> q = {truncate(1), truncate(1), anchor(1),
                                     truncate(1), truncate(2), continuation(2)};
  const BatchPlan plan = plan_next_batch(q, 8);
  // Session 1's truncate behind its step waits for that step to run.
  EXPECT_EQ(plan.truncates, (Indices{0, 1, 4}));
  EXPECT_EQ(plan.batch, (Indices{2, 5}));
}

TEST(BatchPlanTest, ABatchKeepsToItsTokenLimit) {
  const std::vector<QueuedWork> q = {anchor(1, 3), anchor(2, 4), anchor(3, 2), continuation(4, 1),
                                     continuation(5, 2)};
  // 3 + 2 of the anchors (4 does not fit beside 3), then the one-token
  // continuation; the two-token one would exceed 6.
  EXPECT_EQ(plan_next_batch(q, 6).batch, (Indices{0, 2, 3}));
}

TEST(BatchPlanTest, AStepLargerThanTheLimitRunsAlone) {
  const std::vector<QueuedWork> q = {anchor(1, 100), anchor(2, 1), continuation(3, 1)};
  EXPECT_EQ(plan_next_batch(q, 8).batch, (Indices{0}));
  // Behind a small one it waits: the small one goes first.
  const std::vector<QueuedWork> r = {anchor(2, 1), anchor(1, 100)};
  EXPECT_EQ(plan_next_batch(r, 8).batch, (Indices{0}));
}

TEST(BatchPlanTest, ABatchHoldsOneLayerRange) {
  std::vector<QueuedWork> q = {anchor(1), anchor(2), anchor(3), continuation(4)};
  q[1].first_layer = 1;
  q[3].last_layer = 3;
  EXPECT_EQ(plan_next_batch(q, 8).batch, (Indices{0, 2}));
  // The first step picked sets the range.
  EXPECT_EQ(plan_next_batch(std::vector<QueuedWork>(q.begin() + 1, q.end()), 8).batch,
            (Indices{0}));
}

QueuedWork prefill(uintptr_t session, int tokens) {
  QueuedWork w = anchor(session, tokens);
  w.chunkable = true;
  return w;
}

TEST(BatchPlanTest, ALongPrefillRunsInChunksBesideOtherSessionsSteps) {
  // 1000 tokens of prompt ahead of three one-token decode steps: the decode
  // steps run in the first batch, the prompt gets an eighth of it.
  const std::vector<QueuedWork> q = {prefill(1, 1000), anchor(2), anchor(3), continuation(4)};
  const BatchPlan plan = plan_next_batch(q, 64);
  EXPECT_EQ(plan.batch, (Indices{1, 2, 3, 0}));
  EXPECT_EQ(plan.take, (std::vector<int>{1, 1, 1, 8}));
  // Alone, it takes a whole batch.
  const BatchPlan alone = plan_next_batch(std::vector<QueuedWork>{prefill(1, 1000)}, 64);
  EXPECT_EQ(alone.batch, (Indices{0}));
  EXPECT_EQ(alone.take, (std::vector<int>{64}));
  // Alone in the queue while other sessions are active (their next steps are
  // on their way), an eighth at a time: a decode step that comes in the
  // meantime waits for an eighth of a batch, not a whole one.
  const BatchPlan between =
      plan_next_batch(std::vector<QueuedWork>{prefill(1, 1000)}, 64, /*others_active=*/true);
  EXPECT_EQ(between.batch, (Indices{0}));
  EXPECT_EQ(between.take, (std::vector<int>{8}));
  // A prefill of an eighth of the batch or less runs whole, like any step;
  // a longer one beside others runs an eighth at a time, even if it fits.
  const BatchPlan fits = plan_next_batch(std::vector<QueuedWork>{prefill(1, 8), anchor(2)}, 64);
  EXPECT_EQ(fits.take, (std::vector<int>{8, 1}));
  const BatchPlan longer =
      plan_next_batch(std::vector<QueuedWork>{prefill(1, 40), anchor(2)}, 64);
  EXPECT_EQ(longer.batch, (Indices{1, 0}));
  EXPECT_EQ(longer.take, (std::vector<int>{1, 8}));
}

TEST(BatchPlanTest, AMeasuredChunkBoundsWhatAPrefillTakesBesideOthers) {
  // A node that measured an eighth to take too long gives the prompt 16 tokens
  // a batch beside others (never more than an eighth); alone it still takes
  // whole batches, and a step of 16 tokens or fewer runs whole.
  const BatchPlan beside =
      plan_next_batch(std::vector<QueuedWork>{prefill(1, 1000), anchor(2)}, 512, false, 16);
  EXPECT_EQ(beside.batch, (Indices{1, 0}));
  EXPECT_EQ(beside.take, (std::vector<int>{1, 16}));
  const BatchPlan between =
      plan_next_batch(std::vector<QueuedWork>{prefill(1, 1000)}, 512, /*others_active=*/true, 16);
  EXPECT_EQ(between.take, (std::vector<int>{16}));
  const BatchPlan alone = plan_next_batch(std::vector<QueuedWork>{prefill(1, 1000)}, 512, false, 16);
  EXPECT_EQ(alone.take, (std::vector<int>{512}));
  const BatchPlan small =
      plan_next_batch(std::vector<QueuedWork>{prefill(1, 16), anchor(2)}, 512, false, 16);
  EXPECT_EQ(small.take, (std::vector<int>{16, 1}));
  // A chunk larger than an eighth is an eighth.
  const BatchPlan capped =
      plan_next_batch(std::vector<QueuedWork>{prefill(1, 1000)}, 64, /*others_active=*/true, 100);
  EXPECT_EQ(capped.take, (std::vector<int>{8}));
}

TEST(BatchPlanTest, AWaitingPrefillKeepsAnEighthOfTheBatch) {
  // Small steps that would fill the batch leave an eighth to the prompt.
  std::vector<QueuedWork> q = {prefill(1, 1000)};
  for (uintptr_t s = 2; s < 20; ++s) q.push_back(anchor(s, 4));
  const BatchPlan plan = plan_next_batch(q, 32);
  int small = 0, chunk = 0;
  for (size_t k = 0; k < plan.batch.size(); ++k)
    (plan.batch[k] == 0 ? chunk : small) += plan.take[k];
  EXPECT_EQ(small, 28);
  EXPECT_EQ(chunk, 4);
}

TEST(BatchPlanTest, AStepThatIsNotChunkableStillRunsWholeAndAlone) {
  const BatchPlan plan = plan_next_batch(std::vector<QueuedWork>{anchor(1, 100), anchor(2)}, 8);
  EXPECT_EQ(plan.batch, (Indices{0}));
  EXPECT_EQ(plan.take, (std::vector<int>{100}));
}

TEST(BatchPlanTest, ABulkStepOverItsFairShareWaitsEvenAlone) {
  QueuedWork flood = prefill(1, 256);
  flood.over_share = true;
  // Beside a decode step, only the decode step runs.
  const BatchPlan beside = plan_next_batch(std::vector<QueuedWork>{flood, anchor(2)}, 64);
  EXPECT_EQ(beside.batch, (Indices{1}));
  EXPECT_EQ(beside.take, (std::vector<int>{1}));
  // Alone it waits too; its session's later steps wait behind it.
  QueuedWork later = anchor(1);
  EXPECT_TRUE(plan_next_batch(std::vector<QueuedWork>{flood, later}, 64).batch.empty());
  // A small step of a session over its share is not held back.
  QueuedWork small = anchor(1, 2);
  small.over_share = true;
  EXPECT_EQ(plan_next_batch(std::vector<QueuedWork>{small}, 64).batch, (Indices{0}));
}

TEST(BatchPlan, AuditRunsUseWhatOthersLeave) {
  QueuedWork audit = prefill(1, 100);
  audit.background = true;
  // Beside another session's step, the audit waits.
  auto plan = plan_next_batch(std::vector<QueuedWork>{audit, anchor(2)}, 64);
  EXPECT_EQ(plan.batch, (Indices{1}));
  // Alone, it runs (in whole batches).
  plan = plan_next_batch(std::vector<QueuedWork>{audit}, 64);
  EXPECT_EQ(plan.batch, (Indices{0}));
  EXPECT_EQ(plan.take, (std::vector<int>{64}));
}

// A session whose caller takes no answers runs nothing, not even a Truncate,
// and keeps its items; the others run past it; once it closes, its items go.
TEST(BatchPlanTest, AStalledSessionRunsNothingAndKeepsItsItemsUntilItCloses) {
  std::vector<QueuedWork> q = {anchor(1), truncate(2), anchor(2), anchor(3)};
  q[1].stalled = q[2].stalled = true;
  BatchPlan plan = plan_next_batch(q, 8);
  EXPECT_EQ(plan.batch, (Indices{0, 3}));
  EXPECT_TRUE(plan.truncates.empty());
  EXPECT_TRUE(plan.dropped.empty());
  // Alone in the queue: nothing at all.
  const std::vector<QueuedWork> alone = {q[1], q[2]};
  plan = plan_next_batch(alone, 8);
  EXPECT_TRUE(plan.batch.empty() && plan.truncates.empty() && plan.dropped.empty());
  q[1].session_closed = q[2].session_closed = true;
  EXPECT_EQ(plan_next_batch(q, 8).dropped, (Indices{1, 2}));
}

}  // namespace
}  // namespace swarm::node
