// n > 1 choices over HTTP on 127.0.0.1 with the test model: each choice is
// sampled with its own seed derived from the request's (choice 0 with the
// seed itself, choice i with mix64(seed + i)), so it equals an n = 1 request
// with that seed; streamed, every chunk names its choice and the text per
// index equals the whole answer's; usage counts the prompt once.
#include <gtest/gtest.h>
#include <httplib.h>

#include <map>
#include <nlohmann/json.hpp>

#include "api/local_test_server.h"
#include "api/openai_server.h"
#include "engine/mix64.h"
#include "engine/test_data.h"
#include "pipeline/local_backend.h"

namespace swarm {
namespace {

using nlohmann::json;

constexpr const char* kModel = "tiny-llama/gguf/tiny-llama-Q8_0.gguf";

class ChoicesHttpTest : public testing::LocalServerSuite<ChoicesHttpTest> {
 public:
  static constexpr const char* kServerModel = kModel;
  static constexpr int kServerContext = 128;

 protected:

  static std::string post(const std::string& path, const json& body, int want = 200) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60);
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r);
    if (!r) return "";
    EXPECT_EQ(r->status, want) << r->body;
    return r->body;
  }

};

TEST_F(ChoicesHttpTest, EachChoiceHasItsOwnSeedStreamedOrNot) {
  const uint64_t seed = 42;
  const json req = {{"prompt", "Once upon a time"}, {"max_tokens", 12}, {"temperature", 1.0},
                    {"seed", seed}, {"n", 3}, {"logprobs", 1}};
  const json whole = json::parse(post("/v1/completions", req));
  ASSERT_EQ(whole["choices"].size(), 3u) << whole.dump();
  int completion_tokens = 0;
  std::vector<std::string> texts;
  for (size_t i = 0; i < 3; ++i) {
    const json& c = whole["choices"][i];
    EXPECT_EQ(c["index"], i);
    texts.push_back(c["text"]);
    // The same as one choice asked with the choice's seed.
    json one = req;
    one["n"] = 1;
    // Seeds travel as int64 (OpenAI's type); the server reads them back as the same 64 bits.
    one["seed"] = static_cast<int64_t>(i == 0 ? seed : mix64(seed + i));
    const json single = json::parse(post("/v1/completions", one));
    EXPECT_EQ(single["choices"][0]["text"], c["text"]) << i;
    EXPECT_EQ(single["choices"][0]["logprobs"], c["logprobs"]) << i;
    completion_tokens += single["usage"]["completion_tokens"].get<int>();
    EXPECT_EQ(single["usage"]["prompt_tokens"], whole["usage"]["prompt_tokens"]);
  }
  EXPECT_TRUE(texts[0] != texts[1] || texts[1] != texts[2]) << "three seeds, one text";
  EXPECT_EQ(whole["usage"]["completion_tokens"], completion_tokens);

  // Streamed (chat and completions): chunks carry their choice's index; each
  // index's pieces make that choice's text; one finish per choice; usage last.
  json streamed = req;
  streamed["stream"] = true;
  streamed["stream_options"] = {{"include_usage", true}};
  const std::string body = post("/v1/completions", streamed);
  std::map<int, std::string> text;
  std::map<int, int> finishes;
  json usage;
  size_t pos = 0;
  bool done = false;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    const std::string data = body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    const json e = json::parse(data);
    if (e["choices"].empty()) {
      usage = e["usage"];
      continue;
    }
    const json& c = e["choices"][0];
    const int i = c["index"];
    text[i] += c["text"].get<std::string>();
    if (!c["finish_reason"].is_null()) ++finishes[i];
  }
  EXPECT_TRUE(done);
  ASSERT_EQ(text.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(text[i], texts[i]) << i;
    EXPECT_EQ(finishes[i], 1) << i;
  }
  EXPECT_EQ(usage["completion_tokens"], completion_tokens);

  // Chat: the role opens each choice.
  const json chat = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 4},
                     {"seed", seed}, {"n", 2}, {"stream", true}};
  const std::string chat_body = post("/v1/chat/completions", chat);
  std::map<int, int> roles;
  for (pos = 0; (pos = chat_body.find("data: ", pos)) != std::string::npos;) {
    const size_t end = chat_body.find("\n\n", pos);
    const std::string data = chat_body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") continue;
    const json c = json::parse(data)["choices"][0];
    if (c["delta"].contains("role")) ++roles[c["index"].get<int>()];
  }
  EXPECT_EQ(roles, (std::map<int, int>{{0, 1}, {1, 1}}));
}

TEST_F(ChoicesHttpTest, NIsCapped) {
  const json r = json::parse(post("/v1/completions", {{"prompt", "Hi"}, {"n", 9}}, 400));
  EXPECT_EQ(r["error"]["param"], "n");
  const json native = json::parse(post("/completion", {{"prompt", "Hi"}, {"n", 2}}, 400));
  EXPECT_EQ(native["error"]["param"], "n");
}

}  // namespace
}  // namespace swarm
