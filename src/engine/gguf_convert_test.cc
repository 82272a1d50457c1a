// `swarm convert` (convert_hf_to_gguf) against llama.cpp's own converter: the
// reference models' HF folders converted by us must hold the metadata and the
// tensor bytes of llama.cpp's files in tests/data, and give the
// reference logits. Files are read back by a minimal GGUF parser written here
// from the specification alone (ggml's docs/gguf.md), not by the engine's
// reader, so a bug shared by our writer and reader cannot hide. A hand-made
// folder checks what the reference models do not: a tokenizer.json with a
// chat template surviving the trip, the llama permutation against the
// unconverted folder, shards, and bad input leaving no file behind.
#include "engine/gguf_convert.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <variant>

#include "engine/model.h"
#include "engine/test_data.h"
#include "engine/tokenizer.h"

namespace swarm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::find_testdata;
using testing::read_raw;

// ---------------------------------------------------------------- a minimal GGUF reader

// One metadata value: its type code and its content.
struct MiniValue {
  uint32_t type = 0;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<MiniValue>> v;
  uint32_t elem_type = 0;  // arrays
  bool operator==(const MiniValue& o) const {
    return type == o.type && elem_type == o.elem_type && v == o.v;
  }
};

struct MiniTensor {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type = 0;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;
};

struct MiniGguf {
  uint32_t version = 0;
  std::map<std::string, MiniValue> kv;
  std::vector<MiniTensor> tensors;
  uint64_t alignment = 32;
  uint64_t data_start = 0;
  std::string bytes;  // the whole file

  const MiniTensor* tensor(const std::string& name) const {
    for (const MiniTensor& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  std::string_view data(const MiniTensor& t) const {
    return std::string_view(bytes).substr(data_start + t.offset, t.nbytes);
  }
};

// (elements per block, bytes per block) of the ggml types these tests meet.
std::pair<uint64_t, uint64_t> block_of(uint32_t type) {
  switch (type) {
    case 0:
      return {1, 4};  // F32
    case 1:
      return {1, 2};  // F16
    case 8:
      return {32, 34};  // Q8_0: f16 scale + 32 int8
    case 30:
      return {1, 2};  // BF16
    default:
      return {0, 0};
  }
}

class Reader {
 public:
  explicit Reader(const std::string& b) : b_(b) {}
  template <typename T>
  T pod() {
    if (p_ + sizeof(T) > b_.size()) throw std::runtime_error("truncated at " + std::to_string(p_));
    T v;
    std::memcpy(&v, b_.data() + p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  std::string str() {
    const uint64_t n = pod<uint64_t>();
    if (n > b_.size() - p_)
      throw std::runtime_error("string runs past the end at " + std::to_string(p_));
    std::string s = b_.substr(p_, n);
    p_ += n;
    return s;
  }
  MiniValue value(uint32_t type) {
    MiniValue m;
    m.type = type;
    switch (type) {
      case 0:
        m.v = uint64_t{pod<uint8_t>()};
        break;
      case 1:
        m.v = int64_t{pod<int8_t>()};
        break;
      case 2:
        m.v = uint64_t{pod<uint16_t>()};
        break;
      case 3:
        m.v = int64_t{pod<int16_t>()};
        break;
      case 4:
        m.v = uint64_t{pod<uint32_t>()};
        break;
      case 5:
        m.v = int64_t{pod<int32_t>()};
        break;
      case 6:
        m.v = double{pod<float>()};
        break;
      case 7: {
        const uint8_t b = pod<uint8_t>();
        if (b > 1) throw std::runtime_error("bool is " + std::to_string(b));
        m.v = b == 1;
        break;
      }
      case 8:
        m.v = str();
        break;
      case 9: {
        m.elem_type = pod<uint32_t>();
        const uint64_t n = pod<uint64_t>();
        if (n > b_.size()) throw std::runtime_error("array too long");
        std::vector<MiniValue> a;
        for (uint64_t i = 0; i < n; ++i) a.push_back(value(m.elem_type));
        m.v = std::move(a);
        break;
      }
      case 10:
        m.v = pod<uint64_t>();
        break;
      case 11:
        m.v = pod<int64_t>();
        break;
      case 12:
        m.v = pod<double>();
        break;
      default:
        throw std::runtime_error("unknown value type " + std::to_string(type));
    }
    return m;
  }
  uint64_t pos() const { return p_; }

 private:
  const std::string& b_;
  uint64_t p_ = 0;
};

// Parses and checks the layout: magic, version 3, every tensor's bytes
// aligned, inside the file, of the size its type and shape say, and apart.
MiniGguf parse_gguf(const std::string& path) {
  MiniGguf g;
  std::ifstream in(path, std::ios::binary);
  g.bytes.assign(std::istreambuf_iterator<char>(in), {});
  Reader r(g.bytes);
  if (r.pod<uint32_t>() != 0x46554747) throw std::runtime_error("bad magic");
  g.version = r.pod<uint32_t>();
  const uint64_t n_tensors = r.pod<uint64_t>(), n_kv = r.pod<uint64_t>();
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.str();
    const uint32_t type = r.pod<uint32_t>();
    if (!g.kv.emplace(key, r.value(type)).second) throw std::runtime_error("duplicate key " + key);
  }
  if (auto it = g.kv.find("general.alignment"); it != g.kv.end())
    g.alignment = std::get<uint64_t>(it->second.v);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    MiniTensor t;
    t.name = r.str();
    const uint32_t nd = r.pod<uint32_t>();
    uint64_t n = 1;
    for (uint32_t d = 0; d < nd; ++d) t.dims.push_back(r.pod<uint64_t>()), n *= t.dims.back();
    t.type = r.pod<uint32_t>();
    t.offset = r.pod<uint64_t>();
    const auto [block, bytes] = block_of(t.type);
    if (block == 0 || t.dims.empty() || t.dims[0] % block != 0)
      throw std::runtime_error(t.name + ": type " + std::to_string(t.type) + " with rows of " +
                               std::to_string(t.dims[0]));
    t.nbytes = n / block * bytes;
    if (t.offset % g.alignment != 0) throw std::runtime_error(t.name + ": offset not aligned");
    g.tensors.push_back(t);
  }
  g.data_start = (r.pos() + g.alignment - 1) / g.alignment * g.alignment;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const MiniTensor& t : g.tensors) {
    if (g.data_start + t.offset + t.nbytes > g.bytes.size())
      throw std::runtime_error(t.name + ": past the end");
    spans.emplace_back(t.offset, t.offset + t.nbytes);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].first < spans[i - 1].second) throw std::runtime_error("tensors overlap");
  return g;
}

std::string render(const MiniValue& m) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>)
          return "\"" + x.substr(0, 80) + "\"";
        else if constexpr (std::is_same_v<T, std::vector<MiniValue>>)
          return "[" + std::to_string(x.size()) + " items]";
        else
          return std::to_string(x);
      },
      m.v);
}

// ---------------------------------------------------------------- helpers

class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(fs::temp_directory_path() /
              ("swarm_convert_" + std::to_string(::getpid()) + "_" + name)) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  std::string operator/(const std::string& f) const { return (path_ / f).string(); }

 private:
  fs::path path_;
};

Result<ConvertSummary> convert(const std::string& dir, const std::string& out,
                               const std::string& type, const std::string& name = "") {
  ThreadPool pool(2);
  ConvertOptions o;
  o.type = type;
  o.name = name;
  return convert_hf_to_gguf(dir, out, o, pool);
}

std::string read_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct Errors {
  double s = 0, max = 0, mean = 0;
};

Errors compare_logits(const std::vector<float>& got, const std::vector<float>& ref) {
  Errors e;
  for (float r : ref) e.s = std::max(e.s, std::fabs(static_cast<double>(r)));
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
    e.max = std::max(e.max, d);
    e.mean += d;
  }
  e.mean /= static_cast<double>(ref.size());
  return e;
}

std::vector<float> logits_of(const std::string& model_path, const std::vector<int32_t>& tokens) {
  auto m = Model::Load(model_path);
  EXPECT_TRUE(m.ok()) << model_path << ": " << m.status().ToString();
  if (!m.ok()) return {};
  ThreadPool pool(2);
  auto cache = (*m)->new_cache(256);
  auto logits = (*m)->forward(tokens, *cache, pool);
  EXPECT_TRUE(logits.ok()) << logits.status().ToString();
  return logits.ok() ? *logits : std::vector<float>{};
}

// ---------------------------------------------------------------- against llama.cpp's files

struct RefCase {
  std::string model;         // "tiny-llama"
  std::string type;          // "F16", "Q8_0"
  double max_tol, mean_tol;  // logits, in units of S (tests/data/README.md)
};

std::ostream& operator<<(std::ostream& os, const RefCase& c) {
  return os << c.model << "-" << c.type;
}

class ReferenceConvertTest : public ::testing::TestWithParam<RefCase> {
 protected:
  void SetUp() override {
    const RefCase& c = GetParam();
    hf_ = find_testdata(c.model + "/hf");
    ref_ = find_testdata(c.model + "/gguf/" + c.model + "-" + c.type + ".gguf");
    ASSERT_FALSE(hf_.empty() || find_testdata(c.model + "/hf/model.safetensors").empty() || ref_.empty())
        << c << ": the HF folder or the GGUF is missing from tests/data";
    out_ = dir_ / (c.model + "-" + c.type + ".gguf");
    // llama.cpp names a model after its folder, title-cased: "hf" -> "Hf".
    auto s = convert(hf_, out_, c.type, "Hf");
    ASSERT_TRUE(s.ok()) << s.status().ToString();
  }
  TempDir dir_{"ref"};
  std::string hf_, ref_, out_;
};

// Every key llama.cpp wrote, with its type and value; nothing else, except
// the chat template of a folder that keeps it in chat_template.jinja, which
// the llama.cpp that made the references did not read yet.
TEST_P(ReferenceConvertTest, MetadataEqualsLlamaCpps) {
  const MiniGguf ours = parse_gguf(out_), ref = parse_gguf(ref_);
  EXPECT_EQ(ours.version, 3u);
  for (const auto& [key, value] : ref.kv) {
    auto it = ours.kv.find(key);
    if (it == ours.kv.end()) {
      ADD_FAILURE() << "missing " << key;
      continue;
    }
    EXPECT_TRUE(it->second == value)
        << key << ": ours " << render(it->second) << " (type " << it->second.type
        << "), llama.cpp's " << render(value) << " (type " << value.type << ")";
  }
  for (const auto& [key, value] : ours.kv) {
    if (ref.kv.count(key)) continue;
    if (key == "tokenizer.chat_template" && fs::exists(hf_ + "/chat_template.jinja")) {
      EXPECT_EQ(std::get<std::string>(value.v), read_file(hf_ + "/chat_template.jinja"));
      continue;
    }
    ADD_FAILURE() << "extra key " << key << " = " << render(value);
  }
}

// The same tensors, shapes and types, and the same bytes: llama.cpp's F16 and
// BF16 round to nearest even and its Q8_0 is the reference quantizer, all of
// which quants.cc implements exactly, so nothing needs a tolerance.
TEST_P(ReferenceConvertTest, TensorsByteIdenticalToLlamaCpps) {
  const MiniGguf ours = parse_gguf(out_), ref = parse_gguf(ref_);
  EXPECT_EQ(ours.tensors.size(), ref.tensors.size());
  for (const MiniTensor& r : ref.tensors) {
    const MiniTensor* t = ours.tensor(r.name);
    if (t == nullptr) {
      ADD_FAILURE() << "missing tensor " << r.name;
      continue;
    }
    EXPECT_EQ(t->dims, r.dims) << r.name;
    EXPECT_EQ(t->type, r.type) << r.name;
    if (t->dims != r.dims || t->type != r.type) continue;
    EXPECT_TRUE(ours.data(*t) == ref.data(r)) << r.name << ": bytes differ";
  }
}

TEST_P(ReferenceConvertTest, LogitsMatchReferenceWithinTolerance) {
  const RefCase& c = GetParam();
  for (int p = 0; p < 2; ++p) {
    const std::string dir = c.model + "/ref/" + c.type + "/p" + std::to_string(p);
    const std::vector<int32_t> ids = read_raw<int32_t>(find_testdata(dir + "_ids.i32"));
    const std::vector<float> ref = read_raw<float>(find_testdata(dir + "_logits.f32"));
    ASSERT_FALSE(ids.empty());
    const std::vector<float> got = logits_of(out_, ids);
    ASSERT_EQ(got.size(), ref.size());
    const Errors e = compare_logits(got, ref);
    EXPECT_LE(e.max, c.max_tol * e.s) << c << " p" << p;
    EXPECT_LE(e.mean, c.mean_tol * e.s) << c << " p" << p;
    std::printf("[ %s p%d ] max err %.2e S, mean err %.2e S\n", out_.c_str(), p, e.max / e.s,
                e.mean / e.s);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ReferenceConvertTest,
                         ::testing::Values(RefCase{"tiny-llama", "F16", 0.005, 0.001},
                                           RefCase{"tiny-llama", "BF16", 0.01, 0.002},
                                           RefCase{"tiny-llama", "Q8_0", 0.04, 0.008},
                                           RefCase{"tiny-qwen2", "F16", 0.005, 0.001},
                                           RefCase{"tiny-qwen2", "BF16", 0.01, 0.002},
                                           RefCase{"tiny-qwen2", "Q8_0", 0.04, 0.008}),
                         [](const auto& info) {
                           std::string n = info.param.model + "_" + info.param.type;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// ---------------------------------------------------------------- a hand-made folder

constexpr int kLayers = 2, kEmbd = 64, kHeads = 4, kKvHeads = 2, kFf = 96;
const char* kTemplate =
    "{% for m in messages %}{{ '<|start|>' + m['role'] + '\\n' + m['content'] + '<|end|>\\n' }}{% "
    "endfor %}"
    "{% if add_generation_prompt %}{{ '<|start|>assistant\\n' }}{% endif %}";

// GPT-2's byte-to-character alphabet.
std::string byte_char(int b) {
  static std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int extra = 0;
    for (int i = 0; i < 256; ++i) {
      const bool printable =
          (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
      const uint32_t cp = printable ? i : 256 + extra++;
      std::string u;
      if (cp < 0x80)
        u += static_cast<char>(cp);
      else
        u += static_cast<char>(0xC0 | (cp >> 6)), u += static_cast<char>(0x80 | (cp & 0x3F));
      t[i] = u;
    }
    return t;
  }();
  return table[b];
}

// A byte-level BPE tokenizer.json: 256 byte tokens, merges spelling a few
// words, and three added tokens (two special, one not).
json make_tokenizer_json(int* n_tokens) {
  json vocab = json::object();
  int id = 0;
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = id++;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"i", "n"},
      {"Ġ", "a"}, {"a", "n"}, {"an", "d"},  {"Ġ", "and"}};
  json jm = json::array();
  for (const auto& [a, b] : merges) {
    vocab[a + b] = id++;
    jm.push_back(json::array({a, b}));
  }
  json added = json::array();
  for (const auto& [text, special] : std::vector<std::pair<std::string, bool>>{
           {"<|start|>", true}, {"<|end|>", true}, {"[tool]", false}}) {
    added.push_back({{"id", id++},
                     {"content", text},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", special}});
  }
  *n_tokens = id;
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "ByteLevel"},
            {"add_prefix_space", false},
            {"trim_offsets", true},
            {"use_regex", true}}},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single", json::array({{{"SpecialToken", {{"id", "<|start|>"}, {"type_id", 0}}}},
                                    {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
            {"pair", json::array()},
            {"special_tokens", json::object()}}},
          {"decoder",
           {{"type", "ByteLevel"},
            {"add_prefix_space", true},
            {"trim_offsets", true},
            {"use_regex", true}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", jm}, {"ignore_merges", false}}}};
}

struct HfTensor {
  std::string name;
  std::vector<int64_t> shape;  // safetensors order
  std::vector<float> data;
};

void write_safetensors(const std::string& path, const std::vector<HfTensor>& tensors) {
  json h = json::object();
  uint64_t off = 0;
  for (const HfTensor& t : tensors) {
    h[t.name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {off, off + t.data.size() * 4}}};
    off += t.data.size() * 4;
  }
  std::string hs = h.dump();
  while (hs.size() % 8 != 0) hs += ' ';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t n = hs.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << hs;
  for (const HfTensor& t : tensors)
    out.write(reinterpret_cast<const char*>(t.data.data()), t.data.size() * 4);
}

// Weights of an initialised model (std 1/sqrt(fan_in)), norms around 1.
std::vector<HfTensor> make_weights(int vocab) {
  std::mt19937 rng(7);
  const auto mat = [&](const std::string& name, int rows, int cols) {
    std::normal_distribution<float> d(0.0f, 1.0f / std::sqrt(static_cast<float>(cols)));
    HfTensor t{name, {rows, cols}, std::vector<float>(static_cast<size_t>(rows) * cols)};
    for (float& x : t.data) x = d(rng);
    return t;
  };
  const auto norm = [&](const std::string& name, int n) {
    std::uniform_real_distribution<float> d(0.8f, 1.2f);
    HfTensor t{name, {n}, std::vector<float>(n)};
    for (float& x : t.data) x = d(rng);
    return t;
  };
  const int hd = kEmbd / kHeads, kv = kKvHeads * hd;
  std::vector<HfTensor> w = {mat("model.embed_tokens.weight", vocab, kEmbd)};
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.push_back(norm(p + "input_layernorm.weight", kEmbd));
    w.push_back(mat(p + "self_attn.q_proj.weight", kEmbd, kEmbd));
    w.push_back(mat(p + "self_attn.k_proj.weight", kv, kEmbd));
    w.push_back(mat(p + "self_attn.v_proj.weight", kv, kEmbd));
    w.push_back(mat(p + "self_attn.o_proj.weight", kEmbd, kEmbd));
    w.push_back(norm(p + "post_attention_layernorm.weight", kEmbd));
    w.push_back(mat(p + "mlp.gate_proj.weight", kFf, kEmbd));
    w.push_back(mat(p + "mlp.up_proj.weight", kFf, kEmbd));
    w.push_back(mat(p + "mlp.down_proj.weight", kEmbd, kFf));
  }
  w.push_back(norm("model.norm.weight", kEmbd));
  w.push_back(mat("lm_head.weight", vocab, kEmbd));
  return w;
}

class HandMadeFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(hf_);
    tokenizer_ = make_tokenizer_json(&vocab_);
    config_ = {{"architectures", {"LlamaForCausalLM"}},
               {"model_type", "llama"},
               {"num_hidden_layers", kLayers},
               {"hidden_size", kEmbd},
               {"num_attention_heads", kHeads},
               {"num_key_value_heads", kKvHeads},
               {"intermediate_size", kFf},
               {"vocab_size", vocab_ + 3},  // padded past the tokenizer, as trainers often do
               {"max_position_embeddings", 256},
               {"rms_norm_eps", 1e-5},
               {"rope_theta", 10000.0},
               {"tie_word_embeddings", false}};
    tokenizer_config_ = {
        {"bos_token", "<|start|>"}, {"eos_token", "<|end|>"}, {"chat_template", kTemplate}};
    weights_ = make_weights(vocab_ + 3);
    write_all();
  }
  void write_all() {
    std::ofstream(hf_ + "/config.json") << config_.dump(2);
    std::ofstream(hf_ + "/tokenizer.json") << tokenizer_.dump();
    std::ofstream(hf_ + "/tokenizer_config.json") << tokenizer_config_.dump();
    write_safetensors(hf_ + "/model.safetensors", weights_);
  }
  // Only the output, never a temporary, is left in the output folder.
  std::vector<std::string> out_files() const {
    std::vector<std::string> f;
    for (const auto& e : fs::directory_iterator(out_dir_.path()))
      f.push_back(e.path().filename().string());
    return f;
  }
  void expect_fails(const std::string& what) {
    const std::string out = out_dir_ / "bad.gguf";
    auto s = convert(hf_, out, "Q8_0");
    ASSERT_FALSE(s.ok()) << "converted despite " << what;
    EXPECT_NE(s.status().message().find(what), std::string::npos) << s.status().ToString();
    EXPECT_TRUE(out_files().empty()) << "left " << out_files().front();
  }

  TempDir dir_{"hand"}, out_dir_{"hand_out"};
  std::string hf_ = dir_ / "model";
  json config_, tokenizer_, tokenizer_config_;
  std::vector<HfTensor> weights_;
  int vocab_ = 0;
};

// Texts the tokenizer must treat alike from either file.
const std::vector<std::string> kTexts = {
    "the and then in", "  Hello, World!\n\n3.14 \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80",
    "<|start|>user\nhi<|end|>\n", "a [tool] b"};

TEST_F(HandMadeFolder, TokenizerAndChatTemplateSurvive) {
  const std::string out = out_dir_ / "m.gguf";
  auto s = convert(hf_, out, "F16");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->tokenizer, "gpt2 (gpt-2)");

  const MiniGguf g = parse_gguf(out);
  EXPECT_EQ(std::get<std::string>(g.kv.at("tokenizer.ggml.model").v), "gpt2");
  EXPECT_EQ(std::get<std::string>(g.kv.at("tokenizer.chat_template").v), kTemplate);
  EXPECT_EQ(std::get<uint64_t>(g.kv.at("tokenizer.ggml.bos_token_id").v), 256u + 8);
  EXPECT_EQ(std::get<uint64_t>(g.kv.at("tokenizer.ggml.eos_token_id").v), 256u + 9);
  EXPECT_EQ(std::get<bool>(g.kv.at("tokenizer.ggml.add_bos_token").v),
            true);  // the post-processor adds it
  const auto& tokens = std::get<std::vector<MiniValue>>(g.kv.at("tokenizer.ggml.tokens").v);
  const auto& types = std::get<std::vector<MiniValue>>(g.kv.at("tokenizer.ggml.token_type").v);
  ASSERT_EQ(tokens.size(), static_cast<size_t>(vocab_ + 3));  // padded to config.json's vocab_size
  EXPECT_EQ(std::get<std::string>(tokens[vocab_ + 1].v), "[PAD" + std::to_string(vocab_ + 1) + "]");
  EXPECT_EQ(std::get<int64_t>(types[vocab_ + 1].v), 5);  // unused
  EXPECT_EQ(std::get<int64_t>(types[256 + 8].v), 3);     // <|start|>: control
  EXPECT_EQ(std::get<int64_t>(types[256 + 10].v), 4);    // [tool]: user-defined
  EXPECT_EQ(std::get<std::vector<MiniValue>>(g.kv.at("tokenizer.ggml.merges").v).size(), 8u);

  auto from_hf = Tokenizer::Load(hf_), from_gguf = Tokenizer::Load(out);
  ASSERT_TRUE(from_hf.ok()) << from_hf.status().ToString();
  ASSERT_TRUE(from_gguf.ok()) << from_gguf.status().ToString();
  EXPECT_EQ((*from_gguf)->bos(), (*from_hf)->bos());
  EXPECT_EQ((*from_gguf)->eos(), (*from_hf)->eos());
  EXPECT_EQ((*from_gguf)->add_bos_default(), (*from_hf)->add_bos_default());
  for (const std::string& text : kTexts)
    for (bool special : {false, true}) {
      const auto ids = (*from_hf)->encode(text, true, special);
      EXPECT_EQ((*from_gguf)->encode(text, true, special), ids) << text;
      EXPECT_EQ((*from_gguf)->decode(ids, false), (*from_hf)->decode(ids, false)) << text;
    }
}

// The pre-tokenizer is named by what it does, whatever tokenizer.json's
// spelling of it: each family's Hugging Face form maps to its GGUF name.
TEST_F(HandMadeFolder, PreTokenizerNamedByItsSplits) {
  const auto split_then_bytes = [](const std::string& regex) {
    return json{
        {"type", "Sequence"},
        {"pretokenizers",
         json::array(
             {{{"type", "Split"},
               {"pattern", {{"Regex", regex}}},
               {"behavior", "Isolated"},
               {"invert", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
  };
  const std::string llama3 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  const std::string qwen2 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  struct Case {
    json pre;
    bool ignore_merges;
    std::string name;
  };
  const std::vector<Case> cases = {
      {tokenizer_["pre_tokenizer"], false, "gpt-2"},
      {split_then_bytes(llama3), true, "llama-bpe"},
      {split_then_bytes(qwen2), false, "qwen2"},
      {{{"type", "Sequence"},
        {"pretokenizers",
         json::array({{{"type", "Digits"}, {"individual_digits", true}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}})}},
       false,
       "smollm"},
  };
  for (const Case& c : cases) {
    tokenizer_["pre_tokenizer"] = c.pre;
    tokenizer_["model"]["ignore_merges"] = c.ignore_merges;
    write_all();
    auto s = convert(hf_, out_dir_ / "m.gguf", "F16");
    ASSERT_TRUE(s.ok()) << c.name << ": " << s.status().ToString();
    EXPECT_EQ(s->tokenizer, "gpt2 (" + c.name + ")");
  }
}

// A pre-tokenizer unlike every GGUF one is refused, not silently replaced.
TEST_F(HandMadeFolder, UnknownPreTokenizerIsAnError) {
  tokenizer_["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", json::array({{{"type", "Split"},
                                      {"pattern", {{"Regex", "[0-9]{2}"}}},
                                      {"behavior", "Isolated"},
                                      {"invert", false}},
                                     {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  write_all();
  expect_fails("pre-tokenizer splits text unlike");
}

// The permuted llama file computes what the unpermuted folder computes (the
// engine runs HF folders with rotate-half RoPE and GGUF llama with interleaved
// pairs), within float32 rounding.
TEST_F(HandMadeFolder, ConvertedLogitsEqualTheFolders) {
  const std::string out = out_dir_ / "m.gguf";
  auto s = convert(hf_, out, "F32");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const std::vector<int32_t> tokens = {264, 10, 100, 263, 5, 200, 7, 265, 33, 64};
  const std::vector<float> want = logits_of(hf_, tokens), got = logits_of(out, tokens);
  ASSERT_EQ(got.size(), want.size());
  const Errors e = compare_logits(got, want);
  EXPECT_LE(e.max, 1e-3 + 1e-5 * e.s) << "S=" << e.s;

  // Q8_0 is the same weights, quantized.
  ASSERT_TRUE(convert(hf_, out, "Q8_0").ok());
  const Errors q = compare_logits(logits_of(out, tokens), want);
  EXPECT_LE(q.max, 0.04 * q.s) << "S=" << q.s;
  EXPECT_LE(q.mean, 0.008 * q.s) << "S=" << q.s;
}

// RoPE scaling survives: linear as metadata, llama3 as the rope_freqs tensor.
// The folder's scaled logits differ from its unscaled ones, so a file that
// dropped the scaling could not match.
TEST_F(HandMadeFolder, RopeScalingSurvives) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 48; ++i) tokens.push_back((i * 37 + 11) % vocab_);
  const std::vector<float> unscaled = logits_of(hf_, tokens);
  const std::vector<json> scalings = {
      {{"rope_type", "linear"}, {"factor", 4.0}},
      {{"rope_type", "llama3"},
       {"factor", 8.0},
       {"low_freq_factor", 1.0},
       {"high_freq_factor", 4.0},
       {"original_max_position_embeddings", 32}},
  };
  for (const json& scaling : scalings) {
    config_["rope_scaling"] = scaling;
    write_all();
    const std::string out = out_dir_ / "m.gguf";
    auto s = convert(hf_, out, "F32");
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    const std::vector<float> want = logits_of(hf_, tokens), got = logits_of(out, tokens);
    ASSERT_EQ(got.size(), want.size());
    const Errors e = compare_logits(got, want);
    EXPECT_LE(e.max, 1e-3 + 1e-5 * e.s) << scaling.dump();
    EXPECT_GT(compare_logits(unscaled, want).max, 100 * (1e-3 + 1e-5 * e.s)) << scaling.dump();
    const MiniGguf g = parse_gguf(out);
    EXPECT_EQ(g.tensor("rope_freqs.weight") != nullptr, scaling["rope_type"] == "llama3");
    EXPECT_EQ(g.kv.count("llama.rope.scaling.type"), scaling["rope_type"] == "linear" ? 1u : 0u);
  }
}

// Sharded weights (model.safetensors.index.json) give the same file.
TEST_F(HandMadeFolder, ShardedEqualsSingleFile) {
  ASSERT_TRUE(convert(hf_, out_dir_ / "single.gguf", "Q8_0").ok());
  fs::remove(hf_ + "/model.safetensors");
  const size_t half = weights_.size() / 2;
  write_safetensors(hf_ + "/model-00001-of-00002.safetensors",
                    {weights_.begin(), weights_.begin() + half});
  write_safetensors(hf_ + "/model-00002-of-00002.safetensors",
                    {weights_.begin() + half, weights_.end()});
  json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
  for (size_t i = 0; i < weights_.size(); ++i)
    index["weight_map"][weights_[i].name] =
        i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  std::ofstream(hf_ + "/model.safetensors.index.json") << index.dump();
  auto s = convert(hf_, out_dir_ / "sharded.gguf", "Q8_0");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(read_file(out_dir_ / "sharded.gguf") == read_file(out_dir_ / "single.gguf"));
}

TEST_F(HandMadeFolder, MissingTensorLeavesNoFile) {
  std::erase_if(weights_,
                [](const HfTensor& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; });
  write_all();
  expect_fails("blk.1.ffn_up.weight");
}

TEST_F(HandMadeFolder, WrongShapeLeavesNoFile) {
  for (HfTensor& t : weights_)
    if (t.name == "model.layers.0.self_attn.k_proj.weight") {
      t.shape = {kEmbd, kEmbd};
      t.data.resize(kEmbd * kEmbd);
    }
  write_all();
  expect_fails("blk.0.attn_k.weight");
}

TEST_F(HandMadeFolder, BadJsonLeavesNoFile) {
  std::ofstream(hf_ + "/config.json") << "{\"architectures\": [\"LlamaForCausalLM\"], ";
  expect_fails("config.json");
}

TEST_F(HandMadeFolder, BadTokenizerJsonLeavesNoFile) {
  std::ofstream(hf_ + "/tokenizer.json") << "{\"model\": {\"type\": \"BPE\", \"vocab\": 3}}";
  expect_fails("tokenizer.json");
}

TEST_F(HandMadeFolder, TooManyTokensForTheEmbeddingIsAnError) {
  config_["vocab_size"] = vocab_ - 1;
  for (HfTensor& t : weights_)
    if (t.name == "model.embed_tokens.weight" || t.name == "lm_head.weight") {
      t.shape[0] = vocab_ - 1;
      t.data.resize(static_cast<size_t>(vocab_ - 1) * kEmbd);
    }
  write_all();
  expect_fails("vocab_size");
}

// A failed conversion leaves a file already at the output path as it was.
TEST_F(HandMadeFolder, FailureKeepsExistingOutput) {
  const std::string out = out_dir_ / "bad.gguf";
  std::ofstream(out) << "old";
  std::ofstream(hf_ + "/config.json") << "{";
  EXPECT_FALSE(convert(hf_, out, "F16").ok());
  EXPECT_EQ(read_file(out), "old");
  EXPECT_EQ(out_files(), std::vector<std::string>{"bad.gguf"});
}

TEST_F(HandMadeFolder, UnsupportedTypeIsAnError) {
  auto s = convert(hf_, out_dir_ / "x.gguf", "Q4_0");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("Q4_0"), std::string::npos);
  EXPECT_TRUE(out_files().empty());
}

}  // namespace
}  // namespace swarm
