// The engine against the reference outputs in testdata (Hugging Face
// transformers in float64; see tests/data/README.md for the tolerances).
#include "engine/model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "engine/test_data.h"

namespace swarm {
namespace {

using testing::find_testdata;
using testing::read_raw;

struct Case {
  std::string model;  // "tiny-llama"
  std::string type;   // "Q8_0", or "hf" for the Hugging Face folder
  double max_tol;     // in units of S, the prompt's max |logit|
  double mean_tol;
};

std::string model_path(const Case& c) {
  if (c.type == "hf") return find_testdata(c.model + "/hf/config.json").empty() ? "" : find_testdata(c.model + "/hf");
  return find_testdata(c.model + "/gguf/" + c.model + "-" + c.type + ".gguf");
}

std::string ref_dir(const Case& c) { return c.model + "/ref/" + c.type + "/"; }

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.model << "-" << c.type; }

class ReferenceTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    path_ = model_path(GetParam());
    ASSERT_FALSE(path_.empty()) << GetParam() << " is missing from tests/data";
    auto m = Model::Load(path_);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(m).value();
  }
  std::vector<int32_t> ids(int p) { return read_raw<int32_t>(find_testdata(ref_dir(GetParam()) + "p" + std::to_string(p) + "_ids.i32")); }

  std::string path_;
  std::unique_ptr<Model> model_;
  ThreadPool pool_{2};
};

TEST_P(ReferenceTest, LogitsAtEveryPositionWithinTolerance) {
  const Case& c = GetParam();
  const int vocab = model_->config().n_vocab;
  for (int p = 0; p < 2; ++p) {
    const std::vector<int32_t> tokens = ids(p);
    const std::vector<float> ref = read_raw<float>(find_testdata(ref_dir(c) + "p" + std::to_string(p) + "_logits.f32"));
    ASSERT_FALSE(tokens.empty());
    ASSERT_EQ(ref.size(), tokens.size() * vocab);
    auto cache = model_->new_cache(256);
    auto logits = model_->forward(tokens, *cache, pool_);
    ASSERT_TRUE(logits.ok()) << logits.status().ToString();
    double s = 0, max_err = 0, sum_err = 0;
    for (float r : ref) s = std::max(s, std::fabs(static_cast<double>(r)));
    for (size_t i = 0; i < ref.size(); ++i) {
      const double e = std::fabs(static_cast<double>((*logits)[i]) - ref[i]);
      max_err = std::max(max_err, e);
      sum_err += e;
    }
    const double mean_err = sum_err / ref.size();
    const double max_allowed = c.type == "hf" ? 1e-3 + 1e-5 * s : c.max_tol * s;
    EXPECT_LE(max_err, max_allowed) << c << " p" << p << " S=" << s;
    EXPECT_LE(mean_err, c.mean_tol * s) << c << " p" << p << " S=" << s;
    std::printf("[ %s p%d ] max err %.2e S, mean err %.2e S\n", path_.c_str(), p, max_err / s, mean_err / s);
  }
}

// Decodes with the KV cache, one token at a time after the prompt, feeding the
// reference's own tokens (teacher forcing), so one near-tie cannot derail the
// rest: at every step the reference token must be our top choice, or within the
// logit tolerance of it. Where the reference's margins allow, free-running greedy
// decode must reproduce it exactly.
TEST_P(ReferenceTest, KvCachedGreedyDecodeReproducesReference) {
  const Case& c = GetParam();
  const int vocab = model_->config().n_vocab;
  for (int p = 0; p < 2; ++p) {
    const std::vector<int32_t> prompt = ids(p);
    const std::vector<int32_t> greedy = read_raw<int32_t>(find_testdata(ref_dir(c) + "p" + std::to_string(p) + "_greedy.i32"));
    ASSERT_FALSE(greedy.empty());
    const std::vector<float> ref = read_raw<float>(find_testdata(ref_dir(c) + "p" + std::to_string(p) + "_logits.f32"));
    double s = 0;
    for (float r : ref) s = std::max(s, std::fabs(static_cast<double>(r)));
    const double tol = c.type == "hf" ? 1e-3 + 1e-5 * s : c.max_tol * s;

    auto cache = model_->new_cache(256);
    auto logits = model_->forward(prompt, *cache, pool_);
    ASSERT_TRUE(logits.ok()) << logits.status().ToString();
    std::vector<float> last(logits->end() - vocab, logits->end());
    bool exact = true;
    for (size_t i = 0; i < greedy.size(); ++i) {
      const int best = static_cast<int>(std::max_element(last.begin(), last.end()) - last.begin());
      if (best != greedy[i]) {
        exact = false;
        EXPECT_LE(last[best] - last[greedy[i]], 2 * tol)
            << c << " p" << p << " step " << i << ": we prefer " << best << " over the reference's " << greedy[i];
      }
      auto next = model_->forward({greedy[i]}, *cache, pool_);
      ASSERT_TRUE(next.ok()) << next.status().ToString();
      last = std::move(next).value();
    }
    EXPECT_EQ(cache->length(), static_cast<int>(prompt.size() + greedy.size()));
    if (!exact) std::printf("[ %s p%d ] greedy path differs at a near-tie (within tolerance)\n", path_.c_str(), p);
  }
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  // The GGUF files testdata has of each model (its manifest lists the same).
  const std::vector<std::pair<std::string, std::vector<std::string>>> quantized = {
      {"tiny-llama", {"Q8_0", "Q4_0", "Q4_K_M", "Q6_K"}}, {"tiny-qwen2", {"Q8_0", "Q4_K_M"}}};
  for (const auto& [m, types] : quantized) {
    cases.push_back({m, "hf", 0, 1e-5});
    cases.push_back({m, "F16", 0.005, 0.001});
    cases.push_back({m, "BF16", 0.01, 0.002});
    for (const std::string& q : types) cases.push_back({m, q, 0.04, 0.008});
  }
  return cases;
}

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  std::string n = info.param.model + "_" + info.param.type;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

INSTANTIATE_TEST_SUITE_P(Testdata, ReferenceTest, ::testing::ValuesIn(AllCases()), CaseName);

}  // namespace
}  // namespace swarm

namespace swarm {
namespace {

// A Hugging Face folder and the GGUF converted from it are one model: with F16
// weights the GGUF must agree with the float32 folder to F16's tolerance, even
// though the converter permuted llama's q/k rows for the other RoPE pairing.
TEST(HfVersusGguf, SameModelSameLogits) {
  for (const std::string m : {"tiny-llama", "tiny-qwen2"}) {
    const std::string hf = find_testdata(m + "/hf/config.json");
    const std::string gguf = find_testdata(m + "/gguf/" + m + "-F16.gguf");
    ASSERT_FALSE(hf.empty() || gguf.empty()) << m << ": HF folder or F16 GGUF missing from tests/data";
    auto a = Model::Load(hf.substr(0, hf.size() - std::string("/config.json").size()));
    auto b = Model::Load(gguf);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ((*a)->config().rope_neox, true);
    EXPECT_EQ((*b)->config().rope_neox, m == "tiny-qwen2");
    ThreadPool pool(2);
    const std::vector<int32_t> ids = read_raw<int32_t>(find_testdata(m + "/ref/hf/p1_ids.i32"));
    auto ca = (*a)->new_cache(128), cb = (*b)->new_cache(128);
    auto la = (*a)->forward(ids, *ca, pool), lb = (*b)->forward(ids, *cb, pool);
    ASSERT_TRUE(la.ok() && lb.ok());
    double s = 0, err = 0;
    for (size_t i = 0; i < la->size(); ++i) {
      s = std::max(s, std::fabs(static_cast<double>((*la)[i])));
      err = std::max(err, std::fabs(static_cast<double>((*la)[i]) - (*lb)[i]));
    }
    EXPECT_LE(err, 0.005 * s) << m;
  }
}

}  // namespace
}  // namespace swarm
