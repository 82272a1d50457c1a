// JSON Schema -> GBNF: the grammar accepts what the schema does and refuses
// what it does not, and unsupported keywords are errors that say where.
#include "engine/json_schema_grammar.h"

#include <gtest/gtest.h>

#include "engine/grammar.h"
#include "engine/grammar_matcher.h"

namespace swarm {
namespace {

using nlohmann::json;

class SchemaGrammar {
 public:
  explicit SchemaGrammar(const json& schema) {
    auto text = grammar_from_json_schema(schema);
    EXPECT_TRUE(text.ok()) << text.status().ToString();
    if (!text.ok()) return;
    auto g = parse_gbnf(*text);
    EXPECT_TRUE(g.ok()) << g.status().ToString() << "\n" << *text;
    if (g.ok()) g_ = std::move(g).value();
  }
  bool accepts(const std::string& text) const {
    if (g_.rules.empty()) return false;
    GrammarState s = GrammarState::start(g_);
    return s.advance(g_, text) && s.complete();
  }

 private:
  Grammar g_;
};

std::string error_of(const json& schema) {
  auto g = grammar_from_json_schema(schema);
  return g.ok() ? "" : g.status().message();
}

TEST(JsonSchemaGrammar, ObjectWithRequiredAndOptionalKeys) {
  SchemaGrammar g(json::parse(R"({
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}},
    "required": ["b"],
    "additionalProperties": false})"));
  EXPECT_TRUE(g.accepts(R"({"b": "x"})"));
  EXPECT_TRUE(g.accepts(R"({"a": 1, "b": "x", "c": true})"));
  EXPECT_TRUE(g.accepts(R"({"a":-12,"b":"","c":false})"));
  EXPECT_TRUE(g.accepts(R"({"b": "x", "c": false})"));
  EXPECT_FALSE(g.accepts(R"({"a": 1})"));              // b is required
  EXPECT_FALSE(g.accepts(R"({"a": 1.5, "b": "x"})"));  // a is an integer
  EXPECT_FALSE(g.accepts(R"({"b": "x", "d": 1})"));    // no other keys
  EXPECT_FALSE(g.accepts(R"({"b": "x",})"));
  EXPECT_FALSE(g.accepts(R"({, "b": "x"})"));
}

TEST(JsonSchemaGrammar, AllOptionalKeysAllowTheEmptyObject) {
  SchemaGrammar g(json::parse(R"({"type": "object", "properties": {"x": {"type": "null"}, "y": {"type": "number"}}})"));
  EXPECT_TRUE(g.accepts("{}"));
  EXPECT_TRUE(g.accepts(R"({"y": 2.5e-3})"));
  EXPECT_TRUE(g.accepts(R"({"x": null, "y": 0})"));
  EXPECT_FALSE(g.accepts(R"({"y": 01})"));
}

TEST(JsonSchemaGrammar, AdditionalPropertiesSchema) {
  SchemaGrammar g(json::parse(R"({"type": "object", "properties": {"id": {"type": "integer"}},
                                  "required": ["id"], "additionalProperties": {"type": "string"}})"));
  EXPECT_TRUE(g.accepts(R"({"id": 1, "x": "y", "z": "w"})"));
  EXPECT_FALSE(g.accepts(R"({"id": 1, "x": 2})"));
}

TEST(JsonSchemaGrammar, ArraysWithBounds) {
  SchemaGrammar g(json::parse(R"({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3})"));
  EXPECT_FALSE(g.accepts("[]"));
  EXPECT_TRUE(g.accepts("[1]"));
  EXPECT_TRUE(g.accepts("[1, 2, 3]"));
  EXPECT_FALSE(g.accepts("[1, 2, 3, 4]"));
  EXPECT_FALSE(g.accepts("[\"a\"]"));
  SchemaGrammar any(json::parse(R"({"type": "array"})"));
  EXPECT_TRUE(any.accepts("[]"));
  EXPECT_TRUE(any.accepts(R"([1, "a", {"b": [null]}])"));
}

TEST(JsonSchemaGrammar, EnumConstAndAnyOf) {
  SchemaGrammar e(json::parse(R"({"enum": ["red", "green", 3, null]})"));
  EXPECT_TRUE(e.accepts("\"red\""));
  EXPECT_TRUE(e.accepts("3"));
  EXPECT_TRUE(e.accepts("null"));
  EXPECT_FALSE(e.accepts("\"blue\""));
  SchemaGrammar c(json::parse(R"({"const": {"k": "a\"b"}})"));
  EXPECT_TRUE(c.accepts(R"({"k":"a\"b"})"));
  EXPECT_FALSE(c.accepts(R"({"k":"ab"})"));
  SchemaGrammar a(json::parse(R"({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "boolean"}}]})"));
  EXPECT_TRUE(a.accepts("\"s\""));
  EXPECT_TRUE(a.accepts("[true, false]"));
  EXPECT_FALSE(a.accepts("1"));
  SchemaGrammar t(json::parse(R"({"type": ["integer", "null"]})"));
  EXPECT_TRUE(t.accepts("7"));
  EXPECT_TRUE(t.accepts("null"));
  EXPECT_FALSE(t.accepts("\"7\""));
}

TEST(JsonSchemaGrammar, StringsWithEscapesAndLengths) {
  SchemaGrammar s(json::parse(R"({"type": "string"})"));
  EXPECT_TRUE(s.accepts(R"("a \"quoted\" \\ line\nnext \u00e9 é")"));
  EXPECT_FALSE(s.accepts("\"raw\nnewline\""));
  EXPECT_FALSE(s.accepts(R"("bad \q escape")"));
  SchemaGrammar n(json::parse(R"({"type": "string", "minLength": 2, "maxLength": 3})"));
  EXPECT_FALSE(n.accepts(R"("a")"));
  EXPECT_TRUE(n.accepts(R"("ab")"));
  EXPECT_TRUE(n.accepts(R"("a\nb")"));
  EXPECT_FALSE(n.accepts(R"("abcd")"));
}

TEST(JsonSchemaGrammar, RefsToDefsIncludingRecursion) {
  SchemaGrammar g(json::parse(R"({
    "$defs": {"node": {"type": "object",
                       "properties": {"v": {"type": "integer"},
                                      "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                       "required": ["v"], "additionalProperties": false}},
    "$ref": "#/$defs/node"})"));
  EXPECT_TRUE(g.accepts(R"({"kids": [{"v": 2}, {"kids": [], "v": 3}], "v": 1})"));
  EXPECT_FALSE(g.accepts(R"({"kids": [{"w": 2}], "v": 1})"));
}

TEST(JsonSchemaGrammar, NumbersStayFiniteDoubles) {
  SchemaGrammar g(json::parse(R"({"type": "number"})"));
  EXPECT_TRUE(g.accepts("-1.5"));
  EXPECT_TRUE(g.accepts("9999999999999999.9999999999999999e99"));
  EXPECT_TRUE(g.accepts("1E-7"));
  EXPECT_FALSE(g.accepts("1e308"));  // no 3-digit exponents: 1e400 would be Infinity
  EXPECT_FALSE(g.accepts("12345678901234567"));
}

TEST(JsonSchemaGrammar, AnyJsonObject) {
  auto g = parse_gbnf(json_object_grammar());
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  GrammarState s = GrammarState::start(*g);
  EXPECT_TRUE(s.advance(*g, R"({"a": [1, {"b": null}], "c": "d"})") && s.complete());
  GrammarState t = GrammarState::start(*g);
  EXPECT_FALSE(t.advance(*g, "[1]"));
}

TEST(JsonSchemaGrammar, RefusesWhatItCannotEnforceNamingKeywordAndPlace) {
  EXPECT_NE(error_of(json::parse(R"({"type": "string", "pattern": "^a$"})")).find("'pattern' is not supported"),
            std::string::npos);
  const std::string nested =
      error_of(json::parse(R"({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}})"));
  EXPECT_NE(nested.find("/properties/n"), std::string::npos) << nested;
  EXPECT_NE(nested.find("'minimum'"), std::string::npos) << nested;
  EXPECT_NE(error_of(json::parse(R"({"type": "text"})")).find("unknown type 'text'"), std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({"$ref": "#/$defs/missing"})")).find("names nothing"), std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({"$ref": "http://example.com/s.json"})")).find("only references"),
            std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({"type": "array", "maxItems": 100000})")).find("limit"), std::string::npos);
  EXPECT_NE(error_of(json::parse(R"({"type": "object", "required": ["x"]})")).find("'x'"), std::string::npos);
  EXPECT_NE(error_of(json(false)).find("matches nothing"), std::string::npos);
  json deep = json::object();
  for (int i = 0; i < kMaxSchemaDepth + 2; ++i) deep = json{{"type", "array"}, {"items", deep}};
  EXPECT_NE(error_of(deep).find("deeper"), std::string::npos);
}

}  // namespace
}  // namespace swarm
