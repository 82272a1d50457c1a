// A model split across real `swarm node` processes behind a real `swarm gateway`,
// all on 127.0.0.1: the swarm must answer exactly what one process answers.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/test_data.h"
#include "engine/test_process.h"
#include "swarm_client.h"

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
    if (model_.empty())
      GTEST_SKIP() << "tiny-llama-Q8_0.gguf is in neither tests/data nor ../shared/testdata";
  }
  void TearDown() override {
    gateway_.reset();
    nodes_.clear();
    for (const std::string& log : logs_) std::remove(log.c_str());
  }

  // Starts one node per range and a gateway over them; false if any failed to start.
  bool start(const std::vector<std::pair<int, int>>& ranges,
             const std::vector<std::string>& gateway_flags = {}, const std::string& model = "",
             const std::vector<std::string>& node_flags = {}) {
    std::string peers;
    for (const auto& [a, b] : ranges) {
      std::vector<std::string> args = {"node",
                                       "-m",
                                       model.empty() ? model_ : model,
                                       "--layers",
                                       std::to_string(a) + ":" + std::to_string(b),
                                       "--listen",
                                       "127.0.0.1:0",
                                       "-t",
                                       "1"};
      args.insert(args.end(), node_flags.begin(), node_flags.end());
      const std::string log = ::testing::TempDir() + "/node_" + std::to_string(::getpid()) + "_" +
                              std::to_string(nodes_.size()) + ".err";
      nodes_.push_back(std::make_unique<ChildProcess>(args, log));
      logs_.push_back(log);
      if (!nodes_.back()->ok()) return false;
      peers += (peers.empty() ? "" : ",") + nodes_.back()->address();
    }
    std::vector<std::string> args = {"gateway", "-m",  model_,         "--listen", "127.0.0.1:0",
                                     "--peers", peers, "--model-name", "tiny"};
    args.insert(args.end(), gateway_flags.begin(), gateway_flags.end());
    gateway_log_ = ::testing::TempDir() + "/gateway_" + std::to_string(::getpid()) + ".err";
    logs_.push_back(gateway_log_);
    gateway_ = std::make_unique<ChildProcess>(args, gateway_log_);
    return gateway_->ok();
  }

  // The node process serving `address`, or null.
  ChildProcess* node_at(const std::string& address) {
    for (auto& n : nodes_)
      if (n->address() == address) return n.get();
    return nullptr;
  }

  // The chain the gateway logged at start: "chain A [0,1) -> B [1,3) -> C [3,4)".
  std::vector<std::string> logged_chain() {
    std::ifstream in(gateway_log_);
    const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> addrs;
    size_t at = log.find("chain ");
    if (at == std::string::npos) return addrs;
    const std::string line = log.substr(at + 6, log.find('\n', at) - at - 6);
    std::stringstream ss(line);
    std::string word;
    while (ss >> word)
      if (word.find(':') != std::string::npos && word[0] != '[') addrs.push_back(word);
    return addrs;
  }

  httplib::Client client() {
    httplib::Client c("127.0.0.1", gateway_->port());
    c.set_read_timeout(120, 0);
    return c;
  }

  std::string single_process(const std::string& prompt, int n) {
    return swarm::testing::single_process_greedy(model_, prompt, n);
  }

  std::string complete(const std::string& prompt, int n, int* status = nullptr) {
    auto c = client();
    const json body = {
        {"model", "tiny"}, {"prompt", prompt}, {"max_tokens", n}, {"temperature", 0}};
    auto res = c.Post("/v1/completions", body.dump(), "application/json");
    if (status) *status = res ? res->status : -1;
    if (!res || res->status != 200) return "<HTTP " + std::to_string(res ? res->status : -1) + ">";
    return json::parse(res->body)["choices"][0]["text"].get<std::string>();
  }

  // A streamed completion, its SSE chunks joined; `on_chunk` sees each text piece
  // as it arrives.
  std::string complete_streamed(
      const std::string& prompt, int n, const std::function<void()>& on_chunk = [] {}) {
    return swarm::testing::stream_completion(gateway_->port(), "tiny", prompt, n, on_chunk);
  }

  std::string model_;
  std::vector<std::unique_ptr<ChildProcess>> nodes_;
  std::unique_ptr<ChildProcess> gateway_;
  std::string gateway_log_;
  std::vector<std::string> logs_;
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
    EXPECT_EQ(complete(prompt, 16), want)
        << split.size() << " stages, first ends at " << split[0].second;
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
  res =
      c.Post("/v1/chat/completions",
             R"({"model":"nope","messages":[{"role":"user","content":"hi"}]})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  res = c.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

// Two nodes per range; a stage in use dies (kill -9) or stalls (SIGSTOP) while five
// streamed generations run: every one completes with the text one process gives.
class SwarmFaultTest : public SwarmTest, public ::testing::WithParamInterface<int> {};

TEST_P(SwarmFaultTest, GenerationsSurviveALostMiddleStage) {
  const int sig = GetParam();
  constexpr int kTokens = 24, kStreams = 5;
  std::vector<std::string> want;
  for (int i = 0; i < kStreams; ++i) want.push_back(single_process(kPrompts[i], kTokens));
  // A one-way delay of 15 ms per message keeps each generation running long
  // enough for the failure to land in the middle of it.
  ASSERT_TRUE(start({{0, 1}, {1, 3}, {3, 4}, {0, 1}, {1, 3}, {3, 4}}, {"--step-timeout-ms", "1500"},
                    "", {"--link-delay-ms", "15"}));
  const std::vector<std::string> chain = logged_chain();
  ASSERT_EQ(chain.size(), 3u);
  ChildProcess* victim = node_at(chain[1]);
  ASSERT_NE(victim, nullptr);

  std::atomic<int> chunks{0};
  std::vector<std::future<std::string>> got;
  for (int i = 0; i < kStreams; ++i)
    got.push_back(std::async(std::launch::async, [&, i] {
      return complete_streamed(kPrompts[i], kTokens, [&] { ++chunks; });
    }));
  // Strike once every stream is under way.
  ASSERT_TRUE(swarm::testing::eventually([&] { return chunks.load() >= 2 * kStreams; },
                                         std::chrono::seconds(60)));
  victim->signal(sig);
  for (int i = 0; i < kStreams; ++i) EXPECT_EQ(got[i].get(), want[i]) << "stream " << i;
  if (sig == SIGSTOP) victim->signal(SIGCONT);
  // The gateway logs each request's route: the failure was met and routed around.
  std::ifstream in(gateway_log_);
  int recovered = 0;
  for (std::string line; std::getline(in, line);)
    if (line.find("recovered") != std::string::npos) {
      ++recovered;
      EXPECT_EQ(line.find(chain[1] + " ["), std::string::npos)
          << "still routed through the failed node: " << line;
    }
  EXPECT_GE(recovered, 1);
}

INSTANTIATE_TEST_SUITE_P(KillAndStall, SwarmFaultTest, ::testing::Values(SIGKILL, SIGSTOP),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return std::string(i.param == SIGKILL ? "Killed" : "Stalled");
                         });

}  // namespace
