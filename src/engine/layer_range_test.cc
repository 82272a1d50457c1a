// Running a model by layer ranges, as a pipeline of nodes does: any split gives
// bit-for-bit the single-process result, matches the per-layer references, maps
// only its own tensors; and the KV cache batches, chunks and rolls back without
// changing a single bit of any sequence's result.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/model.h"
#include "engine/test_data.h"

namespace swarm {
namespace {

using testing::find_testdata;
using testing::read_raw;

std::unique_ptr<Model> load(const std::string& path, int first = 0, int last = -1) {
  LoadOptions o;
  o.first_layer = first;
  o.last_layer = last;
  auto m = Model::Load(path, o);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

// tiny-llama's Q8_0 GGUF from tests/data.
std::string any_llama() {
  std::string p = find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
  return p;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Per-layer references exist for the float32 Hugging Face weights only.
TEST(LayerRange, ResidualAfterEachLayerMatchesReferenceForEverySplit) {
  for (const std::string model : {"tiny-llama", "tiny-qwen2"}) {
    const std::string dir = find_testdata(model + "/hf/config.json");
    ASSERT_FALSE(dir.empty()) << model << "/hf is missing from tests/data";
    const std::string path = dir.substr(0, dir.size() - std::string("/config.json").size());
    auto full = load(path);
    ASSERT_NE(full, nullptr);
    const int L = full->config().n_layer, d = full->config().n_embd;
    ThreadPool pool(2);
    for (int p = 0; p < 2; ++p) {
      const std::string ref = model + "/ref/hf/p" + std::to_string(p);
      const std::vector<int32_t> ids = read_raw<int32_t>(find_testdata(ref + "_ids.i32"));
      const int n = static_cast<int>(ids.size());
      // Splits: everything at once, one layer at a time, and each two-way cut.
      std::vector<std::vector<int>> splits = {{0, L}};
      std::vector<int> each;
      for (int k = 0; k <= L; ++k) each.push_back(k);
      splits.push_back(each);
      for (int cut = 1; cut < L; ++cut) splits.push_back({0, cut, L});
      std::vector<float> unsplit;
      for (const std::vector<int>& split : splits) {
        std::vector<float> h(static_cast<size_t>(n) * d);
        ASSERT_TRUE(full->embed(ids.data(), n, h.data()).ok());
        for (size_t s = 0; s + 1 < split.size(); ++s) {
          // Each range in its own Model, as separate nodes would hold them.
          auto stage = load(path, split[s], split[s + 1]);
          ASSERT_NE(stage, nullptr);
          auto cache = stage->new_cache(n);
          ASSERT_TRUE(stage->run_layers(h.data(), {{cache.get(), n}}, split[s], split[s + 1], pool).ok());
          if (split[s + 1] - split[s] != 1) continue;
          const std::vector<float> want = read_raw<float>(find_testdata(ref + "_layer" + std::to_string(split[s]) + ".f32"));
          ASSERT_EQ(want.size(), h.size());
          double scale = 0, err = 0;
          for (size_t i = 0; i < h.size(); ++i) {
            scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
            err = std::max(err, std::fabs(static_cast<double>(h[i]) - want[i]));
          }
          EXPECT_LE(err, 1e-4 * scale + 1e-4) << model << " p" << p << " after layer " << split[s];
        }
        if (unsplit.empty()) unsplit = h;
        else EXPECT_TRUE(same_bits(unsplit, h)) << model << " p" << p << ": a split changed the residual stream";
      }
    }
  }
}

TEST(LayerRange, SplitModelsGiveBitIdenticalLogits) {
  const std::string path = any_llama();
  ASSERT_FALSE(path.empty()) << "tiny-llama-Q8_0.gguf is missing from tests/data";
  auto full = load(path);
  ASSERT_NE(full, nullptr);
  ThreadPool pool(2);
  const std::vector<int32_t> ids = {1, 568, 427, 941, 403, 358, 307, 499, 392};
  const int n = static_cast<int>(ids.size());
  auto cache = full->new_cache(n);
  auto want = full->forward(ids, *cache, pool);
  ASSERT_TRUE(want.ok());

  auto first = load(path, 0, 1), mid = load(path, 1, 3), last = load(path, 3, 4);
  ASSERT_TRUE(first && mid && last);
  EXPECT_TRUE(first->has_embed() && !first->has_head());
  EXPECT_TRUE(!mid->has_embed() && !mid->has_head());
  EXPECT_TRUE(!last->has_embed() && last->has_head());
  // A middle stage maps only its layers' tensors, far less than the whole model.
  EXPECT_LT(mid->mapped_bytes(), full->mapped_bytes() / 2);
  // Its spans (for a read pass over them) cover exactly those bytes.
  size_t span_bytes = 0;
  for (const auto& span : mid->mapped_spans()) span_bytes += span.size();
  EXPECT_EQ(span_bytes, mid->mapped_bytes());
  EXPECT_FALSE(mid->embed(ids.data(), n, nullptr).ok());

  const int d = full->config().n_embd;
  std::vector<float> h(static_cast<size_t>(n) * d), logits(static_cast<size_t>(n) * full->config().n_vocab);
  auto c0 = first->new_cache(n), c1 = mid->new_cache(n), c2 = last->new_cache(n);
  ASSERT_TRUE(first->embed(ids.data(), n, h.data()).ok());
  ASSERT_TRUE(first->run_layers(h.data(), {{c0.get(), n}}, 0, 1, pool).ok());
  ASSERT_TRUE(mid->run_layers(h.data(), {{c1.get(), n}}, 1, 3, pool).ok());
  ASSERT_TRUE(last->run_layers(h.data(), {{c2.get(), n}}, 3, 4, pool).ok());
  ASSERT_TRUE(last->head(h.data(), n, logits.data(), pool).ok());
  EXPECT_TRUE(same_bits(*want, logits));
  // A range the model was not loaded for is refused, not computed.
  EXPECT_FALSE(mid->run_layers(h.data(), {{c1.get(), n}}, 0, 2, pool).ok());
}

// Several sequences decoding in one batch get exactly what each gets alone, and a
// prompt fed in chunks gives exactly what it gives in one piece.
TEST(KvCache, BatchedAndChunkedDecodeAreBitIdenticalToSingleSequence) {
  const std::string path = any_llama();
  ASSERT_FALSE(path.empty()) << "tiny-llama-Q8_0.gguf is missing from tests/data";
  auto m = load(path);
  ASSERT_NE(m, nullptr);
  ThreadPool pool(2);
  const int d = m->config().n_embd, V = m->config().n_vocab;
  const std::vector<std::vector<int32_t>> prompts = {{1, 5, 9, 200, 17}, {1, 300}, {1, 7, 7, 7, 7, 7, 7, 8}};
  const std::vector<int32_t> next = {42, 43, 44};

  // Alone: prompt then one decode step each.
  std::vector<std::vector<float>> alone;
  for (size_t s = 0; s < prompts.size(); ++s) {
    auto cache = m->new_cache(64);
    ASSERT_TRUE(m->forward(prompts[s], *cache, pool).ok());
    auto step = m->forward({next[s]}, *cache, pool);
    ASSERT_TRUE(step.ok());
    alone.push_back(*step);
  }
  // Together: prompts in chunks of 3, then the three decode steps in one batch.
  std::vector<std::unique_ptr<KvCache>> caches;
  for (const auto& p : prompts) {
    caches.push_back(m->new_cache(64));
    for (size_t i = 0; i < p.size(); i += 3) {
      std::vector<int32_t> chunk(p.begin() + i, p.begin() + std::min(p.size(), i + 3));
      ASSERT_TRUE(m->forward(chunk, *caches.back(), pool).ok());
    }
  }
  std::vector<float> h(3 * d), logits(3 * V);
  ASSERT_TRUE(m->embed(next.data(), 3, h.data()).ok());
  ASSERT_TRUE(m->run_layers(h.data(), {{caches[0].get(), 1}, {caches[1].get(), 1}, {caches[2].get(), 1}}, 0,
                            m->config().n_layer, pool).ok());
  ASSERT_TRUE(m->head(h.data(), 3, logits.data(), pool).ok());
  for (int s = 0; s < 3; ++s) {
    std::vector<float> row(logits.begin() + s * V, logits.begin() + (s + 1) * V);
    EXPECT_TRUE(same_bits(alone[s], row)) << "sequence " << s;
    EXPECT_EQ(caches[s]->length(), static_cast<int>(prompts[s].size() + 1));
  }
}

// Speculative decoding appends drafts and rolls back the rejected ones: after a
// truncate, the cache must behave as if the drafts had never been there.
TEST(KvCache, TruncateRollsBackExactly) {
  const std::string path = any_llama();
  ASSERT_FALSE(path.empty()) << "tiny-llama-Q8_0.gguf is missing from tests/data";
  auto m = load(path);
  ASSERT_NE(m, nullptr);
  ThreadPool pool(1);
  auto fresh = m->new_cache(32);
  ASSERT_TRUE(m->forward({1, 20, 30}, *fresh, pool).ok());
  auto want = m->forward({99}, *fresh, pool);
  ASSERT_TRUE(want.ok());

  auto cache = m->new_cache(32);
  ASSERT_TRUE(m->forward({1, 20, 30, 500, 501, 502}, *cache, pool).ok());
  ASSERT_TRUE(cache->truncate(3).ok());
  EXPECT_EQ(cache->length(), 3);
  auto got = m->forward({99}, *cache, pool);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(same_bits(*want, *got));
  EXPECT_FALSE(cache->truncate(10).ok());
  EXPECT_FALSE(cache->truncate(-1).ok());
}

TEST(KvCache, FullCacheIsResourceExhaustedNotACrash) {
  const std::string path = any_llama();
  ASSERT_FALSE(path.empty()) << "tiny-llama-Q8_0.gguf is missing from tests/data";
  auto m = load(path);
  ASSERT_NE(m, nullptr);
  ThreadPool pool(1);
  auto cache = m->new_cache(4);
  ASSERT_TRUE(m->forward({1, 2, 3}, *cache, pool).ok());
  auto r = m->forward({4, 5}, *cache, pool);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kResourceExhausted);
  EXPECT_EQ(cache->length(), 3);  // nothing half-appended
}

}  // namespace
}  // namespace swarm

namespace swarm {
namespace {

// --no-mmap reads the same bytes into memory: the numbers cannot change.
TEST(LoadOptions, ReadingInsteadOfMappingGivesTheSameLogits) {
  const std::string path = testing::find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
  ASSERT_FALSE(path.empty()) << "tiny-llama-Q8_0.gguf is missing from tests/data";
  LoadOptions read;
  read.no_mmap = true;
  auto a = Model::Load(path), b = Model::Load(path, read);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->mapped_bytes(), (*b)->mapped_bytes());
  ThreadPool pool(1);
  auto ca = (*a)->new_cache(8), cb = (*b)->new_cache(8);
  auto la = (*a)->forward({1, 20, 30, 40}, *ca, pool), lb = (*b)->forward({1, 20, 30, 40}, *cb, pool);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_EQ(std::memcmp(la->data(), lb->data(), la->size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace swarm
