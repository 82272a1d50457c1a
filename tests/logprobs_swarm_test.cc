// Logprobs from real processes against `swarm logits` (the model's raw logits
// at every position, written as float32): `swarm serve` and a gateway in
// front of a two-node chain (configured to speculate, which a request for
// logprobs turns off) report exactly the log-softmax of those logits for the
// generated tokens (greedy and sampled) and, with echo, for the prompt's.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/logprobs.h"
#include "engine/tokenizer.h"
#include "swarm_harness.h"

namespace {

using swarm::TokenLogprob;
using swarm::testing::ChildProcess;
using swarm::testing::read_file;
using swarm::testing::run_swarm;
using swarm::testing::shell_quote;
using json = nlohmann::json;

class LogprobsSwarmTest : public swarm::testing::SwarmHarness {
 protected:
  json post(int port, const std::string& path, const json& body) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r);
    if (!r) return json();
    EXPECT_EQ(r->status, 200) << r->body;
    if (!body.value("stream", false)) return json::parse(r->body, nullptr, false);
    json events = json::array();
    size_t pos = 0;
    while ((pos = r->body.find("data: ", pos)) != std::string::npos) {
      const size_t end = r->body.find("\n\n", pos);
      const std::string data = r->body.substr(pos + 6, end - pos - 6);
      pos = end;
      if (data != "[DONE]") events.push_back(json::parse(data));
    }
    return events;
  }

  // `swarm logits` over `tokens`: [tokens, vocab] float32.
  std::vector<float> swarm_logits(const std::vector<int32_t>& tokens) {
    std::string list;
    for (int32_t t : tokens) list += (list.empty() ? "" : ",") + std::to_string(t);
    const std::string out = dir_ + "/logits.f32";
    auto r = run_swarm("logits -m " + shell_quote(model_) + " -t 1 --tokens " + list + " -o " + shell_quote(out));
    EXPECT_EQ(r.code, 0) << r.out;
    std::ifstream in(out, std::ios::binary);
    std::vector<float> logits;
    in.seekg(0, std::ios::end);
    logits.resize(static_cast<size_t>(in.tellg()) / sizeof(float));
    in.seekg(0);
    in.read(reinterpret_cast<char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
    return logits;
  }

  // Checks one server (serve or gateway) against `swarm logits`: a greedy and
  // a sampled generation with n_probs (ids and logprobs of what it chose),
  // and the prompt scored with echo.
  void expect_exact(int port, const std::vector<int32_t>& prompt) {
    for (const json& sampling : {json{{"temperature", 0}}, json{{"temperature", 1.5}, {"seed", 11}}}) {
      SCOPED_TRACE(sampling.dump());
      json req = {{"prompt", prompt}, {"n_predict", 5}, {"n_probs", 3}};
      req.update(sampling);
      const json out = post(port, "/completion", req);
      const json& probs = out["completion_probabilities"];
      ASSERT_TRUE(probs.is_array()) << out.dump();
      ASSERT_GE(probs.size(), 1u) << out.dump();
      std::vector<int32_t> all = prompt;
      for (const json& p : probs) all.push_back(p["id"].get<int32_t>());
      const std::vector<float> logits = swarm_logits(all);
      const int n_vocab = static_cast<int>(logits.size() / all.size());
      for (size_t i = 0; i < probs.size(); ++i) {
        SCOPED_TRACE(i);
        const TokenLogprob want = swarm::token_logprob(
            logits.data() + (prompt.size() - 1 + i) * n_vocab, n_vocab, all[prompt.size() + i], 3);
        EXPECT_EQ(probs[i]["logprob"].get<float>(), want.logprob);
        ASSERT_EQ(probs[i]["top_logprobs"].size(), 3u);
        for (size_t k = 0; k < 3; ++k) {
          EXPECT_EQ(probs[i]["top_logprobs"][k]["id"], want.top[k].first);
          EXPECT_EQ(probs[i]["top_logprobs"][k]["logprob"].get<float>(), want.top[k].second);
        }
      }
    }
    // Echo: the prompt's tokens scored, the first null.
    const std::vector<float> logits = swarm_logits(prompt);
    const int n_vocab = static_cast<int>(logits.size() / prompt.size());
    const json echo = post(port, "/v1/completions",
                           {{"prompt", prompt}, {"max_tokens", 1}, {"echo", true}, {"logprobs", 2}, {"temperature", 0}});
    const json& lp = echo["choices"][0]["logprobs"];
    ASSERT_EQ(lp["token_logprobs"].size(), prompt.size() + 1) << echo.dump();
    EXPECT_TRUE(lp["token_logprobs"][0].is_null());
    for (size_t i = 1; i < prompt.size(); ++i)
      EXPECT_EQ(lp["token_logprobs"][i].get<float>(),
                swarm::token_logprob(logits.data() + (i - 1) * n_vocab, n_vocab, prompt[i], 0).logprob)
          << i;
  }
};

TEST_F(LogprobsSwarmTest, ServeAndATwoStageGatewayMatchSwarmLogits) {
  auto tok = swarm::Tokenizer::Load(model_);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const std::vector<int32_t> prompt = (*tok)->encode("Once upon a time, in a land far away,", true, false);

  ChildProcess serve({"serve", "-m", model_, "--listen", "127.0.0.1:0", "-t", "1", "--model-name", "tiny"},
                     dir_ + "/serve.err");
  ASSERT_TRUE(serve.ok()) << read_file(dir_ + "/serve.err");
  {
    SCOPED_TRACE("serve");
    expect_exact(serve.port(), prompt);
  }

  ASSERT_TRUE(start_chain({{0, 2}, {2, 4}}, {"--speculate", "ngram"}));
  {
    SCOPED_TRACE("gateway");
    expect_exact(gateway()->port(), prompt);
  }
  // Chat through the gateway, streamed and not: the same entries, and the
  // same as serve's.
  const json chat = {{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "Count: one two"}}}},
                     {"max_tokens", 6}, {"temperature", 0}, {"logprobs", true}, {"top_logprobs", 2}};
  const json whole = post(gateway()->port(), "/v1/chat/completions", chat);
  const json& content = whole["choices"][0]["logprobs"]["content"];
  ASSERT_TRUE(content.is_array()) << whole.dump();
  EXPECT_GE(content.size(), 1u);
  EXPECT_EQ(post(serve.port(), "/v1/chat/completions", chat)["choices"][0]["logprobs"]["content"], content);
  json streamed_req = chat;
  streamed_req["stream"] = true;
  json streamed = json::array();
  for (const json& ev : post(gateway()->port(), "/v1/chat/completions", streamed_req)) {
    const json& lp = ev["choices"][0]["logprobs"];
    if (!lp.is_null())
      for (const json& e : lp["content"]) streamed.push_back(e);
  }
  EXPECT_EQ(streamed, content);
}

}  // namespace
