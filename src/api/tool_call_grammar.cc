#include "api/tool_call_grammar.h"

#include "engine/grammar.h"
#include "engine/json_schema_grammar.h"

namespace swarm {
namespace {

// `syntax` as a grammar: the schema's grammar with its start rule renamed
// `tool-call` (the converter names its own rules s0, s1, ... and the JSON
// primitives, never with a hyphen), and a new root around it.
Result<std::string> grammar_of(const ToolCallSyntax& syntax, ToolFormat format, bool parallel) {
  const nlohmann::json schema = nlohmann::json::parse(syntax.schema, nullptr, false);
  if (schema.is_discarded()) return Status::Internal("a tool call schema is not JSON");
  auto body = grammar_from_json_schema(schema);
  if (!body.ok()) return body.status();
  constexpr std::string_view kRoot = "root ::= ";
  if (!body->starts_with(kRoot)) return Status::Internal("a schema grammar without its root first");
  std::string call = "tool-call ::= " + body->substr(kRoot.size());
  switch (format) {
    case ToolFormat::kHermes:
      // Each call in its tags; with parallel calls the tagged call repeats, "\n" between.
      return std::string("root ::= tool-call-tagged") +
             (parallel ? " (\"\\n\" tool-call-tagged)*" : "") +
             "\ntool-call-tagged ::= " + gbnf_literal(syntax.prefix) + " tool-call " +
             gbnf_literal(syntax.suffix) + "\n" + call;
    case ToolFormat::kMistral:  // the marker is a control token: the array alone
    case ToolFormat::kLlama3:
    case ToolFormat::kGeneric:
      break;
  }
  std::string root = "root ::= ";
  if (format != ToolFormat::kMistral && !syntax.prefix.empty())
    root += gbnf_literal(syntax.prefix) + " ";
  root += "tool-call";
  if (!syntax.suffix.empty()) root += " " + gbnf_literal(syntax.suffix);
  return root + "\n" + call;
}

}  // namespace

Result<std::string> forced_call_grammar(const ToolRequest& request, ToolFormat format) {
  auto syntax = required_call_syntax(request, format);
  if (!syntax) return std::string();
  auto grammar = grammar_of(*syntax, format, request.parallel);
  if (!grammar.ok()) {
    // Parameters the converter cannot enforce: any object as arguments.
    std::vector<ToolDefinition> loose = request.allowed();
    for (ToolDefinition& t : loose) t.parameters = R"({"type": "object"})";
    grammar =
        grammar_of(tool_call_syntax(format, loose, request.parallel), format, request.parallel);
  }
  if (!grammar.ok()) return grammar;
  // Within the caps with the rules around the schema's too.
  if (auto parsed = parse_gbnf(*grammar); !parsed.ok()) return parsed.status();
  return grammar;
}

}  // namespace swarm
