#include "api/skill_stream.h"


namespace swarm {
namespace {

using OJson = nlohmann::ordered_json;

std::string dump(const OJson& j) {
  return j.dump(-1, ' ', false, OJson::error_handler_t::replace);
}

std::string error_event_of(const std::string& message) {
  return "data: " +
         dump(OJson{{"error",
                     {{"message", message},
                      {"type", "server_error"},
                      {"param", nullptr},
                      {"code", "provider_failed"}}}}) +
         "\n\n";
}

// The completion text an event carries (chat delta content or text), "" if none.
std::string text_of(const OJson& choice, bool chat) {
  if (chat) {
    auto d = choice.find("delta");
    if (d == choice.end() || !d->is_object()) return "";
    auto c = d->find("content");
    return c != d->end() && c->is_string() ? c->get<std::string>() : "";
  }
  auto t = choice.find("text");
  return t != choice.end() && t->is_string() ? t->get<std::string>() : "";
}

}  // namespace

void add_swarm_usage(OJson* usage, const std::string& provider, double price_per_1k,
                     int failovers) {
  int64_t tokens = 0;
  if (auto t = usage->find("total_tokens"); t != usage->end() && t->is_number_integer())
    tokens = t->get<int64_t>();
  else
    for (const char* k : {"prompt_tokens", "completion_tokens"})
      if (auto t = usage->find(k); t != usage->end() && t->is_number_integer())
        tokens += t->get<int64_t>();
  (*usage)["swarm"] = {{"provider", provider},
                       {"price_per_1k", price_per_1k},
                       {"cost", price_per_1k * static_cast<double>(tokens) / 1000.0},
                       {"failovers", failovers}};
}

std::string SkillStream::feed(std::string_view piece) {
  std::string out;
  if (failed_) return out;
  pending_.append(piece);
  size_t start = 0;
  while (true) {
    // Events end with a blank line (LF LF, or CR LF CR LF).
    size_t end = pending_.find("\n\n", start);
    size_t crlf = pending_.find("\r\n\r\n", start);
    size_t sep = 2;
    if (crlf != std::string::npos && (end == std::string::npos || crlf < end)) {
      end = crlf;
      sep = 4;
    }
    if (end == std::string::npos) break;
    out += event(std::string_view(pending_).substr(start, end - start));
    start = end + sep;
    if (failed_) break;
  }
  pending_.erase(0, start);
  if (pending_.size() > kMaxEventBytes && !failed_) {
    failed_ = true;
    error_event_ = error_event_of("the provider sent an event over " +
                                  std::to_string(kMaxEventBytes) + " bytes");
  }
  return out;
}

std::string SkillStream::finish() {
  std::string out;
  if (!pending_.empty() && !failed_) out = event(pending_);
  pending_.clear();
  if (!done_ && !failed_) {
    failed_ = true;
    error_event_ = error_event_of("the provider's stream ended before it was complete");
  }
  return out;
}

void SkillStream::resume_on_next_provider(bool keep_tokens) {
  if (!keep_tokens) {
    token_ids_.clear();
    ids_complete_ = true;
    text_bytes_ = 0;
    content_events_ = 0;
  }
  drop_role_ = chat_;
  failed_ = false;
  done_ = false;
  error_event_.clear();
  pending_.clear();
}

std::string SkillStream::event(std::string_view text) {
  const std::string raw = std::string(text) + "\n\n";
  if (!text.starts_with("data:")) return raw;  // comments, `event:` lines: as they are
  std::string_view payload = text.substr(5);
  if (payload.starts_with(" ")) payload.remove_prefix(1);
  if (payload == "[DONE]") {
    done_ = true;
    return raw;
  }
  OJson j = OJson::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return raw;  // not ours to judge
  if (j.contains("error")) {
    failed_ = true;
    error_event_ = raw;
    return "";
  }
  bool changed = false;
  // The ids travel with the text of the same event, so both advance together.
  std::vector<int32_t> ids;
  if (auto it = j.find("swarm_token_ids"); it != j.end()) {
    if (it->is_array())
      for (const OJson& v : *it)
        if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
    j.erase(it);
    changed = true;
  }
  std::string text_now;
  bool role_only = false;
  if (auto c = j.find("choices"); c != j.end() && c->is_array()) {
    for (const OJson& choice : *c) {
      if (!choice.is_object()) continue;
      const std::string text = text_of(choice, chat_);
      text_now += text;
      // The opening chunk: a role, no text, no finish reason.
      const bool finishing = choice.contains("finish_reason") && !choice["finish_reason"].is_null();
      if (chat_ && choice.contains("delta") && choice["delta"].is_object() &&
          choice["delta"].contains("role") && text.empty() && !finishing)
        role_only = true;
    }
  }
  if (drop_role_ && role_only) {
    drop_role_ = false;
    return "";
  }
  if (!text_now.empty()) {
    ++content_events_;
    text_bytes_ += static_cast<int64_t>(text_now.size());
    if (ids.empty()) ids_complete_ = false;
  }
  token_ids_.insert(token_ids_.end(), ids.begin(), ids.end());
  if (id_.empty()) {
    if (auto it = j.find("id"); it != j.end() && it->is_string()) id_ = it->get<std::string>();
    if (auto it = j.find("created"); it != j.end() && it->is_number_integer())
      created_ = it->get<int64_t>();
  } else {
    if (auto it = j.find("id"); it != j.end() && *it != id_) {
      *it = id_;
      changed = true;
    }
    if (auto it = j.find("created"); it != j.end() && created_ >= 0 && *it != created_) {
      *it = created_;
      changed = true;
    }
  }
  if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
    if (auto t = u->find("total_tokens"); t != u->end() && t->is_number_integer())
      usage_tokens_ = t->get<int64_t>();
    if (!provider_.empty()) {
      add_swarm_usage(&*u, provider_, price_per_1k_, failovers_);
      changed = true;
    }
  }
  return changed ? "data: " + dump(j) + "\n\n" : raw;
}

}  // namespace swarm
