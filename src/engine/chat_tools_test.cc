#include "engine/chat_tools.h"

#include <gtest/gtest.h>

namespace swarm {
namespace {

const ToolDefinition kWeather = {
    "get_weather", "Current weather in a city",
    R"({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})"};

// A conversation with one round of calling: the user asks, the assistant calls,
// the tool answers.
std::vector<ChatMessage> called_once() {
  ChatMessage call{"assistant", ""};
  call.tool_calls = {{"abcDEF123", "get_weather", R"({"city":"Paris"})"}};
  ChatMessage result{"tool", R"({"temp": 21})"};
  result.tool_call_id = "abcDEF123";
  result.name = "get_weather";
  return {{"system", "Be brief."}, {"user", "Weather in Paris?"}, call, result};
}

std::string render(ChatFamily family, ToolFormat format, const std::vector<ChatMessage>& m,
                   const std::vector<ToolDefinition>& tools) {
  auto r = render_chat_with_tools(family, format, m, tools, true, "<s>", "</s>");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : "";
}

TEST(ChatToolsTest, ChoosesTheFormatByFamilyAndTemplate) {
  EXPECT_EQ(choose_tool_format(ChatFamily::kChatML, "{{ '<tool_call>' }}"), ToolFormat::kHermes);
  EXPECT_EQ(choose_tool_format(ChatFamily::kChatML, "<|im_start|>"), ToolFormat::kGeneric);
  EXPECT_EQ(choose_tool_format(ChatFamily::kLlama3, ""), ToolFormat::kLlama3);
  EXPECT_EQ(choose_tool_format(ChatFamily::kMistralV3Tekken, ""), ToolFormat::kMistral);
  EXPECT_EQ(choose_tool_format(ChatFamily::kMistralV7, ""), ToolFormat::kMistral);
  EXPECT_EQ(choose_tool_format(ChatFamily::kMistralV1, ""), ToolFormat::kGeneric);
  EXPECT_EQ(choose_tool_format(ChatFamily::kGemma, ""), ToolFormat::kGeneric);
}

// What Qwen2.5-7B-Instruct's template renders (its default system prompt aside).
TEST(ChatToolsTest, RendersHermesAsQwenDoes) {
  EXPECT_EQ(
      render(ChatFamily::kChatML, ToolFormat::kHermes, called_once(), {kWeather}),
      "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist "
      "with the user query.\n\nYou are provided with function signatures within <tools></tools> "
      "XML tags:\n<tools>\n"
      R"({"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})"
      "\n</tools>\n\nFor each function call, return a json object with function name and "
      "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
      "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
      "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
      "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\"}}\n</tool_call><|im_end|>\n"
      "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n"
      "<|im_start|>assistant\n");
}

TEST(ChatToolsTest, HermesGroupsConsecutiveResultsInOneUserTurn) {
  ChatMessage call{"assistant", "Checking."};
  call.tool_calls = {{"a", "f", "{}"}, {"b", "g", R"({"x": [1, 2]})"}};
  std::vector<ChatMessage> m = {{"user", "go"}, call, {"tool", "1"}, {"tool", "2"}};
  EXPECT_EQ(render(ChatFamily::kChatML, ToolFormat::kHermes, m, {}),
            "<|im_start|>user\ngo<|im_end|>\n"
            "<|im_start|>assistant\nChecking.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n"
            "</tool_call>\n<tool_call>\n{\"name\": \"g\", \"arguments\": {\"x\": [1, 2]}}\n"
            "</tool_call><|im_end|>\n"
            "<|im_start|>user\n<tool_response>\n1\n</tool_response>\n<tool_response>\n2\n"
            "</tool_response><|im_end|>\n<|im_start|>assistant\n");
}

// What Llama 3.1's template renders (its date lines aside).
TEST(ChatToolsTest, RendersLlama3WithToolsInTheFirstUserTurn) {
  const ToolDefinition t{"f", "", R"({"type": "object"})"};
  EXPECT_EQ(render(ChatFamily::kLlama3, ToolFormat::kLlama3, called_once(), {t}),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please "
            "respond with a JSON for a function call with its proper arguments that best answers "
            "the given prompt.\n\nRespond in the format {\"name\": function name, \"parameters\": "
            "dictionary of argument name and its value}.Do not use variables.\n\n"
            "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"f\",\n"
            "        \"parameters\": {\n            \"type\": \"object\"\n        }\n    }\n}\n\n"
            "Weather in Paris?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", "
            "\"parameters\": {\"city\": \"Paris\"}}<|eot_id|>"
            "<|start_header_id|>ipython<|end_header_id|>\n\n\"{\\\"temp\\\": 21}\"<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Mistral 7B v0.3 (spaces after the markers) and Nemo (none).
TEST(ChatToolsTest, RendersMistralToolMarkers) {
  const ToolDefinition t{"f", "d", ""};
  EXPECT_EQ(render(ChatFamily::kMistralV3, ToolFormat::kMistral, called_once(), {t}),
            "[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"f\", "
            "\"description\": \"d\"}}][/AVAILABLE_TOOLS][INST] Be brief.\n\nWeather in "
            "Paris?[/INST]"
            "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, "
            "\"id\": \"abcDEF123\"}]</s>"
            "[TOOL_RESULTS] {\"content\": {\"temp\": 21}, \"call_id\": \"abcDEF123\"}"
            "[/TOOL_RESULTS]");
  std::vector<ChatMessage> m = called_once();
  m.push_back({"assistant", "It is 21."});
  m.push_back({"user", "Thanks"});
  EXPECT_EQ(render(ChatFamily::kMistralV3Tekken, ToolFormat::kMistral, m, {t}),
            "[INST]Weather in Paris?[/INST]"
            "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, "
            "\"id\": \"abcDEF123\"}]</s>"
            "[TOOL_RESULTS]{\"content\": {\"temp\": 21}, \"call_id\": \"abcDEF123\"}"
            "[/TOOL_RESULTS]It is 21.</s>"
            "[AVAILABLE_TOOLS][{\"type\": \"function\", \"function\": {\"name\": \"f\", "
            "\"description\": \"d\"}}][/AVAILABLE_TOOLS][INST]Be brief.\n\nThanks[/INST]");
}

// Mistral Small 3 (v7-tekken): the system prompt keeps its own block.
TEST(ChatToolsTest, RendersMistralV7WithItsSystemPrompt) {
  EXPECT_EQ(
      render(ChatFamily::kMistralV7Tekken, ToolFormat::kMistral, called_once(), {{"f", "", ""}}),
      "[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT]"
      "[AVAILABLE_TOOLS][{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]"
      "[/AVAILABLE_TOOLS][INST]Weather in Paris?[/INST]"
      "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, "
      "\"id\": \"abcDEF123\"}]</s>"
      "[TOOL_RESULTS]{\"content\": {\"temp\": 21}, \"call_id\": \"abcDEF123\"}[/TOOL_RESULTS]");
}

TEST(ChatToolsTest, RendersGenericAsJsonInsideTheFamilysTurns) {
  const ToolDefinition t{"f", "", ""};
  const std::string out = render(ChatFamily::kGemma, ToolFormat::kGeneric, called_once(), {t});
  EXPECT_EQ(out,
            "<start_of_turn>user\nBe brief.\n\nYou can call any of the following tools to satisfy "
            "the user's requests:\n[\n  {\n    \"type\": \"function\",\n    \"function\": {\n"
            "      \"name\": \"f\"\n    }\n  }\n]\n\nRespond in JSON format, either with "
            "\"tool_calls\" (a request to call tools) or with \"response\" (a reply to the user's "
            "request), for example:\n{\"tool_calls\": [{\"name\": \"tool_name\", \"arguments\": "
            "{\"arg1\": \"value1\"}}]}\nor\n{\"response\": \"your reply\"}\n\nWeather in "
            "Paris?<end_of_turn>\n"
            "<start_of_turn>model\n{\"tool_calls\": [{\"name\": \"get_weather\", \"arguments\": "
            "{\"city\": \"Paris\"}, \"id\": \"abcDEF123\"}]}<end_of_turn>\n"
            "<start_of_turn>user\n{\"tool_response\": {\"tool\": \"get_weather\", "
            "\"tool_call_id\": \"abcDEF123\", \"content\": \"{\\\"temp\\\": 21}\"}}<end_of_turn>\n"
            "<start_of_turn>model\n");
}

TEST(ChatToolsTest, AFormatOutsideItsFamilyFallsBackToGeneric) {
  const std::vector<ChatMessage> m = {{"user", "hi"}};
  EXPECT_EQ(render(ChatFamily::kChatML, ToolFormat::kLlama3, m, {kWeather}),
            render(ChatFamily::kChatML, ToolFormat::kGeneric, m, {kWeather}));
}

TEST(ChatToolsTest, RefusesArgumentsAndParametersThatAreNotJson) {
  ChatMessage call{"assistant", ""};
  call.tool_calls = {{"a", "f", "{not json"}};
  EXPECT_FALSE(render_chat_with_tools(ChatFamily::kChatML, ToolFormat::kHermes,
                                      {{"user", "x"}, call}, {}, true, "", "")
                   .ok());
  EXPECT_FALSE(render_chat_with_tools(ChatFamily::kChatML, ToolFormat::kHermes, {{"user", "x"}},
                                      {{"f", "", "{"}}, true, "", "")
                   .ok());
  EXPECT_FALSE(render_chat_with_tools(ChatFamily::kChatML, ToolFormat::kHermes, {{"function", "x"}},
                                      {}, true, "", "")
                   .ok());
}

TEST(ChatToolsTest, ParsesHermesCallsAfterText) {
  ToolOutput o = parse_tool_output(
      ToolFormat::kHermes,
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\", \"unit\": \"c\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"f\", "
      "\"arguments\": {}}\n</tool_call>");
  EXPECT_EQ(o.content, "Let me check.\n");
  ASSERT_EQ(o.calls.size(), 2u);
  EXPECT_EQ(o.calls[0].name, "get_weather");
  EXPECT_EQ(o.calls[0].arguments, R"({"city":"Paris","unit":"c"})");  // keys keep their order
  EXPECT_EQ(o.calls[1].name, "f");
  EXPECT_EQ(o.calls[1].arguments, "{}");
}

TEST(ChatToolsTest, HermesCallCutOffByTheEndOfOutputStillCounts) {
  ToolOutput o = parse_tool_output(
      ToolFormat::kHermes, "<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}");
  ASSERT_EQ(o.calls.size(), 1u);
  EXPECT_EQ(o.calls[0].arguments, R"({"a":1})");  // a string holding JSON is read too
  EXPECT_EQ(o.content, "");
}

TEST(ChatToolsTest, MalformedCallsAreText) {
  for (const char* text :
       {"<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": }\n</tool_call>",
        "<tool_call>{\"arguments\": {}}</tool_call>", "<tool_call>{\"name\": \"f\"} trailing",
        "<tool_call>", "<tool_call>{\"name\": \"f\", \"arguments\": 3}</tool_call>"}) {
    ToolOutput o = parse_tool_output(ToolFormat::kHermes, text);
    EXPECT_TRUE(o.calls.empty()) << text;
    EXPECT_EQ(o.content, text);
  }
  ToolOutput o = parse_tool_output(ToolFormat::kLlama3, "{\"a\": 1}");
  EXPECT_TRUE(o.calls.empty());
  EXPECT_EQ(o.content, "{\"a\": 1}");
  o = parse_tool_output(ToolFormat::kGeneric, "{\"tool_calls\": [{\"name\": \"f\"}]} and more");
  EXPECT_TRUE(o.calls.empty());
}

TEST(ChatToolsTest, ParsesLlama3Calls) {
  ToolOutput o = parse_tool_output(ToolFormat::kLlama3,
                                   " {\"name\": \"get_weather\", \"parameters\": {\"city\": "
                                   "\"Paris\"}}; {\"type\": \"function\", "
                                   "\"name\": \"f\", \"parameters\": {}}");
  ASSERT_EQ(o.calls.size(), 2u);
  EXPECT_EQ(o.calls[0].name, "get_weather");
  EXPECT_EQ(o.calls[0].arguments, R"({"city":"Paris"})");
  EXPECT_EQ(o.calls[1].name, "f");
  EXPECT_EQ(o.content, "");
  o = parse_tool_output(ToolFormat::kLlama3, "<|python_tag|>{\"name\": \"f\", \"arguments\": {}}");
  ASSERT_EQ(o.calls.size(), 1u);
  o = parse_tool_output(ToolFormat::kLlama3, "The weather is {fine}.");
  EXPECT_TRUE(o.calls.empty());
  EXPECT_EQ(o.content, "The weather is {fine}.");
}

TEST(ChatToolsTest, ParsesMistralCallsWithOrWithoutTheMarker) {
  ToolOutput o = parse_tool_output(
      ToolFormat::kMistral,
      "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {\"a\": 1}, \"id\": \"abcDEF123\"}, "
      "{\"name\": \"g\", \"arguments\": {}}]");
  ASSERT_EQ(o.calls.size(), 2u);
  EXPECT_EQ(o.calls[0].id, "abcDEF123");
  EXPECT_EQ(o.calls[0].arguments, R"({"a":1})");
  EXPECT_EQ(o.calls[1].id, "");
  // The decoder drops control tokens such as [TOOL_CALLS].
  o = parse_tool_output(ToolFormat::kMistral, "[{\"name\": \"f\", \"arguments\": {}}]");
  ASSERT_EQ(o.calls.size(), 1u);
  o = parse_tool_output(ToolFormat::kMistral, "[1, 2] are numbers");
  EXPECT_TRUE(o.calls.empty());
  EXPECT_EQ(o.content, "[1, 2] are numbers");
}

TEST(ChatToolsTest, ParsesGenericAnswers) {
  ToolOutput o = parse_tool_output(
      ToolFormat::kGeneric,
      "{\"tool_calls\": [{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}, {\"name\": \"g\", "
      "\"arguments\": {}}]}");
  ASSERT_EQ(o.calls.size(), 2u);
  EXPECT_EQ(o.calls[1].name, "g");
  o = parse_tool_output(ToolFormat::kGeneric,
                        "{\"tool_call\": {\"name\": \"f\", \"arguments\": {}}}");
  ASSERT_EQ(o.calls.size(), 1u);
  o = parse_tool_output(ToolFormat::kGeneric, "{\"response\": \"Hello!\"}");
  EXPECT_TRUE(o.calls.empty());
  EXPECT_EQ(o.content, "Hello!");
  o = parse_tool_output(ToolFormat::kGeneric, "Hello!");
  EXPECT_EQ(o.content, "Hello!");
}

// Text streams out at once unless it may be a call; held text is never lost.
TEST(ChatToolsTest, StreamHoldsOnlyWhatMayBeACall) {
  ToolCallStreamParser p(ToolFormat::kHermes);
  EXPECT_EQ(p.push("Sure"), "Sure");
  EXPECT_EQ(p.push(", <tool"), ", ");  // "<tool" may open <tool_call>
  EXPECT_EQ(p.push("box> is"), "<toolbox> is");
  EXPECT_EQ(p.push(" here <tool_"), " here ");
  EXPECT_EQ(p.push("call>{\"name\": \"f\", "), "");
  EXPECT_EQ(p.push("\"arguments\": {}}</tool_call>"), "");
  ToolOutput o = p.finish();
  ASSERT_EQ(o.calls.size(), 1u);
  EXPECT_EQ(o.calls[0].name, "f");
  EXPECT_EQ(o.content, "");

  ToolCallStreamParser q(ToolFormat::kGeneric);
  EXPECT_EQ(q.push("  "), "");
  EXPECT_EQ(q.push("{\"respo"), "");
  EXPECT_EQ(q.push("nse\": \"hi\"}"), "");
  o = q.finish();
  EXPECT_EQ(o.content, "hi");
  EXPECT_TRUE(o.calls.empty());

  ToolCallStreamParser r(ToolFormat::kLlama3);
  EXPECT_EQ(r.push("<|py"), "");
  EXPECT_EQ(r.push("thon is a language"), "<|python is a language");
  EXPECT_EQ(r.push(" {x}"), " {x}");
  EXPECT_EQ(r.finish().content, "");

  ToolCallStreamParser s(ToolFormat::kHermes);
  EXPECT_EQ(s.push("<tool_call>{\"name\""), "");
  o = s.finish();  // cut off: the text comes back whole
  EXPECT_TRUE(o.calls.empty());
  EXPECT_EQ(o.content, "<tool_call>{\"name\"");
}

TEST(ChatToolsTest, CallSyntaxForConstrainedSampling) {
  ToolCallSyntax s = tool_call_syntax(ToolFormat::kHermes, {kWeather}, true);
  EXPECT_EQ(s.prefix, "<tool_call>\n");
  EXPECT_EQ(s.suffix, "\n</tool_call>");
  EXPECT_NE(s.schema.find(R"("name":{"const":"get_weather"})"), std::string::npos) << s.schema;
  EXPECT_NE(s.schema.find(R"("required":["city"])"), std::string::npos) << s.schema;
  s = tool_call_syntax(ToolFormat::kGeneric, {kWeather, {"f", "", ""}}, false);
  EXPECT_NE(s.schema.find("anyOf"), std::string::npos);
  EXPECT_NE(s.schema.find(R"("maxItems":1)"), std::string::npos);
  s = tool_call_syntax(ToolFormat::kLlama3, {kWeather}, true);
  EXPECT_NE(s.schema.find("parameters"), std::string::npos);
  // Every syntax's own example output parses back as a call.
  for (ToolFormat f :
       {ToolFormat::kHermes, ToolFormat::kLlama3, ToolFormat::kMistral, ToolFormat::kGeneric}) {
    const std::string key = f == ToolFormat::kLlama3 ? "parameters" : "arguments";
    std::string call = "{\"name\": \"f\", \"" + key + "\": {}}";
    if (f == ToolFormat::kMistral) call = "[" + call + "]";
    if (f == ToolFormat::kGeneric) call = "{\"tool_calls\": [" + call + "]}";
    ToolCallSyntax x = tool_call_syntax(f, {{"f", "", ""}}, true);
    ToolOutput o = parse_tool_output(f, x.prefix + call + x.suffix);
    ASSERT_EQ(o.calls.size(), 1u) << tool_format_name(f);
    EXPECT_EQ(o.calls[0].name, "f");
  }
}

}  // namespace
}  // namespace swarm
