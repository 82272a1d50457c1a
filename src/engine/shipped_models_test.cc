// The models shipped in models/ (trained by tools/train_models.py, converted by
// `swarm convert`) against the PyTorch references exported with them: the engine
// must tokenize the reference prompt as the Python tokenizer did and reproduce
// PyTorch's float32 logits within the Q8_0 tolerance of tests/data/README.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "engine/model.h"
#include "engine/test_data.h"
#include "engine/tokenizer.h"

namespace swarm {
namespace {

using testing::read_raw;

constexpr const char* kReferencePrompt =
    "In the beginning God created the heaven and the earth.\n2 And the earth";

std::string gguf(const std::string& name) {
  return std::string(SWARM_SOURCE_DIR) + "/models/" + name + "-Q8_0.gguf";
}
std::string ref(const std::string& name, const std::string& file) {
  return std::string(SWARM_SOURCE_DIR) + "/models/ref/" + name + "/" + file;
}

class ShippedModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ShippedModelTest, TokenizesTheReferencePromptAsTheTrainingTokenizer) {
  auto tok = Tokenizer::Load(gguf(GetParam()));
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const std::vector<int32_t> want = read_raw<int32_t>(ref(GetParam(), "prompt_ids.i32"));
  ASSERT_FALSE(want.empty());
  EXPECT_EQ((*tok)->encode(kReferencePrompt), want);
}

TEST_P(ShippedModelTest, LogitsMatchPyTorchWithinTheQ8Tolerance) {
  auto model = Model::Load(gguf(GetParam()));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const std::vector<int32_t> ids = read_raw<int32_t>(ref(GetParam(), "prompt_ids.i32"));
  const std::vector<float> want = read_raw<float>(ref(GetParam(), "prompt_logits.f32"));
  const int vocab = (*model)->config().n_vocab;
  ASSERT_EQ(want.size(), ids.size() * vocab);
  ThreadPool pool(2);
  auto cache = (*model)->new_cache(64);
  auto got = (*model)->forward(ids, *cache, pool);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  const testing::ReferenceError err = testing::error_against_reference(*got, want);
  std::printf("[ %s ] S=%.2f max err %.2e S, mean err %.2e S\n", GetParam().c_str(), err.s, err.max,
              err.mean);
  EXPECT_LE(err.max, 0.04);
  EXPECT_LE(err.mean, 0.008);
  // Where PyTorch's choice is clear, ours is the same.
  for (size_t p = 0; p < ids.size(); ++p) {
    const float* w = want.data() + p * vocab;
    const float* g = got->data() + p * vocab;
    std::vector<float> sorted(w, w + vocab);
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    if (sorted[0] - sorted[1] < 0.1 * err.s) continue;
    EXPECT_EQ(std::max_element(g, g + vocab) - g, std::max_element(w, w + vocab) - w)
        << "position " << p;
  }
}

INSTANTIATE_TEST_SUITE_P(Kjv, ShippedModelTest, ::testing::Values("kjv-target", "kjv-draft"));

// Speculative decoding needs the draft to speak the target's vocabulary.
TEST(ShippedModels, DraftAndTargetShareOneVocabulary) {
  auto target = Tokenizer::Load(gguf("kjv-target"));
  auto draft = Tokenizer::Load(gguf("kjv-draft"));
  ASSERT_TRUE(target.ok() && draft.ok());
  ASSERT_EQ((*target)->vocab_size(), (*draft)->vocab_size());
  for (int32_t id = 0; id < (*target)->vocab_size(); ++id)
    ASSERT_EQ((*target)->token_text(id), (*draft)->token_text(id)) << "token " << id;
}

}  // namespace
}  // namespace swarm
