// OpenAI tool calling on /v1/chat/completions: reading `tools`, `tool_choice`,
// `parallel_tool_calls` and the history's calls and results from a request, and
// turning what the model wrote into `tool_calls` (whole, or as streamed deltas).
// The prompt side (how a model is shown tools) is engine/chat_tools.h.
//
// With tool_choice "required" or a named function, sampling is constrained to
// the call syntax (api/tool_call_grammar.h, from required_call_syntax()); an
// output that still holds no valid call to an allowed function (cut short by
// max_tokens) is a 500 (code "tool_call_not_produced"; an event of that shape
// when streaming), which clients such as the openai package retry by themselves.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "api/api_error.h"
#include "engine/chat_tools.h"

namespace swarm {

// Caps on what a request may offer (each one is named in the 400 that enforces it).
constexpr size_t kMaxTools = 128;                // OpenAI's own limit
constexpr size_t kMaxToolsBytes = 256 * 1024;    // the tools' JSON text, all together
constexpr size_t kMaxToolCallsPerMessage = 128;  // an assistant turn in the history

enum class ToolChoice { kAuto, kNone, kRequired, kNamed };

struct ToolRequest {
  std::vector<ToolDefinition> tools;
  ToolChoice choice = ToolChoice::kAuto;
  std::string named;     // kNamed: the function that must be called
  bool parallel = true;  // parallel_tool_calls: false keeps only the first call

  // Whether the model's output is read for calls.
  bool active() const { return !tools.empty() && choice != ToolChoice::kNone; }
  // Whether the output must be a call.
  bool forced() const { return active() && choice != ToolChoice::kAuto; }
  // The functions the model may call (and is shown): none with "none", only the
  // named one with a named choice, else all.
  std::vector<ToolDefinition> allowed() const;
};

// Reads `tools`, `tool_choice` and `parallel_tool_calls` from a chat request's
// body; `functions`/`function_call` (the deprecated form) are refused.
std::optional<ApiError> read_tool_request(const nlohmann::json& body, ToolRequest* out);

// The request body parsed into nlohmann::json sorts object keys; a schema's
// property order is part of what the model reads (the order it writes the
// arguments in). Re-reads each tool's `parameters` from the body's text in its
// own order; leaves them as they are if the text does not parse.
void keep_parameter_order(const std::string& body_text, ToolRequest* request);

// Reads a message's tool fields into `out` (whose role is already set): an
// assistant's `tool_calls`, a tool message's `tool_call_id` (required) and `name`.
// `at` names the message in errors ("messages[3]").
std::optional<ApiError> read_message_tool_fields(const nlohmann::json& message,
                                                 const std::string& at, ChatMessage* out);

// For constrained sampling: what the output must look like when the request
// forces a call; nullopt when it does not.
std::optional<ToolCallSyntax> required_call_syntax(const ToolRequest& request, ToolFormat format);

// A fresh call id: "call_" and 24 random characters, or for kMistral 9
// alphanumerics, the only ids its template accepts back.
std::string new_tool_call_id(ToolFormat format);

// What a finished output answers: text (nullopt: none, as when only calls came)
// and calls, each with an id.
struct ToolAnswer {
  std::optional<std::string> content;
  std::vector<ToolCall> calls;
};

// Reads a model's output for a request with active() tools, as it streams.
class ToolCallResponder {
 public:
  // `new_id` makes ids for calls the model gave none (new_tool_call_id in production).
  ToolCallResponder(const ToolRequest& request, ToolFormat format,
                    std::function<std::string()> new_id);
  // Text that may be shown now ("" while it may be a call, or always when forced).
  std::string push(const std::string& text);
  // At the end of the output: the rest of the answer, or the error for a forced
  // call that did not come.
  std::variant<ToolAnswer, ApiError> finish();

 private:
  const ToolRequest& request_;
  ToolCallStreamParser parser_;
  std::function<std::string()> new_id_;
  std::string held_;  // forced: text held back, since the answer must be a call
};

// The whole output at once.
std::variant<ToolAnswer, ApiError> read_tool_answer(const ToolRequest& request, ToolFormat format,
                                                    const std::string& text,
                                                    std::function<std::string()> new_id);

// A message's `tool_calls` array.
nlohmann::ordered_json tool_calls_json(const std::vector<ToolCall>& calls);

// The streamed `delta` objects that carry `calls`: per call, one with index, id,
// type and name (arguments ""), then its arguments in pieces of at most
// `piece_bytes` (never splitting a UTF-8 character).
std::vector<nlohmann::ordered_json> tool_call_deltas(const std::vector<ToolCall>& calls,
                                                     size_t piece_bytes = 64);

}  // namespace swarm
