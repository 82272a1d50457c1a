// Model ids: stable for one model, different for different files or
// quantizations of the same weights, different for one changed weight byte
// while the layout id stays; the cache beside the file is reused, ignored when
// the file changes or the cache is corrupt; layer proofs verify and tampered
// ones do not. An error for what is not a model.
#include "net/model_id.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "engine/model_loader.h"
#include "engine/test_data.h"
#include "net/merkle.h"

namespace swarm::net {
namespace {

using swarm::testing::find_testdata;

// At most `max` bytes of the file at `path`.
std::string read_bytes(const std::string& path, size_t max) {
  std::ifstream in(path, std::ios::binary);
  std::string s(max, '\0');
  in.read(s.data(), static_cast<std::streamsize>(max));
  s.resize(static_cast<size_t>(in.gcount()));
  return s;
}

std::string id_of(const std::string& path) {
  auto src = open_model_source(path);
  EXPECT_TRUE(src.ok()) << src.status().ToString();
  if (!src.ok()) return "";
  auto id = model_content_id(*src);
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  return id.ok() ? *id : "";
}

TEST(ModelId, StableAcrossCallsAndHex) {
  const std::string path = find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
  ASSERT_FALSE(path.empty());
  const std::string a = id_of(path), b = id_of(path);
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), 64u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos) << a;
}

TEST(ModelId, DiffersAcrossQuantizationsAndModels) {
  std::set<std::string> ids;
  int n = 0;
  for (const char* rel :
       {"tiny-llama/gguf/tiny-llama-Q8_0.gguf", "tiny-llama/gguf/tiny-llama-Q4_K_M.gguf",
        "tiny-llama/gguf/tiny-llama-F16.gguf", "tiny-qwen2/gguf/tiny-qwen2-Q4_K_M.gguf",
        "tiny-qwen2/gguf/tiny-qwen2-Q8_0.gguf", "tiny-llama/hf", "tiny-qwen2/hf"}) {
    const std::string path = find_testdata(rel);
    if (path.empty() ||
        (std::string(rel).ends_with("/hf") && !swarm::testing::path_exists(path + "/config.json")))
      continue;
    ids.insert(id_of(path));
    ++n;
  }
  ASSERT_EQ(n, 7);  // every model above is in tests/data
  EXPECT_EQ(ids.size(), static_cast<size_t>(n));
}

TEST(ModelId, UnknownFormatAndMissingFileAreErrors) {
  ModelSource src;
  src.format = "onnx";
  EXPECT_EQ(model_content_id(src).status().code(), Status::Code::kUnsupported);
  src.format = "gguf";
  src.path = "/nonexistent/model.gguf";
  src.files = {src.path};
  EXPECT_FALSE(model_content_id(src).ok());
}

// A scratch copy of a model, with byte edits, in a folder of the test's own.
class ModelIdFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    original_ = find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
    ASSERT_FALSE(original_.empty()) << "tests/data lacks tiny-llama/gguf/tiny-llama-Q8_0.gguf";
    const ::testing::TestInfo* t = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = ::testing::TempDir() + "/model_id_" + t->name() + "_" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (dir_.empty() || HasFailure()) return;
    std::error_code ec;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir_, ec))
      if (e.is_directory(ec))
        std::filesystem::permissions(e.path(), std::filesystem::perms::owner_all,
                                     std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(dir_, ec);
  }
  std::string copy(const std::string& name) {
    const std::string to = dir_ + "/" + name;
    std::filesystem::copy_file(original_, to, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::permissions(to, std::filesystem::perms::owner_write,
                                 std::filesystem::perm_options::add);
    return to;
  }
  static void flip(const std::string& path, uint64_t offset) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x01);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(&c, 1);
  }
  // The offset of a byte in the middle of `tensor`'s data.
  static uint64_t inside(const std::string& path, const std::string& tensor) {
    auto src = open_model_source(path);
    EXPECT_TRUE(src.ok());
    const TensorInfo* t = src.ok() ? src->find(tensor) : nullptr;
    EXPECT_NE(t, nullptr) << tensor;
    return t ? t->offset + t->nbytes / 2 : 0;
  }
  static ModelIdentity identity(const std::string& path, bool cache = true) {
    auto src = open_model_source(path);
    EXPECT_TRUE(src.ok()) << src.status().ToString();
    ModelIdOptions o;
    o.use_cache = cache;
    auto id = compute_model_identity(*src, o);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : ModelIdentity{};
  }
  static uint64_t weight_bytes(const std::string& path) {
    auto src = open_model_source(path);
    uint64_t n = 0;
    for (const TensorInfo& t : src->tensors) n += t.nbytes;
    return n;
  }

  std::string original_, dir_;
};

TEST_F(ModelIdFiles, OneWeightByteChangesTheModelIdNotTheLayoutId) {
  const std::string a = copy("a.gguf"), b = copy("b.gguf");
  flip(b, inside(b, "blk.1.ffn_down.weight"));
  const ModelIdentity ia = identity(a, false), ib = identity(b, false);
  EXPECT_NE(ia.ids.model_id, ib.ids.model_id);
  EXPECT_EQ(ia.ids.layout_id, ib.ids.layout_id);
  EXPECT_EQ(ia.ids.model_id, id_of(original_));
  // Exactly that tensor's leaf differs.
  ASSERT_EQ(ia.tensors.size(), ib.tensors.size());
  std::vector<std::string> differ;
  for (size_t i = 0; i < ia.tensors.size(); ++i)
    if (ia.tensors[i].hash != ib.tensors[i].hash) differ.push_back(ia.tensors[i].name);
  EXPECT_EQ(differ, std::vector<std::string>{"blk.1.ffn_down.weight"});
  EXPECT_EQ(ia.bytes_hashed, weight_bytes(a));
  // The root is the tree over the header leaf and the tensors in name order.
  const std::vector<Digest> leaves = leaves_of(ia);
  EXPECT_EQ(digest_hex(sized_root(merkle_root(leaves), leaves.size())), ia.ids.model_id);
  for (size_t i = 1; i < ia.tensors.size(); ++i)
    EXPECT_LT(ia.tensors[i - 1].name, ia.tensors[i].name);
}

TEST_F(ModelIdFiles, AHeaderByteChangesBothIds) {
  const std::string a = copy("a.gguf"), b = copy("b.gguf");
  const std::string text = read_bytes(b, 4096);
  const size_t key = text.find("general.name");
  ASSERT_NE(key, std::string::npos);
  flip(b, key + std::string("general.name").size() + 4 + 8);  // type u32, length u64, then the name
  const ModelIdentity ia = identity(a, false), ib = identity(b, false);
  EXPECT_NE(ia.ids.layout_id, ib.ids.layout_id);
  EXPECT_NE(ia.ids.model_id, ib.ids.model_id);
  EXPECT_EQ(ia.tensors.size(), ib.tensors.size());
  for (size_t i = 0; i < ia.tensors.size(); ++i) EXPECT_EQ(ia.tensors[i].hash, ib.tensors[i].hash);
}

TEST_F(ModelIdFiles, CacheIsWrittenReusedAndIgnoredAfterTheFileChanges) {
  const std::string m = copy("m.gguf");
  const ModelIdentity first = identity(m);
  EXPECT_FALSE(first.from_cache);
  EXPECT_EQ(first.bytes_hashed, weight_bytes(m));
  EXPECT_EQ(first.cache_path, m + ".swarm-id");
  const std::string cached = read_bytes(m + ".swarm-id", 1 << 20);
  EXPECT_NE(cached.find(first.ids.model_id), std::string::npos);
  EXPECT_NE(cached.find("swarm.model-id-cache.v1"), std::string::npos);

  const ModelIdentity second = identity(m);
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(second.bytes_hashed, 0u);
  EXPECT_EQ(second.ids.model_id, first.ids.model_id);
  EXPECT_EQ(second.ids.layout_id, first.ids.layout_id);
  ASSERT_EQ(second.tensors.size(), first.tensors.size());
  for (size_t i = 0; i < first.tensors.size(); ++i)
    EXPECT_EQ(second.tensors[i].hash, first.tensors[i].hash);

  // Edited in place (same size and inode, new mtime): hashed again, cache rewritten.
  flip(m, inside(m, "blk.0.attn_q.weight"));
  const ModelIdentity third = identity(m);
  EXPECT_FALSE(third.from_cache);
  EXPECT_EQ(third.bytes_hashed, weight_bytes(m));
  EXPECT_NE(third.ids.model_id, first.ids.model_id);
  EXPECT_EQ(third.ids.layout_id, first.ids.layout_id);
  EXPECT_NE(read_bytes(m + ".swarm-id", 1 << 20).find(third.ids.model_id), std::string::npos);
  EXPECT_TRUE(identity(m).from_cache);

  // Another file moved in its place (a new inode, even with the same bytes and mtime).
  const std::string other = copy("other.gguf");
  std::filesystem::last_write_time(other, std::filesystem::last_write_time(m));
  std::filesystem::rename(other, m);
  const ModelIdentity fourth = identity(m);
  EXPECT_FALSE(fourth.from_cache);
  EXPECT_EQ(fourth.ids.model_id, first.ids.model_id);
}

TEST_F(ModelIdFiles, CorruptOrForeignCacheFilesAreIgnoredAndRewritten) {
  const std::string m = copy("m.gguf");
  const ModelIdentity good = identity(m);
  ASSERT_FALSE(good.from_cache);
  const std::string text = read_bytes(m + ".swarm-id", 1 << 20);
  auto replace_first = [](std::string s, const std::string& from, const std::string& to) {
    const size_t at = s.find(from);
    if (at != std::string::npos) s.replace(at, from.size(), to);
    return s;
  };
  const std::string leaf_hex = digest_hex(good.tensors[3].hash);
  const std::string other_hex = std::string(64, 'a');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"garbage", "\x01\x02not json at all"},
      {"truncated", text.substr(0, text.size() / 2)},
      {"not an object", "[1,2,3]"},
      {"another format", replace_first(text, "swarm.model-id-cache.v1", "swarm.model-id-cache.v9")},
      {"a wrong type", replace_first(text, "\"size\":", "\"size\": \"big\", \"x\":")},
      {"a tensor leaf changed", replace_first(text, leaf_hex, other_hex)},
      {"the root changed", replace_first(text, good.ids.model_id, other_hex)},
      {"a short hash", replace_first(text, leaf_hex, "abcd")},
      {"the tensors missing", replace_first(text, "\"tensors\"", "\"tensorz\"")},
  };
  for (const auto& [what, content] : cases) {
    SCOPED_TRACE(what);
    ASSERT_NE(content, text);
    {
      std::ofstream out(m + ".swarm-id", std::ios::binary | std::ios::trunc);
      out << content;
    }
    const ModelIdentity id = identity(m);
    EXPECT_FALSE(id.from_cache);
    EXPECT_EQ(id.ids.model_id, good.ids.model_id);
    EXPECT_TRUE(identity(m).from_cache);  // rewritten
  }
  // A valid cache file that another user owns (planted in a shared folder) is
  // not trusted. Only root can give a file away.
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown((m + ".swarm-id").c_str(), 65534, 65534), 0);
    const ModelIdentity id = identity(m);
    EXPECT_FALSE(id.from_cache);
    EXPECT_EQ(id.ids.model_id, good.ids.model_id);
    EXPECT_TRUE(identity(m).from_cache);
  }
}

TEST_F(ModelIdFiles, FallsBackToTheUserCacheThenToHashingEveryTime) {
  const std::string folder = dir_ + "/models";
  std::filesystem::create_directories(folder);
  const std::string m = folder + "/m.gguf";
  std::filesystem::copy_file(original_, m);
  std::filesystem::permissions(m, std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::add);
  std::filesystem::permissions(folder,
                               std::filesystem::perms::owner_write |
                                   std::filesystem::perms::group_write |
                                   std::filesystem::perms::others_write,
                               std::filesystem::perm_options::remove);
  const char* old_xdg = std::getenv("XDG_CACHE_HOME");
  const std::string saved_xdg = old_xdg ? old_xdg : "";
  const std::string saved_home = std::getenv("HOME") ? std::getenv("HOME") : "";
  ::setenv("XDG_CACHE_HOME", (dir_ + "/xdg").c_str(), 1);
  const ModelIdentity first = identity(m);
  EXPECT_FALSE(first.from_cache);
  EXPECT_TRUE(first.cache_path.starts_with(dir_ + "/xdg/swarm/")) << first.cache_path;
  EXPECT_TRUE(first.cache_path.ends_with(".swarm-id")) << first.cache_path;
  EXPECT_FALSE(swarm::testing::path_exists(m + ".swarm-id"));
  const ModelIdentity second = identity(m);
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(second.cache_path, first.cache_path);
  EXPECT_EQ(second.ids.model_id, first.ids.model_id);

  // Nothing writable: XDG_CACHE_HOME and HOME under a regular file.
  { std::ofstream(dir_ + "/file") << "x"; }
  ::setenv("XDG_CACHE_HOME", (dir_ + "/file/xdg").c_str(), 1);
  ::setenv("HOME", (dir_ + "/file/home").c_str(), 1);
  for (int i = 0; i < 2; ++i) {
    const ModelIdentity id = identity(m);
    EXPECT_FALSE(id.from_cache);
    EXPECT_EQ(id.cache_path, "");
    EXPECT_EQ(id.ids.model_id, first.ids.model_id);
  }
  if (old_xdg)
    ::setenv("XDG_CACHE_HOME", saved_xdg.c_str(), 1);
  else
    ::unsetenv("XDG_CACHE_HOME");
  ::setenv("HOME", saved_home.c_str(), 1);
}

TEST_F(ModelIdFiles, HuggingFaceFolderIsHashedAndCachedInside) {
  const std::string hf = find_testdata("tiny-llama/hf");
  ASSERT_TRUE(!hf.empty() && swarm::testing::path_exists(hf + "/model.safetensors"))
      << "tests/data lacks tiny-llama/hf/model.safetensors";
  const std::string folder = dir_ + "/hf";
  std::filesystem::copy(hf, folder, std::filesystem::copy_options::recursive);
  // The copy keeps the original's modes, which may say read-only.
  std::filesystem::permissions(folder, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add);
  for (const auto& e : std::filesystem::directory_iterator(folder))
    std::filesystem::permissions(e.path(), std::filesystem::perms::owner_write,
                                 std::filesystem::perm_options::add);
  const ModelIdentity first = identity(folder);
  EXPECT_FALSE(first.from_cache);
  EXPECT_EQ(first.cache_path, folder + "/.swarm-id");
  EXPECT_EQ(first.bytes_hashed, weight_bytes(folder));
  EXPECT_EQ(first.ids.model_id, id_of(hf));
  EXPECT_TRUE(identity(folder).from_cache);
  flip(folder + "/model.safetensors", inside(folder, "blk.0.ffn_up.weight"));
  const ModelIdentity second = identity(folder);
  EXPECT_FALSE(second.from_cache);
  EXPECT_NE(second.ids.model_id, first.ids.model_id);
  EXPECT_EQ(second.ids.layout_id, first.ids.layout_id);
}

TEST_F(ModelIdFiles, LayerProofsVerifyAndTamperingFails) {
  const std::string m = copy("m.gguf");
  auto src = open_model_source(m);
  ASSERT_TRUE(src.ok());
  const ModelIdentity id = identity(m, false);
  const int L = src->config.n_layer;
  ASSERT_GE(L, 3);

  auto proof = prove_layers(id, src->config, 1, 3);
  ASSERT_TRUE(proof.ok()) << proof.status().ToString();
  EXPECT_TRUE(verify_layer_proof(*proof, id.ids.model_id).ok());
  std::set<std::string> names;
  for (const auto& t : proof->tensors) names.insert(t.name);
  EXPECT_TRUE(names.count("blk.1.attn_q.weight"));
  EXPECT_TRUE(names.count("blk.2.ffn_down.weight"));
  EXPECT_FALSE(names.count("blk.0.attn_q.weight"));
  EXPECT_FALSE(names.count("blk.3.attn_q.weight"));
  EXPECT_FALSE(names.count("token_embd.weight"));
  EXPECT_FALSE(names.count("output.weight"));

  auto whole = prove_layers(id, src->config, 0, L);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->tensors.size(), id.tensors.size());
  EXPECT_TRUE(verify_layer_proof(*whole, id.ids.model_id).ok());
  auto head = prove_layers(id, src->config, L - 1, L);
  ASSERT_TRUE(head.ok());
  names.clear();
  for (const auto& t : head->tensors) names.insert(t.name);
  EXPECT_TRUE(names.count("output_norm.weight"));
  EXPECT_EQ(names.count("token_embd.weight"), src->config.tied_embeddings ? 1u : 0u);

  // Through JSON and back.
  auto parsed = parse_layer_proof(layer_proof_json(*proof));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_TRUE(verify_layer_proof(*parsed, id.ids.model_id).ok());

  // The proof of a byte-flipped copy fails against the honest root.
  const std::string b = copy("b.gguf");
  flip(b, inside(b, "blk.2.attn_k.weight"));
  auto forged = prove_layers(identity(b, false), src->config, 1, 3);
  ASSERT_TRUE(forged.ok());
  forged->model_id = id.ids.model_id;
  EXPECT_FALSE(verify_layer_proof(*forged, id.ids.model_id).ok());

  auto fails = [&](const char* what, auto&& edit) {
    LayerProof p = *proof;
    edit(p);
    const Status st = verify_layer_proof(p, id.ids.model_id);
    EXPECT_FALSE(st.ok()) << what;
  };
  fails("a tampered leaf", [](LayerProof& p) { p.tensors[0].hash[0] ^= 1; });
  fails("a tampered sibling", [](LayerProof& p) { p.tensors[1].path[2][7] ^= 1; });
  fails("a missing sibling", [](LayerProof& p) { p.tensors[2].path.pop_back(); });
  fails("a missing header sibling", [](LayerProof& p) { p.header_path.pop_back(); });
  fails("another layout", [](LayerProof& p) { p.layout_id = std::string(64, 'b'); });
  fails("a leaf at another index", [](LayerProof& p) { p.tensors[0].index += 2; });
  fails("a leaf renamed out of the range",
        [](LayerProof& p) { p.tensors[0].name = "blk.0.attn_q.weight"; });
  fails("another tree size", [](LayerProof& p) { p.n_leaves += 1; });
  fails("another tree depth", [](LayerProof& p) { p.n_leaves *= 2; });
  fails("a duplicated leaf", [](LayerProof& p) { p.tensors.push_back(p.tensors.back()); });
  EXPECT_FALSE(verify_layer_proof(*proof, identity(b, false).ids.model_id).ok()) << "a wrong root";
  LayerProof wrong_root = *proof;
  wrong_root.model_id = std::string(64, 'c');
  EXPECT_FALSE(verify_layer_proof(wrong_root, wrong_root.model_id).ok());

  EXPECT_FALSE(prove_layers(id, src->config, 2, 2).ok());
  EXPECT_FALSE(prove_layers(id, src->config, 0, L + 1).ok());
  for (const char* bad : {"", "{}", "[]", "{\"format\":\"swarm.layer-proof.v1\"}",
                          "{\"format\":\"swarm.layer-proof.v1\",\"model_id\":5}"})
    EXPECT_FALSE(parse_layer_proof(bad).ok()) << bad;
}

TEST(ModelIdLayers, TensorsOfARange) {
  EXPECT_TRUE(tensor_serves_layers("blk.3.attn_q.weight", 2, 4, 8, false));
  EXPECT_FALSE(tensor_serves_layers("blk.4.attn_q.weight", 2, 4, 8, false));
  EXPECT_FALSE(tensor_serves_layers("blk.31.attn_q.weight", 2, 4, 8, false));
  EXPECT_FALSE(tensor_serves_layers("blk.x.attn_q.weight", 0, 8, 8, false));
  EXPECT_FALSE(tensor_serves_layers("blk.", 0, 8, 8, false));
  EXPECT_TRUE(tensor_serves_layers("token_embd.weight", 0, 2, 8, false));
  EXPECT_FALSE(tensor_serves_layers("token_embd.weight", 2, 8, 8, false));
  EXPECT_TRUE(tensor_serves_layers("token_embd.weight", 2, 8, 8, true));
  EXPECT_TRUE(tensor_serves_layers("output.weight", 2, 8, 8, false));
  EXPECT_FALSE(tensor_serves_layers("output_norm.weight", 0, 7, 8, false));
  EXPECT_TRUE(tensor_serves_layers("rope_freqs.weight", 3, 4, 8, false));
}

}  // namespace
}  // namespace swarm::net
