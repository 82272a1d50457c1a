#include "trust/audit.h"

#include <gtest/gtest.h>

#include <cmath>

namespace swarm::trust {
namespace {

// A made-up two-stage chain over a history of tokens: the reference's rows
// are hashes of (stage, position, token prefix), and honest commitments are
// built from them, as honest nodes' would be from real rows.
class JudgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    history_ = {5, 6, 7, 8, 9, 10};
    ref_.output_rows.resize(2);
    for (int k = 0; k < 2; ++k)
      for (size_t p = 0; p < history_.size(); ++p) {
        const int32_t seed[3] = {k, static_cast<int32_t>(p), history_[p]};
        ref_.output_rows[k].push_back(hash_bytes(seed, sizeof seed));
      }
    for (size_t p = 0; p < history_.size(); ++p) ref_.argmax.push_back(p + 1 < history_.size() ? history_[p + 1] : 0);
    session_.model_id = "m";
    session_.greedy = true;
    session_.stages = {{"a:1", "", "", 0, 2}, {"b:2", "", "", 2, 4}};
    // A prompt of 3 tokens, then one token a step.
    add_step(1, 0, {5, 6, 7});
    add_step(2, 3, {8});
    add_step(3, 4, {9});
  }

  v1::Commitment honest(int k, const StepRecord& r) const {
    v1::Commitment c;
    c.set_model_id("m");
    c.set_session_id("s");
    c.set_step_id(r.step_id);
    c.set_position(r.position);
    c.set_n_tokens(static_cast<int>(r.tokens.size()));
    c.set_first_layer(session_.stages[k].first_layer);
    c.set_last_layer(session_.stages[k].last_layer);
    const int end = r.position + static_cast<int>(r.tokens.size());
    c.set_prefix_hash(std::string(as_view(
        PrefixHashes::continued(PrefixHashes::of(history_.data(), r.position), r.tokens.data(),
                                static_cast<int64_t>(r.tokens.size())))));
    // Rows past the history (a rejected draft's): whatever an honest node made of them.
    auto row = [&](int stage, int p) {
      if (stage < 0) return token_row_hashes(&r.tokens[p - r.position], 1)[0];
      if (p < static_cast<int>(history_.size()) && r.tokens[p - r.position] == history_[p])
        return ref_.output_rows[stage][p];
      const int32_t seed[2] = {stage, r.tokens[p - r.position]};
      return hash_bytes(seed, sizeof seed);
    };
    std::vector<Hash> in, out;
    for (int p = r.position; p < end; ++p) {
      in.push_back(row(k - 1, p));
      out.push_back(row(k, p));
    }
    c.set_input_hash(std::string(as_view(combine_rows(in))));
    c.set_output_hash(std::string(as_view(combine_rows(out))));
    if (r.n_drafts > 0)
      for (size_t i = 0; i < in.size(); ++i) {
        c.add_input_rows(std::string(as_view(in[i])));
        c.add_output_rows(std::string(as_view(out[i])));
      }
    if (k == 1)
      c.set_tokens_hash(std::string(as_view(tokens_hash(r.answer.data(), r.answer.size(), r.accepted_drafts))));
    return c;
  }
  void add_step(uint64_t id, int position, std::vector<int32_t> tokens) {
    StepRecord r;
    r.step_id = id;
    r.position = position;
    r.tokens = std::move(tokens);
    r.answer = {ref_.argmax[position + r.tokens.size() - 1]};
    r.commitments = {honest(0, r), honest(1, r)};
    session_.steps.push_back(r);
  }
  static void corrupt(std::string* hash) { (*hash)[0] = static_cast<char>((*hash)[0] ^ 1); }
  // In place of the last step: positions 4.. again, the anchor 9 then the
  // drafts [10, 77] (10 is the history's, 77 is not); answer and commitments
  // are the caller's.
  StepRecord drafted_step() {
    session_.steps.pop_back();
    StepRecord r;
    r.step_id = 3;
    r.position = 4;
    r.tokens = {9, 10, 77};
    r.n_drafts = 2;
    return r;
  }

  std::vector<int32_t> history_;
  ReferenceRows ref_;
  AuditedSession session_;
};

TEST_F(JudgeTest, HonestCommitmentsPassEveryStage) {
  const auto v = judge(session_, history_, ref_);
  ASSERT_EQ(v.size(), 2u);
  for (const Verdict& x : v) {
    EXPECT_EQ(x.kind, Verdict::Kind::kPass) << x.reason;
    EXPECT_EQ(x.steps_checked, 3);
  }
}

TEST_F(JudgeTest, AWrongOutputFromARightInputIsFraudOfThatStageOnly) {
  corrupt(session_.steps[1].commitments[1].mutable_output_hash());
  const auto v = judge(session_, history_, ref_);
  EXPECT_EQ(v[0].kind, Verdict::Kind::kPass);
  EXPECT_EQ(v[1].kind, Verdict::Kind::kFraud);
  EXPECT_EQ(v[1].step_id, 2u);
  EXPECT_EQ(v[1].evidence.step_id(), 2u);
}

TEST_F(JudgeTest, AStageFedWrongRowsIsNotBlamedForItsWrongOutput) {
  // Stage 0 lies on step 2 and sends what it committed to: stage 1 computes
  // honestly from a wrong input, and from then on its cache holds it.
  for (size_t i = 1; i < session_.steps.size(); ++i) {
    StepRecord& r = session_.steps[i];
    corrupt(r.commitments[0].mutable_output_hash());
    r.commitments[1].set_input_hash(r.commitments[0].output_hash());
    corrupt(r.commitments[1].mutable_output_hash());
  }
  const auto v = judge(session_, history_, ref_);
  EXPECT_EQ(v[0].kind, Verdict::Kind::kFraud);
  EXPECT_EQ(v[0].step_id, 2u);
  EXPECT_EQ(v[1].kind, Verdict::Kind::kPass) << v[1].reason;
}

TEST_F(JudgeTest, RowsReceivedOtherThanSentAreADisputeOfBoth) {
  corrupt(session_.steps[2].commitments[1].mutable_input_hash());
  const auto v = judge(session_, history_, ref_);
  EXPECT_EQ(v[0].kind, Verdict::Kind::kDispute);
  EXPECT_EQ(v[1].kind, Verdict::Kind::kDispute);
}

TEST_F(JudgeTest, AMissingOrMisnamedCommitmentIsNoReceipt) {
  session_.steps[0].commitments.pop_back();
  auto v = judge(session_, history_, ref_);
  EXPECT_EQ(v[1].kind, Verdict::Kind::kMissing);
  SetUp();
  session_.steps[0].commitments[0].set_first_layer(1);
  v = judge(session_, history_, ref_);
  EXPECT_EQ(v[0].kind, Verdict::Kind::kMissing);
}

TEST_F(JudgeTest, CommitmentsMustBeSignedByThePinnedKey) {
  auto node = net::Identity::Generate();
  auto other = net::Identity::Generate();
  ASSERT_TRUE(node.ok() && other.ok());
  session_.stages[1].public_key.assign(node->public_key().begin(), node->public_key().end());
  for (StepRecord& r : session_.steps) sign(&r.commitments[1], *node);
  EXPECT_EQ(judge(session_, history_, ref_)[1].kind, Verdict::Kind::kPass);
  sign(&session_.steps[2].commitments[1], *other);
  EXPECT_EQ(judge(session_, history_, ref_)[1].kind, Verdict::Kind::kMissing);
  sign(&session_.steps[2].commitments[1], *node);
  session_.steps[2].commitments[1].set_step_id(99);  // changed after signing
  EXPECT_EQ(judge(session_, history_, ref_)[1].kind, Verdict::Kind::kMissing);
}

TEST_F(JudgeTest, AWrongGreedyTokenIsFraudOfTheLastStage) {
  StepRecord& r = session_.steps[1];
  r.answer = {42};
  r.commitments[1] = honest(1, r);  // it commits to the answer it gave
  const auto v = judge(session_, history_, ref_);
  EXPECT_EQ(v[1].kind, Verdict::Kind::kFraud);
  EXPECT_NE(v[1].reason.find("greedy"), std::string::npos) << v[1].reason;
  session_.greedy = false;  // sampled: only rows are checked
  EXPECT_EQ(judge(session_, history_, ref_)[1].kind, Verdict::Kind::kPass);
}

TEST_F(JudgeTest, DraftsAreJudgedByTheArgmax) {
  StepRecord r = drafted_step();
  r.answer = {10, ref_.argmax[5]};  // 10 accepted (it is history), 77 rejected
  r.accepted_drafts = 1;
  r.commitments = {honest(0, r), honest(1, r)};
  session_.steps.push_back(r);
  auto v = judge(session_, history_, ref_);
  EXPECT_EQ(v[1].kind, Verdict::Kind::kPass) << v[1].reason;
  // Rejecting a draft the argmax accepts is caught.
  StepRecord& last = session_.steps.back();
  last.answer = {55};
  last.accepted_drafts = 0;
  last.commitments[1].set_tokens_hash(std::string(as_view(tokens_hash(last.answer.data(), 1, 0))));
  v = judge(session_, history_, ref_);
  EXPECT_EQ(v[1].kind, Verdict::Kind::kFraud) << v[1].reason;
}

TEST_F(JudgeTest, StepsOnRejectedTokensAreSkippedNotBlamed) {
  StepRecord r = session_.steps[2];
  r.step_id = 4;
  r.tokens = {123};  // a draft later rejected: not in the history
  r.commitments[1].set_step_id(4);
  corrupt(r.commitments[1].mutable_output_hash());
  session_.steps.insert(session_.steps.begin() + 2, r);
  r.commitments[0].set_step_id(4);
  const auto v = judge(session_, history_, ref_);
  EXPECT_EQ(v[1].kind, Verdict::Kind::kPass) << v[1].reason;
}

// Sampled speculation: the reference replays the session's sampler and says
// what the last stage owes each step; a different answer is fraud, a step the
// reference did not replay is not judged.
TEST_F(JudgeTest, SampledSpeculativeAnswersAreJudgedByTheReplay) {
  session_.greedy = false;
  StepRecord r = drafted_step();
  r.draft_probs = {{{10}, {1.0f}}, {{77}, {1.0f}}};
  r.answer = {10, 31};  // the sampler took 10 and replaced 77 by 31
  r.accepted_drafts = 1;
  r.commitments = {honest(0, r), honest(1, r)};
  session_.steps.push_back(r);
  for (const StepRecord& s : session_.steps)
    ref_.sampled[s.step_id] = {s.answer, s.accepted_drafts};
  auto v = judge(session_, history_, ref_);
  EXPECT_EQ(v[1].kind, Verdict::Kind::kPass) << v[1].reason;

  ref_.sampled[3] = {{10, 77, 12}, 2};  // the seed's draws accept both drafts
  v = judge(session_, history_, ref_);
  EXPECT_EQ(v[1].kind, Verdict::Kind::kFraud);
  EXPECT_EQ(v[1].step_id, 3u);
  EXPECT_NE(v[1].reason.find("the session's sampler with its seed picks [10,77,12] after 2"), std::string::npos)
      << v[1].reason;
  EXPECT_EQ(v[0].kind, Verdict::Kind::kPass);

  ref_.sampled.erase(3);  // not replayed: rows only
  EXPECT_EQ(judge(session_, history_, ref_)[1].kind, Verdict::Kind::kPass);
}

// An inexact last stage: its rows are judged by their sketches within the
// tolerance, not by hashes; a wrong sketch is fraud, a missing one no receipt.
class InexactJudgeTest : public JudgeTest {
 protected:
  static constexpr int kD = 64;
  // Stage k's "true" row at position p.
  static std::vector<float> true_row(int k, int p) {
    std::vector<float> row(kD);
    for (int i = 0; i < kD; ++i) row[static_cast<size_t>(i)] = std::sin(1.0f + k * 7.1f + p * 3.3f + i * 0.91f) * (1 + i % 5);
    return row;
  }
  void make_inexact(size_t stage, double error) {
    for (size_t k = stage; k < 2; ++k) session_.stages[k].inexact = k == stage;
    ref_.sketches.assign(2, {});
    for (int k = 0; k < 2; ++k)
      for (size_t p = 0; p < history_.size(); ++p)
        ref_.sketches[static_cast<size_t>(k)].push_back(
            sketch_row(true_row(k, static_cast<int>(p)).data(), kD, static_cast<int>(p), kReferenceEntries));
    for (StepRecord& r : session_.steps)
      for (size_t k = stage; k < 2; ++k) {
        v1::Commitment& c = r.commitments[k];
        corrupt(c.mutable_output_hash());  // another device's bits
        const int n = static_cast<int>(r.tokens.size());
        for (int i = 0; i < n; ++i) {
          if (!is_sketched(r.position, n, i, false)) continue;
          std::vector<float> row = true_row(static_cast<int>(k), r.position + i);
          for (size_t j = 0; j < row.size(); ++j) row[j] *= static_cast<float>(1 + error * ((j % 3) - 1.0));
          to_proto(sketch_row(row.data(), kD, r.position + i), c.add_sketches());
        }
      }
  }
};

TEST_F(InexactJudgeTest, RoundingWithinTheTolerancePasses) {
  make_inexact(1, 1e-3);
  const auto v = judge(session_, history_, ref_);
  EXPECT_EQ(v[0].kind, Verdict::Kind::kPass) << v[0].reason;
  EXPECT_EQ(v[1].kind, Verdict::Kind::kPass) << v[1].reason;
  EXPECT_EQ(v[1].sketches_checked, 3);  // each step's last row
  EXPECT_EQ(v[1].choices_checked, 0);   // another device may break a near-tie otherwise
  // Without the tolerance, the same commitments are fraud (the hashes differ).
  session_.stages[1].inexact = false;
  EXPECT_EQ(judge(session_, history_, ref_)[1].kind, Verdict::Kind::kFraud);
}

TEST_F(InexactJudgeTest, ASketchBeyondTheToleranceIsFraud) {
  make_inexact(1, 0.3);
  const auto v = judge(session_, history_, ref_);
  EXPECT_EQ(v[0].kind, Verdict::Kind::kPass);
  EXPECT_EQ(v[1].kind, Verdict::Kind::kFraud);
  EXPECT_EQ(v[1].step_id, 1u);
  EXPECT_NE(v[1].reason.find("its sketch differs from the reference beyond the tolerance: row 2:"), std::string::npos)
      << v[1].reason;
}

TEST_F(InexactJudgeTest, AMissingSketchIsNoReceipt) {
  make_inexact(1, 1e-3);
  session_.steps[1].commitments[1].clear_sketches();
  const auto v = judge(session_, history_, ref_);
  EXPECT_EQ(v[1].kind, Verdict::Kind::kMissing);
  EXPECT_NE(v[1].reason.find("no sketch of row 3"), std::string::npos) << v[1].reason;
}

// After an inexact stage, a stage's inputs are another device's rows: a wrong
// sketch there cannot be pinned on either, so both are disputed.
TEST_F(InexactJudgeTest, AfterAnInexactStageAWrongSketchIsADispute) {
  make_inexact(0, 1e-3);
  for (StepRecord& r : session_.steps) {
    r.commitments[1].set_input_hash(r.commitments[0].output_hash());
    for (v1::RowSketch& s : *r.commitments[1].mutable_sketches())
      for (float& x : *s.mutable_values()) x *= 2;
  }
  const auto v = judge(session_, history_, ref_);
  EXPECT_EQ(v[0].kind, Verdict::Kind::kDispute) << v[0].reason;
  EXPECT_EQ(v[1].kind, Verdict::Kind::kDispute) << v[1].reason;
}

TEST(ReplayStepTest, WalksTheDraftsThenTheTokenAfterThem) {
  StepRecord r;
  r.position = 10;
  r.tokens = {1, 2, 3, 4};
  r.n_drafts = 2;  // 3 and 4, at positions 12 and 13
  r.draft_probs = {{{3}, {0.5f}}, {{4}, {0.25f}}};
  std::vector<std::pair<int, int32_t>> asked;
  auto accept_all = [&](int position, int32_t draft, const SparseProbs& q) -> std::optional<Decision> {
    asked.emplace_back(position, draft);
    if (draft >= 0 && !q.ids.empty()) {
      EXPECT_EQ(q.ids.at(0), draft);
    }
    return Decision{draft >= 0 ? draft : 99, true};
  };
  auto a = replay_step(r, accept_all);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->tokens, (std::vector<int32_t>{3, 4, 99}));
  EXPECT_EQ(a->accepted_drafts, 2);
  EXPECT_EQ(asked, (std::vector<std::pair<int, int32_t>>{{12, 3}, {13, 4}, {14, -1}}));

  // The first rejection ends the step with its replacement.
  auto reject_at_13 = [](int position, int32_t draft, const SparseProbs&) -> std::optional<Decision> {
    return Decision{position == 13 ? 7 : draft, position != 13};
  };
  a = replay_step(r, reject_at_13);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->tokens, (std::vector<int32_t>{3, 7}));
  EXPECT_EQ(a->accepted_drafts, 1);

  // A continuation (every token a draft) starts at its own position; plain
  // decoding asks once, after the step.
  r.n_drafts = 4;
  r.draft_probs.clear();
  asked.clear();
  (void)replay_step(r, accept_all);
  EXPECT_EQ(asked.front(), (std::pair<int, int32_t>{10, 1}));
  r.n_drafts = 0;
  asked.clear();
  a = replay_step(r, accept_all);
  EXPECT_EQ(asked, (std::vector<std::pair<int, int32_t>>{{14, -1}}));
  EXPECT_EQ(a->accepted_drafts, 0);

  // A decision the reference cannot make leaves the step unjudged.
  auto unknown = [](int, int32_t, const SparseProbs&) -> std::optional<Decision> { return std::nullopt; };
  EXPECT_FALSE(replay_step(r, unknown));
}

TEST(AuditWindowTest, EndsAtTheFurthestSampledStepInTheHistory) {
  AuditedSession s;
  s.steps.resize(3);
  s.steps[0].position = 0;
  s.steps[0].tokens = {1, 2, 3};
  s.steps[1].position = 3;
  s.steps[1].tokens = {4};
  s.steps[2].position = 4;
  s.steps[2].tokens = {5, 6};
  const std::vector<int32_t> history = {1, 2, 3, 4, 5, 9};
  EXPECT_EQ(audit_window(s, history, {false, false, false}), 0);
  EXPECT_EQ(audit_window(s, history, {false, true, false}), 4);
  EXPECT_EQ(audit_window(s, history, {true, false, true}), 5);  // token 6 was rejected
}

}  // namespace
}  // namespace swarm::trust
