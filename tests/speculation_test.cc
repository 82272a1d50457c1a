// Speculative decoding through a real 4-stage chain of `swarm node` processes
// behind a real `swarm gateway` on 127.0.0.1: greedy output must equal plain
// decoding's exactly, whatever the drafts, and usage reports the drafts.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "engine/test_data.h"
#include "engine/test_process.h"
#include "swarm_client.h"

namespace {

using swarm::testing::ChildProcess;
using swarm::testing::find_testdata;
using swarm::testing::run_swarm;
using swarm::testing::shell_quote;
using json = nlohmann::json;

// Repeats itself: n-gram lookup finds drafts in it.
const char* kRepetitive =
    "for (int i = 0; i < n; ++i) sum += a[i];\nfor (int i = 0; i < n; ++i) sum += b[i];\n"
    "for (int i = 0; i < n; ++i) sum +=";
const char* kPlainPrompt = "Once upon a time";

class SpeculationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
    if (model_.empty()) GTEST_SKIP() << "needs tiny-llama-Q8_0.gguf";
  }
  void TearDown() override {
    gateway_.reset();
    nodes_.clear();
    for (const std::string& log : logs_) std::remove(log.c_str());
  }

  // Four one-layer stages and a gateway with `flags`.
  bool start(const std::vector<std::string>& flags) {
    std::string peers;
    for (int l = 0; l < 4; ++l) {
      const std::string log = ::testing::TempDir() + "/spec_node_" + std::to_string(::getpid()) +
                              "_" + std::to_string(l) + ".err";
      logs_.push_back(log);
      nodes_.push_back(std::make_unique<ChildProcess>(
          std::vector<std::string>{"node", "-m", model_, "--layers",
                                   std::to_string(l) + ":" + std::to_string(l + 1), "--listen",
                                   "127.0.0.1:0", "-t", "1"},
          log));
      if (!nodes_.back()->ok()) return false;
      peers += (peers.empty() ? "" : ",") + nodes_.back()->address();
    }
    std::vector<std::string> args = {"gateway", "-m",  model_,         "--listen", "127.0.0.1:0",
                                     "--peers", peers, "--model-name", "tiny"};
    args.insert(args.end(), flags.begin(), flags.end());
    const std::string log =
        ::testing::TempDir() + "/spec_gateway_" + std::to_string(::getpid()) + ".err";
    logs_.push_back(log);
    gateway_ = std::make_unique<ChildProcess>(args, log);
    return gateway_->ok();
  }

  std::string single_process(const std::string& prompt, int n) {
    return swarm::testing::single_process_greedy(model_, prompt, n);
  }

  json complete(const std::string& prompt, int n, double temperature = 0) {
    httplib::Client c("127.0.0.1", gateway_->port());
    c.set_read_timeout(120, 0);
    const json body = {{"model", "tiny"},
                       {"prompt", prompt},
                       {"max_tokens", n},
                       {"temperature", temperature},
                       {"seed", 7}};
    auto res = c.Post("/v1/completions", body.dump(), "application/json");
    if (!res || res->status != 200)
      return {{"error", res ? res->status : -1}, {"body", res ? res->body : ""}};
    return json::parse(res->body);
  }

  std::string model_;
  std::vector<std::unique_ptr<ChildProcess>> nodes_;
  std::unique_ptr<ChildProcess> gateway_;
  std::vector<std::string> logs_;
};

TEST_F(SpeculationTest, GreedyNgramSpeculationGivesExactlyThePlainText) {
  const std::string want_rep = single_process(kRepetitive, 32);
  const std::string want_plain = single_process(kPlainPrompt, 24);
  ASSERT_TRUE(start({"--speculate", "ngram"}));
  const json rep = complete(kRepetitive, 32);
  ASSERT_TRUE(rep.contains("choices")) << rep.dump();
  EXPECT_EQ(rep["choices"][0]["text"], want_rep);
  const json& usage = rep["usage"];
  EXPECT_EQ(usage["speculation"]["drafter"], "ngram") << usage.dump();
  EXPECT_GT(usage["speculation"]["drafted_tokens"].get<int>(), 0) << usage.dump();
  EXPECT_GT(usage["completion_tokens_details"]["accepted_prediction_tokens"].get<int>(), 0)
      << usage.dump();
  EXPECT_EQ(usage["completion_tokens_details"]["accepted_prediction_tokens"].get<int>() +
                usage["completion_tokens_details"]["rejected_prediction_tokens"].get<int>(),
            usage["speculation"]["drafted_tokens"].get<int>());
  // Some steps carried drafts; the prompt's did not. Every run sent while
  // decoding was answered (a step) or cancelled.
  const json& s = usage["speculation"];
  EXPECT_GT(s["speculative_steps"].get<int>(), 0) << s.dump();
  EXPECT_GE(s["plain_steps"].get<int>(), 1) << s.dump();
  EXPECT_EQ(s["plain_steps"].get<int>() + s["speculative_steps"].get<int>(),
            1 + s["runs"].get<int>() - s["cancelled_runs"].get<int>())
      << s.dump();
  const json plain = complete(kPlainPrompt, 24);
  ASSERT_TRUE(plain.contains("choices")) << plain.dump();
  EXPECT_EQ(plain["choices"][0]["text"], want_plain);
}

// `off`: one token per step and no drafts; usage says so, streamed or not.
TEST_F(SpeculationTest, OffDecodesEveryStepPlainly) {
  const int n = 12;
  const std::string want = single_process(kPlainPrompt, n);
  ASSERT_TRUE(start({"--speculate", "off"}));
  const json got = complete(kPlainPrompt, n);
  ASSERT_TRUE(got.contains("choices")) << got.dump();
  EXPECT_EQ(got["choices"][0]["text"], want);
  ASSERT_EQ(got["choices"][0]["finish_reason"], "length") << got.dump();
  const json& s = got["usage"]["speculation"];
  EXPECT_EQ(s["drafter"], "off") << s.dump();
  EXPECT_EQ(s["plain_steps"].get<int>(), n) << s.dump();
  EXPECT_EQ(s["speculative_steps"].get<int>(), 0) << s.dump();
  EXPECT_EQ(s["drafted_tokens"].get<int>(), 0) << s.dump();

  json usage;
  EXPECT_EQ(swarm::testing::stream_completion(
                gateway_->port(), "tiny", kPlainPrompt, n, [] {}, &usage),
            want);
  EXPECT_EQ(usage["completion_tokens"].get<int>(), n) << usage.dump();
  EXPECT_EQ(usage["speculation"]["plain_steps"].get<int>(), n) << usage.dump();
  EXPECT_EQ(usage["speculation"]["speculative_steps"].get<int>(), 0) << usage.dump();
}

TEST_F(SpeculationTest, GreedyDraftModelSpeculationGivesExactlyThePlainText) {
  const std::string draft = find_testdata("tiny-llama/gguf/tiny-llama-Q4_K_M.gguf");
  if (draft.empty()) GTEST_SKIP() << "needs tiny-llama-Q4_K_M.gguf";
  const std::string want = single_process(kPlainPrompt, 32);
  ASSERT_TRUE(start({"--speculate", "draft:" + draft, "--spec-max-draft", "6"}));
  const json got = complete(kPlainPrompt, 32);
  ASSERT_TRUE(got.contains("choices")) << got.dump();
  EXPECT_EQ(got["choices"][0]["text"], want);
  EXPECT_EQ(got["usage"]["speculation"]["drafter"], "draft");
  // A Q4_K_M copy of the target mostly agrees with it.
  EXPECT_GT(got["usage"]["speculation"]["accepted_tokens"].get<int>(), 0) << got["usage"].dump();
}

TEST_F(SpeculationTest, SampledSpeculationCompletesWithEveryToken) {
  const std::string draft = find_testdata("tiny-llama/gguf/tiny-llama-Q4_K_M.gguf");
  if (draft.empty()) GTEST_SKIP() << "needs tiny-llama-Q4_K_M.gguf";
  ASSERT_TRUE(start({"--speculate", "draft:" + draft}));
  for (int i = 0; i < 2; ++i) {
    const json got = complete(kRepetitive, 24, 0.8);
    ASSERT_TRUE(got.contains("choices")) << got.dump();
    const json& usage = got["usage"];
    EXPECT_GT(usage["speculation"]["drafted_tokens"].get<int>(), 0) << usage.dump();
    if (got["choices"][0]["finish_reason"] == "length") {
      EXPECT_EQ(usage["completion_tokens"].get<int>(), 24);
    }
  }
}

// `auto` on text whose n-gram drafts all fail: `ngram` always speculates and
// drafts at every match; `auto` measures plain decoding, probes once, loses to
// plain and backs off (the wait carries over to the next requests), so it
// drafts far less, and every output is plain decoding's.
TEST_F(SpeculationTest, AutoBacksOffWhereDraftsFail) {
  const int n = 64;
  const std::string want = single_process(kPlainPrompt, n);
  ASSERT_TRUE(start({"--speculate", "ngram"}));
  const json forced = complete(kPlainPrompt, n);
  ASSERT_TRUE(forced.contains("choices")) << forced.dump();
  EXPECT_EQ(forced["choices"][0]["text"], want);
  const json& f = forced["usage"]["speculation"];
  const int forced_drafts = f["drafted_tokens"].get<int>();
  // The premise: this text gives drafts, and none of them holds.
  ASSERT_GT(forced_drafts, 0) << f.dump();
  ASSERT_EQ(f["accepted_tokens"].get<int>(), 0) << f.dump();

  gateway_.reset();
  nodes_.clear();
  ASSERT_TRUE(start({"--speculate", "auto"}));
  int auto_drafts = 0;
  for (int i = 0; i < 3; ++i) {
    const json got = complete(kPlainPrompt, n);
    ASSERT_TRUE(got.contains("choices")) << got.dump();
    EXPECT_EQ(got["choices"][0]["text"], want) << "request " << i;
    const json& s = got["usage"]["speculation"];
    EXPECT_EQ(s["drafter"], "ngram") << s.dump();
    // Backed off (or measuring plain decoding first): steps without drafts.
    EXPECT_GT(s["plain_steps"].get<int>(), 1) << "request " << i << ": " << s.dump();
    EXPECT_LT(s["drafted_tokens"].get<int>(), forced_drafts) << "request " << i << ": " << s.dump();
    auto_drafts += s["drafted_tokens"].get<int>();
  }
  // Three requests of `auto` draft less than one of `ngram`.
  EXPECT_LT(auto_drafts, forced_drafts);
}

TEST_F(SpeculationTest, ABadSpeculateValueIsRefusedByName) {
  auto r = run_swarm("gateway -m " + model_ + " --peers 127.0.0.1:1 --speculate sometimes");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("sometimes"), std::string::npos) << r.out;
  r = run_swarm("gateway -m " + model_ +
                " --peers 127.0.0.1:1 --speculate draft:/nonexistent.gguf");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("nonexistent"), std::string::npos) << r.out;
}

}  // namespace
