#include "api/sse_meter.h"

#include <nlohmann/json.hpp>

namespace swarm {

using json = nlohmann::json;

std::string SseMeter::take(const std::string& piece, Clock::time_point now) {
  pending_ += piece;
  size_t forward_end = 0, line_start = scanned_;
  for (size_t nl; (nl = pending_.find('\n', line_start)) != std::string::npos;
       line_start = nl + 1) {
    std::string_view line(pending_.data() + line_start, nl - line_start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty())
      forward_end = nl + 1;
    else if (line.substr(0, 5) == "data:")
      data_line(line.substr(5), now);
  }
  std::string out = pending_.substr(0, forward_end);
  pending_.erase(0, forward_end);
  scanned_ = line_start - forward_end;
  return out;
}

void SseMeter::data_line(std::string_view data, Clock::time_point now) {
  while (!data.empty() && data.front() == ' ') data.remove_prefix(1);
  if (data.empty() || data == "[DONE]") return;
  const json j = json::parse(data, nullptr, false);
  if (!j.is_object()) return;
  if (j.contains("error")) saw_error_ = true;
  bool content = false;
  if (auto c = j.find("choices"); c != j.end() && c->is_array()) {
    for (const json& choice : *c) {
      if (!choice.is_object()) continue;
      auto non_empty = [](const json& o, const char* key) {
        auto it = o.find(key);
        return it != o.end() && it->is_string() && !it->get_ref<const std::string&>().empty();
      };
      if (non_empty(choice, "text")) content = true;
      if (auto d = choice.find("delta"); d != choice.end() && d->is_object())
        if (non_empty(*d, "content") || non_empty(*d, "reasoning_content")) content = true;
    }
  }
  if (content) {
    ++chunks_with_content_;
    if (!first_token_) first_token_ = now;
  }
  if (auto u = j.find("usage"); u != j.end() && u->is_object())
    if (auto t = u->find("completion_tokens"); t != u->end() && t->is_number_integer())
      usage_tokens_ = t->get<int64_t>();
}

}  // namespace swarm
