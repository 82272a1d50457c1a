// Speculative decoding through a real 4-stage chain of `swarm node` processes
// behind a real `swarm gateway` on 127.0.0.1: greedy output must equal plain
// decoding's exactly, whatever the drafts, and usage reports drafts and steps.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "swarm_harness.h"

namespace {

using swarm::testing::find_testdata;
using swarm::testing::run_swarm;
using json = nlohmann::json;

// Repeats itself: n-gram lookup finds drafts in it.
const char* kRepetitive =
    "for (int i = 0; i < n; ++i) sum += a[i];\nfor (int i = 0; i < n; ++i) sum += b[i];\n"
    "for (int i = 0; i < n; ++i) sum +=";
const char* kPlainPrompt = "Once upon a time";

class SpeculationTest : public swarm::testing::SwarmHarness {
 protected:
  // Four one-layer stages and a gateway with `flags`.
  bool start(const std::vector<std::string>& flags) {
    return start_chain({{0, 1}, {1, 2}, {2, 3}, {3, 4}}, flags);
  }

  // The whole answer: usage is what these tests are about.
  json complete(const std::string& prompt, int n, double temperature = 0) {
    return post_completion({{"model", "tiny"},
                            {"prompt", prompt},
                            {"max_tokens", n},
                            {"temperature", temperature},
                            {"seed", 7}});
  }
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
                gateway()->port(), "tiny", kPlainPrompt, n, [] {}, &usage),
            want);
  EXPECT_EQ(usage["completion_tokens"].get<int>(), n) << usage.dump();
  EXPECT_EQ(usage["speculation"]["plain_steps"].get<int>(), n) << usage.dump();
  EXPECT_EQ(usage["speculation"]["speculative_steps"].get<int>(), 0) << usage.dump();
}

TEST_F(SpeculationTest, GreedyDraftModelSpeculationGivesExactlyThePlainText) {
  const std::string draft = find_testdata("tiny-llama/gguf/tiny-llama-Q4_K_M.gguf");
  ASSERT_FALSE(draft.empty()) << "tiny-llama-Q4_K_M.gguf is missing from tests/data";
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
  ASSERT_FALSE(draft.empty()) << "tiny-llama-Q4_K_M.gguf is missing from tests/data";
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

// What `auto` decides (back off where drafts fail, speculate where they hold)
// is tested on a simulated chain and clock in
// src/pipeline/speculative_decoder_test.cc; here, that it runs for real.

// With no --speculate the gateway runs `auto` (drafts where they pay); with
// --relay, where drafts cannot go stage to stage, `auto` decodes plainly and
// says so, while drafts asked for by name are refused.
TEST_F(SpeculationTest, AutoIsTheDefaultAndRelayDecodesPlainly) {
  const int n = 16;
  const std::string want = single_process(kRepetitive, n);
  ASSERT_TRUE(start({}));
  json got = complete(kRepetitive, n);
  ASSERT_TRUE(got.contains("choices")) << got.dump();
  EXPECT_EQ(got["choices"][0]["text"], want);
  EXPECT_EQ(got["usage"]["speculation"]["drafter"], "ngram") << got.dump();

  std::string peers;
  for (const auto& node : nodes_) peers += (peers.empty() ? "" : ",") + node->address();
  ASSERT_TRUE(start_gateway({"--peers", peers, "--relay"})->ok());
  got = complete(kRepetitive, n);
  ASSERT_TRUE(got.contains("choices")) << got.dump();
  EXPECT_EQ(got["choices"][0]["text"], want);
  EXPECT_EQ(got["usage"]["speculation"]["drafter"], "off") << got.dump();
  EXPECT_EQ(got["usage"]["speculation"]["speculative_steps"].get<int>(), 0) << got.dump();
  EXPECT_NE(swarm::testing::read_file(gateway_log()).find("--speculate auto: off"),
            std::string::npos)
      << swarm::testing::read_file(gateway_log());

  auto r = run_swarm("gateway -m " + model_ + " --peers 127.0.0.1:1 --relay --speculate ngram");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("--speculate ngram: needs push mode"), std::string::npos) << r.out;
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
