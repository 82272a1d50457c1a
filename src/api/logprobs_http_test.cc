// Logprobs over HTTP on 127.0.0.1 against the model itself: every logprob the
// API reports (chat, completions with echo, llama-server's n_probs; streamed
// and not) equals the log-softmax of the raw logits that Model::forward (what
// `swarm logits` prints) gives for the same tokens, bit for bit, whatever the
// sampling settings; and the answers have OpenAI's shapes.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "api/local_test_server.h"
#include "api/openai_server.h"
#include "engine/chat_template.h"
#include "engine/logprobs.h"
#include "engine/test_data.h"
#include "pipeline/local_backend.h"

namespace swarm {
namespace {

using nlohmann::json;

constexpr const char* kModel = "tiny-llama/gguf/tiny-llama-Q8_0.gguf";
constexpr int kContext = 256;

class LogprobsHttpTest : public testing::LocalServerSuite<LogprobsHttpTest> {
 public:
  static constexpr const char* kServerModel = kModel;
  static constexpr int kServerContext = kContext;

 protected:

  static json post(const std::string& path, const json& body, int want = 200) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60);
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r);
    if (!r) return json();
    EXPECT_EQ(r->status, want) << r->body;
    if (!body.value("stream", false)) return json::parse(r->body);
    // A stream: its events as an array ([DONE] left out).
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

  // Raw logits at every position of `tokens`, as `swarm logits` computes them.
  static std::vector<float> logits_of(const std::vector<int32_t>& tokens) {
    const Model& model = backend_->model();
    ThreadPool pool(1);
    auto cache = model.new_cache(kContext);
    auto logits = model.forward(tokens, *cache, pool);
    EXPECT_TRUE(logits.ok());
    return logits.ok() ? *logits : std::vector<float>();
  }
  static int n_vocab() { return backend_->model().config().n_vocab; }

  // Greedy continuation of `prompt` for `n` tokens (stopping at end of generation).
  static std::vector<int32_t> greedy(std::vector<int32_t> seq, int n) {
    const size_t start = seq.size();
    for (int i = 0; i < n; ++i) {
      const std::vector<float> l = logits_of(seq);
      const float* row = l.data() + (seq.size() - 1) * n_vocab();
      const int32_t id = static_cast<int32_t>(std::max_element(row, row + n_vocab()) - row);
      if (tok_->is_eog(id)) break;
      seq.push_back(id);
    }
    return {seq.begin() + static_cast<ptrdiff_t>(start), seq.end()};
  }

};

// What JSON makes of raw token bytes (invalid UTF-8 becomes U+FFFD).
std::string as_json_text(const std::string& s) {
  return json::parse(json(s).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
}

// Checks one chat logprobs.content entry against the expected token and row.
void expect_chat_entry(const Tokenizer& tok, const json& e, const TokenLogprob& want) {
  const std::string piece = tok.token_to_piece(want.token);
  EXPECT_EQ(e["token"], as_json_text(piece));
  EXPECT_EQ(e["logprob"].get<float>(), want.logprob);
  ASSERT_EQ(e["bytes"].size(), piece.size());
  for (size_t i = 0; i < piece.size(); ++i)
    EXPECT_EQ(e["bytes"][i].get<int>(), static_cast<unsigned char>(piece[i]));
  ASSERT_EQ(e["top_logprobs"].size(), want.top.size());
  for (size_t k = 0; k < want.top.size(); ++k) {
    EXPECT_EQ(e["top_logprobs"][k]["token"], as_json_text(tok.token_to_piece(want.top[k].first)));
    EXPECT_EQ(e["top_logprobs"][k]["logprob"].get<float>(), want.top[k].second);
    EXPECT_TRUE(e["top_logprobs"][k]["bytes"].is_array());
  }
}

TEST_F(LogprobsHttpTest, ChatLogprobsAreTheRawLogSoftmaxStreamedOrNot) {
  const std::vector<int32_t> prompt = tok_->encode("The capital of France is", true, false);
  // Completions with token ids: the prompt is exactly what the test scores.
  const std::vector<int32_t> gen = greedy(prompt, 6);
  ASSERT_FALSE(gen.empty());
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), gen.begin(), gen.end());
  const std::vector<float> l = logits_of(all);
  std::vector<TokenLogprob> want;
  for (size_t i = 0; i < gen.size(); ++i)
    want.push_back(token_logprob(l.data() + (prompt.size() - 1 + i) * n_vocab(), n_vocab(), gen[i], 3));
  // Greedy: the chosen token is the most likely.
  EXPECT_EQ(want[0].top[0].first, gen[0]);

  // Chat: what the messages became, scored the same way.
  const json chat_body = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                          {"max_tokens", 4}, {"temperature", 0}, {"logprobs", true}, {"top_logprobs", 3}};
  auto rendered = render_chat(server_->chat_family(), {{"user", "Hi"}}, true,
                              tok_->token_text(tok_->bos()), tok_->token_text(tok_->eos()));
  ASSERT_TRUE(rendered.ok());
  const std::vector<int32_t> chat_prompt = tok_->encode(*rendered, tok_->add_bos_default(), true);
  const std::vector<int32_t> chat_gen = greedy(chat_prompt, 4);
  std::vector<int32_t> chat_all = chat_prompt;
  chat_all.insert(chat_all.end(), chat_gen.begin(), chat_gen.end());
  const std::vector<float> cl = logits_of(chat_all);
  const json chat = post("/v1/chat/completions", chat_body);
  const json& content = chat["choices"][0]["logprobs"]["content"];
  ASSERT_TRUE(content.is_array()) << chat.dump();
  EXPECT_TRUE(chat["choices"][0]["logprobs"].contains("refusal"));
  ASSERT_EQ(content.size(), chat_gen.size()) << chat.dump();
  for (size_t i = 0; i < chat_gen.size(); ++i) {
    SCOPED_TRACE(i);
    expect_chat_entry(*tok_, content[i],
                      token_logprob(cl.data() + (chat_prompt.size() - 1 + i) * n_vocab(), n_vocab(),
                                    chat_gen[i], 3));
  }
  // Streamed: the same entries, spread over the chunks.
  json body = chat_body;
  body["stream"] = true;
  json streamed = json::array();
  for (const json& ev : post("/v1/chat/completions", body)) {
    const json& lp = ev["choices"][0]["logprobs"];
    if (lp.is_null()) continue;
    EXPECT_FALSE(lp.contains("refusal"));
    for (const json& e : lp["content"]) streamed.push_back(e);
  }
  EXPECT_EQ(streamed, content);

  // Completions (token ids in, logprobs 3): exact against the model, and the
  // sampling settings change nothing of the numbers (raw logits).
  for (const json& extra : {json{{"temperature", 0}}, json{{"temperature", 1.7}, {"top_k", 1},
                                                           {"seed", 5}}}) {
    json req = {{"prompt", prompt}, {"max_tokens", static_cast<int>(gen.size())}, {"logprobs", 3}};
    req.update(extra);
    const json out = post("/v1/completions", req);
    const json& lp = out["choices"][0]["logprobs"];
    ASSERT_EQ(lp["tokens"].size(), gen.size()) << out.dump();
    for (size_t i = 0; i < gen.size(); ++i) {
      SCOPED_TRACE(i);
      EXPECT_EQ(lp["tokens"][i], as_json_text(tok_->token_to_piece(gen[i])));
      EXPECT_EQ(lp["token_logprobs"][i].get<float>(), want[i].logprob);
      EXPECT_EQ(lp["top_logprobs"][i].size(), 3u);  // the chosen one is among the top 3
      EXPECT_EQ(lp["top_logprobs"][i][as_json_text(tok_->token_to_piece(gen[i]))].get<float>(),
                want[i].logprob);
    }
  }
}

TEST_F(LogprobsHttpTest, CompletionsEchoScoreThePromptAsHarnessesNeed) {
  const std::vector<int32_t> prompt = tok_->encode("Once upon a time there was", true, false);
  const std::vector<float> l = logits_of(prompt);
  json req = {{"prompt", prompt}, {"max_tokens", 1}, {"echo", true}, {"logprobs", 1}, {"temperature", 0}};
  const json out = post("/v1/completions", req);
  const json& lp = out["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), prompt.size() + 1) << out.dump();
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  double sum = 0;
  for (size_t i = 1; i < prompt.size(); ++i) {
    const TokenLogprob want = token_logprob(l.data() + (i - 1) * n_vocab(), n_vocab(), prompt[i], 1);
    EXPECT_EQ(lp["token_logprobs"][i].get<float>(), want.logprob) << i;
    EXPECT_LE(lp["top_logprobs"][i].size(), 2u);
    sum += want.logprob;
  }
  EXPECT_LT(sum, 0);
  // text_offset: increasing, the first at 0; the text begins with the prompt.
  EXPECT_EQ(lp["text_offset"][0], 0);
  for (size_t i = 1; i < lp["text_offset"].size(); ++i)
    EXPECT_GE(lp["text_offset"][i].get<int>(), lp["text_offset"][i - 1].get<int>());
  EXPECT_EQ(lp["text_offset"].size(), lp["tokens"].size());

  // Streamed: the echo chunk carries the prompt's, then the generated ones.
  req["stream"] = true;
  json tokens = json::array(), logprobs = json::array(), offsets = json::array();
  for (const json& ev : post("/v1/completions", req)) {
    const json& c = ev["choices"][0]["logprobs"];
    if (c.is_null()) continue;
    for (size_t i = 0; i < c["tokens"].size(); ++i) {
      tokens.push_back(c["tokens"][i]);
      logprobs.push_back(c["token_logprobs"][i]);
      offsets.push_back(c["text_offset"][i]);
    }
  }
  EXPECT_EQ(tokens, lp["tokens"]);
  EXPECT_EQ(logprobs, lp["token_logprobs"]);
  EXPECT_EQ(offsets, lp["text_offset"]);

  // Other sampling settings: the same prompt logprobs.
  req["stream"] = false;
  req["temperature"] = 1.3;
  req["presence_penalty"] = 1.0;
  const json hot = post("/v1/completions", req);
  const json& hl = hot["choices"][0]["logprobs"]["token_logprobs"];
  for (size_t i = 0; i < prompt.size(); ++i) EXPECT_EQ(hl[i], lp["token_logprobs"][i]) << i;
}

TEST_F(LogprobsHttpTest, LlamaServerNProbs) {
  const std::vector<int32_t> prompt = tok_->encode("One two three", true, false);
  const std::vector<int32_t> gen = greedy(prompt, 3);
  ASSERT_EQ(gen.size(), 3u);
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), gen.begin(), gen.end());
  const std::vector<float> l = logits_of(all);
  const json req = {{"prompt", prompt}, {"n_predict", 3}, {"n_probs", 2}, {"temperature", 0}};
  const json out = post("/completion", req);
  const json& probs = out["completion_probabilities"];
  ASSERT_EQ(probs.size(), 3u) << out.dump();
  for (size_t i = 0; i < 3; ++i) {
    const TokenLogprob want = token_logprob(l.data() + (prompt.size() - 1 + i) * n_vocab(), n_vocab(), gen[i], 2);
    EXPECT_EQ(probs[i]["id"], gen[i]);
    EXPECT_EQ(probs[i]["logprob"].get<float>(), want.logprob);
    ASSERT_EQ(probs[i]["top_logprobs"].size(), 2u);
    EXPECT_EQ(probs[i]["top_logprobs"][1]["id"], want.top[1].first);
  }
  json streamed = json::array();
  json sreq = req;
  sreq["stream"] = true;
  for (const json& ev : post("/completion", sreq))
    if (ev.contains("completion_probabilities"))
      for (const json& p : ev["completion_probabilities"]) streamed.push_back(p);
  EXPECT_EQ(streamed, probs);
}

// Without logprobs the answers keep `logprobs: null`.
TEST_F(LogprobsHttpTest, AbsentUnlessAskedFor) {
  const json out = post("/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 2}});
  EXPECT_TRUE(out["choices"][0]["logprobs"].is_null());
  const json native = post("/completion", {{"prompt", "Hi"}, {"n_predict", 2}});
  EXPECT_FALSE(native.contains("completion_probabilities"));
}

TEST(TokenLogprobTest, LogSoftmaxAndTopInOrder) {
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, -2.0f};
  const TokenLogprob lp = token_logprob(logits.data(), 4, 0, 25);
  double z = 0;
  for (float x : logits) z += std::exp(static_cast<double>(x));
  EXPECT_FLOAT_EQ(lp.logprob, static_cast<float>(1.0 - std::log(z)));
  ASSERT_EQ(lp.top.size(), 4u);  // clamped to the vocabulary
  EXPECT_EQ(lp.top[0].first, 1);  // ties: the lower id first
  EXPECT_EQ(lp.top[1].first, 2);
  EXPECT_EQ(lp.top[3].first, 3);
  double total = 0;
  for (const auto& [id, l] : lp.top) total += std::exp(static_cast<double>(l));
  EXPECT_NEAR(total, 1.0, 1e-6);
  EXPECT_TRUE(token_logprob(logits.data(), 4, 2, 0).top.empty());
}

}  // namespace
}  // namespace swarm
