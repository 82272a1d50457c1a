// The GGUF reader and writer: a tiny llama written with GgufWriter loads and
// runs; every metadata value type and tensor layout round-trips; and every kind
// of broken file is an error that names the file and the problem, never a crash
// (LevelDB's corruption_test in spirit).
#include "engine/gguf.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>

#include "engine/gguf_writer.h"
#include "engine/model.h"
#include "engine/quants.h"

namespace swarm {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Metadata values

GgufValue Int(GgufValueType t, int64_t i) {
  GgufValue v;
  v.type = t;
  v.i = i;
  return v;
}
GgufValue U32(uint32_t x) { return Int(GgufValueType::UINT32, x); }
GgufValue Real(GgufValueType t, double f) {
  GgufValue v;
  v.type = t;
  v.f = f;
  return v;
}
GgufValue Text(const std::string& s) {
  GgufValue v;
  v.type = GgufValueType::STRING;
  v.str = s;
  return v;
}
GgufValue IntArray(GgufValueType et, std::vector<int64_t> xs) {
  GgufValue v;
  v.type = GgufValueType::ARRAY;
  v.elem_type = et;
  v.ints = std::move(xs);
  return v;
}
GgufValue RealArray(GgufValueType et, std::vector<double> xs) {
  GgufValue v;
  v.type = GgufValueType::ARRAY;
  v.elem_type = et;
  v.floats = std::move(xs);
  return v;
}
GgufValue TextArray(std::vector<std::string> xs) {
  GgufValue v;
  v.type = GgufValueType::ARRAY;
  v.elem_type = GgufValueType::STRING;
  v.strings = std::move(xs);
  return v;
}
GgufValue NestedArray(std::vector<GgufValue> xs) {
  GgufValue v;
  v.type = GgufValueType::ARRAY;
  v.elem_type = GgufValueType::ARRAY;
  v.arrays = std::move(xs);
  return v;
}

// Equal types and bit-for-bit equal contents (so -0.0 differs from 0.0).
::testing::AssertionResult SameValue(const GgufValue& a, const GgufValue& b,
                                     const std::string& where) {
  auto fail = [&](const std::string& what) {
    return ::testing::AssertionFailure() << where << ": " << what;
  };
  if (a.type != b.type)
    return fail(std::string("type ") + gguf_value_type_name(a.type) + " vs " +
                gguf_value_type_name(b.type));
  if (a.type == GgufValueType::STRING)
    return a.str == b.str ? ::testing::AssertionSuccess() : fail("string differs");
  if (a.is_float())
    return std::bit_cast<uint64_t>(a.f) == std::bit_cast<uint64_t>(b.f)
               ? ::testing::AssertionSuccess()
               : fail(std::to_string(a.f) + " vs " + std::to_string(b.f));
  if (a.type != GgufValueType::ARRAY)
    return a.i == b.i ? ::testing::AssertionSuccess()
                      : fail(std::to_string(a.i) + " vs " + std::to_string(b.i));
  if (a.elem_type != b.elem_type) return fail("element type differs");
  if (a.ints != b.ints) return fail("integer elements differ");
  if (a.strings != b.strings) return fail("string elements differ");
  if (a.floats.size() != b.floats.size()) return fail("float element count differs");
  for (size_t k = 0; k < a.floats.size(); ++k)
    if (std::bit_cast<uint64_t>(a.floats[k]) != std::bit_cast<uint64_t>(b.floats[k]))
      return fail("float element " + std::to_string(k) + " differs");
  if (a.arrays.size() != b.arrays.size()) return fail("nested array count differs");
  for (size_t k = 0; k < a.arrays.size(); ++k) {
    auto r = SameValue(a.arrays[k], b.arrays[k], where + "[" + std::to_string(k) + "]");
    if (!r) return r;
  }
  return ::testing::AssertionSuccess();
}

// `st` is an error of `code` whose message names `path` and each of `parts`.
::testing::AssertionResult IsError(const Status& st, Status::Code code, const std::string& path,
                                   const std::vector<std::string>& parts) {
  if (st.ok()) return ::testing::AssertionFailure() << "succeeded; expected an error";
  if (st.code() != code) return ::testing::AssertionFailure() << "wrong code: " << st.ToString();
  std::vector<std::string> all = parts;
  all.insert(all.begin(), path);
  for (const std::string& p : all)
    if (st.message().find(p) == std::string::npos)
      return ::testing::AssertionFailure()
             << "message does not name '" << p << "': " << st.message();
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------
// The tiny llama

constexpr int kLayers = 2, kEmbd = 64, kHeads = 4, kHeadsKv = 2, kFf = 128, kVocab = 96;
constexpr int kHeadDim = kEmbd / kHeads, kKvDim = kHeadsKv * kHeadDim;

struct TinyTensor {
  std::string name;
  TensorType type;
  std::vector<int64_t> shape;
  float scale;  // values uniform in offset +- scale
  float offset;
};

// What the tiny file will hold. Tests alter it (drop a key or tensor, change a
// shape or type) before writing it, or patch the written bytes.
struct TinySpec {
  std::vector<std::pair<std::string, GgufValue>> kv;
  std::vector<TinyTensor> tensors;

  void set(const std::string& key, GgufValue v) {
    for (auto& [k, old] : kv)
      if (k == key) {
        old = std::move(v);
        return;
      }
    kv.emplace_back(key, std::move(v));
  }
  void erase_key(const std::string& key) {
    std::erase_if(kv, [&](const auto& e) { return e.first == key; });
  }
  TinyTensor& tensor(const std::string& name) {
    for (TinyTensor& t : tensors)
      if (t.name == name) return t;
    ADD_FAILURE() << "no tensor " << name;
    return tensors.front();
  }
  void erase_tensor(const std::string& name) {
    std::erase_if(tensors, [&](const TinyTensor& t) { return t.name == name; });
  }
};

TinySpec tiny_llama(TensorType matrix_type = TensorType::F32) {
  TinySpec s;
  s.set("general.architecture", Text("llama"));
  s.set("general.name", Text("tiny test llama"));
  s.set("general.alignment", U32(32));
  s.set("llama.context_length", U32(256));
  s.set("llama.embedding_length", U32(kEmbd));
  s.set("llama.block_count", U32(kLayers));
  s.set("llama.feed_forward_length", U32(kFf));
  s.set("llama.attention.head_count", U32(kHeads));
  s.set("llama.attention.head_count_kv", U32(kHeadsKv));
  s.set("llama.attention.layer_norm_rms_epsilon", Real(GgufValueType::FLOAT32, 1e-5f));
  s.set("llama.rope.freq_base", Real(GgufValueType::FLOAT32, 10000.0f));
  s.set("tokenizer.ggml.model", Text("llama"));
  std::vector<std::string> tokens;
  std::vector<double> scores;
  for (int i = 0; i < kVocab; ++i) tokens.push_back("t" + std::to_string(i)), scores.push_back(-i);
  s.set("tokenizer.ggml.tokens", TextArray(tokens));
  s.set("tokenizer.ggml.scores", RealArray(GgufValueType::FLOAT32, scores));

  auto mat = [&](const std::string& name, int64_t cols, int64_t rows) {
    s.tensors.push_back(
        {name, matrix_type, {cols, rows}, 1.7f / std::sqrt(static_cast<float>(cols)), 0.0f});
  };
  auto vec = [&](const std::string& name, int64_t n) {
    s.tensors.push_back({name, TensorType::F32, {n}, 0.1f, 1.0f});
  };
  s.tensors.push_back({"token_embd.weight", matrix_type, {kEmbd, kVocab}, 1.0f, 0.0f});
  for (int il = 0; il < kLayers; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    vec(p + "attn_norm.weight", kEmbd);
    mat(p + "attn_q.weight", kEmbd, kEmbd);
    mat(p + "attn_k.weight", kEmbd, kKvDim);
    mat(p + "attn_v.weight", kEmbd, kKvDim);
    mat(p + "attn_output.weight", kEmbd, kEmbd);
    vec(p + "ffn_norm.weight", kEmbd);
    mat(p + "ffn_gate.weight", kEmbd, kFf);
    mat(p + "ffn_up.weight", kEmbd, kFf);
    mat(p + "ffn_down.weight", kFf, kEmbd);
  }
  vec("output_norm.weight", kEmbd);
  mat("output.weight", kEmbd, kVocab);
  return s;
}

// Writes `s` with random values (fixed seed). Types the quantizers do not know
// (or rows that are not whole blocks) get zero bytes of the declared size.
Status write_tiny(const TinySpec& s, const std::string& path, uint64_t seed = 7) {
  GgufWriter w;
  for (const auto& [k, v] : s.kv) w.set_value(k, v);
  for (const TinyTensor& t : s.tensors) w.add_tensor(t.name, t.type, t.shape);
  SWARM_RETURN_IF_ERROR(w.begin(path));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (const TinyTensor& t : s.tensors) {
    const int64_t cols = t.shape[0];
    int64_t rows = 1;
    for (size_t d = 1; d < t.shape.size(); ++d) rows *= t.shape[d];
    const size_t rb = row_size(t.type, cols);
    std::vector<uint8_t> bytes(rb * rows);
    std::vector<float> row(cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (float& x : row) x = t.offset + t.scale * u(rng);
      if (!quantize_row(t.type, row.data(), bytes.data() + r * rb, cols))
        std::fill_n(bytes.data() + r * rb, rb, 0);
    }
    SWARM_RETURN_IF_ERROR(w.write_tensor_data(bytes.data(), bytes.size()));
  }
  return w.finish();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Removes any old file first: truncating one in place makes ext4 flush it to disk.
void write_bytes(const std::string& path, const std::string& b) {
  fs::remove(path);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

template <typename T>
void poke(std::string& b, size_t pos, T v) {
  ASSERT_LE(pos + sizeof(T), b.size());
  std::memcpy(&b[pos], &v, sizeof(T));
}

template <typename T>
T peek(const std::string& b, size_t pos) {
  T v{};
  std::memcpy(&v, &b[pos], sizeof(T));
  return v;
}

// Byte position just after the first GGUF string (u64 length + bytes) equal to `s`.
size_t after_string(const std::string& b, const std::string& s) {
  std::string needle(8, '\0');
  const uint64_t n = s.size();
  std::memcpy(needle.data(), &n, 8);
  needle += s;
  const size_t p = b.find(needle);
  EXPECT_NE(p, std::string::npos) << "no string '" << s << "' in the file";
  return p == std::string::npos ? 0 : p + needle.size();
}

// Where the fields of tensor `name`'s table entry are.
struct TensorEntry {
  size_t n_dims;  // u32
  size_t dims;    // u64 x n_dims
  size_t type;    // u32
  size_t offset;  // u64
};
TensorEntry find_tensor_entry(const std::string& b, const std::string& name) {
  TensorEntry e;
  e.n_dims = after_string(b, name);
  e.dims = e.n_dims + 4;
  e.type = e.dims + 8 * peek<uint32_t>(b, e.n_dims);
  e.offset = e.type + 4;
  return e;
}

// Where metadata `key`'s type (u32) and value are.
struct KvEntry {
  size_t type;
  size_t value;
};
KvEntry find_kv_entry(const std::string& b, const std::string& key) {
  const size_t p = after_string(b, key);
  return {p, p + 4};
}

class GgufTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "_" + info->name();
    std::replace(name.begin(), name.end(), '/', '_');
    dir_ = fs::temp_directory_path() / ("swarm_gguf_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes `s` to a file named `name` and returns its path.
  std::string write(const TinySpec& s, const std::string& name = "tiny.gguf") {
    const std::string p = path(name);
    fs::remove(p);
    const Status st = write_tiny(s, p);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return p;
  }
  // The valid tiny file's bytes, and a path to write broken versions of it to.
  std::string valid_bytes(TensorType type = TensorType::F32) {
    return read_bytes(write(tiny_llama(type), "valid.gguf"));
  }
  std::string write_broken(const std::string& b) {
    const std::string p = path("broken.gguf");
    write_bytes(p, b);
    return p;
  }

  Status load(const std::string& p, const LoadOptions& o = {}) {
    return Model::Load(p, o).status();
  }

  fs::path dir_;
  ThreadPool pool_{1};  // the models are tiny; spinning workers would only cost time
};

// ---------------------------------------------------------------------------
// A valid tiny model loads and runs

class GgufModelTest : public GgufTest, public ::testing::WithParamInterface<TensorType> {};

TEST_P(GgufModelTest, TinyLlamaLoadsAndRunsWithFiniteLogits) {
  const std::string p = write(tiny_llama(GetParam()));
  auto m = Model::Load(p);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const ModelConfig& c = (*m)->config();
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.name, "tiny test llama");
  EXPECT_EQ(c.n_layer, kLayers);
  EXPECT_EQ(c.n_embd, kEmbd);
  EXPECT_EQ(c.n_head, kHeads);
  EXPECT_EQ(c.n_head_kv, kHeadsKv);
  EXPECT_EQ(c.head_dim, kHeadDim);
  EXPECT_EQ(c.n_ff, kFf);
  EXPECT_EQ(c.n_vocab, kVocab);
  EXPECT_EQ(c.n_ctx_train, 256);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_EQ((*m)->main_type(), type_name(GetParam()));
  EXPECT_EQ((*m)->source().metadata.at("tokenizer.ggml.model"), "llama");

  const std::vector<int32_t> tokens = {1, 5, kVocab - 1, 0};
  auto cache = (*m)->new_cache(16);
  auto logits = (*m)->forward(tokens, *cache, pool_);
  ASSERT_TRUE(logits.ok()) << logits.status().ToString();
  ASSERT_EQ(logits->size(), tokens.size() * kVocab);
  float lo = INFINITY, hi = -INFINITY;
  for (float x : *logits) {
    ASSERT_TRUE(std::isfinite(x));
    lo = std::min(lo, x), hi = std::max(hi, x);
  }
  EXPECT_LT(lo, hi) << "logits are all equal: the weights did not reach the output";
  EXPECT_EQ(cache->length(), static_cast<int>(tokens.size()));
}

// Two stages (embed + layer 0, layer 1 + head) give the whole model's logits bit for bit.
TEST_P(GgufModelTest, LayerRangesComposeToTheWholeModel) {
  const std::string p = write(tiny_llama(GetParam()));
  auto whole = Model::Load(p);
  auto first = Model::Load(p, {.first_layer = 0, .last_layer = 1});
  auto second = Model::Load(p, {.first_layer = 1, .last_layer = -1});
  ASSERT_TRUE(whole.ok() && first.ok() && second.ok());
  EXPECT_TRUE((*first)->has_embed() && !(*first)->has_head());
  EXPECT_TRUE(!(*second)->has_embed() && (*second)->has_head());

  const std::vector<int32_t> tokens = {3, 1, 4, 1, 5};
  const int n = static_cast<int>(tokens.size());
  auto cache = (*whole)->new_cache(8);
  auto ref = (*whole)->forward(tokens, *cache, pool_);
  ASSERT_TRUE(ref.ok());

  auto c1 = (*first)->new_cache(8), c2 = (*second)->new_cache(8);
  std::vector<float> hidden(n * kEmbd), logits(n * kVocab);
  ASSERT_TRUE((*first)->embed(tokens.data(), n, hidden.data()).ok());
  ASSERT_TRUE((*first)->run_layers(hidden.data(), {{c1.get(), n}}, 0, 1, pool_).ok());
  ASSERT_TRUE((*second)->run_layers(hidden.data(), {{c2.get(), n}}, 1, 2, pool_).ok());
  ASSERT_TRUE((*second)->head(hidden.data(), n, logits.data(), pool_).ok());
  EXPECT_EQ(logits, *ref);
  // The second stage never mapped the embedding.
  EXPECT_FALSE((*second)->embed(tokens.data(), n, hidden.data()).ok());
}

TEST_P(GgufModelTest, TiedEmbeddingsWithoutOutputWeight) {
  TinySpec s = tiny_llama(GetParam());
  s.erase_tensor("output.weight");
  auto m = Model::Load(write(s));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE((*m)->config().tied_embeddings);
  auto cache = (*m)->new_cache(4);
  auto logits = (*m)->forward({2, 7}, *cache, pool_);
  ASSERT_TRUE(logits.ok()) << logits.status().ToString();
  for (float x : *logits) ASSERT_TRUE(std::isfinite(x));
}

// GGUF v2 has v3's layout (v3 only added big-endian files): patching the version loads.
TEST_P(GgufModelTest, Version2FileLoads) {
  const std::string v3 = write(tiny_llama(GetParam()));
  std::string b = read_bytes(v3);
  ASSERT_EQ(peek<uint32_t>(b, 4), 3u);
  poke<uint32_t>(b, 4, 2);
  const std::string v2 = path("v2.gguf");
  write_bytes(v2, b);
  auto f = read_gguf(v2);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version, 2u);
  auto m2 = Model::Load(v2);
  auto m3 = Model::Load(v3);
  ASSERT_TRUE(m2.ok() && m3.ok()) << m2.status().ToString();
  auto c2 = (*m2)->new_cache(4), c3 = (*m3)->new_cache(4);
  auto l2 = (*m2)->forward({1, 2, 3}, *c2, pool_);
  auto l3 = (*m3)->forward({1, 2, 3}, *c3, pool_);
  ASSERT_TRUE(l2.ok() && l3.ok());
  EXPECT_EQ(*l2, *l3);
}

INSTANTIATE_TEST_SUITE_P(Gguf, GgufModelTest, ::testing::Values(TensorType::F32, TensorType::Q8_0),
                         [](const auto& info) { return std::string(type_name(info.param)); });

// ---------------------------------------------------------------------------
// Round trips through GgufWriter and read_gguf

using GgufRoundTripTest = GgufTest;

std::vector<std::pair<std::string, GgufValue>> every_value_type() {
  using T = GgufValueType;
  std::vector<std::pair<std::string, GgufValue>> kv;
  kv.emplace_back("t.uint8", Int(T::UINT8, 255));
  kv.emplace_back("t.int8", Int(T::INT8, -128));
  kv.emplace_back("t.uint16", Int(T::UINT16, 65535));
  kv.emplace_back("t.int16", Int(T::INT16, -32768));
  kv.emplace_back("t.uint32", Int(T::UINT32, 4294967295ll));
  kv.emplace_back("t.int32", Int(T::INT32, std::numeric_limits<int32_t>::min()));
  kv.emplace_back("t.float32", Real(T::FLOAT32, -1.5e-40f));  // a denormal
  kv.emplace_back("t.float32.negzero", Real(T::FLOAT32, -0.0));
  kv.emplace_back("t.float32.inf", Real(T::FLOAT32, INFINITY));
  kv.emplace_back("t.bool.true", Int(T::BOOL, 1));
  kv.emplace_back("t.bool.false", Int(T::BOOL, 0));
  kv.emplace_back("t.string", Text(std::string("nul\0inside, \xe2\x9c\x93 utf-8", 20)));
  kv.emplace_back("t.string.empty", Text(""));
  kv.emplace_back("t.uint64", Int(T::UINT64, -1));  // 2^64 - 1, bit for bit
  kv.emplace_back("t.int64", Int(T::INT64, std::numeric_limits<int64_t>::min()));
  kv.emplace_back("t.float64", Real(T::FLOAT64, M_PI));
  kv.emplace_back("t.float64.nan", Real(T::FLOAT64, std::numeric_limits<double>::quiet_NaN()));
  kv.emplace_back("", Text("an empty key"));
  kv.emplace_back("a.uint8", IntArray(T::UINT8, {0, 1, 255}));
  kv.emplace_back("a.int8", IntArray(T::INT8, {-128, 0, 127}));
  kv.emplace_back("a.uint16", IntArray(T::UINT16, {0, 65535}));
  kv.emplace_back("a.int16", IntArray(T::INT16, {-32768, 32767}));
  kv.emplace_back("a.uint32", IntArray(T::UINT32, {0, 4294967295ll}));
  kv.emplace_back("a.int32", IntArray(T::INT32, {std::numeric_limits<int32_t>::min(), -1, 7}));
  kv.emplace_back("a.uint64", IntArray(T::UINT64, {0, -1}));
  kv.emplace_back("a.int64", IntArray(T::INT64, {std::numeric_limits<int64_t>::min(),
                                                 std::numeric_limits<int64_t>::max()}));
  kv.emplace_back("a.bool", IntArray(T::BOOL, {1, 0, 0, 1}));
  kv.emplace_back("a.float32",
                  RealArray(T::FLOAT32, {0.5, -0.0, 3.4028234663852886e38, -INFINITY}));
  kv.emplace_back("a.float64", RealArray(T::FLOAT64, {1e-300, -2.5, 4.9e-324}));
  kv.emplace_back("a.string", TextArray({"", "a", "with space", std::string("\xff\0z", 3)}));
  kv.emplace_back("a.empty.int32", IntArray(T::INT32, {}));
  kv.emplace_back("a.empty.string", TextArray({}));
  kv.emplace_back("a.empty.array", NestedArray({}));
  kv.emplace_back("a.nested",
                  NestedArray({IntArray(T::INT32, {1, 2, 3}), IntArray(T::INT32, {}),
                               TextArray({"x", "yz"}), RealArray(T::FLOAT64, {0.25}),
                               NestedArray({IntArray(T::UINT8, {9}), NestedArray({})})}));
  return kv;
}

TEST_F(GgufRoundTripTest, EveryMetadataValueTypeReadsBackEqual) {
  const auto kv = every_value_type();
  std::set<GgufValueType> types;
  for (const auto& [k, v] : kv) {
    types.insert(v.type);
    if (v.type == GgufValueType::ARRAY) types.insert(v.elem_type);
  }
  ASSERT_EQ(types.size(), 13u) << "every GGUF value type is exercised";

  GgufWriter w;
  for (const auto& [k, v] : kv) w.set_value(k, v);
  const std::string p = path("values.gguf");
  ASSERT_TRUE(w.begin(p).ok());
  ASSERT_TRUE(w.finish().ok());

  auto f = read_gguf(p);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version, 3u);
  EXPECT_TRUE(f->tensors.empty());
  ASSERT_EQ(f->kv.size(), kv.size());
  for (size_t k = 0; k < kv.size(); ++k) {
    EXPECT_EQ(f->kv[k].first, kv[k].first) << "metadata keeps file order";
    EXPECT_TRUE(SameValue(f->kv[k].second, kv[k].second, kv[k].first));
  }
}

TEST_F(GgufRoundTripTest, TypedSettersAndGetters) {
  GgufWriter w;
  w.set_u32("k.u32", 4000000000u);
  w.set_i32("k.i32", -5);
  w.set_u64("k.u64", 1ull << 40);
  w.set_f32("k.f32", 0.125f);
  w.set_bool("k.bool", true);
  w.set_string("k.str", "hello");
  w.set_strings("k.strs", {"a", "", "c"});
  w.set_f32s("k.f32s", {1.0f, -2.0f});
  w.set_i32s("k.i32s", {-1, 0, 1});
  w.set_u32("k.u32", 7);  // replaces in place
  const std::string p = path("typed.gguf");
  ASSERT_TRUE(w.begin(p).ok());
  ASSERT_TRUE(w.finish().ok());
  auto f = read_gguf(p);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_EQ(f->kv.size(), 9u);
  EXPECT_EQ(f->kv[0].first, "k.u32");
  EXPECT_EQ(*f->get_int("k.u32"), 7);
  EXPECT_EQ(f->find("k.u32")->type, GgufValueType::UINT32);
  EXPECT_EQ(*f->get_int("k.i32"), -5);
  EXPECT_EQ(f->find("k.i32")->type, GgufValueType::INT32);
  EXPECT_EQ(*f->get_int("k.u64"), int64_t{1} << 40);
  EXPECT_EQ(*f->get_float("k.f32"), 0.125);
  EXPECT_EQ(*f->get_float("k.i32"), -5.0) << "integers read as numbers";
  EXPECT_EQ(*f->get_int("k.bool"), 1);
  EXPECT_EQ(f->find("k.bool")->type, GgufValueType::BOOL);
  EXPECT_EQ(*f->get_string("k.str"), "hello");
  EXPECT_EQ(f->find("k.strs")->strings, (std::vector<std::string>{"a", "", "c"}));
  EXPECT_EQ(f->find("k.f32s")->floats, (std::vector<double>{1.0, -2.0}));
  EXPECT_EQ(f->find("k.f32s")->elem_type, GgufValueType::FLOAT32);
  EXPECT_EQ(f->find("k.i32s")->ints, (std::vector<int64_t>{-1, 0, 1}));
  EXPECT_EQ(f->find("k.i32s")->elem_type, GgufValueType::INT32);

  EXPECT_TRUE(
      IsError(f->get_int("k.none").status(), Status::Code::kNotFound, p, {"k.none", "missing"}));
  EXPECT_TRUE(IsError(f->get_int("k.str").status(), Status::Code::kInvalidArgument, p,
                      {"k.str", "string"}));
  EXPECT_TRUE(IsError(f->get_float("k.strs").status(), Status::Code::kInvalidArgument, p,
                      {"k.strs", "array"}));
  EXPECT_TRUE(IsError(f->get_string("k.u32").status(), Status::Code::kInvalidArgument, p,
                      {"k.u32", "uint32"}));
}

// Tensors of several types and odd sizes, so that padding is needed between them.
struct RawTensor {
  std::string name;
  TensorType type;
  std::vector<int64_t> shape;
};
const std::vector<RawTensor>& odd_tensors() {
  static const std::vector<RawTensor> t = {
      {"a", TensorType::F32, {3}},           {"b", TensorType::F16, {5, 3}},
      {"c", TensorType::Q8_0, {32, 2}},      {"d", TensorType::I8, {7}},
      {"e", TensorType::BF16, {1, 1, 1, 1}}, {"f", TensorType::Q4_K, {256, 1, 3}},
      {"g", TensorType::Q6_K, {512}},        {"h", TensorType::F32, {1}},
  };
  return t;
}

// Writes odd_tensors() with random bytes; returns each tensor's bytes.
std::vector<std::string> write_odd_tensors(GgufWriter& w, const std::string& p) {
  for (const RawTensor& t : odd_tensors()) w.add_tensor(t.name, t.type, t.shape);
  EXPECT_TRUE(w.begin(p).ok());
  std::mt19937 rng(3);
  std::vector<std::string> data;
  uint64_t given = 0;  // what a progress bar counts: tensor bytes, not padding
  for (const RawTensor& t : odd_tensors()) {
    int64_t rows = 1;
    for (size_t d = 1; d < t.shape.size(); ++d) rows *= t.shape[d];
    std::string bytes(row_size(t.type, t.shape[0]) * rows, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    // In two pieces: tensors may be streamed.
    const size_t half = bytes.size() / 2;
    EXPECT_TRUE(w.write_tensor_data(bytes.data(), half).ok());
    EXPECT_TRUE(w.write_tensor_data(bytes.data() + half, bytes.size() - half).ok());
    given += bytes.size();
    EXPECT_EQ(w.tensor_bytes_written(), given);
    data.push_back(bytes);
  }
  EXPECT_EQ(w.tensor_bytes(), given);
  EXPECT_TRUE(w.finish().ok());
  return data;
}

void expect_odd_tensors(const std::string& p, const std::vector<std::string>& data,
                        uint64_t alignment) {
  auto f = read_gguf(p);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->alignment, alignment);
  EXPECT_EQ(f->data_offset % alignment, 0u);
  const std::string file = read_bytes(p);
  ASSERT_EQ(f->tensors.size(), odd_tensors().size());
  uint64_t end = f->data_offset;
  for (size_t k = 0; k < data.size(); ++k) {
    const TensorInfo& t = f->tensors[k];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.name, odd_tensors()[k].name);
    EXPECT_EQ(t.type, odd_tensors()[k].type);
    EXPECT_EQ(t.shape, odd_tensors()[k].shape);
    EXPECT_EQ(t.offset % alignment, 0u);
    EXPECT_GE(t.offset, end) << "tensors overlap";
    EXPECT_EQ(t.nbytes, data[k].size());
    EXPECT_EQ(file.substr(t.offset, t.nbytes), data[k]);
    end = t.offset + t.nbytes;
  }
  EXPECT_EQ(end, file.size());
}

class GgufAlignmentTest : public GgufTest, public ::testing::WithParamInterface<uint32_t> {};

TEST_P(GgufAlignmentTest, TensorOffsetsAlignedAndBytesEqual) {
  GgufWriter w;
  w.set_string("general.architecture", "none");
  if (GetParam() != 32) w.set_u32("general.alignment", GetParam());
  const std::string p = path("aligned.gguf");
  const auto data = write_odd_tensors(w, p);
  expect_odd_tensors(p, data, GetParam());
}

// The alignment may be set after the tensors are declared, or changed: the file
// must follow the value its header states.
TEST_P(GgufAlignmentTest, AlignmentSetLateOrTwiceIsHonoured) {
  {
    GgufWriter w;
    w.set_string("x", "y");
    for (const RawTensor& t : odd_tensors()) w.add_tensor(t.name, t.type, t.shape);
    w.set_u32("general.alignment", GetParam());
    const std::string p = path("late.gguf");
    ASSERT_TRUE(w.begin(p).ok());
    std::vector<std::string> data;
    for (const RawTensor& t : odd_tensors()) {
      int64_t rows = 1;
      for (size_t d = 1; d < t.shape.size(); ++d) rows *= t.shape[d];
      data.emplace_back(row_size(t.type, t.shape[0]) * rows, static_cast<char>(data.size() + 1));
      const Status st = w.write_tensor_data(data.back().data(), data.back().size());
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
    ASSERT_TRUE(w.finish().ok());
    expect_odd_tensors(p, data, GetParam());
  }
  {
    GgufWriter w;
    w.set_u32("general.alignment", GetParam() == 64 ? 32 : 64);
    w.set_u32("general.alignment", GetParam());
    const std::string p = path("twice.gguf");
    const auto data = write_odd_tensors(w, p);
    expect_odd_tensors(p, data, GetParam());
  }
}

INSTANTIATE_TEST_SUITE_P(Gguf, GgufAlignmentTest, ::testing::Values(1u, 8u, 32u, 64u, 4096u));

TEST_F(GgufRoundTripTest, WriterRejectsAnAlignmentReadersWouldRefuse) {
  for (uint32_t a : {0u, 48u, 100u}) {
    GgufWriter w;
    w.set_u32("general.alignment", a);
    w.add_tensor("x", TensorType::F32, {4});
    const std::string p = path("bad_alignment.gguf");
    EXPECT_TRUE(IsError(w.begin(p), Status::Code::kInvalidArgument, p, {"general.alignment"})) << a;
  }
  GgufWriter w;
  w.set_string("general.alignment", "32");
  const std::string p = path("string_alignment.gguf");
  EXPECT_TRUE(IsError(w.begin(p), Status::Code::kInvalidArgument, p, {"general.alignment"}));
}

TEST_F(GgufRoundTripTest, WriterChecksTheDataItIsGiven) {
  const std::string p = path("short.gguf");
  {
    GgufWriter w;
    w.add_tensor("x", TensorType::F32, {4});
    w.add_tensor("y", TensorType::F32, {2});
    ASSERT_TRUE(w.begin(p).ok());
    const float x[4] = {1, 2, 3, 4};
    ASSERT_TRUE(w.write_tensor_data(x, sizeof x).ok());
    EXPECT_TRUE(IsError(w.finish(), Status::Code::kInvalidArgument, p, {"tensor y"}));
  }
  {
    GgufWriter w;
    w.add_tensor("x", TensorType::F32, {1});
    ASSERT_TRUE(w.begin(p).ok());
    const float x[2] = {1, 2};
    EXPECT_TRUE(IsError(w.write_tensor_data(x, sizeof x), Status::Code::kInvalidArgument, p,
                        {"more tensor data"}));
  }
  {
    GgufWriter w;
    EXPECT_FALSE(w.write_tensor_data("x", 1).ok());
    EXPECT_FALSE(w.finish().ok());
    const std::string bad = path("no/such/dir/x.gguf");
    EXPECT_TRUE(IsError(w.begin(bad), Status::Code::kIOError, bad, {}));
  }
}

// ---------------------------------------------------------------------------
// Corrupted files: each an error naming the file and the problem

using GgufCorruptionTest = GgufTest;

TEST_F(GgufCorruptionTest, WrongMagic) {
  std::string b = valid_bytes();
  b[0] = 'X';
  const std::string p = write_broken(b);
  EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p, {"magic"}));
  EXPECT_TRUE(IsError(load(p), Status::Code::kCorruption, p, {"magic"}));
  // A file too short to hold a magic at all.
  const std::string tiny = write_broken("GG");
  EXPECT_TRUE(
      IsError(read_gguf(tiny).status(), Status::Code::kCorruption, tiny, {"truncated", "magic"}));
  const std::string empty = write_broken("");
  EXPECT_TRUE(
      IsError(read_gguf(empty).status(), Status::Code::kCorruption, empty, {"truncated", "magic"}));
}

TEST_F(GgufCorruptionTest, UnsupportedVersions) {
  for (uint32_t v : {0u, 1u, 4u, 0xffffffffu}) {
    std::string b = valid_bytes();
    poke<uint32_t>(b, 4, v);
    const std::string p = write_broken(b);
    EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kUnsupported, p,
                        {"version " + std::to_string(v)}));
    EXPECT_TRUE(IsError(load(p), Status::Code::kUnsupported, p, {"version"}));
  }
}

// Every cut through the header and tensor table, and cuts inside the tensor data.
TEST_F(GgufCorruptionTest, TruncatedAtEveryHeaderByteAndInsideTheData) {
  const std::string b = valid_bytes(TensorType::Q8_0);
  auto f = read_gguf(path("valid.gguf"));
  ASSERT_TRUE(f.ok());
  std::vector<size_t> cuts;
  for (size_t cut = 0; cut <= f->data_offset; ++cut) cuts.push_back(cut);
  for (size_t cut = f->data_offset + 1; cut < b.size(); cut += 997) cuts.push_back(cut);
  for (const TensorInfo& t : f->tensors) cuts.push_back(t.offset + t.nbytes / 2);
  cuts.push_back(b.size() - 1);
  const std::vector<std::string> problems = {"truncated", "remain", "does not fit", "past the end"};
  for (size_t cut : cuts) {
    const std::string p = write_broken(b.substr(0, cut));
    const Status st = read_gguf(p).status();
    ASSERT_FALSE(st.ok()) << "cut at " << cut << " of " << b.size() << " was accepted";
    ASSERT_NE(st.message().find(p), std::string::npos) << st.message();
    bool named = false;
    for (const std::string& w : problems) named |= st.message().find(w) != std::string::npos;
    ASSERT_TRUE(named) << "cut at " << cut << ": " << st.message();
    if (cut % 97 == 0 || cut > f->data_offset) {
      ASSERT_FALSE(load(p).ok()) << "cut at " << cut;
    }
  }
  EXPECT_TRUE(IsError(read_gguf(write_broken(b.substr(0, b.size() - 1))).status(),
                      Status::Code::kCorruption, path("broken.gguf"),
                      {"tensor output.weight", "past the end", "truncated"}));
}

TEST_F(GgufCorruptionTest, StringLengthLargerThanTheFile) {
  {
    std::string b = valid_bytes();
    const KvEntry e = find_kv_entry(b, "general.name");
    poke<uint64_t>(b, e.value, uint64_t{1} << 40);
    const std::string p = write_broken(b);
    EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p,
                        {"general.name", "1099511627776 bytes"}));
  }
  {
    std::string b = valid_bytes();
    const size_t key = b.find("llama.block_count") - 8;
    poke<uint64_t>(b, key, ~uint64_t{0});
    const std::string p = write_broken(b);
    EXPECT_TRUE(
        IsError(read_gguf(p).status(), Status::Code::kCorruption, p, {"metadata key #", "bytes"}));
  }
  {
    // A string inside an array: the first token's length.
    std::string b = valid_bytes();
    const KvEntry e = find_kv_entry(b, "tokenizer.ggml.tokens");
    poke<uint64_t>(b, e.value + 12, uint64_t{1} << 62);
    const std::string p = write_broken(b);
    EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p,
                        {"tokenizer.ggml.tokens", "bytes"}));
  }
  {
    std::string b = valid_bytes();
    const size_t name = b.find("blk.0.attn_k.weight") - 8;
    poke<uint64_t>(b, name, b.size());
    const std::string p = write_broken(b);
    EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p,
                        {"name of tensor #", "bytes"}));
  }
}

TEST_F(GgufCorruptionTest, ArrayCountLargerThanTheFile) {
  for (uint64_t n : {uint64_t{1} << 32, uint64_t{1} << 61, ~uint64_t{0}}) {
    for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.scores"}) {
      std::string b = valid_bytes();
      const KvEntry e = find_kv_entry(b, key);
      poke<uint64_t>(b, e.value + 4, n);
      const std::string p = write_broken(b);
      EXPECT_TRUE(
          IsError(read_gguf(p).status(), Status::Code::kCorruption, p, {key, "does not fit"}))
          << n;
    }
  }
  // The header's own counts.
  for (size_t field : {8u, 16u}) {
    std::string b = valid_bytes();
    poke<uint64_t>(b, field, uint64_t{1} << 40);
    const std::string p = write_broken(b);
    EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p,
                        {field == 8 ? "tensor count" : "metadata count", "does not fit"}));
  }
}

TEST_F(GgufCorruptionTest, UnknownMetadataValueType) {
  for (uint32_t t : {13u, 99u, 0x80000000u}) {
    std::string b = valid_bytes();
    poke<uint32_t>(b, find_kv_entry(b, "llama.feed_forward_length").type, t);
    const std::string p = write_broken(b);
    EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p,
                        {"llama.feed_forward_length", "unknown value type " + std::to_string(t)}));
    // ... and as an array's element type.
    b = valid_bytes();
    poke<uint32_t>(b, find_kv_entry(b, "tokenizer.ggml.scores").value, t);
    const std::string q = write_broken(b);
    EXPECT_TRUE(IsError(read_gguf(q).status(), Status::Code::kCorruption, q,
                        {"tokenizer.ggml.scores", "unknown array element type"}));
  }
}

TEST_F(GgufCorruptionTest, ArraysNestedTooDeep) {
  GgufValue v = IntArray(GgufValueType::INT32, {1});
  for (int d = 0; d < 8; ++d) v = NestedArray({v});
  GgufWriter w;
  w.set_value("deep", v);
  const std::string p = path("deep.gguf");
  ASSERT_TRUE(w.begin(p).ok());
  ASSERT_TRUE(w.finish().ok());
  EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p, {"deep", "nested"}));
}

TEST_F(GgufCorruptionTest, BoolValueTwo) {
  TinySpec s = tiny_llama();
  s.set("test.flag", Int(GgufValueType::BOOL, 1));
  s.set("test.flags", IntArray(GgufValueType::BOOL, {0, 1, 0}));
  std::string b = read_bytes(write(s));
  std::string scalar = b, array = b;
  scalar[find_kv_entry(b, "test.flag").value] = 2;
  array[find_kv_entry(b, "test.flags").value + 12 + 1] = 2;
  const std::string p = write_broken(scalar);
  EXPECT_TRUE(
      IsError(read_gguf(p).status(), Status::Code::kCorruption, p, {"test.flag", "bool value 2"}));
  const std::string q = path("broken_array.gguf");
  write_bytes(q, array);
  EXPECT_TRUE(
      IsError(read_gguf(q).status(), Status::Code::kCorruption, q, {"test.flags", "bool value 2"}));
}

TEST_F(GgufCorruptionTest, DuplicateMetadataKey) {
  TinySpec s = tiny_llama();
  s.set("test.aaaa", U32(1));
  s.set("test.bbbb", U32(2));
  std::string b = read_bytes(write(s));
  const size_t second = after_string(b, "test.bbbb") - 4;
  b.replace(second, 4, "aaaa");
  const std::string p = write_broken(b);
  EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p, {"test.aaaa", "twice"}));
}

TEST_F(GgufCorruptionTest, BadAlignmentValue) {
  for (uint32_t a : {0u, 3u, 48u}) {
    std::string b = valid_bytes();
    poke<uint32_t>(b, find_kv_entry(b, "general.alignment").value, a);
    const std::string p = write_broken(b);
    EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p, {"general.alignment"}))
        << a;
  }
}

TEST_F(GgufCorruptionTest, DimensionCounts) {
  for (uint32_t n : {0u, 5u, 0xffffffffu}) {
    std::string b = valid_bytes();
    poke<uint32_t>(b, find_tensor_entry(b, "blk.1.attn_v.weight").n_dims, n);
    const std::string p = write_broken(b);
    EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p,
                        {"tensor blk.1.attn_v.weight", std::to_string(n) + " dimensions"}));
  }
}

TEST_F(GgufCorruptionTest, ZeroDimension) {
  for (int d : {0, 1}) {
    std::string b = valid_bytes();
    poke<uint64_t>(b, find_tensor_entry(b, "blk.0.ffn_down.weight").dims + 8 * d, 0);
    const std::string p = write_broken(b);
    EXPECT_TRUE(
        IsError(read_gguf(p).status(), Status::Code::kCorruption, p,
                {"tensor blk.0.ffn_down.weight", "dimension " + std::to_string(d) + " = 0"}));
  }
}

TEST_F(GgufCorruptionTest, DimensionProductOverflow) {
  TinySpec s = tiny_llama();
  s.tensors.push_back({"extra.weight", TensorType::F32, {4, 2, 2, 2}, 1.0f, 0.0f});
  const std::string good = read_bytes(write(s));
  ASSERT_TRUE(read_gguf(path("tiny.gguf")).ok());
  // 2^16 four times wraps a 64-bit product to 0; 2^40 twice wraps to 0 too.
  const std::vector<std::vector<uint64_t>> dims = {{1ull << 16, 1ull << 16, 1ull << 16, 1ull << 16},
                                                   {1ull << 40, 1ull << 40, 1, 1},
                                                   {1ull << 63, 2, 1, 1},
                                                   {32, 1ull << 62, 4, 1}};
  for (const auto& ds : dims) {
    std::string b = good;
    const TensorEntry e = find_tensor_entry(b, "extra.weight");
    for (size_t d = 0; d < 4; ++d) poke<uint64_t>(b, e.dims + 8 * d, ds[d]);
    const std::string p = write_broken(b);
    EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p,
                        {"tensor extra.weight", "out of range"}));
  }
}

TEST_F(GgufCorruptionTest, UnknownTensorType) {
  for (uint32_t t : {4u, 5u, 16u, 99u, 0xffffffffu}) {
    std::string b = valid_bytes();
    poke<uint32_t>(b, find_tensor_entry(b, "blk.0.ffn_gate.weight").type, t);
    const std::string p = write_broken(b);
    EXPECT_TRUE(
        IsError(read_gguf(p).status(), Status::Code::kUnsupported, p,
                {"tensor blk.0.ffn_gate.weight", "unknown tensor type " + std::to_string(t)}));
    EXPECT_TRUE(IsError(load(p), Status::Code::kUnsupported, p, {"blk.0.ffn_gate.weight"}));
  }
}

// A type GGUF knows but the engine does not compute with: the file reads, the model refuses.
TEST_F(GgufCorruptionTest, KnownButUnsupportedTensorType) {
  for (TensorType t :
       {TensorType::Q4_1, TensorType::Q5_0, TensorType::Q8_1, TensorType::I32, TensorType::F64}) {
    TinySpec s = tiny_llama();
    s.tensor("blk.1.ffn_up.weight").type = t;
    const std::string p = write(s);
    ASSERT_TRUE(read_gguf(p).ok());
    EXPECT_TRUE(IsError(load(p), Status::Code::kUnsupported, p,
                        {"tensor blk.1.ffn_up.weight", type_name(t)}));
  }
  // Quantized types are fine for matrices, not for norm vectors (except Q8_0).
  TinySpec s = tiny_llama();
  s.tensor("output_norm.weight").type = TensorType::Q4_0;
  const std::string p = write(s);
  EXPECT_TRUE(
      IsError(load(p), Status::Code::kUnsupported, p, {"tensor output_norm.weight", "Q4_0"}));
}

TEST_F(GgufCorruptionTest, RowLengthNotAMultipleOfTheBlockSize) {
  std::string b = valid_bytes();
  poke<uint32_t>(b, find_tensor_entry(b, "blk.0.attn_norm.weight").type,
                 static_cast<uint32_t>(TensorType::Q4_K));
  const std::string p = write_broken(b);
  EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p,
                      {"tensor blk.0.attn_norm.weight", "row length 64", "Q4_K", "256"}));

  TinySpec s = tiny_llama();
  s.tensors.push_back({"extra.weight", TensorType::Q8_0, {48, 2}, 1.0f, 0.0f});
  const std::string q = write(s);
  EXPECT_TRUE(IsError(read_gguf(q).status(), Status::Code::kCorruption, q,
                      {"tensor extra.weight", "row length 48"}));
}

TEST_F(GgufCorruptionTest, MisalignedTensorOffset) {
  for (uint64_t delta : {1u, 4u, 16u}) {
    std::string b = valid_bytes();
    const TensorEntry e = find_tensor_entry(b, "blk.0.attn_q.weight");
    poke<uint64_t>(b, e.offset, peek<uint64_t>(b, e.offset) + delta);
    const std::string p = write_broken(b);
    EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p,
                        {"tensor blk.0.attn_q.weight", "not aligned to 32"}));
  }
}

TEST_F(GgufCorruptionTest, TensorDataPastTheEndOfTheFile) {
  for (uint64_t offset : {uint64_t{1} << 20, uint64_t{1} << 62, ~uint64_t{31}}) {
    std::string b = valid_bytes();
    poke<uint64_t>(b, find_tensor_entry(b, "blk.1.ffn_gate.weight").offset, offset);
    const std::string p = write_broken(b);
    EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p,
                        {"tensor blk.1.ffn_gate.weight", "past the end"}));
  }
  // A shape grown within limits: the tensor now runs past the end.
  std::string b = valid_bytes();
  poke<uint64_t>(b, find_tensor_entry(b, "output.weight").dims + 8, 4096);
  const std::string p = write_broken(b);
  EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p,
                      {"tensor output.weight", "past the end"}));
}

TEST_F(GgufCorruptionTest, DuplicateTensorName) {
  TinySpec s = tiny_llama();
  s.tensor("blk.1.attn_norm.weight").name = "blk.0.attn_norm.weight";
  const std::string p = write(s);
  EXPECT_TRUE(IsError(read_gguf(p).status(), Status::Code::kCorruption, p,
                      {"tensor blk.0.attn_norm.weight", "twice"}));
  EXPECT_FALSE(load(p).ok());
}

TEST_F(GgufCorruptionTest, MissingRequiredTensor) {
  for (const char* name : {"blk.1.ffn_up.weight", "token_embd.weight", "output_norm.weight",
                           "blk.0.attn_norm.weight"}) {
    TinySpec s = tiny_llama();
    s.erase_tensor(name);
    const std::string p = write(s);
    ASSERT_TRUE(read_gguf(p).ok());
    EXPECT_TRUE(
        IsError(load(p), Status::Code::kNotFound, p, {std::string("tensor ") + name, "missing"}));
  }
}

TEST_F(GgufCorruptionTest, TensorOfTheWrongShape) {
  struct Case {
    const char* name;
    std::vector<int64_t> shape;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"blk.0.attn_k.weight", {kEmbd, kEmbd}, "[64, 32]"},
      {"blk.1.ffn_down.weight", {kEmbd, kFf}, "[128, 64]"},
      {"blk.1.ffn_norm.weight", {kEmbd, 1}, "[64]"},
      {"output.weight", {kEmbd, kVocab + 1}, "[64, 96]"},
  };
  for (const Case& c : cases) {
    TinySpec s = tiny_llama();
    s.tensor(c.name).shape = c.shape;
    const std::string p = write(s);
    EXPECT_TRUE(IsError(load(p), Status::Code::kInvalidArgument, p,
                        {std::string("tensor ") + c.name, c.expected}));
  }
  // token_embd's shape sets the vocabulary; a 1-D one cannot.
  TinySpec s = tiny_llama();
  s.tensor("token_embd.weight").shape = {kEmbd * kVocab};
  const std::string p = write(s);
  EXPECT_TRUE(
      IsError(load(p), Status::Code::kInvalidArgument, p, {"token_embd.weight", "2 dimensions"}));
}

TEST_F(GgufCorruptionTest, MissingOrWrongRequiredMetadata) {
  for (const char* key :
       {"llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
        "llama.attention.head_count", "general.architecture"}) {
    TinySpec s = tiny_llama();
    s.erase_key(key);
    const std::string p = write(s);
    EXPECT_TRUE(IsError(load(p), Status::Code::kNotFound, p, {key, "missing"}));
  }
  {
    TinySpec s = tiny_llama();
    s.set("llama.block_count", Text("2"));
    const std::string p = write(s);
    EXPECT_TRUE(
        IsError(load(p), Status::Code::kInvalidArgument, p, {"llama.block_count", "string"}));
  }
  {
    TinySpec s = tiny_llama();
    s.set("llama.block_count", U32(0));
    const std::string p = write(s);
    EXPECT_TRUE(
        IsError(load(p), Status::Code::kInvalidArgument, p, {"llama.block_count", "out of range"}));
  }
  {
    TinySpec s = tiny_llama();
    s.set("llama.block_count", U32(3));
    const std::string p = write(s);
    EXPECT_TRUE(
        IsError(load(p), Status::Code::kNotFound, p, {"tensor blk.2.attn_norm.weight", "missing"}));
  }
  {
    TinySpec s = tiny_llama();
    s.set("llama.vocab_size", U32(kVocab + 4));
    const std::string p = write(s);
    EXPECT_TRUE(IsError(load(p), Status::Code::kInvalidArgument, p,
                        {"llama.vocab_size", "token_embd.weight"}));
  }
}

TEST_F(GgufCorruptionTest, HeadCountNotAMultipleOfHeadCountKv) {
  TinySpec s = tiny_llama();
  s.set("llama.attention.head_count_kv", U32(3));
  const std::string p = write(s);
  EXPECT_TRUE(
      IsError(load(p), Status::Code::kInvalidArgument, p, {"head_count 4", "head_count_kv 3"}));
  s.set("llama.attention.head_count_kv", U32(8));
  const std::string q = write(s);
  EXPECT_TRUE(IsError(load(q), Status::Code::kInvalidArgument, q,
                      {"llama.attention.head_count_kv", "out of range"}));
}

TEST_F(GgufCorruptionTest, UnsupportedArchitecture) {
  TinySpec s = tiny_llama();
  s.set("general.architecture", Text("gpt2"));
  const std::string p = write(s);
  EXPECT_TRUE(read_gguf(p).ok());
  EXPECT_TRUE(IsError(load(p), Status::Code::kUnsupported, p, {"architecture 'gpt2'"}));
  s.set("general.architecture", U32(1));
  const std::string q = write(s);
  EXPECT_TRUE(IsError(load(q), Status::Code::kInvalidArgument, q, {"general.architecture"}));
}

TEST_F(GgufCorruptionTest, TokenIdOutOfRangeAtEmbed) {
  auto m = Model::Load(write(tiny_llama()));
  ASSERT_TRUE(m.ok());
  std::vector<float> hidden(2 * kEmbd);
  for (int32_t bad :
       {kVocab, -1, std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min()}) {
    const int32_t tokens[2] = {0, bad};
    const Status st = (*m)->embed(tokens, 2, hidden.data());
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("token id " + std::to_string(bad)), std::string::npos)
        << st.message();
    auto cache = (*m)->new_cache(4);
    EXPECT_FALSE((*m)->forward({1, bad}, *cache, pool_).ok());
  }
}

TEST_F(GgufCorruptionTest, LayerRangeOutsideTheModel) {
  const std::string p = write(tiny_llama());
  const std::vector<LoadOptions> bad = {{.first_layer = 0, .last_layer = 3},
                                        {.first_layer = 2, .last_layer = 1},
                                        {.first_layer = -1, .last_layer = 2},
                                        {.first_layer = 3, .last_layer = -1},
                                        {.first_layer = 5, .last_layer = 7}};
  for (const LoadOptions& o : bad)
    EXPECT_TRUE(IsError(load(p, o), Status::Code::kInvalidArgument, p, {"layer range", "2 layers"}))
        << o.first_layer << ":" << o.last_layer;
  auto m = Model::Load(p, {.first_layer = 1, .last_layer = 2});
  ASSERT_TRUE(m.ok());
  std::vector<float> hidden(kEmbd);
  auto cache = (*m)->new_cache(4);
  EXPECT_FALSE((*m)->run_layers(hidden.data(), {{cache.get(), 1}}, 0, 2, pool_).ok())
      << "layer 0 was not loaded";
}

// ---------------------------------------------------------------------------
// Hostile input: random single-byte corruptions of the header and tensor table

using GgufHostileTest = GgufTest;

TEST_F(GgufHostileTest, RandomHeaderByteCorruptionsNeverCrash) {
  const std::string good = valid_bytes(TensorType::Q8_0);
  auto f = read_gguf(path("valid.gguf"));
  ASSERT_TRUE(f.ok());
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<size_t> where(0, f->data_offset - 1);
  int read_ok = 0, loaded = 0, ran = 0;
  for (int it = 0; it < 500; ++it) {
    std::string b = good;
    const size_t pos = where(rng);
    b[pos] = static_cast<char>(b[pos] ^ (1 + rng() % 255));
    const std::string p = write_broken(b);
    SCOPED_TRACE("iteration " + std::to_string(it) + ", byte " + std::to_string(pos));
    auto r = read_gguf(p);
    if (!r.ok()) {
      ASSERT_NE(r.status().message().find(p), std::string::npos) << r.status().message();
    }
    read_ok += r.ok();
    auto m = Model::Load(p);
    if (!m.ok()) {
      ASSERT_NE(m.status().message().find(p), std::string::npos) << m.status().message();
      continue;
    }
    ASSERT_TRUE(r.ok()) << "Model::Load accepted what read_gguf refused";
    ++loaded;
    // Whatever loads must also run (its numbers may be garbage).
    auto cache = (*m)->new_cache(4);
    const int32_t vocab = (*m)->config().n_vocab;
    auto logits = (*m)->forward({0, vocab - 1}, *cache, pool_);
    ASSERT_TRUE(logits.ok()) << logits.status().ToString();
    ASSERT_EQ(logits->size(), 2u * vocab);
    ++ran;
  }
  std::printf("[ hostile ] %d/500 read, %d loaded, %d ran\n", read_ok, loaded, ran);
  EXPECT_LT(loaded, 500) << "no corruption was ever detected: the sweep tests nothing";
}

}  // namespace
}  // namespace swarm
