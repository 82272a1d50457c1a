// Synthetic models: loadable, runnable, and the same underlying weights for one
// seed whatever the type (so a Q4_0 file can draft for a Q8_0 one).
#include "engine/synth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>

#include "engine/gguf.h"
#include "engine/mapped_file.h"
#include "engine/model.h"
#include "engine/quants.h"

namespace swarm {
namespace {

class SynthTest : public ::testing::Test {
 protected:
  std::string temp(const std::string& name) {
    return ::testing::TempDir() + "/synth_" + std::to_string(::getpid()) + "_" + name;
  }
  // Row `row` of tensor `name`, dequantized.
  std::vector<float> row_of(const std::string& path, const std::string& name, int64_t row) {
    auto f = read_gguf(path);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    for (const TensorInfo& t : f->tensors) {
      if (t.name != name) continue;
      const size_t rb = row_size(t.type, t.shape[0]);
      auto region = MappedRegion::Map(path, t.offset + rb * row, rb);
      EXPECT_TRUE(region.ok());
      std::vector<float> out(t.shape[0]);
      EXPECT_TRUE(dequantize_row(t.type, (*region)->data(), out.data(), t.shape[0]));
      return out;
    }
    ADD_FAILURE() << name << " not in " << path;
    return {};
  }
  ThreadPool pool_{2};
};

double rms_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(s / a.size());
}

TEST_F(SynthTest, SameSeedSameWeightsWhateverTheType) {
  const SynthShape* shape = find_synth_shape("demo-tiny");
  ASSERT_NE(shape, nullptr);
  const std::string f16 = temp("a.gguf"), q8 = temp("b.gguf"), q4 = temp("c.gguf"), other = temp("d.gguf");
  ASSERT_TRUE(synthesize_gguf(*shape, "F16", 7, f16, pool_).ok());
  ASSERT_TRUE(synthesize_gguf(*shape, "Q8_0", 7, q8, pool_).ok());
  ASSERT_TRUE(synthesize_gguf(*shape, "Q4_0", 7, q4, pool_).ok());
  ASSERT_TRUE(synthesize_gguf(*shape, "Q8_0", 8, other, pool_).ok());
  for (const char* name : {"token_embd.weight", "blk.3.ffn_down.weight", "blk.0.attn_norm.weight"}) {
    const auto a = row_of(f16, name, 0), b = row_of(q8, name, 0), c = row_of(q4, name, 0), d = row_of(other, name, 0);
    double mean = 0, var = 0;
    for (float x : a) mean += x / a.size();
    for (float x : a) var += (x - mean) * (x - mean) / a.size();
    const double sigma = std::sqrt(var);
    // Quantization moves each weight by a fraction of a step (Q8_0: ~0.004 sigma,
    // Q4_0: ~0.06 sigma for these uniform weights); another seed is another model
    // (sqrt(2) sigma apart).
    EXPECT_LT(rms_diff(a, b), 0.02 * sigma) << name;
    EXPECT_LT(rms_diff(a, c), 0.2 * sigma) << name;
    EXPECT_GT(rms_diff(b, d), 1.0 * sigma) << name;
  }
  for (const std::string& p : {f16, q8, q4, other}) std::remove(p.c_str());
}

TEST_F(SynthTest, EveryTypeLoadsAndRuns) {
  const SynthShape* shape = find_synth_shape("demo-tiny");
  for (const char* type : {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"}) {
    const std::string path = temp(std::string(type) + ".gguf");
    ASSERT_TRUE(synthesize_gguf(*shape, type, 1, path, pool_).ok()) << type;
    auto m = Model::Load(path);
    ASSERT_TRUE(m.ok()) << type << ": " << m.status().ToString();
    EXPECT_EQ((*m)->config().n_layer, shape->config.n_layer);
    EXPECT_EQ((*m)->config().n_vocab, shape->config.n_vocab);
    auto cache = (*m)->new_cache(8);
    auto logits = (*m)->forward({1, 2, 3}, *cache, pool_);
    ASSERT_TRUE(logits.ok()) << type;
    for (float x : *logits) ASSERT_TRUE(std::isfinite(x)) << type;
    std::remove(path.c_str());
  }
}

TEST_F(SynthTest, KMixesFollowLlamaCppAndTokenizerMetadataIsComplete) {
  const std::string path = temp("mix.gguf");
  ASSERT_TRUE(synthesize_gguf(*find_synth_shape("demo-tiny"), "Q4_K_M", 1, path, pool_).ok());
  auto f = read_gguf(path);
  ASSERT_TRUE(f.ok());
  auto type_of = [&](const std::string& n) {
    for (const TensorInfo& t : f->tensors)
      if (t.name == n) return t.type;
    return TensorType::I8;
  };
  EXPECT_EQ(type_of("output.weight"), TensorType::Q6_K);
  EXPECT_EQ(type_of("blk.0.ffn_down.weight"), TensorType::Q6_K);  // first eighth gets more bits
  EXPECT_EQ(type_of("blk.1.ffn_down.weight"), TensorType::Q4_K);
  EXPECT_EQ(type_of("blk.1.attn_q.weight"), TensorType::Q4_K);
  EXPECT_EQ(type_of("blk.1.attn_norm.weight"), TensorType::F32);
  const GgufValue* tokens = f->find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->strings.size(), 8192u);
  EXPECT_EQ(f->find("tokenizer.ggml.scores")->floats.size(), 8192u);
  EXPECT_EQ(*f->get_string("tokenizer.ggml.model"), "llama");
  std::remove(path.c_str());
}

TEST_F(SynthTest, UnknownTypeIsAnError) {
  auto st = synthesize_gguf(*find_synth_shape("demo-tiny"), "Q3_K", 1, temp("x.gguf"), pool_);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("Q3_K"), std::string::npos);
}

TEST(SynthShapes, RealModelsHaveTheirPublishedShapes) {
  struct Want { const char* name; int layers, d, ff, heads, kv, vocab; bool tied; const char* arch; };
  for (const Want& w : {Want{"tinyllama-1.1b", 22, 2048, 5632, 32, 4, 32000, false, "llama"},
                        Want{"llama-3.2-1b", 16, 2048, 8192, 32, 8, 128256, true, "llama"},
                        Want{"llama-3-8b", 32, 4096, 14336, 32, 8, 128256, false, "llama"},
                        Want{"qwen2.5-0.5b", 24, 896, 4864, 14, 2, 151936, true, "qwen2"},
                        Want{"qwen2.5-7b", 28, 3584, 18944, 28, 4, 152064, false, "qwen2"}}) {
    const SynthShape* s = find_synth_shape(w.name);
    ASSERT_NE(s, nullptr) << w.name;
    const ModelConfig& c = s->config;
    EXPECT_EQ(c.n_layer, w.layers) << w.name;
    EXPECT_EQ(c.n_embd, w.d) << w.name;
    EXPECT_EQ(c.n_ff, w.ff) << w.name;
    EXPECT_EQ(c.n_head, w.heads) << w.name;
    EXPECT_EQ(c.n_head_kv, w.kv) << w.name;
    EXPECT_EQ(c.n_vocab, w.vocab) << w.name;
    EXPECT_EQ(c.tied_embeddings, w.tied) << w.name;
    EXPECT_EQ(c.arch, w.arch) << w.name;
  }
}

}  // namespace
}  // namespace swarm
