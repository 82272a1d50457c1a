#include <gtest/gtest.h>

#include "engine/test_data.h"
#include "pipeline/draft_trace.h"
#include "pipeline/model_drafter.h"
#include "pipeline/ngram_drafter.h"

namespace swarm {
namespace {

TEST(NgramDrafter, ProposesWhatFollowedTheLatestOccurrenceOfTheLongestSuffix) {
  // "7 8 9" occurred before, followed by 10 11; "8 9" later, followed by 4.
  const std::vector<int32_t> ctx = {1, 7, 8, 9, 10, 11, 2, 8, 9, 4, 5, 7, 8, 9};
  EXPECT_EQ(ngram_lookup(ctx, 3, 1), 10);
  EXPECT_EQ(ngram_lookup(ctx, 2, 1), 4);  // only 2-grams: the latest "8 9"
  NgramDrafter d(3, 1);
  auto p = d.propose(ctx, 3);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->tokens, (std::vector<int32_t>{10, 11, 2}));
  EXPECT_TRUE(p->probs.empty());
}

TEST(NgramDrafter, ContinuesARepeatingPatternPastTheEndOfTheContext) {
  NgramDrafter d(4, 1);
  auto p = d.propose({5, 6, 7, 5, 6, 7, 5}, 5);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->tokens, (std::vector<int32_t>{6, 7, 5, 6, 7}));
}

TEST(NgramDrafter, NoGuessWithoutARepeatedSuffix) {
  NgramDrafter d(4, 2);
  auto p = d.propose({1, 2, 3, 4, 5}, 4);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->tokens.empty());
  EXPECT_EQ(ngram_lookup({}, 4, 1), -1);
  EXPECT_EQ(ngram_lookup({3}, 4, 1), -1);
}

// A drafter with no guess after an even context length, and after an odd
// one the text's next two tokens and then a wrong one.
class EvenOddDrafter final : public Drafter {
 public:
  explicit EvenOddDrafter(std::vector<int32_t> text) : text_(std::move(text)) {}
  Result<DraftProposal> propose(const std::vector<int32_t>& context, int n) override {
    DraftProposal p;
    const size_t at = context.size();
    if (at % 2 == 0) return p;
    for (size_t i = at; i < at + 2 && i < text_.size(); ++i) p.tokens.push_back(text_[i]);
    p.tokens.push_back(99);
    if (static_cast<int>(p.tokens.size()) > n) p.tokens.resize(n);
    return p;
  }
  std::string name() const override { return "even-odd"; }

 private:
  std::vector<int32_t> text_;
};

TEST(DraftTrace, SaysWhereTheDrafterHadAGuessAndHowMuchOfItTheTextBoreOut) {
  const std::vector<int32_t> text = {5, 6, 7, 8, 9, 10, 11};
  EvenOddDrafter d(text);
  auto t = draft_trace(d, text, 2, 8);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  // Lengths 2..6: none, two right, none, two right, none (at 5 only 10, 11
  // are left: both right).
  EXPECT_EQ(*t, (std::vector<int>{-1, 2, -1, 2, -1}));
  // Asked for one draft, at most one is right.
  EvenOddDrafter one(text);
  EXPECT_EQ(*draft_trace(one, text, 2, 1), (std::vector<int>{-1, 1, -1, 1, -1}));
}

// The n-gram drafter on a text that repeats: no guess at first, then every
// draft right to the end of the text.
TEST(DraftTrace, TheNgramDrafterOnARepeatingText) {
  const std::vector<int32_t> text = {1, 2, 3, 1, 2, 3, 1, 2, 3};
  NgramDrafter d;
  auto t = draft_trace(d, text, 1, 4);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(*t, (std::vector<int>{-1, -1, -1, 4, 4, 3, 2, 1}));
}

class ModelDrafterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = testing::find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
    ASSERT_FALSE(path.empty()) << "tiny-llama-Q8_0.gguf is missing from tests/data";
    auto m = Model::Load(path);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    auto d = DraftModel::Load(path, (*m)->config().n_vocab, 1);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    draft_ = *d;
  }
  // The model's own greedy continuation of `ctx`, token by token.
  std::vector<int32_t> greedy(std::vector<int32_t> ctx, int n) {
    std::vector<int32_t> out;
    const int v = draft_->model().config().n_vocab;
    for (int i = 0; i < n; ++i) {
      auto cache = draft_->model().new_cache(64);
      auto logits = draft_->model().forward(ctx, *cache, draft_->pool());
      EXPECT_TRUE(logits.ok());
      const float* row = logits->data() + logits->size() - v;
      const int32_t t = static_cast<int32_t>(std::max_element(row, row + v) - row);
      out.push_back(t);
      ctx.push_back(t);
    }
    return out;
  }
  SamplingParams greedy_params() {
    SamplingParams sp;
    sp.temperature = 0;
    return sp;
  }
  std::shared_ptr<DraftModel> draft_;
};

TEST_F(ModelDrafterTest, GreedyDraftsAreTheDraftModelsGreedyContinuation) {
  ModelDrafter d(draft_, greedy_params(), 64);
  const std::vector<int32_t> ctx = {1, 568, 427, 941, 403};
  auto p = d.propose(ctx, 4);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->tokens, greedy(ctx, 4));
  EXPECT_TRUE(p->probs.empty());
}

TEST_F(ModelDrafterTest, ARolledBackContextKeepsTheCommonPrefixAndDraftsAsAFreshDrafterWould) {
  ModelDrafter d(draft_, greedy_params(), 64);
  std::vector<int32_t> ctx = {1, 568, 427, 941, 403};
  ASSERT_TRUE(d.propose(ctx, 4).ok());
  EXPECT_EQ(d.cached(), 8);  // the context and three drafts fed back
  // Draft 2 was "rejected": the context continues with another token.
  ctx.push_back(7);
  auto p = d.propose(ctx, 3);
  ASSERT_TRUE(p.ok());
  ModelDrafter fresh(draft_, greedy_params(), 64);
  auto q = fresh.propose(ctx, 3);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(p->tokens, q->tokens);
}

TEST_F(ModelDrafterTest, SampledDraftsCarryTheSparseDistributionTheyWereDrawnFrom) {
  SamplingParams sp;
  sp.temperature = 1;
  sp.top_k = 0;
  sp.top_p = 1;
  sp.min_p = 0;
  sp.seed = 3;
  ModelDrafter d(draft_, sp, 64, 8);
  auto p = d.propose({1, 568, 427}, 5);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->tokens.size(), 5u);
  ASSERT_EQ(p->probs.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    const SparseProbs& q = p->probs[i];
    EXPECT_LE(q.ids.size(), 8u);
    EXPECT_NE(std::find(q.ids.begin(), q.ids.end(), p->tokens[i]), q.ids.end());
    double sum = 0;
    for (float x : q.probs) sum += x;
    EXPECT_NEAR(sum, 1.0, 1e-5);
  }
}

TEST_F(ModelDrafterTest, ADraftModelWithAnotherVocabularyIsRefused) {
  auto d = DraftModel::Load(draft_->path(), draft_->model().config().n_vocab + 1, 1);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("vocabulary"), std::string::npos);
}

}  // namespace
}  // namespace swarm
