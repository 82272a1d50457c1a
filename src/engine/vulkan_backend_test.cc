// Models on device "vulkan" against device "cpu", and the invariances every
// backend owes the pipeline (compute_backend.h) checked bit for bit on the
// device: a sequence alone or batched, a prompt whole or in chunks, a cache
// truncated and re-run, a layer range whole or split. Skips, saying why, where
// there is no Vulkan device.
#include <gtest/gtest.h>

#ifdef SWARM_HAVE_VULKAN_KERNELS

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/backend_select.h"
#include "engine/compute_devices.h"
#include "engine/model.h"
#include "engine/synth.h"
#include "engine/test_data.h"
#include "engine/vulkan_backend.h"
#include "engine/vulkan_sizes.h"

#include <unistd.h>

namespace swarm {
namespace {

// Logits of device "vulkan" against "cpu": each row's largest difference over
// its largest magnitude, by the model's weight type. With float weights the
// layers are the CPU's sequences but for the norms' float32 sums and the
// device's division (measured 4.7e-7 for tiny-llama F16, 2.1e-7 for tiny-qwen2
// F16, 4.2e-7 with llama3 or linear RoPE scaling, on lavapipe). With quantised weights the CPU
// also rounds activations to 8 bits before each matmul (Q8_0 / Q8_K) and the
// device does not (doc/vulkan.md); that rounding, carried through every layer,
// dominates: measured 1.0e-2 (kjv-target), 1.6e-2 (tiny-llama) and 0.7e-2
// (tiny-qwen2) for Q8_0, 2.9e-2 for Q4_K_M. The bounds leave about 2x room for
// other drivers. The device is not the worse of the two: against PyTorch's
// float32 logits of kjv-target it is closer than the CPU (max error 7.7e-3 of the
// largest logit, mean 5.7e-4, against the CPU's 1.2e-2 and 1.2e-3: VulkanBackend.
// ShippedModelMatchesPyTorchWithinTheQ8Tolerance).
double logit_tolerance(const std::string& model) {
  if (model.find("F16") != std::string::npos || model.find("F32") != std::string::npos) return 1e-5;
  if (model.find("Q8_0") != std::string::npos) return 3e-2;
  return 6e-2;
}

std::string no_vulkan_reason() {
  const DeviceList list = list_compute_devices();
  for (const ComputeDevice& d : list.devices)
    if (d.backend == "vulkan") return "";
  return "no Vulkan device: " + list.vulkan_note;
}

std::string model_path(const std::string& name) {
  if (name.rfind("kjv", 0) == 0) return std::string(SWARM_SOURCE_DIR) + "/models/" + name + ".gguf";
  return testing::find_testdata(name);
}

Result<std::unique_ptr<Model>> load(const std::string& path, const std::string& device,
                                    int first = 0, int last = -1) {
  LoadOptions o;
  o.device = device;
  o.first_layer = first;
  o.last_layer = last;
  return Model::Load(path, o);
}

std::vector<int32_t> prompt(const Model& m, int n, int salt) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (7 + 31 * i + 101 * salt) % m.config().n_vocab;
  return t;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

int argmax(const float* row, int n) { return static_cast<int>(std::max_element(row, row + n) - row); }

class VulkanBackendModel : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string why = no_vulkan_reason();
    if (!why.empty()) GTEST_SKIP() << why;
    path_ = model_path(GetParam());
    ASSERT_FALSE(path_.empty()) << GetParam();
    auto m = load(path_, "vulkan");
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    gpu_ = std::move(m).value();
  }

  // Logits of `tokens` run as one chunk after `cache`'s positions.
  std::vector<float> logits(const Model& m, KvCache& cache, const std::vector<int32_t>& tokens) {
    auto r = m.forward(tokens, cache, pool_);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : std::vector<float>();
  }

  std::string path_;
  std::unique_ptr<Model> gpu_;
  ThreadPool pool_{2};
};

TEST_P(VulkanBackendModel, IsNamedInexactAndKeepsItsCachesOnTheDevice) {
  EXPECT_EQ(gpu_->backend().name().rfind("vulkan:", 0), 0u) << gpu_->backend().name();
  EXPECT_FALSE(gpu_->backend().exact());
  auto cache = gpu_->new_cache(8);
  EXPECT_NE(dynamic_cast<vk::VulkanKvStorage*>(&cache->storage()), nullptr);
}

TEST_P(VulkanBackendModel, LogitsMatchTheCpuWithinTolerance) {
  auto cpu = load(path_, "cpu");
  ASSERT_TRUE(cpu.ok()) << cpu.status().ToString();
  const std::vector<int32_t> tokens = prompt(*gpu_, 12, 0);
  auto gc = gpu_->new_cache(32);
  auto cc = (*cpu)->new_cache(32);
  const std::vector<float> g = logits(*gpu_, *gc, tokens);
  const std::vector<float> c = logits(**cpu, *cc, tokens);
  ASSERT_EQ(g.size(), c.size());
  const int V = gpu_->config().n_vocab;
  double worst = 0;
  for (size_t t = 0; t < tokens.size(); ++t) {
    double amax = 0, dmax = 0;
    for (int i = 0; i < V; ++i) {
      amax = std::max(amax, std::fabs(double{c[t * V + i]}));
      dmax = std::max(dmax, std::fabs(double{g[t * V + i]} - c[t * V + i]));
    }
    worst = std::max(worst, dmax / amax);
  }
  RecordProperty("worst_relative_logit_difference", std::to_string(worst));
  std::printf("%s: worst relative logit difference %.3g\n", GetParam().c_str(), worst);
  EXPECT_LE(worst, logit_tolerance(GetParam()));
}

TEST_P(VulkanBackendModel, GreedyGenerationGivesTheCpusTokens) {
  auto cpu = load(path_, "cpu");
  ASSERT_TRUE(cpu.ok()) << cpu.status().ToString();
  const int V = gpu_->config().n_vocab;
  auto generate = [&](const Model& m) {
    auto cache = m.new_cache(64);
    std::vector<int32_t> next = prompt(m, 6, 1), out;
    for (int i = 0; i < 16; ++i) {
      const std::vector<float> l = logits(m, *cache, next);
      if (l.empty()) break;
      out.push_back(argmax(l.data() + (next.size() - 1) * V, V));
      next = {out.back()};
    }
    return out;
  };
  const std::vector<int32_t> g = generate(*gpu_);
  EXPECT_EQ(g.size(), 16u);
  EXPECT_EQ(g, generate(**cpu));
}

TEST_P(VulkanBackendModel, ASequenceBatchedWithAnotherGivesItsBitsAlone) {
  const Model& m = *gpu_;
  const int d = m.config().n_embd, L = m.config().n_layer;
  const std::vector<int32_t> a = prompt(m, 5, 2), b = prompt(m, 3, 3);
  // Alone.
  auto alone = m.new_cache(16);
  std::vector<float> ha(a.size() * d);
  ASSERT_TRUE(m.embed(a.data(), a.size(), ha.data()).ok());
  ASSERT_TRUE(m.run_layers(ha.data(), {{alone.get(), 5}}, 0, L, pool_).ok());
  // The same tokens beside another sequence's, in one call.
  auto ca = m.new_cache(16), cb = m.new_cache(16);
  std::vector<int32_t> both = b;
  both.insert(both.end(), a.begin(), a.end());
  std::vector<float> hb(both.size() * d);
  ASSERT_TRUE(m.embed(both.data(), both.size(), hb.data()).ok());
  const Status s = m.run_layers(hb.data(), {{cb.get(), 3}, {ca.get(), 5}}, 0, L, pool_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(same_bits(ha, std::vector<float>(hb.begin() + 3 * d, hb.end())));
  // And a decode step after, batched again, still matches.
  const int32_t t = 11;
  std::vector<float> x1(d), x2(2 * d);
  ASSERT_TRUE(m.embed(&t, 1, x1.data()).ok());
  ASSERT_TRUE(m.run_layers(x1.data(), {{alone.get(), 1}}, 0, L, pool_).ok());
  const int32_t tt[2] = {t, t};
  ASSERT_TRUE(m.embed(tt, 2, x2.data()).ok());
  ASSERT_TRUE(m.run_layers(x2.data(), {{ca.get(), 1}, {cb.get(), 1}}, 0, L, pool_).ok());
  EXPECT_TRUE(same_bits(x1, std::vector<float>(x2.begin(), x2.begin() + d)));
}

TEST_P(VulkanBackendModel, APromptInChunksGivesTheBitsOfThePromptWhole) {
  const std::vector<int32_t> p = prompt(*gpu_, 9, 4);
  auto whole = gpu_->new_cache(16), chunked = gpu_->new_cache(16);
  const std::vector<float> w = logits(*gpu_, *whole, p);
  std::vector<float> c = logits(*gpu_, *chunked, {p.begin(), p.begin() + 4});
  const std::vector<float> rest = logits(*gpu_, *chunked, {p.begin() + 4, p.end()});
  c.insert(c.end(), rest.begin(), rest.end());
  EXPECT_TRUE(same_bits(w, c));
}

TEST_P(VulkanBackendModel, ATruncatedCacheReRunGivesTheSameBits) {
  const std::vector<int32_t> p = prompt(*gpu_, 6, 5), more = prompt(*gpu_, 3, 6),
                             other = prompt(*gpu_, 3, 7);
  auto cache = gpu_->new_cache(32);
  logits(*gpu_, *cache, p);
  const std::vector<float> first = logits(*gpu_, *cache, more);
  ASSERT_TRUE(cache->truncate(6).ok());
  logits(*gpu_, *cache, other);  // a rejected draft overwrites the positions
  ASSERT_TRUE(cache->truncate(6).ok());
  EXPECT_TRUE(same_bits(first, logits(*gpu_, *cache, more)));
}

TEST_P(VulkanBackendModel, ACacheGrowingPastItsFirstCapacityKeepsWhatItHeld) {
  // The storage starts at 64 positions and grows by copying on the device.
  const std::vector<int32_t> p = prompt(*gpu_, 70, 8);
  auto grown = gpu_->new_cache(128), whole = gpu_->new_cache(128);
  std::vector<float> g = logits(*gpu_, *grown, {p.begin(), p.begin() + 60});
  const std::vector<float> rest = logits(*gpu_, *grown, {p.begin() + 60, p.end()});
  g.insert(g.end(), rest.begin(), rest.end());
  EXPECT_TRUE(same_bits(g, logits(*gpu_, *whole, p)));
}

TEST_P(VulkanBackendModel, SplitLayerRangesEqualTheWhole) {
  const Model& m = *gpu_;
  const int d = m.config().n_embd, L = m.config().n_layer, k = L / 2;
  ASSERT_GT(k, 0);
  const std::vector<int32_t> p = prompt(m, 7, 9);
  std::vector<float> h(p.size() * d);
  ASSERT_TRUE(m.embed(p.data(), p.size(), h.data()).ok());
  std::vector<float> split = h;
  auto whole = m.new_cache(16);
  ASSERT_TRUE(m.run_layers(h.data(), {{whole.get(), 7}}, 0, L, pool_).ok());
  // Two stages as two models on the device, as a pipeline splits them.
  auto front = load(path_, "vulkan", 0, k);
  auto back = load(path_, "vulkan", k, L);
  ASSERT_TRUE(front.ok()) << front.status().ToString();
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  auto cf = (*front)->new_cache(16), cb = (*back)->new_cache(16);
  ASSERT_TRUE((*front)->run_layers(split.data(), {{cf.get(), 7}}, 0, k, pool_).ok());
  ASSERT_TRUE((*back)->run_layers(split.data(), {{cb.get(), 7}}, k, L, pool_).ok());
  EXPECT_TRUE(same_bits(h, split));
  std::vector<float> la(p.size() * m.config().n_vocab), lb(la.size());
  ASSERT_TRUE(m.head(h.data(), p.size(), la.data(), pool_).ok());
  ASSERT_TRUE((*back)->head(split.data(), p.size(), lb.data(), pool_).ok());
  EXPECT_TRUE(same_bits(la, lb));
}

TEST_P(VulkanBackendModel, ThreadsSharingTheModelGetTheBitsOfOneAlone) {
  // Model's const methods may be called from several threads at once; the
  // backend serialises them on its one queue.
  const std::vector<int32_t> p = prompt(*gpu_, 5, 10);
  auto solo = gpu_->new_cache(16);
  const std::vector<float> want = logits(*gpu_, *solo, p);
  std::vector<std::vector<float>> got(3);
  std::vector<std::thread> threads;
  for (auto& g : got)
    threads.emplace_back([&, out = &g] {
      ThreadPool pool(1);
      auto cache = gpu_->new_cache(16);
      auto r = gpu_->forward(p, *cache, pool);
      if (r.ok()) *out = std::move(r).value();
    });
  for (auto& t : threads) t.join();
  for (const auto& g : got) EXPECT_TRUE(same_bits(g, want));
}

TEST_P(VulkanBackendModel, AKvCacheTooBigForTheDeviceIsResourceExhausted) {
  // 2^26 positions of every layer's K and V: far past any device's memory.
  const int max_len = 1 << 26;
  auto cache = gpu_->new_cache(max_len);
  const Status s = cache->reserve(max_len);
  ASSERT_EQ(s.code(), Status::Code::kResourceExhausted) << s.ToString();
  EXPECT_NE(s.message().find("MiB free"), std::string::npos) << s.ToString();
  // Nothing was taken: a small cache still works.
  auto small = gpu_->new_cache(8);
  EXPECT_EQ(logits(*gpu_, *small, prompt(*gpu_, 3, 11)).size(), 3u * gpu_->config().n_vocab);
}

TEST_P(VulkanBackendModel, RefusesACacheTheCpuMade) {
  auto cpu = load(path_, "cpu");
  ASSERT_TRUE(cpu.ok()) << cpu.status().ToString();
  auto foreign = (*cpu)->new_cache(8);
  const int32_t t = 3;
  std::vector<float> h(gpu_->config().n_embd);
  ASSERT_TRUE(gpu_->embed(&t, 1, h.data()).ok());
  const Status s = gpu_->run_layers(h.data(), {{foreign.get(), 1}}, 0, gpu_->config().n_layer, pool_);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_EQ(foreign->length(), 0);
}

// Hidden states of `tokens` after every layer, run after `cache`'s positions in
// calls of at most `per_call` tokens.
std::vector<float> hidden_after(const Model& m, KvCache& cache, const std::vector<int32_t>& tokens,
                                size_t per_call, ThreadPool& pool) {
  const int d = m.config().n_embd;
  std::vector<float> h(tokens.size() * d);
  EXPECT_TRUE(m.embed(tokens.data(), tokens.size(), h.data()).ok());
  for (size_t i = 0; i < tokens.size(); i += per_call) {
    const int n = static_cast<int>(std::min(per_call, tokens.size() - i));
    const Status s = m.run_layers(h.data() + i * d, {{&cache, n}}, 0, m.config().n_layer, pool);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  return h;
}

// Prompts of thousands of tokens, on a model small enough that lavapipe runs
// them in a second or two (two Q8_0 layers of 64, four heads over two).
class VulkanBackendLongPrompt : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!no_vulkan_reason().empty()) return;
    SynthShape shape = *find_synth_shape("demo-tiny");
    ModelConfig& c = shape.config;
    c.n_layer = 2, c.n_embd = 64, c.n_ff = 128, c.n_head = 4, c.n_head_kv = 2;
    c.head_dim = c.rope_dim = 16;
    path_ = ::testing::TempDir() + "/swarm_vulkan_long_" + std::to_string(::getpid()) + ".gguf";
    ThreadPool pool(2);
    const Status s = synthesize_gguf(shape, "Q8_0", 3, path_, pool);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  static void TearDownTestSuite() { std::filesystem::remove(path_); }
  void SetUp() override {
    const std::string why = no_vulkan_reason();
    if (!why.empty()) GTEST_SKIP() << why;
    auto m = load(path_, "vulkan");
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(m).value();
  }

  static inline std::string path_;
  std::unique_ptr<Model> model_;
  ThreadPool pool_{2};
};

// A prompt longer than one submit runs in several (vulkan_sizes.h), each
// reading the keys and values the ones before wrote: its bits are those of the
// prompt in short calls, and of each sequence of a batch alone, wherever the
// submits' boundaries cut.
TEST_F(VulkanBackendLongPrompt, GivesTheBitsOfItsPieces) {
  const Model& m = *model_;
  const int d = m.config().n_embd;
  const int n = static_cast<int>(vk::kMaxRowsPerSubmit) + 37;
  const std::vector<int32_t> p = prompt(m, n, 8);
  auto whole = m.new_cache(n), pieces = m.new_cache(n);
  EXPECT_TRUE(same_bits(hidden_after(m, *whole, p, p.size(), pool_),
                        hidden_after(m, *pieces, p, 100, pool_)));

  // Two sequences of 300 in one call: the second crosses the first submit's end.
  const std::vector<int32_t> a = prompt(m, 300, 9), b = prompt(m, 300, 10);
  auto ca = m.new_cache(300), cb = m.new_cache(300), ca2 = m.new_cache(300), cb2 = m.new_cache(300);
  std::vector<int32_t> both = a;
  both.insert(both.end(), b.begin(), b.end());
  std::vector<float> h(both.size() * d);
  ASSERT_TRUE(m.embed(both.data(), both.size(), h.data()).ok());
  const Status s = m.run_layers(h.data(), {{ca.get(), 300}, {cb.get(), 300}}, 0, m.config().n_layer, pool_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<float> alone = hidden_after(m, *ca2, a, 300, pool_);
  const std::vector<float> b_alone = hidden_after(m, *cb2, b, 300, pool_);
  alone.insert(alone.end(), b_alone.begin(), b_alone.end());
  EXPECT_TRUE(same_bits(h, alone));
  EXPECT_EQ(cb->length(), 300);
}

// What a long prompt takes on the device while it runs, head included, stays
// within what load() checked for its context: two submits' worth of rows and
// more in one call (in one submit they would take more than the checked
// rows), and logits for all of them.
TEST_F(VulkanBackendLongPrompt, TakesNoMoreThanTheCheckedWorkspace) {
  const Model& m = *model_;
  const int n = 2 * static_cast<int>(vk::kMaxRowsPerSubmit) + 5;
  auto cache = m.new_cache(n);
  ASSERT_TRUE(cache->reserve(n).ok());  // the cache's own memory, counted apart
  vk::VulkanContext& ctx = *static_cast<const vk::VulkanKvStorage&>(cache->storage()).device()->ctx;
  ctx.reset_peak();
  const uint64_t before = ctx.used_bytes();
  auto l = m.forward(prompt(m, n, 11), *cache, pool_);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  ASSERT_EQ(l->size(), static_cast<size_t>(n) * m.config().n_vocab);
  const uint64_t took = ctx.peak_used_bytes() - before, bound = vk::workspace_bytes(m.config(), true, n);
  std::printf("%d tokens took %.2f MiB of workspace, %.2f MiB checked at load\n", n, took / 1048576.0,
              bound / 1048576.0);
  EXPECT_GT(took, 0u);
  EXPECT_LE(took, bound);
}

// The shipped model, and the reference models' architectures and types: llama
// (adjacent-pair RoPE) and qwen2 (biases, neox RoPE), 8-bit, K-quant and float.
INSTANTIATE_TEST_SUITE_P(Models, VulkanBackendModel,
                         ::testing::Values("kjv-target-Q8_0", "tiny-llama/gguf/tiny-llama-Q8_0.gguf",
                                           "tiny-llama/gguf/tiny-llama-Q4_K_M.gguf",
                                           "tiny-llama/gguf/tiny-llama-F16.gguf",
                                           "tiny-qwen2/gguf/tiny-qwen2-Q8_0.gguf",
                                           "tiny-qwen2/gguf/tiny-qwen2-F16.gguf"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string s = info.param.substr(info.param.rfind('/') + 1);
                           s = s.substr(0, s.find(".gguf"));
                           for (char& ch : s)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

TEST(VulkanBackend, ShippedModelMatchesPyTorchWithinTheQ8Tolerance) {
  // shipped_models_test.cc's check of the CPU, on the device: its errors against
  // the float32 reference are within the same bounds.
  const std::string why = no_vulkan_reason();
  if (!why.empty()) GTEST_SKIP() << why;
  const std::string ref = std::string(SWARM_SOURCE_DIR) + "/models/ref/kjv-target/";
  auto model = load(model_path("kjv-target-Q8_0"), "vulkan");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const std::vector<int32_t> ids = testing::read_raw<int32_t>(ref + "prompt_ids.i32");
  const std::vector<float> want = testing::read_raw<float>(ref + "prompt_logits.f32");
  ASSERT_EQ(want.size(), ids.size() * (*model)->config().n_vocab);
  ThreadPool pool(1);
  auto cache = (*model)->new_cache(64);
  auto got = (*model)->forward(ids, *cache, pool);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  const testing::ReferenceError err = testing::error_against_reference(*got, want);
  std::printf("kjv-target on vulkan: max err %.2e S, mean err %.2e S\n", err.max, err.mean);
  EXPECT_LE(err.max, 0.04);
  EXPECT_LE(err.mean, 0.008);
}

// RoPE's frequency scalings reach the device as the CPU computes them: the
// float32 reference model (tests/data/models/tiny-llama/hf) with its config.json
// given llama3's or linear scaling, on both devices. Float weights keep the
// tolerance tight (see logit_tolerance), so a wrong frequency would show.
class VulkanBackendRopeScaling : public ::testing::TestWithParam<const char*> {};

TEST_P(VulkanBackendRopeScaling, MatchesTheCpu) {
  const std::string why = no_vulkan_reason();
  if (!why.empty()) GTEST_SKIP() << why;
  namespace fs = std::filesystem;
  const fs::path src = testing::find_testdata("tiny-llama/hf");
  ASSERT_FALSE(src.empty());
  const fs::path dir = fs::temp_directory_path() /
                       ("swarm_vulkan_rope_" + std::to_string(::getpid()) + "_" + GetParam());
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(src))
    if (e.path().filename() != "config.json")
      fs::create_symlink(e.path(), dir / e.path().filename());
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(src / "config.json"));
  if (std::string(GetParam()) == "llama3")
    // An original context of 64 positions puts most of the 16 frequencies in
    // llama3's scaled or blended bands.
    cfg["rope_parameters"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                              {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64},
                              {"rope_theta", 10000.0}};
  else
    cfg["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 4.0}, {"rope_theta", 10000.0}};
  std::ofstream(dir / "config.json") << cfg.dump();

  auto gpu = load(dir.string(), "vulkan");
  auto cpu = load(dir.string(), "cpu");
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  ASSERT_TRUE(cpu.ok()) << cpu.status().ToString();
  EXPECT_EQ((*gpu)->config().rope_scaling, std::string(GetParam()) == "llama3"
                                                ? RopeScaling::kLlama3
                                                : RopeScaling::kLinear);
  ThreadPool pool(2);
  const std::vector<int32_t> p = prompt(**gpu, 40, 12);
  auto gc = (*gpu)->new_cache(64), cc = (*cpu)->new_cache(64);
  auto g = (*gpu)->forward(p, *gc, pool);
  auto c = (*cpu)->forward(p, *cc, pool);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  double amax = 0, dmax = 0;
  for (size_t i = 0; i < c->size(); ++i) {
    amax = std::max(amax, std::fabs(double{(*c)[i]}));
    dmax = std::max(dmax, std::fabs(double{(*g)[i]} - (*c)[i]));
  }
  std::printf("%s scaling: worst logit difference %.3g of the largest\n", GetParam(), dmax / amax);
  EXPECT_LE(dmax / amax, 1e-5);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Scalings, VulkanBackendRopeScaling, ::testing::Values("llama3", "linear"));

TEST(VulkanBackend, AModelTooBigForTheDeviceIsRefusedBeforeAnyUpload) {
  const std::string why = no_vulkan_reason();
  if (!why.empty()) GTEST_SKIP() << why;
  auto b = select_backend("vulkan");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  // One layer of seven F16 matrices of 2 GiB each: more than any device this
  // test meets has free (lavapipe's heap is 2 GiB). Their data is a small real
  // buffer: load() must refuse from the sizes alone, before reading a byte, or
  // it would read past it.
  ModelConfig c;
  c.n_layer = 1;
  c.n_embd = 32768;
  c.n_head = c.n_head_kv = 256;
  c.head_dim = 128;
  c.n_ff = 32768;
  c.n_vocab = 32;
  c.rope_dim = 128;
  std::vector<uint8_t> small(1 << 16);
  std::vector<float> norm(c.n_embd, 1.0f);
  ModelWeights w;
  w.first_layer = 0;
  w.last_layer = 1;
  LayerWeights L;
  L.attn_norm = L.ffn_norm = norm.data();
  for (WeightMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down})
    *m = WeightMatrix{TensorType::F16, c.n_embd, c.n_embd, small.data()};
  w.layers.push_back(L);
  const Status s = (*b)->load(c, w, 4096);
  ASSERT_EQ(s.code(), Status::Code::kResourceExhausted) << s.ToString();
  // The weights, and the workspace at its largest for that context, named apart.
  EXPECT_NE(s.message().find("MiB of device memory"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("(weights 14337 MiB, workspace " +
                             std::to_string((vk::workspace_bytes(c, false, 4096) + (1 << 20) - 1) >> 20) +
                             " MiB for a context of 4096)"),
            std::string::npos)
      << s.ToString();
  EXPECT_NE(s.message().find("MiB free"), std::string::npos) << s.ToString();
}

TEST(VulkanBackend, ADeviceIndexPastTheLastIsNotFound) {
  auto b = select_backend("vulkan:999");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), Status::Code::kNotFound) << b.status().ToString();
  EXPECT_NE(b.status().message().find("device 'vulkan:999'"), std::string::npos)
      << b.status().ToString();
}

}  // namespace
}  // namespace swarm

#endif  // SWARM_HAVE_VULKAN_KERNELS
