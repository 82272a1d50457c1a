#include "api/tool_calls.h"

#include <algorithm>
#include <random>

namespace swarm {
namespace {

using nlohmann::json;
using OJson = nlohmann::ordered_json;


ApiError missing(const std::string& param) {
  return invalid_request("Missing required parameter: '" + param + "'.", param,
                         "missing_required_parameter");
}

// OpenAI's rule for function names: 1 to 64 of a-z, A-Z, 0-9, _ and -.
bool valid_function_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

// A required string member of `obj`, or the error naming it.
std::variant<std::string, ApiError> string_member(const json& obj, const std::string& at,
                                                  const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return missing(at + "." + key);
  if (!it->is_string()) return wrong_type(at + "." + key, "a string", *it);
  return it->get<std::string>();
}

std::optional<ApiError> read_tool(const json& t, const std::string& at, ToolDefinition* out) {
  if (!t.is_object()) return wrong_type(at, "an object", t);
  auto type = t.find("type");
  if (type == t.end() || type->is_null()) return missing(at + ".type");
  if (!type->is_string() || *type != "function")
    return invalid_request(
        "Invalid value for '" + at + ".type': only 'function' tools are supported.", at + ".type",
        "invalid_value");
  auto fn = t.find("function");
  if (fn == t.end() || fn->is_null()) return missing(at + ".function");
  if (!fn->is_object()) return wrong_type(at + ".function", "an object", *fn);
  auto name = string_member(*fn, at + ".function", "name");
  if (auto* e = std::get_if<ApiError>(&name)) return *e;
  out->name = std::get<std::string>(name);
  if (!valid_function_name(out->name))
    return invalid_request("Invalid '" + at + ".function.name': '" + out->name +
                               "' must be 1 to 64 letters, digits, underscores or dashes.",
                           at + ".function.name", "invalid_value");
  if (auto d = fn->find("description"); d != fn->end() && !d->is_null()) {
    if (!d->is_string()) return wrong_type(at + ".function.description", "a string", *d);
    out->description = d->get<std::string>();
  }
  if (auto p = fn->find("parameters"); p != fn->end() && !p->is_null()) {
    if (!p->is_object())
      return wrong_type(at + ".function.parameters", "an object (a JSON schema)", *p);
    out->parameters = p->dump();
  }
  return std::nullopt;
}

std::optional<ApiError> read_tool_choice(const json& v, const ToolRequest& r, ToolRequest* out) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "auto") {
      out->choice = ToolChoice::kAuto;
    } else if (s == "none") {
      out->choice = ToolChoice::kNone;
    } else if (s == "required") {
      out->choice = ToolChoice::kRequired;
    } else {
      return invalid_request("Invalid value for 'tool_choice': '" + s +
                                 "'. Supported values are 'none', 'auto', 'required' or an "
                                 "object naming a function.",
                             "tool_choice", "invalid_value");
    }
  } else if (v.is_object()) {
    auto type = v.find("type");
    if (type == v.end() || !type->is_string() || *type != "function")
      return invalid_request("Invalid value for 'tool_choice.type': expected 'function'.",
                             "tool_choice.type", "invalid_value");
    auto fn = v.find("function");
    if (fn == v.end() || fn->is_null()) return missing("tool_choice.function");
    if (!fn->is_object()) return wrong_type("tool_choice.function", "an object", *fn);
    auto name = string_member(*fn, "tool_choice.function", "name");
    if (auto* e = std::get_if<ApiError>(&name)) return *e;
    out->choice = ToolChoice::kNamed;
    out->named = std::get<std::string>(name);
  } else {
    return wrong_type("tool_choice", "a string or an object", v);
  }
  if (out->choice != ToolChoice::kAuto && out->choice != ToolChoice::kNone && r.tools.empty())
    return invalid_request("'tool_choice' asks for a tool call, but 'tools' offers none.",
                           "tool_choice", "invalid_value");
  if (out->choice == ToolChoice::kNamed &&
      std::none_of(r.tools.begin(), r.tools.end(),
                   [&](const ToolDefinition& t) { return t.name == out->named; }))
    return invalid_request(
        "Invalid value for 'tool_choice': no function named '" + out->named + "' is in 'tools'.",
        "tool_choice", "invalid_value");
  return std::nullopt;
}

std::string random_chars(size_t n) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::string s;
  for (size_t i = 0; i < n; ++i) s += kAlphabet[rng() % (sizeof kAlphabet - 1)];
  return s;
}

// Length of the UTF-8 character starting with byte `c` (1 for a stray byte).
size_t utf8_length(unsigned char c) {
  if (c >= 0xF0) return 4;
  if (c >= 0xE0) return 3;
  if (c >= 0xC0) return 2;
  return 1;
}

// OpenAI's content is null beside calls when there is no text to show.
void null_blank_content(ToolAnswer* a) {
  if (a->calls.empty() || !a->content) return;
  if (std::all_of(a->content->begin(), a->content->end(),
                  [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }))
    a->content.reset();
}

}  // namespace

std::vector<ToolDefinition> ToolRequest::allowed() const {
  if (choice == ToolChoice::kNone) return {};
  if (choice != ToolChoice::kNamed) return tools;
  std::vector<ToolDefinition> one;
  for (const ToolDefinition& t : tools)
    if (t.name == named) one.push_back(t);
  return one;
}

std::optional<ApiError> read_tool_request(const json& body, ToolRequest* out) {
  for (const char* legacy : {"functions", "function_call"})
    if (auto it = body.find(legacy); it != body.end() && !it->is_null())
      return invalid_request(std::string("'") + legacy +
                                 "' is deprecated and not supported by this server; use 'tools' "
                                 "and 'tool_choice'.",
                             legacy, "unsupported_parameter");
  if (auto t = body.find("tools"); t != body.end() && !t->is_null()) {
    if (!t->is_array()) return wrong_type("tools", "an array", *t);
    if (t->size() > kMaxTools)
      return invalid_request("Invalid 'tools': at most " + std::to_string(kMaxTools) +
                                 " tools, but got " + std::to_string(t->size()) + ".",
                             "tools", "array_above_max_length");
    if (const size_t bytes = t->dump().size(); bytes > kMaxToolsBytes)
      return invalid_request("Invalid 'tools': their JSON is " + std::to_string(bytes) +
                                 " bytes, over the limit of " + std::to_string(kMaxToolsBytes) +
                                 ".",
                             "tools", "invalid_value");
    for (size_t i = 0; i < t->size(); ++i) {
      ToolDefinition d;
      if (auto e = read_tool((*t)[i], "tools[" + std::to_string(i) + "]", &d)) return e;
      for (const ToolDefinition& seen : out->tools)
        if (seen.name == d.name)
          return invalid_request(
              "Invalid 'tools': the function name '" + d.name + "' appears more than once.",
              "tools", "invalid_value");
      out->tools.push_back(std::move(d));
    }
  }
  if (auto c = body.find("tool_choice"); c != body.end() && !c->is_null())
    if (auto e = read_tool_choice(*c, *out, out)) return e;
  if (auto p = body.find("parallel_tool_calls"); p != body.end() && !p->is_null()) {
    if (!p->is_boolean()) return wrong_type("parallel_tool_calls", "a boolean", *p);
    out->parallel = p->get<bool>();
  }
  return std::nullopt;
}

void keep_parameter_order(const std::string& body_text, ToolRequest* request) {
  if (request->tools.empty()) return;
  const OJson body = OJson::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("tools") || !body["tools"].is_array()) return;
  const OJson& tools = body["tools"];
  if (tools.size() != request->tools.size()) return;
  for (size_t i = 0; i < tools.size(); ++i) {
    if (!tools[i].is_object() || !tools[i].contains("function")) continue;
    const OJson& fn = tools[i]["function"];
    if (fn.is_object() && fn.contains("parameters") && fn["parameters"].is_object() &&
        !request->tools[i].parameters.empty())
      request->tools[i].parameters = fn["parameters"].dump();
  }
}

std::optional<ApiError> read_message_tool_fields(const json& m, const std::string& at,
                                                 ChatMessage* out) {
  if (out->role == "tool") {
    auto id = string_member(m, at, "tool_call_id");
    if (auto* e = std::get_if<ApiError>(&id)) return *e;
    out->tool_call_id = std::get<std::string>(id);
    if (auto n = m.find("name"); n != m.end() && n->is_string()) out->name = n->get<std::string>();
    return std::nullopt;
  }
  auto calls = m.find("tool_calls");
  if (calls == m.end() || calls->is_null()) return std::nullopt;
  if (out->role != "assistant")
    return invalid_request("Invalid parameter: only assistant messages may have 'tool_calls'.",
                           at + ".tool_calls", "invalid_value");
  if (!calls->is_array()) return wrong_type(at + ".tool_calls", "an array", *calls);
  if (calls->size() > kMaxToolCallsPerMessage)
    return invalid_request("Invalid '" + at + ".tool_calls': at most " +
                               std::to_string(kMaxToolCallsPerMessage) + " calls, but got " +
                               std::to_string(calls->size()) + ".",
                           at + ".tool_calls", "array_above_max_length");
  for (size_t k = 0; k < calls->size(); ++k) {
    const std::string cat = at + ".tool_calls[" + std::to_string(k) + "]";
    const json& c = (*calls)[k];
    if (!c.is_object()) return wrong_type(cat, "an object", c);
    ToolCall call;
    auto id = string_member(c, cat, "id");
    if (auto* e = std::get_if<ApiError>(&id)) return *e;
    call.id = std::get<std::string>(id);
    if (auto type = c.find("type"); type != c.end() && !type->is_null() && *type != "function")
      return invalid_request("Invalid value for '" + cat + ".type': expected 'function'.",
                             cat + ".type", "invalid_value");
    auto fn = c.find("function");
    if (fn == c.end() || fn->is_null()) return missing(cat + ".function");
    if (!fn->is_object()) return wrong_type(cat + ".function", "an object", *fn);
    auto name = string_member(*fn, cat + ".function", "name");
    if (auto* e = std::get_if<ApiError>(&name)) return *e;
    call.name = std::get<std::string>(name);
    auto args = string_member(*fn, cat + ".function", "arguments");
    if (auto* e = std::get_if<ApiError>(&args)) return *e;
    call.arguments = std::get<std::string>(args);
    // The template shows the model the arguments as JSON; text that is not JSON
    // has no faithful rendering.
    if (!json::accept(call.arguments.empty() ? "{}" : call.arguments))
      return invalid_request("Invalid '" + cat + ".function.arguments': not valid JSON.",
                             cat + ".function.arguments", "invalid_value");
    out->tool_calls.push_back(std::move(call));
  }
  return std::nullopt;
}

std::optional<ToolCallSyntax> required_call_syntax(const ToolRequest& request, ToolFormat format) {
  if (!request.forced()) return std::nullopt;
  return tool_call_syntax(format, request.allowed(), request.parallel);
}

std::string new_tool_call_id(ToolFormat format) {
  if (format == ToolFormat::kMistral) return random_chars(9);
  return "call_" + random_chars(24);
}

ToolCallResponder::ToolCallResponder(const ToolRequest& request, ToolFormat format,
                                     std::function<std::string()> new_id)
    : request_(request), parser_(format), new_id_(std::move(new_id)) {}

std::string ToolCallResponder::push(const std::string& text) {
  std::string shown = parser_.push(text);
  if (!request_.forced()) return shown;
  held_ += shown;
  return "";
}

std::variant<ToolAnswer, ApiError> ToolCallResponder::finish() {
  ToolOutput out = parser_.finish();
  const std::vector<ToolDefinition> allowed = request_.allowed();
  auto is_allowed = [&](const ToolCall& c) {
    return std::any_of(allowed.begin(), allowed.end(),
                       [&](const ToolDefinition& t) { return t.name == c.name; });
  };
  // A call to a function that was not offered is not a call: the text stands.
  if (!std::all_of(out.calls.begin(), out.calls.end(), is_allowed)) {
    out.content = out.raw;
    out.calls.clear();
  }
  ToolAnswer answer;
  if (request_.forced() && out.calls.empty()) {
    ApiError e;
    e.http_status = 500;
    e.type = "server_error";
    e.param = "tool_choice";
    e.code = "tool_call_not_produced";
    e.message =
        "tool_choice asked for a tool call, but the model answered without a valid call to " +
        std::string(request_.choice == ToolChoice::kNamed ? "'" + request_.named + "'"
                                                          : "one of the tools") +
        ". Retrying may give one.";
    return e;
  }
  if (!request_.parallel && out.calls.size() > 1) out.calls.resize(1);
  for (ToolCall& c : out.calls)
    if (c.id.empty()) c.id = new_id_();
  answer.content = held_ + out.content;
  answer.calls = std::move(out.calls);
  null_blank_content(&answer);
  return answer;
}

std::variant<ToolAnswer, ApiError> read_tool_answer(const ToolRequest& request, ToolFormat format,
                                                    const std::string& text,
                                                    std::function<std::string()> new_id) {
  ToolCallResponder r(request, format, std::move(new_id));
  std::string shown = r.push(text);
  auto out = r.finish();
  if (auto* a = std::get_if<ToolAnswer>(&out); a && !shown.empty()) {
    a->content = shown + a->content.value_or("");
    null_blank_content(a);
  }
  return out;
}

OJson tool_calls_json(const std::vector<ToolCall>& calls) {
  OJson out = OJson::array();
  for (const ToolCall& c : calls)
    out.push_back({{"id", c.id},
                   {"type", "function"},
                   {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  return out;
}

std::vector<OJson> tool_call_deltas(const std::vector<ToolCall>& calls, size_t piece_bytes) {
  std::vector<OJson> out;
  for (size_t i = 0; i < calls.size(); ++i) {
    const ToolCall& c = calls[i];
    out.push_back(
        {{"tool_calls", OJson::array({{{"index", i},
                                       {"id", c.id},
                                       {"type", "function"},
                                       {"function", {{"name", c.name}, {"arguments", ""}}}}})}});
    for (size_t pos = 0; pos < c.arguments.size();) {
      size_t end = pos;
      while (end < c.arguments.size()) {
        const size_t len = utf8_length(static_cast<unsigned char>(c.arguments[end]));
        if (end > pos && end + len - pos > piece_bytes) break;
        end = std::min(end + len, c.arguments.size());
      }
      out.push_back(
          {{"tool_calls",
            OJson::array({{{"index", i},
                           {"function", {{"arguments", c.arguments.substr(pos, end - pos)}}}}})}});
      pos = end;
    }
  }
  return out;
}

}  // namespace swarm
