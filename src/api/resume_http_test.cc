// Resuming a completion on another server (doc/http-api.md, "Resuming a
// completion elsewhere") over HTTP on 127.0.0.1 with the test model, greedy:
// the token ids the chunks carry (swarm_token_ids) are the completion's and
// give its text; after EVERY chunk, the ids and text received so far resumed
// with swarm_resume stream exactly the rest, so the two halves make the
// uninterrupted answer, also where text was held back (a stop string's
// possible start) and where a stop string spans the seam; usage counts the
// whole completion; what cannot be resumed is a 400 naming swarm_resume.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "api/local_test_server.h"
#include "api/openai_request.h"
#include "api/openai_server.h"
#include "engine/tokenizer.h"

namespace swarm {
namespace {

using nlohmann::json;

constexpr const char* kModel = "tiny-llama/gguf/tiny-llama-Q8_0.gguf";
constexpr int kMaxTokens = 40;

// One streamed answer, chunk by chunk (the usage chunk and [DONE] apart).
struct Streamed {
  std::vector<std::string> texts;         // each chunk's content or text ("" if none)
  std::vector<std::vector<int32_t>> ids;  // each chunk's swarm_token_ids (empty if none)
  std::vector<bool> has_ids;              // whether the chunk had the field
  std::string finish_reason;
  json usage;

  std::string text() const { return text_until(texts.size()); }
  std::vector<int32_t> all_ids() const { return ids_until(ids.size()); }
  // What the first `n` chunks carried.
  std::string text_until(size_t n) const {
    std::string t;
    for (size_t i = 0; i < n; ++i) t += texts[i];
    return t;
  }
  std::vector<int32_t> ids_until(size_t n) const {
    std::vector<int32_t> out;
    for (size_t i = 0; i < n; ++i) out.insert(out.end(), ids[i].begin(), ids[i].end());
    return out;
  }
};

class ResumeHttpTest : public testing::LocalServerSuite<ResumeHttpTest> {
 public:
  static constexpr const char* kServerModel = kModel;
  static constexpr int kServerContext = 256;

 protected:
  static httplib::Result call(const std::string& path, const json& body) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60);
    return c.Post(path.c_str(), body.dump(), "application/json");
  }

  static json post(const std::string& path, const json& body, int want = 200) {
    auto r = call(path, body);
    EXPECT_TRUE(r);
    if (!r) return json();
    EXPECT_EQ(r->status, want) << r->body;
    return json::parse(r->body, nullptr, false);
  }

  static Streamed stream(const std::string& path, json body) {
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    Streamed s;
    auto r = call(path, body);
    EXPECT_TRUE(r);
    if (!r) return s;
    EXPECT_EQ(r->status, 200) << r->body;
    size_t pos = 0;
    while ((pos = r->body.find("data: ", pos)) != std::string::npos) {
      const size_t end = r->body.find("\n\n", pos);
      const std::string data = r->body.substr(pos + 6, end - pos - 6);
      pos = end;
      if (data == "[DONE]") continue;
      const json e = json::parse(data);
      EXPECT_FALSE(e.contains("error")) << data;
      if (e["choices"].empty()) {
        s.usage = e["usage"];
        continue;
      }
      const json& c = e["choices"][0];
      const json& piece = c.contains("delta") ? c["delta"].value("content", json("")) : c["text"];
      s.texts.push_back(piece.is_string() ? piece.get<std::string>() : "");
      s.has_ids.push_back(e.contains("swarm_token_ids"));
      s.ids.push_back(e.value("swarm_token_ids", std::vector<int32_t>()));
      if (!c["finish_reason"].is_null()) s.finish_reason = c["finish_reason"];
    }
    return s;
  }

  static json completion(const std::string& prompt) {
    return {{"prompt", prompt},
            {"max_tokens", kMaxTokens},
            {"temperature", 0},
            {"swarm_token_ids", true}};
  }
  static json chat(const std::string& content) {
    return {{"messages", {{{"role", "user"}, {"content", content}}}},
            {"max_tokens", kMaxTokens},
            {"temperature", 0},
            {"swarm_token_ids", true}};
  }

  static json resume_of(json body, const std::vector<int32_t>& ids, size_t text_bytes) {
    body["swarm_resume"] = {{"tokens", ids}, {"text_bytes", text_bytes}};
    return body;
  }

  // The prompt as the server tokenizes it.
  static std::vector<int32_t> prompt_ids(const std::string& prompt) {
    return tok_->encode(prompt, tok_->add_bos_default(), /*parse_special=*/true);
  }

  // A piece of text as JSON carries it (bytes that are not UTF-8 as U+FFFD:
  // the test model emits some).
  static std::string as_json(const std::string& piece) {
    return json::parse(json(piece).dump(-1, ' ', false, json::error_handler_t::replace))
        .get<std::string>();
  }

  // The text `ids` add after `prompt`, as a stream gives it: piece by piece.
  static std::string text_after(const std::vector<int32_t>& prompt,
                                const std::vector<int32_t>& ids) {
    TokenStreamDecoder d(*tok_);
    for (int32_t id : prompt) d.push(id);
    std::string t;
    for (int32_t id : ids) t += as_json(d.push(id));
    return t + as_json(d.flush());
  }

  // Stop strings are matched on the model's bytes: only plain ASCII text is
  // the same there as in the JSON.
  static bool plain(const std::string& s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
  }

  // Resumes `whole` after each of its chunks and checks that the rest comes
  // out exactly. Returns how many resumes started with text held back (the
  // ids' text longer than the text received).
  static int resume_after_every_chunk(const std::string& path, const json& body,
                                      const Streamed& whole, const std::vector<int32_t>& prompt) {
    int held_back = 0;
    const std::string text = whole.text();
    const std::vector<int32_t> ids = whole.all_ids();
    for (size_t j = 0; j <= whole.texts.size(); ++j) {
      SCOPED_TRACE("resumed after chunk " + std::to_string(j) + " of " +
                   std::to_string(whole.texts.size()));
      const std::vector<int32_t> had = whole.ids_until(j);
      const std::string seen = whole.text_until(j);
      if (static_cast<int>(had.size()) >= kMaxTokens) {  // nothing left to generate: refused
        const json e = post(path, resume_of(body, had, seen.size()), 400);
        EXPECT_EQ(e["error"]["param"], "swarm_resume") << e.dump();
        continue;
      }
      if (text_after(prompt, had).size() > seen.size()) ++held_back;
      const Streamed rest = stream(path, resume_of(body, had, seen.size()));
      EXPECT_EQ(seen + rest.text(), text);
      std::vector<int32_t> joined = had;
      const std::vector<int32_t> more = rest.all_ids();
      joined.insert(joined.end(), more.begin(), more.end());
      EXPECT_EQ(joined, ids);
      EXPECT_EQ(rest.finish_reason, whole.finish_reason);
      EXPECT_EQ(rest.usage["prompt_tokens"], whole.usage["prompt_tokens"]);
      EXPECT_EQ(rest.usage["completion_tokens"], whole.usage["completion_tokens"]);
      EXPECT_EQ(rest.usage["swarm_resumed_tokens"], had.size());
    }
    return held_back;
  }
};

TEST_F(ResumeHttpTest, StreamedIdsAreTheCompletionAndGiveItsText) {
  const std::string prompt = "Once upon a time";
  const Streamed s = stream("/v1/completions", completion(prompt));
  ASSERT_FALSE(s.texts.empty());
  const std::vector<int32_t> ids = s.all_ids();
  EXPECT_EQ(static_cast<int>(ids.size()), s.usage["completion_tokens"].get<int>());
  EXPECT_GT(ids.size(), 10u);
  EXPECT_EQ(text_after(prompt_ids(prompt), ids), s.text());
  // Every chunk with text, and the final one, carries the field.
  for (size_t i = 0; i < s.texts.size(); ++i) {
    if (!s.texts[i].empty() || i + 1 == s.texts.size()) {
      EXPECT_TRUE(s.has_ids[i]) << i;
    }
  }
  EXPECT_FALSE(s.usage.contains("swarm_resumed_tokens"));

  // Without the field asked for, no chunk has it.
  json plain = completion(prompt);
  plain.erase("swarm_token_ids");
  const Streamed p = stream("/v1/completions", plain);
  EXPECT_EQ(p.text(), s.text());
  for (bool has : p.has_ids) EXPECT_FALSE(has);
}

// With n > 1 each choice's chunks carry that choice's ids.
TEST_F(ResumeHttpTest, EachChoiceCarriesItsOwnIds) {
  const std::string prompt = "Once upon a time";
  json body = completion(prompt);
  body["n"] = 2;
  body["temperature"] = 1.0;
  body["seed"] = 7;
  body["stream"] = true;
  auto r = call("/v1/completions", body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  std::map<int, std::string> text;
  std::map<int, std::vector<int32_t>> ids;
  for (size_t pos = 0; (pos = r->body.find("data: ", pos)) != std::string::npos;) {
    const size_t end = r->body.find("\n\n", pos);
    const std::string data = r->body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") continue;
    const json e = json::parse(data);
    const int i = e["choices"][0]["index"];
    text[i] += e["choices"][0]["text"].get<std::string>();
    for (int32_t id : e.value("swarm_token_ids", std::vector<int32_t>())) ids[i].push_back(id);
  }
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_NE(ids[0], ids[1]) << "two seeds, one completion";
  for (int i = 0; i < 2; ++i) EXPECT_EQ(text_after(prompt_ids(prompt), ids[i]), text[i]) << i;
}

TEST_F(ResumeHttpTest, CompletionsResumeAfterEveryChunk) {
  const std::string prompt = "Once upon a time";
  const json body = completion(prompt);
  const Streamed whole = stream("/v1/completions", body);
  ASSERT_GT(whole.texts.size(), 5u);
  resume_after_every_chunk("/v1/completions", body, whole, prompt_ids(prompt));
}

TEST_F(ResumeHttpTest, ChatResumesAfterEveryChunk) {
  const json body = chat("Tell me a story about a dragon.");
  const Streamed whole = stream("/v1/chat/completions", body);
  ASSERT_GT(whole.texts.size(), 5u);
  EXPECT_FALSE(whole.has_ids[0]) << "the role chunk carries no completion";
  // The chat prompt as the server renders it (llama-server's /apply-template).
  const json rendered = post("/apply-template", body);
  const std::vector<int32_t> prompt = prompt_ids(rendered["prompt"]);
  EXPECT_EQ(text_after(prompt, whole.all_ids()), whole.text());
  resume_after_every_chunk("/v1/chat/completions", body, whole, prompt);
  // A resumed chat stream still opens with its role.
  json resumed = resume_of(body, whole.ids_until(3), whole.text_until(3).size());
  resumed["stream"] = true;
  auto r = call("/v1/chat/completions", resumed);
  ASSERT_TRUE(r);
  const size_t first = r->body.find("data: ");
  ASSERT_NE(first, std::string::npos);
  const json opening =
      json::parse(r->body.substr(first + 6, r->body.find("\n\n", first) - first - 6));
  EXPECT_EQ(opening["choices"][0]["delta"]["role"], "assistant");
}

// A stop string that is never matched but whose start appears in the text:
// the server holds that text back until the next token settles it, so some
// chunks' ids decode to more than their text. Resumed there, the held text
// comes out of the new server, and the whole is the same.
TEST_F(ResumeHttpTest, HeldBackTextCarriesAcrossTheSeam) {
  const std::string prompt = "Once upon a time";
  const Streamed free = stream("/v1/completions", completion(prompt));
  const std::string text = free.text();
  ASSERT_GT(text.size(), 20u);
  json body = completion(prompt);
  // Each starts as a part of the text does, then a byte the text lacks.
  std::vector<std::string> stops;
  for (size_t at = 0; at + 4 <= text.size() && stops.size() < 4; at += 5)
    if (plain(text.substr(at, 4))) stops.push_back(text.substr(at, 4) + "\x01");
  ASSERT_FALSE(stops.empty());
  body["stop"] = stops;
  const Streamed whole = stream("/v1/completions", body);
  EXPECT_EQ(whole.text(), text);
  const int held = resume_after_every_chunk("/v1/completions", body, whole, prompt_ids(prompt));
  EXPECT_GT(held, 0) << "no seam had text held back: the test proves nothing";

  // Fewer bytes than the server had sent: the rest of them come again.
  const size_t j = whole.texts.size() / 2;
  const std::string seen = whole.text_until(j);
  ASSERT_GT(seen.size(), 2u);
  const Streamed rest =
      stream("/v1/completions", resume_of(body, whole.ids_until(j), seen.size() / 2));
  EXPECT_EQ(seen.substr(0, seen.size() / 2) + rest.text(), text);

  // More than it had sent, but within the ids' text (the client has the held text).
  const std::vector<int32_t> pids = prompt_ids(prompt);
  for (size_t k = 1; k < whole.texts.size(); ++k) {
    const std::string decoded = text_after(pids, whole.ids_until(k));
    if (decoded.size() <= whole.text_until(k).size()) continue;
    const Streamed after =
        stream("/v1/completions", resume_of(body, whole.ids_until(k), decoded.size()));
    EXPECT_EQ(decoded + after.text(), text) << k;
    break;
  }
}

// A stop string across the seam: its first part in the resumed tokens, the
// rest in the new ones. The server that resumes still stops there, showing
// nothing of it; and one wholly inside the resumed tokens ends at once.
TEST_F(ResumeHttpTest, StopStringSpanningTheSeamStops) {
  const std::string prompt = "Once upon a time";
  const std::vector<int32_t> pids = prompt_ids(prompt);
  const Streamed free = stream("/v1/completions", completion(prompt));
  const std::string text = free.text();
  const std::vector<int32_t> ids = free.all_ids();
  ASSERT_GT(ids.size(), 20u);
  // A stop string from the end of token `at`'s text into the next two
  // tokens' of the free run: resumed after `at` tokens, it spans the seam.
  auto text_of = [&](size_t n) {
    return text_after(pids,
                      std::vector<int32_t>(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(n)));
  };
  size_t at = 0, from = 0;
  std::string before, stop;
  for (size_t i = 5; i + 4 < ids.size() && stop.empty(); ++i) {
    before = text_of(i);
    const std::string after = text_of(i + 2);
    if (before.size() < 3 || after.size() <= before.size()) continue;
    const std::string s = text.substr(before.size() - 3, after.size() - before.size() + 3);
    if (!plain(s) || text.find(s) != before.size() - 3)
      continue;  // one that occurs earlier stops earlier
    at = i;
    from = before.size() - 3;
    stop = s;
  }
  ASSERT_FALSE(stop.empty()) << "no seam in plain text: " << text;
  json body = completion(prompt);
  body["stop"] = stop;
  const Streamed whole = stream("/v1/completions", body);
  EXPECT_EQ(whole.text(), text.substr(0, from));
  EXPECT_EQ(whole.finish_reason, "stop");

  // The server held back the stop string's start: it had shown `from` bytes.
  const std::vector<int32_t> had(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(at));
  const Streamed rest = stream("/v1/completions", resume_of(body, had, from));
  EXPECT_EQ(rest.text(), "");
  EXPECT_EQ(text.substr(0, from) + rest.text(), whole.text());
  EXPECT_EQ(rest.finish_reason, "stop");
  EXPECT_EQ(rest.usage["completion_tokens"], whole.usage["completion_tokens"]);

  // Wholly inside the resumed tokens: it ends at once, nothing generated.
  const std::vector<int32_t> past(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(at + 3));
  const Streamed done = stream("/v1/completions", resume_of(body, past, 0));
  EXPECT_EQ(done.text(), text.substr(0, from));
  EXPECT_EQ(done.finish_reason, "stop");
  EXPECT_EQ(done.all_ids(), std::vector<int32_t>());
  EXPECT_EQ(done.usage["completion_tokens"], at + 3);
  EXPECT_EQ(done.usage["swarm_resumed_tokens"], at + 3);
  const json answer = post("/v1/completions", resume_of(body, past, from));
  EXPECT_EQ(answer["choices"][0]["text"], "");
  EXPECT_EQ(answer["choices"][0]["finish_reason"], "stop");
}

TEST_F(ResumeHttpTest, WholeAnswersResumeToo) {
  for (const bool is_chat : {false, true}) {
    SCOPED_TRACE(is_chat ? "chat" : "completions");
    const std::string path = is_chat ? "/v1/chat/completions" : "/v1/completions";
    const json body =
        is_chat ? chat("Tell me a story about a dragon.") : completion("Once upon a time");
    auto text_of = [&](const json& answer) -> std::string {
      const json& c = answer["choices"][0];
      return is_chat ? c["message"]["content"].get<std::string>() : c["text"].get<std::string>();
    };
    const json whole = post(path, body);
    const std::vector<int32_t> ids = whole["choices"][0]["swarm_token_ids"];
    EXPECT_EQ(static_cast<int>(ids.size()), whole["usage"]["completion_tokens"].get<int>());
    const Streamed streamed = stream(path, body);
    EXPECT_EQ(ids, streamed.all_ids());
    EXPECT_EQ(text_of(whole), streamed.text());

    // Resumed where the stream was cut after half its chunks.
    const size_t j = streamed.texts.size() / 2;
    const size_t k = streamed.ids_until(j).size();
    ASSERT_GT(k, 0u);
    const std::vector<int32_t> had(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(k));
    const std::string seen = streamed.text_until(j);
    const json rest = post(path, resume_of(body, had, seen.size()));
    EXPECT_EQ(seen + text_of(rest), text_of(whole));
    const std::vector<int32_t> more = rest["choices"][0]["swarm_token_ids"];
    EXPECT_EQ(more, std::vector<int32_t>(ids.begin() + static_cast<ptrdiff_t>(k), ids.end()));
    EXPECT_EQ(rest["choices"][0]["finish_reason"], whole["choices"][0]["finish_reason"]);
    EXPECT_EQ(rest["usage"]["prompt_tokens"], whole["usage"]["prompt_tokens"]);
    EXPECT_EQ(rest["usage"]["completion_tokens"], whole["usage"]["completion_tokens"]);
    EXPECT_EQ(rest["usage"]["total_tokens"], whole["usage"]["total_tokens"]);
    EXPECT_EQ(rest["usage"]["swarm_resumed_tokens"], k);
  }
}

// The grammar constrains the whole completion: it reads the resumed tokens
// as the completion's start, so the continuation is the same.
TEST_F(ResumeHttpTest, StructuredOutputResumes) {
  json body = completion("A JSON object:");
  body["response_format"] = {{"type", "json_object"}};
  const Streamed whole = stream("/v1/completions", body);
  ASSERT_GT(whole.texts.size(), 4u);
  const size_t j = whole.texts.size() / 2;
  const Streamed rest =
      stream("/v1/completions", resume_of(body, whole.ids_until(j), whole.text_until(j).size()));
  EXPECT_EQ(whole.text_until(j) + rest.text(), whole.text());
  EXPECT_EQ(rest.finish_reason, whole.finish_reason);
}

TEST_F(ResumeHttpTest, WhatCannotBeResumedIsRefused) {
  const json body = completion("Once upon a time");
  const json whole = post("/v1/completions", body);
  const std::vector<int32_t> ids = whole["choices"][0]["swarm_token_ids"];
  ASSERT_GT(ids.size(), 4u);
  const std::vector<int32_t> some(ids.begin(), ids.begin() + 4);
  auto refused = [&](const std::string& path, const json& request, const std::string& why) {
    const json e = post(path, request, 400);
    EXPECT_EQ(e["error"]["param"], "swarm_resume") << why << ": " << e.dump();
    EXPECT_EQ(e["error"]["type"], "invalid_request_error") << why;
  };
  const json good = resume_of(body, some, 0);
  post("/v1/completions", good);  // the base of every refusal below is fine

  json r = good;
  r["n"] = 2;
  refused("/v1/completions", r, "n > 1");
  r = good;
  r["echo"] = true;
  refused("/v1/completions", r, "echo");
  r = good;
  r["logprobs"] = 1;
  refused("/v1/completions", r, "logprobs");
  json c = resume_of(chat("Hi"), some, 0);
  post("/v1/chat/completions", c);
  c["logprobs"] = true;
  refused("/v1/chat/completions", c, "chat logprobs");
  c.erase("logprobs");
  c["tools"] = {
      {{"type", "function"}, {"function", {{"name", "f"}, {"parameters", {{"type", "object"}}}}}}};
  refused("/v1/chat/completions", c, "tools");
  c["tool_choice"] = "none";  // tools that cannot be called are no obstacle
  post("/v1/chat/completions", c);

  const int n_vocab = tok_->vocab_size();
  refused("/v1/completions", resume_of(body, {1, n_vocab}, 0), "id past the vocabulary");
  refused("/v1/completions", resume_of(body, {1, -1}, 0), "negative id");
  refused("/v1/completions", resume_of(body, std::vector<int32_t>(kMaxResumeTokens + 1, 1), 0),
          "too many ids");
  r = good;
  r["swarm_resume"]["text_bytes"] = -1;
  refused("/v1/completions", r, "negative text_bytes");
  r["swarm_resume"]["text_bytes"] = "3";
  refused("/v1/completions", r, "text_bytes a string");
  r = good;
  r["swarm_resume"].erase("text_bytes");
  refused("/v1/completions", r, "no text_bytes");
  r = good;
  r["swarm_resume"]["tokens"] = "1 2 3";
  refused("/v1/completions", r, "tokens a string");
  r["swarm_resume"]["tokens"] = {1, "2"};
  refused("/v1/completions", r, "an id a string");
  r["swarm_resume"]["tokens"] = {1, 2.5};
  refused("/v1/completions", r, "an id a fraction");
  r = good;
  r["swarm_resume"] = json::array({some});
  refused("/v1/completions", r, "not an object");
  r = good;
  r["swarm_resume"]["text_bytes"] = text_after(prompt_ids("Once upon a time"), some).size() + 1;
  refused("/v1/completions", r, "text_bytes past the tokens' text");
  refused("/v1/completions", resume_of(body, {1, tok_->eos()}, 0), "end-of-generation token");
  refused("/v1/completions", resume_of(body, std::vector<int32_t>(kMaxTokens, ids[0]), 0),
          "max_tokens used up");
  r = resume_of(body, some, 0);
  r["max_tokens"] = 4;
  refused("/v1/completions", r, "max_tokens used up exactly");

  // The context holds the prompt, the resumed tokens and one more.
  r = resume_of(body, std::vector<int32_t>(kServerContext, ids[0]), 0);
  r.erase("max_tokens");
  const json e = post("/v1/completions", r, 400);
  EXPECT_EQ(e["error"]["code"], "context_length_exceeded") << e.dump();

  // llama-server's own endpoint takes neither.
  refused("/completion", good, "POST /completion");
  json native = body;
  const json ne = post("/completion", native, 400);
  EXPECT_EQ(ne["error"]["param"], "swarm_token_ids") << ne.dump();
  r = body;
  r["swarm_token_ids"] = "yes";
  const json te = post("/v1/completions", r, 400);
  EXPECT_EQ(te["error"]["param"], "swarm_token_ids") << te.dump();
}

}  // namespace
}  // namespace swarm
