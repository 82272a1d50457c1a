// Test helpers for swarm tests: the single-process truth a swarm's output is
// compared with, and a streamed completion through a gateway.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/test_process.h"

namespace swarm::testing {

// What `swarm generate` prints for the prompt, greedy, on one thread.
inline std::string single_process_greedy(const std::string& model, const std::string& prompt,
                                         int n) {
  using json = nlohmann::json;
  auto r = run_swarm("generate -m " + model + " -p " + shell_quote(prompt) + " -n " +
                     std::to_string(n) + " --temp 0 -t 1");
  EXPECT_EQ(r.code, 0) << r.out;
  // The terminal gets raw bytes; JSON carries U+FFFD for bytes that are not UTF-8.
  const std::string raw = r.out.substr(0, r.out.find('\n'));
  return json::parse(json(raw).dump(-1, ' ', false, json::error_handler_t::replace))
      .get<std::string>();
}

// One streamed greedy /v1/completions request to a server on 127.0.0.1, its
// SSE chunks joined. A failed stream returns a marker instead of text
// ("<HTTP 503>", "<no [DONE]>: partial text"), so a comparison with the
// expected text fails with the reason in view. With `usage`, the stream asks
// for usage and `*usage` receives the last chunk's. With `api_key`, it is sent
// as `Authorization: Bearer KEY`.
inline std::string stream_completion(
    int port, const std::string& model, const std::string& prompt, int n,
    const std::function<void()>& on_chunk = [] {}, nlohmann::json* usage = nullptr,
    const std::string& api_key = "") {
  using json = nlohmann::json;
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  json body = {{"model", model},   {"prompt", prompt}, {"max_tokens", n},
               {"temperature", 0}, {"stream", true},   {"ignore_eos", true}};
  if (usage) body["stream_options"] = {{"include_usage", true}};
  std::string buffer, text;
  bool done = false;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  if (!api_key.empty()) req.set_header("Authorization", "Bearer " + api_key);
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    buffer.append(data, len);
    for (size_t end; (end = buffer.find("\n\n")) != std::string::npos; buffer.erase(0, end + 2)) {
      if (buffer.rfind("data: ", 0) != 0) continue;
      const std::string payload = buffer.substr(6, end - 6);
      if (payload == "[DONE]") {
        done = true;
        continue;
      }
      const json j = json::parse(payload, nullptr, false);
      if (!j.is_object() || !j.contains("choices")) return false;  // an error event
      if (usage && !j["usage"].is_null()) *usage = j["usage"];
      if (j["choices"].empty()) continue;  // the usage chunk
      text += j["choices"][0]["text"].get<std::string>();
      on_chunk();
    }
    return true;
  };
  auto res = c.send(req);
  if (!res || res->status != 200) return "<HTTP " + std::to_string(res ? res->status : -1) + ">";
  return done ? text : "<no [DONE]>: " + text;
}

}  // namespace swarm::testing
