// The grammar of a forced call accepts the format's calls to allowed
// functions, with arguments of their schema, and nothing else.
#include "api/tool_call_grammar.h"

#include <gtest/gtest.h>

#include "engine/grammar.h"
#include "engine/grammar_matcher.h"

namespace swarm {
namespace {

using nlohmann::json;

const json kTools = json::parse(R"([
  {"type": "function", "function": {"name": "get_weather",
   "parameters": {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}}, "required": ["unit"]}}},
  {"type": "function", "function": {"name": "get_time"}}
])");

ToolRequest read(const json& body) {
  ToolRequest r;
  auto e = read_tool_request(body, &r);
  EXPECT_FALSE(e.has_value()) << (e ? e->message : "");
  return r;
}

bool matches(const std::string& gbnf, const std::string& text) {
  auto g = parse_gbnf(gbnf);
  EXPECT_TRUE(g.ok()) << g.status().ToString() << "\n" << gbnf;
  if (!g.ok()) return false;
  GrammarState s = GrammarState::start(*g);
  return s.advance(*g, text) && s.complete();
}

std::string grammar(const json& body, ToolFormat format) {
  auto g = forced_call_grammar(read(body), format);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return g.ok() ? *g : "";
}

TEST(ToolCallGrammarTest, NoGrammarUnlessACallIsForced) {
  EXPECT_EQ(grammar({{"tools", kTools}}, ToolFormat::kHermes), "");
  EXPECT_EQ(grammar({{"tools", kTools}, {"tool_choice", "none"}}, ToolFormat::kHermes), "");
}

TEST(ToolCallGrammarTest, EachFormatsCallsAndNothingElse) {
  const json required = {{"tools", kTools}, {"tool_choice", "required"}};
  const std::string hermes = grammar(required, ToolFormat::kHermes);
  EXPECT_TRUE(matches(
      hermes,
      "<tool_call>\n{\"arguments\": {\"unit\": \"c\"}, \"name\": \"get_weather\"}\n</tool_call>"));
  EXPECT_TRUE(matches(
      hermes,
      "<tool_call>\n{\"arguments\": {}, \"name\": \"get_time\"}\n</tool_call>\n"
      "<tool_call>\n{\"arguments\": {\"unit\": \"f\"}, \"name\": \"get_weather\"}\n</tool_call>"));
  EXPECT_FALSE(matches(hermes, "It is sunny."));
  EXPECT_FALSE(matches(
      hermes,
      "<tool_call>\n{\"arguments\": {\"unit\": \"k\"}, \"name\": \"get_weather\"}\n</tool_call>"));
  EXPECT_FALSE(
      matches(hermes, "<tool_call>\n{\"arguments\": {}, \"name\": \"rm_rf\"}\n</tool_call>"));

  // One call only without parallel calls.
  const std::string single =
      grammar({{"tools", kTools}, {"tool_choice", "required"}, {"parallel_tool_calls", false}},
              ToolFormat::kHermes);
  EXPECT_FALSE(matches(single,
                       "<tool_call>\n{\"arguments\": {}, \"name\": \"get_time\"}\n</tool_call>\n"
                       "<tool_call>\n{\"arguments\": {}, \"name\": \"get_time\"}\n</tool_call>"));

  const json named = {
      {"tools", kTools},
      {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_time"}}}}}};
  const std::string llama3 = grammar(named, ToolFormat::kLlama3);
  EXPECT_TRUE(matches(llama3, "{\"name\": \"get_time\", \"parameters\": {}}"));
  EXPECT_FALSE(matches(llama3, "{\"name\": \"get_weather\", \"parameters\": {\"unit\": \"c\"}}"));

  // Mistral's marker is a control token: the array alone.
  const std::string mistral = grammar(required, ToolFormat::kMistral);
  EXPECT_TRUE(matches(mistral, "[{\"arguments\": {\"unit\": \"c\"}, \"name\": \"get_weather\"}]"));
  EXPECT_FALSE(matches(mistral, "[]"));

  const std::string generic = grammar(required, ToolFormat::kGeneric);
  EXPECT_TRUE(matches(generic, "{\"tool_calls\": [{\"arguments\": {}, \"name\": \"get_time\"}]}"));
  EXPECT_FALSE(matches(generic, "{\"response\": \"hi\"}"));
}

// What the grammar accepts, the reader of calls takes as calls.
TEST(ToolCallGrammarTest, WhatItAcceptsIsReadAsCalls) {
  const ToolRequest r = read({{"tools", kTools}, {"tool_choice", "required"}});
  const std::pair<ToolFormat, std::string> outputs[] = {
      {ToolFormat::kHermes,
       "<tool_call>\n{\"arguments\": {\"unit\": \"c\"}, \"name\": \"get_weather\"}\n</tool_call>"},
      {ToolFormat::kMistral, "[{\"arguments\": {\"unit\": \"c\"}, \"name\": \"get_weather\"}]"},
      {ToolFormat::kGeneric,
       "{\"tool_calls\": [{\"arguments\": {\"unit\": \"c\"}, \"name\": \"get_weather\"}]}"},
  };
  for (const auto& [format, text] : outputs) {
    SCOPED_TRACE(text);
    EXPECT_TRUE(matches(*forced_call_grammar(r, format), text));
    auto a = read_tool_answer(r, format, text, [] { return std::string("call_1"); });
    ASSERT_TRUE(std::holds_alternative<ToolAnswer>(a));
    ASSERT_EQ(std::get<ToolAnswer>(a).calls.size(), 1u);
    EXPECT_EQ(std::get<ToolAnswer>(a).calls[0].name, "get_weather");
    EXPECT_EQ(json::parse(std::get<ToolAnswer>(a).calls[0].arguments), json({{"unit", "c"}}));
  }
}

// Parameters the converter cannot enforce leave the call certain and its
// arguments free.
TEST(ToolCallGrammarTest, UnenforceableParametersAllowAnyArguments) {
  const json tools = json::parse(R"([{"type": "function", "function": {"name": "f",
      "parameters": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}}}])");
  const std::string g =
      grammar({{"tools", tools}, {"tool_choice", "required"}}, ToolFormat::kGeneric);
  EXPECT_TRUE(
      matches(g, "{\"tool_calls\": [{\"arguments\": {\"n\": 1, \"x\": true}, \"name\": \"f\"}]}"));
  EXPECT_FALSE(matches(g, "{\"tool_calls\": [{\"arguments\": {}, \"name\": \"g\"}]}"));
}

}  // namespace
}  // namespace swarm
