#include "engine/chat_tools.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

namespace swarm {
namespace {

// Ordered: tools and arguments keep the order of their keys.
using Json = nlohmann::ordered_json;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

size_t skip_space(std::string_view s, size_t pos) {
  while (pos < s.size() && is_space(s[pos])) ++pos;
  return pos;
}

// JSON as the templates' `tojson` writes it (Python's json.dumps, as transformers
// calls it): ", " and ": " between items, non-ASCII kept, `indent` spaces per
// level when >= 0.
void py_json(const Json& j, int indent, int level, std::string* out) {
  const bool nested = j.is_object() || j.is_array();
  if (!nested || j.empty()) {
    *out += j.dump(-1, ' ', false, Json::error_handler_t::replace);
    return;
  }
  const char open = j.is_object() ? '{' : '[', close = j.is_object() ? '}' : ']';
  const std::string sep = indent >= 0 ? ",\n" + std::string((level + 1) * indent, ' ') : ", ";
  *out += open;
  if (indent >= 0) *out += "\n" + std::string((level + 1) * indent, ' ');
  bool first = true;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!first) *out += sep;
    first = false;
    if (j.is_object()) {
      *out += Json(it.key()).dump(-1, ' ', false, Json::error_handler_t::replace) + ": ";
    }
    py_json(*it, indent, level + 1, out);
  }
  if (indent >= 0) *out += "\n" + std::string(level * indent, ' ');
  *out += close;
}

std::string py_json(const Json& j, int indent = -1) {
  std::string out;
  py_json(j, indent, 0, &out);
  return out;
}

Result<Json> parse_json(std::string_view text, const std::string& what) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument(what + " is not valid JSON");
  return j;
}

// Where the JSON object or array opening at s[start] ends (one past its closing
// bracket), or npos while it is incomplete. Only brackets and strings are tracked;
// the text between is checked by the JSON parser afterwards.
size_t json_extent(std::string_view s, size_t start) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = start; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string_view::npos;
}

// The function's OpenAI tool object, as the templates receive it.
Result<Json> tool_json(const ToolDefinition& t) {
  Json fn = {{"name", t.name}};
  if (!t.description.empty()) fn["description"] = t.description;
  if (!t.parameters.empty()) {
    auto p = parse_json(t.parameters, "the parameters of tool '" + t.name + "'");
    if (!p.ok()) return p.status();
    fn["parameters"] = *p;
  }
  return Json{{"type", "function"}, {"function", fn}};
}

Result<std::vector<Json>> tools_json(const std::vector<ToolDefinition>& tools) {
  std::vector<Json> out;
  for (const ToolDefinition& t : tools) {
    auto j = tool_json(t);
    if (!j.ok()) return j.status();
    out.push_back(*j);
  }
  return out;
}

// A call's arguments as a JSON value (templates get an object, not OpenAI's string).
Result<Json> call_arguments(const ToolCall& c) {
  if (trim(c.arguments).empty()) return Json::object();
  return parse_json(c.arguments, "the arguments of the call to '" + c.name + "'");
}

std::string header(const std::string& role) {
  return "<|start_header_id|>" + role + "<|end_header_id|>\n\n";
}

Result<std::string> render_hermes(const std::vector<ChatMessage>& messages,
                                  const std::vector<Json>& tools, bool add_generation_prompt) {
  std::string out;
  size_t i = 0;
  if (!tools.empty()) {
    out += "<|im_start|>system\n";
    if (!messages.empty() && messages[0].role == "system") out += messages[i++].content + "\n\n";
    out +=
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
    for (const Json& t : tools) out += "\n" + py_json(t);
    out +=
        "\n</tools>\n\nFor each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
        "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n";
  }
  for (; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "tool") {
      if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + m.content + "\n</tool_response>";
      if (i + 1 == messages.size() || messages[i + 1].role != "tool") out += "<|im_end|>\n";
    } else if (m.role == "assistant" && !m.tool_calls.empty()) {
      out += "<|im_start|>assistant";
      if (!m.content.empty()) out += "\n" + m.content;
      for (const ToolCall& c : m.tool_calls) {
        auto args = call_arguments(c);
        if (!args.ok()) return args.status();
        out += "\n<tool_call>\n{\"name\": " + py_json(Json(c.name)) +
               ", \"arguments\": " + py_json(*args) + "}\n</tool_call>";
      }
      out += "<|im_end|>\n";
    } else {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    }
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

Result<std::string> render_llama3(const std::vector<ChatMessage>& messages,
                                  const std::vector<Json>& tools, bool add_generation_prompt) {
  std::string out;
  bool tools_pending = !tools.empty();
  auto tools_text = [&tools] {
    std::string s =
        "Given the following functions, please respond with a JSON for a function call with its "
        "proper arguments that best answers the given prompt.\n\n"
        "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument "
        "name and its value}.Do not use variables.\n\n";
    for (const Json& t : tools) s += py_json(t, 4) + "\n\n";
    return s;
  };
  for (const ChatMessage& m : messages) {
    if (m.role == "user" && tools_pending) {
      // Llama 3.1's template puts the tools in the first user turn.
      out += header("user") + tools_text() + trim(m.content) + "<|eot_id|>";
      tools_pending = false;
    } else if (m.role == "tool") {
      // The template writes a string result through tojson, quoted.
      out += header("ipython") + py_json(Json(m.content)) + "<|eot_id|>";
    } else if (m.role == "assistant" && !m.tool_calls.empty()) {
      out += header("assistant");
      for (size_t k = 0; k < m.tool_calls.size(); ++k) {
        const ToolCall& c = m.tool_calls[k];
        auto args = call_arguments(c);
        if (!args.ok()) return args.status();
        // The template has room for one call; more go one per line.
        out += (k ? "\n" : "") + std::string("{\"name\": ") + py_json(Json(c.name)) +
               ", \"parameters\": " + py_json(*args) + "}";
      }
      out += "<|eot_id|>";
    } else {
      out += header(m.role) + trim(m.content) + "<|eot_id|>";
    }
  }
  if (tools_pending) out += header("user") + trim(tools_text()) + "<|eot_id|>";
  if (add_generation_prompt) out += header("assistant");
  return out;
}

Result<std::string> render_mistral(ChatFamily family, const std::vector<ChatMessage>& messages,
                                   const std::vector<Json>& tools, const std::string& eos) {
  const bool v7 = family == ChatFamily::kMistralV7 || family == ChatFamily::kMistralV7Tekken;
  const std::string sp =
      family == ChatFamily::kMistralV3 || family == ChatFamily::kMistralV7 ? " " : "";
  // v3 has no system role: its text goes into the last user turn.
  std::string system;
  size_t last_user = messages.size();
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role == "user") last_user = i;
    if (!v7 && messages[i].role == "system")
      system += (system.empty() ? "" : "\n\n") + messages[i].content;
  }
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "system") {
      if (v7) out += "[SYSTEM_PROMPT]" + sp + m.content + "[/SYSTEM_PROMPT]";
    } else if (m.role == "user") {
      if (!tools.empty() && i == last_user) {
        out += "[AVAILABLE_TOOLS]" + sp + "[";
        for (size_t k = 0; k < tools.size(); ++k) out += (k ? ", " : "") + py_json(tools[k]);
        out += "][/AVAILABLE_TOOLS]";
      }
      const std::string sys = !v7 && i == last_user && !system.empty() ? system + "\n\n" : "";
      out += "[INST]" + sp + sys + m.content + "[/INST]";
    } else if (m.role == "assistant" && !m.tool_calls.empty()) {
      out += "[TOOL_CALLS]" + sp + "[";
      for (size_t k = 0; k < m.tool_calls.size(); ++k) {
        const ToolCall& c = m.tool_calls[k];
        auto args = call_arguments(c);
        if (!args.ok()) return args.status();
        out += (k ? ", " : "") + std::string("{\"name\": ") + py_json(Json(c.name)) +
               ", \"arguments\": " + py_json(*args) + ", \"id\": " + py_json(Json(c.id)) + "}";
      }
      out += "]" + eos;
    } else if (m.role == "assistant") {
      if (family == ChatFamily::kMistralV3)
        out += " " + trim(m.content) + eos;
      else
        out += sp + m.content + eos;
    } else {  // tool; the template writes the content as it is, unquoted
      out += "[TOOL_RESULTS]" + sp + "{\"content\": " + m.content +
             ", \"call_id\": " + py_json(Json(m.tool_call_id)) + "}[/TOOL_RESULTS]";
    }
  }
  if (last_user == messages.size() && !system.empty()) out += "[INST]" + sp + system + "[/INST]";
  return out;
}

constexpr const char* kGenericAsk =
    "Respond in JSON format, either with \"tool_calls\" (a request to call tools) or with "
    "\"response\" (a reply to the user's request), for example:\n"
    "{\"tool_calls\": [{\"name\": \"tool_name\", \"arguments\": {\"arg1\": \"value1\"}}]}\n"
    "or\n"
    "{\"response\": \"your reply\"}";

// Calls and results become JSON inside ordinary turns; then the family renders them.
Result<std::string> render_generic(ChatFamily family, const std::vector<ChatMessage>& messages,
                                   const std::vector<Json>& tools, bool add_generation_prompt,
                                   const std::string& bos, const std::string& eos) {
  std::vector<ChatMessage> plain;
  if (!tools.empty()) {
    const std::string text =
        "You can call any of the following tools to satisfy the user's requests:\n" +
        py_json(Json(tools), 2) + "\n\n" + kGenericAsk;
    if (!messages.empty() && messages[0].role == "system")
      plain.push_back({"system", messages[0].content + "\n\n" + text});
    else
      plain.push_back({"system", text});
  }
  const size_t start = !tools.empty() && !messages.empty() && messages[0].role == "system";
  for (size_t i = start; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "assistant" && !m.tool_calls.empty()) {
      Json calls = Json::array();
      for (const ToolCall& c : m.tool_calls) {
        auto args = call_arguments(c);
        if (!args.ok()) return args.status();
        Json call = {{"name", c.name}, {"arguments", *args}};
        if (!c.id.empty()) call["id"] = c.id;
        calls.push_back(call);
      }
      Json answer = {{"tool_calls", calls}};
      if (!m.content.empty()) answer["content"] = m.content;
      plain.push_back({"assistant", py_json(answer)});
    } else if (m.role == "tool") {
      Json r = Json::object();
      if (!m.name.empty()) r["tool"] = m.name;
      r["tool_call_id"] = m.tool_call_id;
      r["content"] = m.content;
      const std::string text = py_json(Json{{"tool_response", r}});
      // Results of one round share a user turn (families that need turns to alternate).
      if (i > 0 && messages[i - 1].role == "tool")
        plain.back().content += "\n" + text;
      else
        plain.push_back({"user", text});
    } else {
      plain.push_back({m.role, m.content});
    }
  }
  return render_chat(family, plain, add_generation_prompt, bos, eos);
}

// One call read from the model's JSON: "name", and "arguments" (or Llama's
// "parameters") as an object or a string holding one; "id" when it gave one.
std::optional<ToolCall> call_from_json(const Json& j) {
  if (!j.is_object()) return std::nullopt;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get<std::string>().empty())
    return std::nullopt;
  ToolCall c;
  c.name = name->get<std::string>();
  auto args = j.find("arguments");
  if (args == j.end()) args = j.find("parameters");
  if (args == j.end() || args->is_null()) {
    c.arguments = "{}";
  } else if (args->is_object()) {
    c.arguments = args->dump(-1, ' ', false, Json::error_handler_t::replace);
  } else if (args->is_string()) {
    Json inner = Json::parse(args->get<std::string>(), nullptr, false);
    if (inner.is_discarded() || !inner.is_object()) return std::nullopt;
    c.arguments = inner.dump(-1, ' ', false, Json::error_handler_t::replace);
  } else {
    return std::nullopt;
  }
  if (auto id = j.find("id"); id != j.end() && id->is_string()) c.id = id->get<std::string>();
  return c;
}

// The JSON value opening at s[pos] and where it ends; nullopt when incomplete or invalid.
std::optional<std::pair<Json, size_t>> json_at(std::string_view s, size_t pos) {
  if (pos >= s.size() || (s[pos] != '{' && s[pos] != '[')) return std::nullopt;
  const size_t end = json_extent(s, pos);
  if (end == std::string_view::npos) return std::nullopt;
  Json j = Json::parse(s.substr(pos, end - pos), nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return std::make_pair(std::move(j), end);
}

constexpr std::string_view kHermesOpen = "<tool_call>", kHermesClose = "</tool_call>";
constexpr std::string_view kMistralMarker = "[TOOL_CALLS]";
constexpr std::string_view kPythonTag = "<|python_tag|>";

// Reads the calls in `region` (where a call may begin, to the end of the output).
// nullopt: not well-formed calls.
std::optional<ToolOutput> parse_region(ToolFormat format, std::string_view s) {
  ToolOutput out;
  size_t pos = skip_space(s, 0);
  switch (format) {
    case ToolFormat::kHermes:
      while (s.substr(pos).starts_with(kHermesOpen)) {
        pos = skip_space(s, pos + kHermesOpen.size());
        auto j = json_at(s, pos);
        if (!j) return std::nullopt;
        auto call = call_from_json(j->first);
        if (!call) return std::nullopt;
        out.calls.push_back(*call);
        pos = skip_space(s, j->second);
        if (s.substr(pos).starts_with(kHermesClose))
          pos = skip_space(s, pos + kHermesClose.size());
        else if (pos != s.size())  // only the end of the output may stand for </tool_call>
          return std::nullopt;
      }
      break;
    case ToolFormat::kLlama3:
      if (s.substr(pos).starts_with(kPythonTag)) pos += kPythonTag.size();
      for (pos = skip_space(s, pos); pos < s.size() && s[pos] == '{';) {
        auto j = json_at(s, pos);
        if (!j) return std::nullopt;
        auto call = call_from_json(j->first);
        if (!call) return std::nullopt;
        out.calls.push_back(*call);
        pos = skip_space(s, j->second);
        while (pos < s.size() && (s[pos] == ';' || is_space(s[pos]))) ++pos;
      }
      break;
    case ToolFormat::kMistral: {
      // The marker is a control token: decoded output usually lacks it.
      if (s.substr(pos).starts_with(kMistralMarker))
        pos = skip_space(s, pos + kMistralMarker.size());
      auto j = json_at(s, pos);
      if (!j || !j->first.is_array() || j->first.empty()) return std::nullopt;
      for (const Json& item : j->first) {
        auto call = call_from_json(item);
        if (!call) return std::nullopt;
        out.calls.push_back(*call);
      }
      pos = skip_space(s, j->second);
      break;
    }
    case ToolFormat::kGeneric: {
      auto j = json_at(s, pos);
      if (!j || !j->first.is_object() || skip_space(s, j->second) != s.size()) return std::nullopt;
      const Json& o = j->first;
      if (auto calls = o.find("tool_calls"); calls != o.end() && calls->is_array()) {
        for (const Json& item : *calls) {
          auto call = call_from_json(item);
          if (!call) return std::nullopt;
          out.calls.push_back(*call);
        }
      } else if (auto one = o.find("tool_call"); one != o.end()) {
        auto call = call_from_json(*one);
        if (!call) return std::nullopt;
        out.calls.push_back(*call);
      }
      const char* text_key = out.calls.empty() ? "response" : "content";
      if (auto r = o.find(text_key); r != o.end() && !r->is_null()) {
        out.content = r->is_string() ? r->get<std::string>() : r->dump();
      } else if (out.calls.empty()) {
        return std::nullopt;
      }
      return out;
    }
  }
  if (out.calls.empty()) return std::nullopt;
  out.content = std::string(s.substr(pos));  // text after the calls, if any
  return out;
}

// How many trailing characters of `s` (after `from`) could begin `marker`.
size_t partial_marker(std::string_view s, size_t from, std::string_view marker) {
  const size_t most = std::min(marker.size() - 1, s.size() - from);
  for (size_t k = most; k > 0; --k)
    if (s.substr(s.size() - k) == marker.substr(0, k)) return k;
  return 0;
}

}  // namespace

const char* tool_format_name(ToolFormat format) {
  switch (format) {
    case ToolFormat::kGeneric:
      return "generic";
    case ToolFormat::kHermes:
      return "hermes";
    case ToolFormat::kLlama3:
      return "llama3";
    case ToolFormat::kMistral:
      return "mistral";
  }
  return "generic";
}

ToolFormat choose_tool_format(ChatFamily family, std::string_view tmpl) {
  switch (family) {
    case ChatFamily::kChatML:
      return tmpl.find("<tool_call>") != std::string_view::npos ? ToolFormat::kHermes
                                                                : ToolFormat::kGeneric;
    case ChatFamily::kLlama3:
      return ToolFormat::kLlama3;
    case ChatFamily::kMistralV3:
    case ChatFamily::kMistralV3Tekken:
    case ChatFamily::kMistralV7:
    case ChatFamily::kMistralV7Tekken:
      return ToolFormat::kMistral;
    default:
      return ToolFormat::kGeneric;
  }
}

Result<std::string> render_chat_with_tools(ChatFamily family, ToolFormat format,
                                           const std::vector<ChatMessage>& messages,
                                           const std::vector<ToolDefinition>& tools,
                                           bool add_generation_prompt, const std::string& bos_token,
                                           const std::string& eos_token) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      return Status::InvalidArgument("chat message " + std::to_string(i) + " has role '" + role +
                                     "' (expected system, user, assistant or tool)");
  }
  if (family == ChatFamily::kUnknown)
    return Status::InvalidArgument("cannot render a chat in an unknown template family");
  auto defs = tools_json(tools);
  if (!defs.ok()) return defs.status();
  // A format belongs to its families; another family gets the generic rendering.
  const ToolFormat natural = choose_tool_format(family, "<tool_call>");
  if (format != ToolFormat::kGeneric && format != natural) format = ToolFormat::kGeneric;
  switch (format) {
    case ToolFormat::kHermes:
      return render_hermes(messages, *defs, add_generation_prompt);
    case ToolFormat::kLlama3:
      return render_llama3(messages, *defs, add_generation_prompt);
    case ToolFormat::kMistral:
      return render_mistral(family, messages, *defs, eos_token);
    case ToolFormat::kGeneric:
      break;
  }
  return render_generic(family, messages, *defs, add_generation_prompt, bos_token, eos_token);
}

std::string ToolCallStreamParser::push(std::string_view text) {
  buf_ += text;
  if (in_call_) return "";
  std::string_view s = buf_;
  if (!plain_) {
    // Where a format's calls may open the output: its first non-space character.
    const size_t first = skip_space(s, 0);
    if (first == s.size()) return "";  // only spaces so far: wait
    const std::string_view rest = s.substr(first);
    bool call = false, wait = false;
    switch (format_) {
      case ToolFormat::kLlama3:
        call = rest[0] == '{' || rest.starts_with(kPythonTag);
        wait = !call && kPythonTag.starts_with(rest);
        break;
      case ToolFormat::kGeneric:
        call = rest[0] == '{';
        break;
      case ToolFormat::kMistral:
        call = rest[0] == '[';
        break;
      case ToolFormat::kHermes:
        break;
    }
    if (call) {
      in_call_ = true;
      return "";
    }
    if (wait) return "";
    plain_ = true;
  }
  // Hermes and Mistral calls may follow some text: hold what may be their marker.
  size_t end = s.size();
  if (format_ == ToolFormat::kHermes || format_ == ToolFormat::kMistral) {
    const std::string_view marker = format_ == ToolFormat::kHermes ? kHermesOpen : kMistralMarker;
    if (size_t p = s.find(marker, shown_); p != std::string_view::npos) {
      end = p;
      in_call_ = true;
    } else {
      end -= partial_marker(s, shown_, marker);
    }
  }
  std::string out(s.substr(shown_, end - shown_));
  shown_ = end;
  return out;
}

ToolOutput ToolCallStreamParser::finish() {
  ToolOutput out;
  const std::string_view rest = std::string_view(buf_).substr(shown_);
  shown_ = buf_.size();
  if (in_call_) {
    if (auto parsed = parse_region(format_, rest)) {
      parsed->raw = std::string(rest);
      return *parsed;
    }
  }
  out.content = std::string(rest);
  out.raw = out.content;
  return out;
}

ToolOutput parse_tool_output(ToolFormat format, std::string_view text) {
  ToolCallStreamParser parser(format);
  std::string shown = parser.push(text);
  ToolOutput out = parser.finish();
  out.content = shown + out.content;
  return out;
}

ToolCallSyntax tool_call_syntax(ToolFormat format, const std::vector<ToolDefinition>& tools,
                                bool parallel) {
  const char* args_key = format == ToolFormat::kLlama3 ? "parameters" : "arguments";
  Json alternatives = Json::array();
  for (const ToolDefinition& t : tools) {
    Json params = Json::parse(t.parameters, nullptr, false);
    if (params.is_discarded() || !params.is_object()) params = Json{{"type", "object"}};
    alternatives.push_back({{"type", "object"},
                            {"properties", {{"name", {{"const", t.name}}}, {args_key, params}}},
                            {"required", {"name", args_key}}});
  }
  Json call = alternatives.size() == 1 ? alternatives[0] : Json{{"anyOf", alternatives}};
  Json calls = {{"type", "array"}, {"items", call}, {"minItems", 1}};
  if (!parallel) calls["maxItems"] = 1;
  ToolCallSyntax out;
  switch (format) {
    case ToolFormat::kHermes:
      // With parallel calls the whole (prefix, call, suffix) may repeat, "\n" between.
      out = {"<tool_call>\n", call.dump(), "\n</tool_call>"};
      break;
    case ToolFormat::kLlama3:
      out = {"", call.dump(), ""};
      break;
    case ToolFormat::kMistral:
      out = {std::string(kMistralMarker), calls.dump(), ""};
      break;
    case ToolFormat::kGeneric:
      out = {"",
             Json{{"type", "object"},
                  {"properties", {{"tool_calls", calls}}},
                  {"required", {"tool_calls"}}}
                 .dump(),
             ""};
      break;
  }
  return out;
}

}  // namespace swarm
