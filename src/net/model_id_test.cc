// Model content ids: stable for one model, different for different files or
// quantizations of the same weights, and an error for what is not a model.
#include "net/model_id.h"

#include <gtest/gtest.h>

#include <set>

#include "engine/model_loader.h"
#include "engine/test_data.h"

namespace swarm::net {
namespace {

using swarm::testing::find_testdata;

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

}  // namespace
}  // namespace swarm::net
