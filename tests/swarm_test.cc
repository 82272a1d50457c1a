// A model split across real `swarm node` processes behind a real `swarm gateway`,
// all on 127.0.0.1: the swarm must answer exactly what one process answers.
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <future>
#include <memory>

#include "engine/test_data.h"
#include "engine/test_process.h"

namespace {

using swarm::testing::ChildProcess;
using swarm::testing::find_testdata;
using swarm::testing::run_swarm;
using swarm::testing::shell_quote;
using json = nlohmann::json;

const char* kPrompts[] = {
    "The licensee may copy and distribute verbatim copies of the Program's source code",
    "Hello world! 12345 tokens",
    "Once upon a time",
    "In the beginning",
    "Copyright (C) 1989, 1991 Free Software Foundation",
    "emojis and accents",
    "New paragraph\twith tab.",
    "the quick brown fox",
};

class SwarmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
    if (model_.empty()) GTEST_SKIP() << "tiny-llama-Q8_0.gguf is in neither tests/data nor ../shared/testdata";
  }

  // Starts one node per range and a gateway over them; false if any failed to start.
  bool start(const std::vector<std::pair<int, int>>& ranges, const std::vector<std::string>& gateway_flags = {},
             const std::string& model = "") {
    std::string peers;
    for (const auto& [a, b] : ranges) {
      nodes_.push_back(std::make_unique<ChildProcess>(std::vector<std::string>{
          "node", "-m", model.empty() ? model_ : model, "--layers", std::to_string(a) + ":" + std::to_string(b),
          "--listen", "127.0.0.1:0", "-t", "1"}));
      if (!nodes_.back()->ok()) return false;
      peers += (peers.empty() ? "" : ",") + nodes_.back()->address();
    }
    std::vector<std::string> args = {"gateway", "-m", model_, "--listen", "127.0.0.1:0", "--peers", peers,
                                     "--model-name", "tiny"};
    args.insert(args.end(), gateway_flags.begin(), gateway_flags.end());
    gateway_ = std::make_unique<ChildProcess>(args);
    return gateway_->ok();
  }

  httplib::Client client() {
    httplib::Client c("127.0.0.1", gateway_->port());
    c.set_read_timeout(120, 0);
    return c;
  }

  // What `swarm generate` prints for the prompt, greedy: the single-process truth.
  std::string single_process(const std::string& prompt, int n) {
    auto r = run_swarm("generate -m " + model_ + " -p " + shell_quote(prompt) + " -n " + std::to_string(n) +
                       " --temp 0 -t 1");
    EXPECT_EQ(r.code, 0) << r.out;
    // The terminal gets raw bytes; JSON carries U+FFFD for bytes that are not UTF-8.
    const std::string raw = r.out.substr(0, r.out.find('\n'));
    return json::parse(json(raw).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
  }

  std::string complete(const std::string& prompt, int n, int* status = nullptr) {
    auto c = client();
    const json body = {{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", n}, {"temperature", 0}};
    auto res = c.Post("/v1/completions", body.dump(), "application/json");
    if (status) *status = res ? res->status : -1;
    if (!res || res->status != 200) return "<HTTP " + std::to_string(res ? res->status : -1) + ">";
    return json::parse(res->body)["choices"][0]["text"].get<std::string>();
  }

  // A streamed chat-free completion, its SSE chunks joined.
  std::string complete_streamed(const std::string& prompt, int n) {
    auto c = client();
    const json body = {{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", n}, {"temperature", 0},
                       {"stream", true}};
    std::string sse;
    auto res = c.Post("/v1/completions", body.dump(), "application/json");
    if (!res || res->status != 200) return "<HTTP " + std::to_string(res ? res->status : -1) + ">";
    std::string text;
    bool done = false;
    size_t at = 0;
    while ((at = res->body.find("data: ", at)) != std::string::npos) {
      const size_t end = res->body.find("\n\n", at);
      const std::string data = res->body.substr(at + 6, end - at - 6);
      at = end;
      if (data == "[DONE]") {
        done = true;
        break;
      }
      text += json::parse(data)["choices"][0]["text"].get<std::string>();
    }
    return done ? text : "<no [DONE]>";
  }

  std::string model_;
  std::vector<std::unique_ptr<ChildProcess>> nodes_;
  std::unique_ptr<ChildProcess> gateway_;
};

TEST_F(SwarmTest, GreedyOutputEqualsSingleProcessForEverySplit) {
  const std::string prompt = kPrompts[0];
  const std::string want = single_process(prompt, 16);
  ASSERT_FALSE(want.empty());
  const std::vector<std::vector<std::pair<int, int>>> splits = {
      {{0, 4}}, {{0, 2}, {2, 4}}, {{0, 1}, {1, 3}, {3, 4}}, {{0, 3}, {3, 4}}};
  for (const auto& split : splits) {
    nodes_.clear();
    ASSERT_TRUE(start(split)) << split.size() << " stages did not start";
    EXPECT_EQ(complete(prompt, 16), want) << split.size() << " stages, first ends at " << split[0].second;
  }
}

TEST_F(SwarmTest, RelayModeAndStreamingGiveTheSameText) {
  const std::string prompt = kPrompts[1];
  const std::string want = single_process(prompt, 12);
  ASSERT_TRUE(start({{0, 1}, {1, 3}, {3, 4}}, {"--relay"}));
  EXPECT_EQ(complete(prompt, 12), want);
  EXPECT_EQ(complete_streamed(prompt, 12), want);
}

TEST_F(SwarmTest, EightConcurrentStreamsAllComplete) {
  std::vector<std::string> want;
  for (const char* p : kPrompts) want.push_back(single_process(p, 12));
  ASSERT_TRUE(start({{0, 1}, {1, 3}, {3, 4}}));
  std::vector<std::future<std::string>> got;
  for (const char* p : kPrompts)
    got.push_back(std::async(std::launch::async, [this, p] { return complete_streamed(p, 12); }));
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].get(), want[i]) << "prompt " << i;
}

TEST_F(SwarmTest, NodesOfAnotherModelOrAMissingRangeGiveNoRoute) {
  const std::string other = find_testdata("tiny-qwen2/gguf/tiny-qwen2-Q4_K_M.gguf");
  if (other.empty()) GTEST_SKIP() << "needs tiny-qwen2";
  // The qwen2 node serves all of *its* layers, but it is not this model: no route.
  ASSERT_TRUE(start({{0, 3}}, {}, other));
  int status = 0;
  complete(kPrompts[0], 4, &status);
  EXPECT_EQ(status, 503);
  // Half a model is no route either.
  nodes_.clear();
  ASSERT_TRUE(start({{0, 2}}));
  complete(kPrompts[0], 4, &status);
  EXPECT_EQ(status, 503);
}

TEST_F(SwarmTest, NodeRefusesALayerRangeOutsideItsModel) {
  auto r = run_swarm("node -m " + model_ + " --layers 2:9 --listen 127.0.0.1:0");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("2:9"), std::string::npos) << r.out;
}

TEST_F(SwarmTest, MalformedRequestsGetOpenAiErrors) {
  ASSERT_TRUE(start({{0, 2}, {2, 4}}));
  auto c = client();
  auto res = c.Post("/v1/chat/completions", "{not json", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_TRUE(json::parse(res->body).contains("error"));
  res = c.Post("/v1/chat/completions", R"({"model":"nope","messages":[{"role":"user","content":"hi"}]})",
               "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  res = c.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

}  // namespace
