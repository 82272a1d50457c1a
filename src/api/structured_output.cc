#include "api/structured_output.h"

#include "engine/grammar.h"
#include "engine/json_schema_grammar.h"

namespace swarm {
namespace {

using nlohmann::json;

ApiError invalid(const std::string& param, const std::string& what) {
  return invalid_request("Invalid '" + param + "': " + what, param, "invalid_value");
}

// The grammar of `schema`, given as `param`.
std::optional<ApiError> from_schema(const json& schema, const std::string& param, std::string* grammar) {
  if (!schema.is_object() && !schema.is_boolean())
    return invalid(param, "a JSON schema must be an object.");
  Result<std::string> g = grammar_from_json_schema(schema);
  if (!g.ok()) return invalid(param, g.status().message() + ".");
  *grammar = std::move(g).value();
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> read_structured_output(const json& body, std::string* grammar) {
  grammar->clear();
  std::string given;  // the field that set *grammar, to refuse a second one
  auto claim = [&](const std::string& param) -> std::optional<ApiError> {
    if (!given.empty())
      return invalid_request("Only one of 'grammar', 'json_schema' and 'response_format' may ask "
                             "for structured output; got '" + given + "' and '" + param + "'.",
                             param, "invalid_value");
    given = param;
    return std::nullopt;
  };

  if (auto it = body.find("grammar"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) return invalid("grammar", "expected a GBNF grammar as a string.");
    const std::string text = it->get<std::string>();
    if (!text.empty()) {
      if (auto e = claim("grammar")) return e;
      Result<Grammar> g = parse_gbnf(text);
      if (!g.ok()) return invalid("grammar", g.status().message() + ".");
      *grammar = text;
    }
  }
  if (auto it = body.find("json_schema"); it != body.end() && !it->is_null()) {
    if (!(it->is_object() && it->empty())) {
      if (auto e = claim("json_schema")) return e;
      if (auto e = from_schema(*it, "json_schema", grammar)) return e;
    }
  }
  if (auto rf = body.find("response_format"); rf != body.end() && !rf->is_null()) {
    if (!rf->is_object())
      return invalid_request("Invalid type for 'response_format': expected an object.",
                             "response_format", "invalid_type");
    auto type = rf->find("type");
    if (type == rf->end() || !type->is_string())
      return invalid("response_format.type", "expected one of 'text', 'json_object', 'json_schema'.");
    const std::string t = type->get<std::string>();
    if (t == "text") return std::nullopt;
    if (t == "json_object") {
      if (auto e = claim("response_format")) return e;
      // llama.cpp's server takes a schema here too.
      if (auto s = rf->find("schema"); s != rf->end() && !s->is_null())
        return from_schema(*s, "response_format.schema", grammar);
      *grammar = json_object_grammar();
      return std::nullopt;
    }
    if (t == "json_schema") {
      if (auto e = claim("response_format")) return e;
      auto js = rf->find("json_schema");
      if (js == rf->end() || !js->is_object())
        return invalid_request("Missing required parameter: 'response_format.json_schema'.",
                               "response_format.json_schema", "missing_required_parameter");
      if (auto n = js->find("name"); n != js->end() && !n->is_string())
        return invalid("response_format.json_schema.name", "expected a string.");
      if (auto st = js->find("strict"); st != js->end() && !st->is_null() && !st->is_boolean())
        return invalid("response_format.json_schema.strict", "expected a boolean.");
      auto s = js->find("schema");
      // OpenAI: no schema means any JSON object.
      if (s == js->end() || s->is_null()) {
        *grammar = json_object_grammar();
        return std::nullopt;
      }
      return from_schema(*s, "response_format.json_schema.schema", grammar);
    }
    return invalid("response_format.type",
                   "expected one of 'text', 'json_object', 'json_schema', got '" + t + "'.");
  }
  return std::nullopt;
}

}  // namespace swarm
