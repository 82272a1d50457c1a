#include "cli/sse_client.h"

#include <httplib.h>

namespace swarm::cli {

Status post_streaming(const std::string& url, const std::string& path, const nlohmann::json& body,
                      const std::function<bool(const nlohmann::json&)>& on_event,
                      std::string* error_kind) {
  using nlohmann::json;
  auto kind = [&](const std::string& k) {
    if (error_kind != nullptr) *error_kind = k;
  };
  httplib::Client client(url);
  client.set_read_timeout(600, 0);
  std::string buffer, error, error_body;
  int status = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    if (status != 200) {  // an error body, not events; kept (bounded) for its message
      if (error_body.size() < (1u << 20)) error_body.append(data, len);
      return true;
    }
    buffer.append(data, len);
    for (size_t end; (end = buffer.find("\n\n")) != std::string::npos; buffer.erase(0, end + 2)) {
      const std::string event = buffer.substr(0, end);
      if (event.rfind("data: ", 0) != 0) continue;
      const std::string payload = event.substr(6);
      if (payload == "[DONE]") continue;
      const json j = json::parse(payload, nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("error")) {
        error = j["error"].is_object() ? j["error"].value("message", payload) : payload;
        return false;
      }
      if (!on_event(j)) return false;
    }
    return true;
  };
  auto res = client.send(req);
  if (!error.empty()) {
    kind("stream_error");
    return Status::Internal("the server reported: " + error);
  }
  if (!res) {
    kind(httplib::to_string(res.error()));
    return Status::Unavailable(url + ": " + httplib::to_string(res.error()));
  }
  if (res->status != 200) {
    // httplib hands an error body to the content receiver too.
    const std::string& raw = error_body.empty() ? res->body : error_body;
    const json j = json::parse(raw, nullptr, false);
    std::string message = raw;
    if (j.is_object() && j.contains("error") && j["error"].is_object() &&
        j["error"].contains("message") && j["error"]["message"].is_string())
      message = j["error"]["message"].get<std::string>();
    kind("http_" + std::to_string(res->status));
    const std::string text = url + ": HTTP " + std::to_string(res->status) + ": " + message;
    switch (res->status) {
      case 400: case 404: case 411: case 413: case 431: return Status::InvalidArgument(text);
      case 429: case 503: return Status::Unavailable(text);
      default: return Status::Internal(text);
    }
  }
  return Status::Ok();
}

}  // namespace swarm::cli
