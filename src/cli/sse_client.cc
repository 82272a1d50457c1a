#include "cli/sse_client.h"

#include <httplib.h>

namespace swarm::cli {

Status post_streaming(const std::string& url, const std::string& path, const nlohmann::json& body,
                      const std::function<bool(const nlohmann::json&)>& on_event) {
  using nlohmann::json;
  httplib::Client client(url);
  client.set_read_timeout(600, 0);
  std::string buffer, error;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
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
  if (!error.empty()) return Status::Internal("the server reported: " + error);
  if (!res) return Status::Unavailable(url + ": " + httplib::to_string(res.error()));
  if (res->status != 200) {
    const json j = json::parse(res->body, nullptr, false);
    return Status::InvalidArgument(url + ": HTTP " + std::to_string(res->status) + ": " +
                                   (j.is_object() && j.contains("error") && j["error"].is_object()
                                        ? j["error"].value("message", res->body)
                                        : res->body));
  }
  return Status::Ok();
}

}  // namespace swarm::cli
