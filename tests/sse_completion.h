// Test helper: one streamed greedy /v1/completions request to a server on
// 127.0.0.1, its SSE chunks joined. A failed stream returns a marker instead of
// text ("<HTTP 503>", "<no [DONE]>: partial text"), so a comparison with the
// expected text fails with the reason in view.
#pragma once

#include <httplib.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace swarm::testing {

inline std::string stream_completion(
    int port, const std::string& model, const std::string& prompt, int n,
    const std::function<void()>& on_chunk = [] {}) {
  using json = nlohmann::json;
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  const json body = {{"model", model},   {"prompt", prompt}, {"max_tokens", n},
                     {"temperature", 0}, {"stream", true},   {"ignore_eos", true}};
  std::string buffer, text;
  bool done = false;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
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
