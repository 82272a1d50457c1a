// Tool calling in chat prompts: offering functions to a model, showing it the
// calls it made and their results, and reading the calls back out of its output.
//
// Like chat_template.h we run no Jinja: each tool-calling convention is a format
// rendered and parsed in C++, following the models' own templates (and what
// llama.cpp's common/chat.cpp renders and parses for them):
//  - kHermes (Qwen 2.5, Hermes 2 Pro; ChatML): tools as JSON lines inside
//    <tools></tools> in the system turn, calls as <tool_call>{"name", "arguments"}
//    </tool_call>, results in a user turn as <tool_response>...</tool_response>.
//  - kLlama3 (Llama 3.1/3.2/3.3): tools as indented JSON in the first user turn,
//    a call is the bare JSON {"name", "parameters"}, results in an `ipython` turn.
//  - kMistral (Mistral v3, v3-tekken, v7, v7-tekken templates): [AVAILABLE_TOOLS]
//    before the last user turn, [TOOL_CALLS] [{"name", "arguments", "id"}],
//    [TOOL_RESULTS] {"content", "call_id"} [/TOOL_RESULTS].
//  - kGeneric (every other family): a system text lists the tools and asks for a
//    JSON answer, {"tool_calls": [...]} or {"response": "..."}; calls and results
//    in the history are written as such JSON inside ordinary turns.
// Default system prompts and dates the templates inject are not added
// (chat_template.h's contract).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/chat_template.h"
#include "engine/status.h"

namespace swarm {

enum class ToolFormat { kGeneric, kHermes, kLlama3, kMistral };

const char* tool_format_name(ToolFormat format);

// The format for a chat family: ChatML is kHermes when its template speaks of
// <tool_call> (Qwen 2.5, Hermes 2 Pro), else kGeneric, as a plain ChatML model
// was never taught the markers; Llama 3 is kLlama3; Mistral v3/v7 (either
// spacing) are kMistral; everything else kGeneric.
ToolFormat choose_tool_format(ChatFamily family, std::string_view tmpl);

// A function offered to the model (OpenAI's tools[i].function).
struct ToolDefinition {
  std::string name;
  std::string description;  // "" when none
  std::string parameters;   // JSON text of the parameters' JSON schema; "" when none
};

// Renders `messages` with `tools` offered (may be empty: then only the history's
// calls and results need the format). Assistant turns may carry tool_calls and
// "tool" messages answer them. Arguments and parameters that are not valid JSON
// text are InvalidArgument, as is a role other than system/user/assistant/tool.
Result<std::string> render_chat_with_tools(ChatFamily family, ToolFormat format,
                                           const std::vector<ChatMessage>& messages,
                                           const std::vector<ToolDefinition>& tools,
                                           bool add_generation_prompt, const std::string& bos_token,
                                           const std::string& eos_token);

// What a model's output means: text for the user and calls (ids as the model gave
// them, usually ""), arguments as compact JSON text.
struct ToolOutput {
  std::string content;
  std::vector<ToolCall> calls;
  // The text finish() read, whole: what stands as text if the caller rejects the
  // calls (a call to a function that was not offered).
  std::string raw;
};

// Reads a model's output as it streams: text that cannot be part of a call goes
// out at once; from where a call may begin (a marker, or the JSON a format's calls
// start with) it is held until finish() decides. An output that turns out not to
// be well-formed calls is given back as text, whole; nothing is lost or reordered.
class ToolCallStreamParser {
 public:
  explicit ToolCallStreamParser(ToolFormat format) : format_(format) {}
  // The text safe to show now (no calls: they come from finish()).
  std::string push(std::string_view text);
  // The rest of the text, and the calls, at the end of the output.
  ToolOutput finish();

 private:
  ToolFormat format_;
  std::string buf_;       // everything pushed
  size_t shown_ = 0;      // buf_[0, shown_) went out as text
  bool in_call_ = false;  // buf_[shown_, ...) is held as a possible call
  bool plain_ = false;    // decided: no call can start any more (kLlama3, kGeneric)
};

// The whole output at once (the same reading as the stream parser's).
ToolOutput parse_tool_output(ToolFormat format, std::string_view text);

// What a call must look like in `format`'s output, for constrained sampling:
// `prefix`, then JSON matching `schema` (a JSON schema, as JSON text), then `suffix`.
// `tools` are the functions allowed (all, or the one tool_choice names); with
// `parallel` the schema allows several calls where the format can carry them
// (kMistral, kGeneric: an array), and for kHermes the whole prefix-JSON-suffix may
// repeat, "\n" between. kMistral's prefix [TOOL_CALLS] is a control token (the
// decoder drops it from the text); kLlama3 carries one call.
struct ToolCallSyntax {
  std::string prefix;
  std::string schema;
  std::string suffix;
};
ToolCallSyntax tool_call_syntax(ToolFormat format, const std::vector<ToolDefinition>& tools,
                                bool parallel);

}  // namespace swarm
