// Tests for the safetensors header reader and the Hugging Face folder loader.
// Each test writes its own small folder (config.json + safetensors files made by
// a tiny writer below) so that names, shapes, offsets and every validation error
// are checked against bytes we know; the reference models in tests/data are
// checked too.
#include "engine/hf_loader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/safetensors.h"
#include "engine/test_data.h"

namespace swarm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---------------------------------------------------------------- test helpers

struct FakeTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;  // safetensors order
  std::vector<uint8_t> data;   // filled by make_tensor with a recognizable pattern
};

FakeTensor make_tensor(const std::string& name, std::vector<int64_t> shape,
                       const std::string& dtype = "F32") {
  FakeTensor t{name, dtype, std::move(shape), {}};
  size_t n = safetensors_dtype_size(dtype);
  for (int64_t d : t.shape) n *= static_cast<size_t>(d);
  const size_t salt = std::hash<std::string>{}(name);
  t.data.resize(n);
  for (size_t i = 0; i < n; ++i) t.data[i] = static_cast<uint8_t>((salt + i * 7) & 0xFF);
  return t;
}

// The JSON header for `tensors` laid out back to back, in the given order.
json header_for(const std::vector<FakeTensor>& tensors) {
  json h = json::object();
  h["__metadata__"] = {{"format", "pt"}};
  uint64_t off = 0;
  for (const FakeTensor& t : tensors) {
    h[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.data.size()}}};
    off += t.data.size();
  }
  return h;
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << p;
}

// Header length (which may lie), header text, then data.
std::string file_bytes(const std::string& header, const std::string& data, uint64_t len) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((len >> (8 * i)) & 0xFF);
  return s + header + data;
}

std::string data_of(const std::vector<FakeTensor>& tensors) {
  std::string d;
  for (const FakeTensor& t : tensors) d.append(t.data.begin(), t.data.end());
  return d;
}

// A well-formed file, header padded with spaces to a multiple of 8 as the
// reference writer does.
void write_safetensors(const fs::path& p, const std::vector<FakeTensor>& tensors) {
  std::string h = header_for(tensors).dump();
  while (h.size() % 8 != 0) h += ' ';
  write_bytes(p, file_bytes(h, data_of(tensors), h.size()));
}

std::vector<uint8_t> read_at(const std::string& path, uint64_t offset, uint64_t n) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::vector<uint8_t> buf(n);
  in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(n));
  EXPECT_TRUE(in.good()) << path << " @" << offset;
  return buf;
}

constexpr int kLayers = 2, kEmbd = 8, kHeads = 2, kKvHeads = 1, kFf = 16, kVocab = 12;

json tiny_config(const std::string& arch = "LlamaForCausalLM") {
  return {{"architectures", {arch}},
          {"model_type", arch == "Qwen2ForCausalLM" ? "qwen2" : "llama"},
          {"num_hidden_layers", kLayers},
          {"hidden_size", kEmbd},
          {"num_attention_heads", kHeads},
          {"num_key_value_heads", kKvHeads},
          {"intermediate_size", kFf},
          {"vocab_size", kVocab},
          {"max_position_embeddings", 128},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"rope_scaling", nullptr},
          {"tie_word_embeddings", false},
          {"bos_token_id", 1},
          {"eos_token_id", 2}};
}

// All tensors of a tiny llama (qwen2 adds q/k/v biases), plus one HF buffer
// that has no GGUF counterpart.
std::vector<FakeTensor> tiny_tensors(bool biases = false, bool lm_head = true) {
  const int kv = kKvHeads * (kEmbd / kHeads);
  std::vector<FakeTensor> t = {make_tensor("model.embed_tokens.weight", {kVocab, kEmbd}),
                               make_tensor("model.norm.weight", {kEmbd})};
  if (lm_head) t.push_back(make_tensor("lm_head.weight", {kVocab, kEmbd}));
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back(make_tensor(p + "input_layernorm.weight", {kEmbd}));
    t.push_back(make_tensor(p + "post_attention_layernorm.weight", {kEmbd}));
    t.push_back(make_tensor(p + "self_attn.q_proj.weight", {kEmbd, kEmbd}));
    t.push_back(make_tensor(p + "self_attn.k_proj.weight", {kv, kEmbd}));
    t.push_back(make_tensor(p + "self_attn.v_proj.weight", {kv, kEmbd}));
    t.push_back(make_tensor(p + "self_attn.o_proj.weight", {kEmbd, kEmbd}));
    if (biases) {
      t.push_back(make_tensor(p + "self_attn.q_proj.bias", {kEmbd}));
      t.push_back(make_tensor(p + "self_attn.k_proj.bias", {kv}));
      t.push_back(make_tensor(p + "self_attn.v_proj.bias", {kv}));
    }
    t.push_back(make_tensor(p + "mlp.gate_proj.weight", {kFf, kEmbd}));
    t.push_back(make_tensor(p + "mlp.up_proj.weight", {kFf, kEmbd}));
    t.push_back(make_tensor(p + "mlp.down_proj.weight", {kEmbd, kFf}));
    t.push_back(make_tensor(p + "self_attn.rotary_emb.inv_freq", {kEmbd / kHeads / 2}));
  }
  return t;
}

class HfLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ =
        fs::temp_directory_path() / ("swarm_hf_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write_config(const json& cfg) { write_bytes(dir_ / "config.json", cfg.dump(2)); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A complete single-file folder.
  void write_folder(const std::vector<FakeTensor>& tensors, const json& cfg = tiny_config()) {
    write_config(cfg);
    write_safetensors(dir_ / "model.safetensors", tensors);
  }

  // Writes model.safetensors with `header` (as given) and `data`.
  void write_model_file(const json& header, const std::string& data) {
    const std::string h = header.dump();
    write_bytes(dir_ / "model.safetensors", file_bytes(h, data, h.size()));
  }

  // The load fails with `code` and the message names each of `parts`.
  void expect_error(Status::Code code, const std::vector<std::string>& parts) {
    Result<ModelSource> r = load_hf_folder(dir_.string());
    ASSERT_FALSE(r.ok()) << "loaded a broken folder";
    EXPECT_EQ(r.status().code(), code) << r.status().ToString();
    for (const std::string& p : parts)
      EXPECT_NE(r.status().message().find(p), std::string::npos)
          << "'" << r.status().message() << "' does not mention '" << p << "'";
  }

  fs::path dir_;
};

// The GGUF name the loader must give a HF tensor name ("" for skipped ones),
// written out independently of the loader's own table.
std::string gguf_name_of(const std::string& hf) {
  static const std::map<std::string, std::string> kNames = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
      {"input_layernorm.weight", "attn_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  if (kNames.count(hf)) return kNames.at(hf);
  const std::string prefix = "model.layers.";
  if (hf.rfind(prefix, 0) != 0) return "";
  const size_t dot = hf.find('.', prefix.size());
  auto it = kNames.find(hf.substr(dot + 1));
  if (it == kNames.end()) return "";
  return "blk." + hf.substr(prefix.size(), dot - prefix.size()) + "." + it->second;
}

// Checks one loaded tensor against the fake it came from.
void expect_tensor(const ModelSource& src, const std::string& gguf_name, const FakeTensor& fake,
                   int file_index) {
  SCOPED_TRACE(gguf_name);
  const TensorInfo* t = src.find(gguf_name);
  ASSERT_NE(t, nullptr);
  std::vector<int64_t> reversed(fake.shape.rbegin(), fake.shape.rend());
  EXPECT_EQ(t->shape, reversed);
  EXPECT_EQ(t->file_index, file_index);
  EXPECT_EQ(t->nbytes, fake.data.size());
  const TensorType want = fake.dtype == "F32"   ? TensorType::F32
                          : fake.dtype == "F16" ? TensorType::F16
                                                : TensorType::BF16;
  EXPECT_EQ(t->type, want);
  EXPECT_EQ(t->nbytes, row_size(t->type, t->n_elements()));
  ASSERT_LT(static_cast<size_t>(t->file_index), src.files.size());
  EXPECT_EQ(read_at(src.files[t->file_index], t->offset, t->nbytes), fake.data);
}

// ---------------------------------------------------------------- good folders

TEST_F(HfLoaderTest, SingleFileNamesShapesOffsetsAndBytes) {
  std::vector<FakeTensor> tensors = tiny_tensors();
  // Mixed float types, and not in name order.
  tensors[1] = make_tensor("model.norm.weight", {kEmbd}, "BF16");
  tensors[3] = make_tensor(tensors[3].name, {kEmbd}, "F16");
  std::swap(tensors[0], tensors[5]);
  write_folder(tensors);

  Result<ModelSource> r = load_hf_folder(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const ModelSource& src = *r;
  EXPECT_EQ(src.format, "hf");
  EXPECT_EQ(src.path, dir_.string());
  ASSERT_EQ(src.files.size(), 1u);
  EXPECT_EQ(src.files[0], path("model.safetensors"));
  EXPECT_EQ(src.tensors.size(), 3u + 9u * kLayers);  // inv_freq skipped

  // First tensor's bytes start right after the header.
  const std::string h = header_for(tensors).dump();
  const uint64_t data_start = 8 + (h.size() + 7) / 8 * 8;
  ASSERT_EQ(gguf_name_of(tensors[0].name), "blk.0.attn_q.weight");
  EXPECT_EQ(src.find("blk.0.attn_q.weight")->offset, data_start);

  int checked = 0;
  for (const FakeTensor& f : tensors) {
    const std::string gguf = gguf_name_of(f.name);
    if (gguf.empty()) continue;
    expect_tensor(src, gguf, f, 0);
    ++checked;
  }
  EXPECT_EQ(checked, 3 + 9 * kLayers);
  EXPECT_EQ(src.find("blk.0.attn_q.weight")->shape, (std::vector<int64_t>{kEmbd, kEmbd}));
  EXPECT_EQ(src.find("blk.1.ffn_down.weight")->shape, (std::vector<int64_t>{kFf, kEmbd}));
  EXPECT_EQ(src.find("blk.1.attn_k.weight")->shape, (std::vector<int64_t>{kEmbd, 4}));
  EXPECT_EQ(src.find("token_embd.weight")->shape, (std::vector<int64_t>{kEmbd, kVocab}));
  EXPECT_EQ(src.metadata.at("hf.skipped_tensors"),
            "model.layers.0.self_attn.rotary_emb.inv_freq,"
            "model.layers.1.self_attn.rotary_emb.inv_freq");
}

TEST_F(HfLoaderTest, ConfigValues) {
  write_folder(tiny_tensors());
  Result<ModelSource> r = load_hf_folder(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const ModelConfig& c = r->config;
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.n_layer, kLayers);
  EXPECT_EQ(c.n_embd, kEmbd);
  EXPECT_EQ(c.n_head, kHeads);
  EXPECT_EQ(c.n_head_kv, kKvHeads);
  EXPECT_EQ(c.head_dim, kEmbd / kHeads);
  EXPECT_EQ(c.rope_dim, kEmbd / kHeads);
  EXPECT_EQ(c.n_ff, kFf);
  EXPECT_EQ(c.n_vocab, kVocab);
  EXPECT_EQ(c.n_ctx_train, 128);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_TRUE(c.rope_neox);
  EXPECT_EQ(c.rope_scaling, RopeScaling::kNone);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_EQ(c.name, dir_.filename().string());
  EXPECT_EQ(r->metadata.at("general.name"), c.name);
  EXPECT_EQ(r->metadata.at("general.architecture"), "llama");
  EXPECT_EQ(r->metadata.at("tokenizer.ggml.bos_token_id"), "1");
  EXPECT_EQ(r->metadata.at("tokenizer.ggml.eos_token_id"), "2");
}

TEST_F(HfLoaderTest, ConfigDefaultsAndRopeScaling) {
  json cfg = tiny_config();
  cfg.erase("num_key_value_heads");
  cfg.erase("rope_theta");
  cfg.erase("rms_norm_eps");
  cfg["head_dim"] = 6;
  cfg["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  // head_dim 6 changes q/k/v shapes; the loader does not check them (the model does).
  write_folder(tiny_tensors(), cfg);
  Result<ModelSource> r = load_hf_folder(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->config.n_head_kv, kHeads);
  EXPECT_EQ(r->config.head_dim, 6);
  EXPECT_EQ(r->config.rope_dim, 6);
  EXPECT_FLOAT_EQ(r->config.rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(r->config.rms_eps, 1e-6f);
  EXPECT_EQ(r->config.rope_scaling, RopeScaling::kLinear);
  EXPECT_FLOAT_EQ(r->config.rope_scale_factor, 4.0f);

  cfg["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", 8.0},
                         {"low_freq_factor", 1.5},
                         {"high_freq_factor", 3.0},
                         {"original_max_position_embeddings", 4096}};
  write_config(cfg);
  r = load_hf_folder(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->config.rope_scaling, RopeScaling::kLlama3);
  EXPECT_FLOAT_EQ(r->config.rope_scale_factor, 8.0f);
  EXPECT_FLOAT_EQ(r->config.rope_low_freq_factor, 1.5f);
  EXPECT_FLOAT_EQ(r->config.rope_high_freq_factor, 3.0f);
  EXPECT_EQ(r->config.rope_original_ctx, 4096);

  // transformers 5 nests theta and scaling in rope_parameters.
  cfg.erase("rope_scaling");
  cfg["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 500000.0}};
  write_config(cfg);
  r = load_hf_folder(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->config.rope_scaling, RopeScaling::kLinear);
  EXPECT_FLOAT_EQ(r->config.rope_scale_factor, 2.0f);
  EXPECT_FLOAT_EQ(r->config.rope_theta, 500000.0f);

  cfg["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  write_config(cfg);
  r = load_hf_folder(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->config.rope_scaling, RopeScaling::kNone);
  EXPECT_FLOAT_EQ(r->config.rope_theta, 1e6f);
}

TEST_F(HfLoaderTest, Qwen2WithBiases) {
  write_folder(tiny_tensors(/*biases=*/true), tiny_config("Qwen2ForCausalLM"));
  Result<ModelSource> r = load_hf_folder(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->config.arch, "qwen2");
  EXPECT_TRUE(r->config.rope_neox);
  for (int l = 0; l < kLayers; ++l) {
    for (const char* b : {"attn_q.bias", "attn_k.bias", "attn_v.bias"}) {
      const TensorInfo* t = r->find("blk." + std::to_string(l) + "." + b);
      ASSERT_NE(t, nullptr) << b;
      EXPECT_EQ(t->shape.size(), 1u);
    }
  }
  EXPECT_EQ(r->find("blk.0.attn_q.bias")->shape[0], kEmbd);
  EXPECT_EQ(r->find("blk.0.attn_k.bias")->shape[0], 4);
}

TEST_F(HfLoaderTest, TiedWhenLmHeadMissing) {
  write_folder(tiny_tensors(false, /*lm_head=*/false));
  Result<ModelSource> r = load_hf_folder(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->config.tied_embeddings);
  EXPECT_EQ(r->find("output.weight"), nullptr);
}

TEST_F(HfLoaderTest, TieWordEmbeddingsDropsStoredLmHead) {
  json cfg = tiny_config();
  cfg["tie_word_embeddings"] = true;
  write_folder(tiny_tensors(), cfg);
  Result<ModelSource> r = load_hf_folder(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->config.tied_embeddings);
  EXPECT_EQ(r->find("output.weight"), nullptr);
  EXPECT_NE(r->find("token_embd.weight"), nullptr);
}

TEST_F(HfLoaderTest, MetadataNamesTokenizerFiles) {
  write_folder(tiny_tensors());
  write_bytes(dir_ / "tokenizer.json", "{}");
  write_bytes(dir_ / "tokenizer_config.json", "{}");
  write_bytes(dir_ / "chat_template.jinja", "{{ x }}");
  Result<ModelSource> r = load_hf_folder(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->metadata.at("hf.tokenizer_json"), path("tokenizer.json"));
  EXPECT_EQ(r->metadata.at("hf.tokenizer_config"), path("tokenizer_config.json"));
  EXPECT_EQ(r->metadata.at("hf.chat_template"), path("chat_template.jinja"));
  EXPECT_EQ(r->metadata.count("hf.tokenizer_model"), 0u);
}

// Splits the tensors over two shards and writes the index.
void write_two_shards(const fs::path& dir, const std::vector<FakeTensor>& all,
                      std::vector<FakeTensor>* a, std::vector<FakeTensor>* b) {
  for (size_t i = 0; i < all.size(); ++i) (i % 2 == 0 ? a : b)->push_back(all[i]);
  const std::string fa = "model-00001-of-00002.safetensors";
  const std::string fb = "model-00002-of-00002.safetensors";
  write_safetensors(dir / fa, *a);
  write_safetensors(dir / fb, *b);
  json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
  for (const FakeTensor& t : *a) index["weight_map"][t.name] = fa;
  for (const FakeTensor& t : *b) index["weight_map"][t.name] = fb;
  write_bytes(dir / "model.safetensors.index.json", index.dump(2));
}

TEST_F(HfLoaderTest, TwoShardsWithIndex) {
  write_config(tiny_config());
  std::vector<FakeTensor> a, b;
  write_two_shards(dir_, tiny_tensors(), &a, &b);

  Result<ModelSource> r = load_hf_folder(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->files.size(), 2u);
  EXPECT_EQ(r->files[0], path("model-00001-of-00002.safetensors"));
  EXPECT_EQ(r->files[1], path("model-00002-of-00002.safetensors"));
  EXPECT_EQ(r->tensors.size(), 3u + 9u * kLayers);
  int checked = 0;
  for (int shard = 0; shard < 2; ++shard) {
    for (const FakeTensor& f : shard == 0 ? a : b) {
      const std::string gguf = gguf_name_of(f.name);
      if (gguf.empty()) continue;
      expect_tensor(*r, gguf, f, shard);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 3 + 9 * kLayers);
  // Every tensor lies inside its own shard.
  for (const TensorInfo& t : r->tensors)
    EXPECT_LE(t.offset + t.nbytes, fs::file_size(r->files[t.file_index])) << t.name;
}

TEST_F(HfLoaderTest, IsHfFolder) {
  EXPECT_FALSE(is_hf_folder(dir_.string()));
  write_config(tiny_config());
  EXPECT_FALSE(is_hf_folder(dir_.string()));
  write_safetensors(dir_ / "model.safetensors", tiny_tensors());
  EXPECT_TRUE(is_hf_folder(dir_.string()));
  EXPECT_FALSE(is_hf_folder(path("model.safetensors")));
  EXPECT_FALSE(is_hf_folder(path("no-such-folder")));
  EXPECT_FALSE(is_hf_folder(""));
}

// ---------------------------------------------------------------- broken folders

TEST_F(HfLoaderTest, MissingConfig) {
  write_safetensors(dir_ / "model.safetensors", tiny_tensors());
  expect_error(Status::Code::kNotFound, {path("config.json")});
}

TEST_F(HfLoaderTest, MissingFolder) {
  Result<ModelSource> r = load_hf_folder(path("nowhere"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nowhere"), std::string::npos);
}

TEST_F(HfLoaderTest, InvalidConfigJson) {
  write_folder(tiny_tensors());
  write_bytes(dir_ / "config.json", "{\"architectures\": [\"LlamaForCausalLM\"], ");
  expect_error(Status::Code::kCorruption, {path("config.json"), "JSON"});
  write_bytes(dir_ / "config.json", "[1, 2]");
  expect_error(Status::Code::kCorruption, {path("config.json")});
}

TEST_F(HfLoaderTest, UnknownArchitecture) {
  json cfg = tiny_config();
  cfg["architectures"] = {"GPT2LMHeadModel"};
  write_folder(tiny_tensors(), cfg);
  expect_error(Status::Code::kUnsupported, {path("config.json"), "GPT2LMHeadModel"});
}

TEST_F(HfLoaderTest, MissingRequiredConfigFields) {
  for (const char* key : {"num_hidden_layers", "hidden_size", "num_attention_heads",
                          "intermediate_size", "vocab_size"}) {
    SCOPED_TRACE(key);
    json cfg = tiny_config();
    cfg.erase(key);
    write_folder(tiny_tensors(), cfg);
    expect_error(Status::Code::kInvalidArgument, {path("config.json"), key});
  }
}

TEST_F(HfLoaderTest, BadConfigValues) {
  const std::vector<std::pair<std::string, json>> bad = {
      {"hidden_size", "256"},
      {"num_hidden_layers", -1},
      {"num_attention_heads", 0},
      {"vocab_size", 1.5},
      {"num_key_value_heads", 3},
      {"rms_norm_eps", "x"},
      {"rope_theta", -5},
      {"tie_word_embeddings", 1},
      {"hidden_size", 1ll << 40},
      {"rope_scaling", {{"type", "yarn"}, {"factor", 4}}},
      {"rope_scaling", {{"type", "linear"}}},
      {"architectures", json::array()},
  };
  for (const auto& [key, value] : bad) {
    SCOPED_TRACE(key + " = " + value.dump());
    json cfg = tiny_config();
    cfg[key] = value;
    write_folder(tiny_tensors(), cfg);
    Result<ModelSource> r = load_hf_folder(dir_.string());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(path("config.json")), std::string::npos)
        << r.status().message();
    const std::string mention = key == "rope_scaling" ? "rope" : key;
    EXPECT_NE(r.status().message().find(mention), std::string::npos) << r.status().message();
  }
}

TEST_F(HfLoaderTest, MissingSafetensors) {
  write_config(tiny_config());
  expect_error(Status::Code::kNotFound, {dir_.string(), "safetensors"});
}

TEST_F(HfLoaderTest, TruncatedSafetensors) {
  write_config(tiny_config());
  write_bytes(dir_ / "model.safetensors", std::string("\x10\x00\x00", 3));
  expect_error(Status::Code::kCorruption, {path("model.safetensors"), "truncated"});
}

TEST_F(HfLoaderTest, HeaderLengthLargerThanFile) {
  write_config(tiny_config());
  const std::string h = header_for(tiny_tensors()).dump();
  write_bytes(dir_ / "model.safetensors", file_bytes(h, "", h.size() + 1));
  expect_error(Status::Code::kCorruption, {path("model.safetensors"), "header length"});
  write_bytes(dir_ / "model.safetensors", file_bytes(h, "", ~0ull));
  expect_error(Status::Code::kCorruption, {path("model.safetensors"), "header length"});
}

TEST_F(HfLoaderTest, InvalidHeaderJson) {
  write_config(tiny_config());
  const std::string h = "{\"a\": {\"dtype\": ";
  write_bytes(dir_ / "model.safetensors", file_bytes(h, "", h.size()));
  expect_error(Status::Code::kCorruption, {path("model.safetensors"), "JSON"});
  // Valid JSON, wrong types: no exception may escape.
  const std::string h2 = R"({"a": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}})";
  write_bytes(dir_ / "model.safetensors", file_bytes(h2, "abcd", h2.size()));
  expect_error(Status::Code::kCorruption, {path("model.safetensors"), "'a'", "dtype"});
  const std::string h3 = R"({"__metadata__": [1]})";
  write_bytes(dir_ / "model.safetensors", file_bytes(h3, "", h3.size()));
  expect_error(Status::Code::kCorruption, {path("model.safetensors"), "__metadata__"});
}

TEST_F(HfLoaderTest, OverlappingOffsets) {
  write_config(tiny_config());
  std::vector<FakeTensor> t = tiny_tensors();
  json h = header_for(t);
  // The second norm starts 4 bytes inside the embeddings (same length).
  const uint64_t emb = t[0].data.size();
  h["model.norm.weight"]["data_offsets"] = {emb - 4, emb - 4 + t[1].data.size()};
  write_model_file(h, data_of(t));
  expect_error(Status::Code::kCorruption, {path("model.safetensors"), "overlaps",
                                           "model.norm.weight", "model.embed_tokens.weight"});
}

TEST_F(HfLoaderTest, OffsetsDoNotMatchShape) {
  write_config(tiny_config());
  std::vector<FakeTensor> t = tiny_tensors();
  json h = header_for(t);
  h["model.norm.weight"]["shape"] = {kEmbd + 1};
  write_model_file(h, data_of(t));
  expect_error(Status::Code::kCorruption, {path("model.safetensors"), "model.norm.weight"});

  h = header_for(t);
  h["model.norm.weight"]["data_offsets"] = {100, 50};
  write_model_file(h, data_of(t));
  expect_error(Status::Code::kCorruption, {path("model.safetensors"), "model.norm.weight"});

  h = header_for(t);
  h["model.norm.weight"]["data_offsets"] = {1};
  write_model_file(h, data_of(t));
  expect_error(Status::Code::kCorruption, {path("model.safetensors"), "model.norm.weight"});

  h = header_for(t);
  h["model.norm.weight"]["shape"] = {-8};
  write_model_file(h, data_of(t));
  expect_error(Status::Code::kCorruption, {path("model.safetensors"), "model.norm.weight"});

  // Elements x dtype size overflows 64 bits.
  h = header_for(t);
  h["model.norm.weight"]["shape"] = {1ull << 32, 1ull << 32};
  write_model_file(h, data_of(t));
  expect_error(Status::Code::kCorruption, {path("model.safetensors"), "model.norm.weight"});
}

TEST_F(HfLoaderTest, DataPastEndOfFile) {
  write_config(tiny_config());
  std::vector<FakeTensor> t = tiny_tensors();
  std::string data = data_of(t);
  data.resize(data.size() - 1);  // the last tensor loses its last byte
  write_model_file(header_for(t), data);
  expect_error(Status::Code::kCorruption,
               {path("model.safetensors"), t.back().name, "past the end"});
}

TEST_F(HfLoaderTest, UnsupportedDtypeNamesTensor) {
  std::vector<FakeTensor> t = tiny_tensors();
  t[2] = make_tensor(t[2].name, t[2].shape, "F64");
  write_folder(t);
  expect_error(Status::Code::kUnsupported, {path("model.safetensors"), t[2].name, "F64"});

  // A skipped tensor may have any known dtype.
  t = tiny_tensors();
  t.push_back(make_tensor("model.some_buffer", {3}, "I64"));
  write_folder(t);
  EXPECT_TRUE(load_hf_folder(dir_.string()).ok());

  // Unknown dtype strings cannot be sized: refused even for skipped tensors.
  json h = header_for(tiny_tensors());
  h["model.x"] = {{"dtype", "Q9"}, {"shape", {1}}, {"data_offsets", {0, 0}}};
  write_model_file(h, data_of(tiny_tensors()));
  expect_error(Status::Code::kUnsupported, {path("model.safetensors"), "model.x", "Q9"});
}

TEST_F(HfLoaderTest, LayerBeyondConfig) {
  std::vector<FakeTensor> t = tiny_tensors();
  t.push_back(make_tensor("model.layers.7.input_layernorm.weight", {kEmbd}));
  write_folder(t);
  expect_error(Status::Code::kCorruption,
               {path("model.safetensors"), "model.layers.7.input_layernorm.weight"});
}

TEST_F(HfLoaderTest, MissingEmbeddings) {
  std::vector<FakeTensor> t = tiny_tensors();
  t.erase(t.begin());
  write_folder(t);
  expect_error(Status::Code::kCorruption, {"model.embed_tokens.weight"});

  t = tiny_tensors();
  t[0] = make_tensor(t[0].name, {kVocab + 1, kEmbd});
  write_folder(t);
  expect_error(Status::Code::kCorruption, {path("model.safetensors"), "model.embed_tokens.weight"});
}

TEST_F(HfLoaderTest, ShardIndexErrors) {
  write_config(tiny_config());
  std::vector<FakeTensor> a, b;
  write_two_shards(dir_, tiny_tensors(), &a, &b);
  const fs::path index = dir_ / "model.safetensors.index.json";
  const std::string fb = "model-00002-of-00002.safetensors";

  // A shard the index names is missing.
  fs::rename(dir_ / fb, dir_ / "moved.safetensors");
  expect_error(Status::Code::kNotFound, {path(fb)});
  fs::rename(dir_ / "moved.safetensors", dir_ / fb);
  ASSERT_TRUE(load_hf_folder(dir_.string()).ok());

  // The index places a tensor in a shard that lacks it.
  json j = json::parse(std::ifstream(index));
  j["weight_map"]["model.layers.0.extra.weight"] = fb;
  write_bytes(index, j.dump());
  expect_error(Status::Code::kCorruption, {path(fb), "model.layers.0.extra.weight"});

  // A file name that leaves the folder.
  j = json::parse(std::ifstream(index));
  j["weight_map"].erase("model.layers.0.extra.weight");
  j["weight_map"]["model.norm.weight"] = "../evil.safetensors";
  write_bytes(index, j.dump());
  expect_error(Status::Code::kCorruption, {index.string(), "../evil.safetensors"});

  write_bytes(index, R"({"weight_map": [1]})");
  expect_error(Status::Code::kCorruption, {index.string(), "weight_map"});
  write_bytes(index, "not json");
  expect_error(Status::Code::kCorruption, {index.string()});

  // The same tensor in both shards with no index to choose one.
  fs::remove(index);
  std::vector<FakeTensor> dup = b;
  dup.push_back(a[0]);
  write_safetensors(dir_ / fb, dup);
  expect_error(Status::Code::kCorruption, {"token_embd.weight", path(fb)});
}

// Truncating a valid file anywhere and flipping header bytes at random gives an
// error or a (bounds-checked) result, never a crash.
TEST_F(HfLoaderTest, HostileBytesNeverCrash) {
  write_config(tiny_config());
  std::vector<FakeTensor> t = tiny_tensors();
  std::string h = header_for(t).dump();
  const std::string good = file_bytes(h, data_of(t), h.size());
  const fs::path p = dir_ / "model.safetensors";
  for (size_t len = 0; len < good.size(); len += (len < h.size() + 16 ? 1 : 97)) {
    write_bytes(p, good.substr(0, len));
    Result<ModelSource> r = load_hf_folder(dir_.string());
    EXPECT_FALSE(r.ok()) << "truncated to " << len;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find(p.string()), std::string::npos) << r.status().message();
    }
  }
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 300; ++trial) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      const size_t at = rng() % (8 + h.size());
      bad[at] = static_cast<char>(rng() & 0xFF);
    }
    write_bytes(p, bad);
    Result<ModelSource> r = load_hf_folder(dir_.string());
    if (r.ok()) {
      const uint64_t size = fs::file_size(p);
      for (const TensorInfo& ti : r->tensors) {
        EXPECT_LE(ti.offset + ti.nbytes, size) << ti.name;
        EXPECT_EQ(ti.nbytes, row_size(ti.type, ti.n_elements())) << ti.name;
      }
    }
  }
}

// ---------------------------------------------------------------- reference models

const std::string kModels = testing::testdata_root() + "/";

// Float32 values of a loaded F32 tensor, read from its file.
std::vector<float> read_f32(const ModelSource& src, const TensorInfo& t) {
  std::vector<uint8_t> bytes = read_at(src.files[t.file_index], t.offset, t.nbytes);
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

// Common checks: every tensor is F32, inside the file, not overlapping, with
// the shapes the config implies; norm weights read from the offsets are near 1
// (the README says 1 +- 0.2), which they would not be at a wrong offset.
void check_reference_model(const ModelSource& src, bool biases) {
  const ModelConfig& c = src.config;
  ASSERT_EQ(src.files.size(), 1u);
  const uint64_t size = fs::file_size(src.files[0]);
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const TensorInfo& t : src.tensors) {
    EXPECT_EQ(t.type, TensorType::F32) << t.name;
    EXPECT_EQ(t.nbytes, static_cast<uint64_t>(t.n_elements()) * 4) << t.name;
    EXPECT_LE(t.offset + t.nbytes, size) << t.name;
    spans.emplace_back(t.offset, t.offset + t.nbytes);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) EXPECT_LE(spans[i - 1].second, spans[i].first);

  const int64_t kv = static_cast<int64_t>(c.n_head_kv) * c.head_dim;
  const int64_t q = static_cast<int64_t>(c.n_head) * c.head_dim;
  using Shape = std::vector<int64_t>;
  ASSERT_NE(src.find("token_embd.weight"), nullptr);
  EXPECT_EQ(src.find("token_embd.weight")->shape, (Shape{c.n_embd, c.n_vocab}));
  ASSERT_NE(src.find("output_norm.weight"), nullptr);
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const std::map<std::string, Shape> want = {
        {"attn_norm.weight", {c.n_embd}},        {"ffn_norm.weight", {c.n_embd}},
        {"attn_q.weight", {c.n_embd, q}},        {"attn_k.weight", {c.n_embd, kv}},
        {"attn_v.weight", {c.n_embd, kv}},       {"attn_output.weight", {q, c.n_embd}},
        {"ffn_gate.weight", {c.n_embd, c.n_ff}}, {"ffn_up.weight", {c.n_embd, c.n_ff}},
        {"ffn_down.weight", {c.n_ff, c.n_embd}},
    };
    for (const auto& [name, shape] : want) {
      const TensorInfo* t = src.find(p + name);
      ASSERT_NE(t, nullptr) << p + name;
      EXPECT_EQ(t->shape, shape) << p + name;
    }
    for (const char* b : {"attn_q.bias", "attn_k.bias", "attn_v.bias"})
      EXPECT_EQ(src.find(p + b) != nullptr, biases) << p + b;
    for (const char* norm : {"attn_norm.weight", "ffn_norm.weight"}) {
      const std::vector<float> w = read_f32(src, *src.find(p + norm));
      double mean = 0;
      for (float x : w) {
        EXPECT_TRUE(std::isfinite(x));
        mean += x;
      }
      mean /= static_cast<double>(w.size());
      EXPECT_NEAR(mean, 1.0, 0.1) << p + norm;
    }
  }
}

TEST(HfReferenceModels, TinyLlama) {
  const std::string dir = kModels + "tiny-llama/hf";
  ASSERT_TRUE(fs::exists(dir)) << "no reference data at " << dir;
  ASSERT_TRUE(is_hf_folder(dir));
  Result<ModelSource> r = load_hf_folder(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const ModelConfig& c = r->config;
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.name, "tiny-llama");
  EXPECT_EQ(c.n_layer, 4);
  EXPECT_EQ(c.n_embd, 256);
  EXPECT_EQ(c.n_head, 8);
  EXPECT_EQ(c.n_head_kv, 4);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.rope_dim, 32);
  EXPECT_EQ(c.n_ff, 512);
  EXPECT_EQ(c.n_vocab, 1024);
  EXPECT_EQ(c.n_ctx_train, 2048);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e4f);
  EXPECT_TRUE(c.rope_neox);
  EXPECT_EQ(c.rope_scaling, RopeScaling::kNone);
  EXPECT_FALSE(c.tied_embeddings);
  ASSERT_NE(r->find("output.weight"), nullptr);
  EXPECT_EQ(r->find("output.weight")->shape, (std::vector<int64_t>{256, 1024}));
  EXPECT_EQ(r->tensors.size(), 3u + 9u * 4u);
  EXPECT_EQ(r->metadata.at("hf.tokenizer_model"), dir + "/tokenizer.model");
  check_reference_model(*r, /*biases=*/false);
}

TEST(HfReferenceModels, TinyQwen2) {
  const std::string dir = kModels + "tiny-qwen2/hf";
  ASSERT_TRUE(fs::exists(dir)) << "no reference data at " << dir;
  ASSERT_TRUE(is_hf_folder(dir));
  Result<ModelSource> r = load_hf_folder(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const ModelConfig& c = r->config;
  EXPECT_EQ(c.arch, "qwen2");
  EXPECT_EQ(c.name, "tiny-qwen2");
  EXPECT_EQ(c.n_layer, 3);
  EXPECT_EQ(c.n_embd, 256);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.n_ff, 512);
  EXPECT_EQ(c.n_vocab, 1024);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-6f);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  EXPECT_TRUE(c.rope_neox);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(r->find("output.weight"), nullptr);
  EXPECT_EQ(r->tensors.size(), 2u + 12u * 3u);
  EXPECT_EQ(r->metadata.at("hf.tokenizer_json"), dir + "/tokenizer.json");
  EXPECT_EQ(r->metadata.at("hf.chat_template"), dir + "/chat_template.jinja");
  check_reference_model(*r, /*biases=*/true);
  EXPECT_EQ(r->find("blk.2.attn_k.bias")->shape, (std::vector<int64_t>{128}));
}

}  // namespace
}  // namespace swarm
