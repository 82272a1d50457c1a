#include "api/tool_calls.h"

#include <gtest/gtest.h>

#include "api/openai_request.h"

namespace swarm {
namespace {

using nlohmann::json;

const json kTools = json::parse(R"([
  {"type": "function", "function": {"name": "get_weather", "description": "Weather",
   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
  {"type": "function", "function": {"name": "get_time"}}
])");

ToolRequest read(const json& body) {
  ToolRequest r;
  auto e = read_tool_request(body, &r);
  EXPECT_FALSE(e.has_value()) << (e ? e->message : "");
  return r;
}

std::function<std::string()> counter_ids() {
  auto n = std::make_shared<int>(0);
  return [n] { return "call_" + std::to_string((*n)++); };
}

ToolAnswer answer(const ToolRequest& r, ToolFormat f, const std::string& text) {
  auto a = read_tool_answer(r, f, text, counter_ids());
  EXPECT_TRUE(std::holds_alternative<ToolAnswer>(a)) << text;
  return std::holds_alternative<ToolAnswer>(a) ? std::get<ToolAnswer>(a) : ToolAnswer{};
}

TEST(ToolCallsTest, ReadsToolsAndChoices) {
  ToolRequest r = read({{"tools", kTools}});
  ASSERT_EQ(r.tools.size(), 2u);
  EXPECT_EQ(r.tools[0].name, "get_weather");
  EXPECT_EQ(r.tools[0].description, "Weather");
  EXPECT_EQ(json::parse(r.tools[0].parameters)["properties"]["city"]["type"], "string");
  EXPECT_EQ(r.tools[1].parameters, "");
  EXPECT_EQ(r.choice, ToolChoice::kAuto);
  EXPECT_TRUE(r.active());
  EXPECT_FALSE(r.forced());
  EXPECT_TRUE(r.parallel);

  r = read({{"tools", kTools}, {"tool_choice", "none"}});
  EXPECT_FALSE(r.active());
  EXPECT_TRUE(r.allowed().empty());
  r = read({{"tools", kTools}, {"tool_choice", "required"}, {"parallel_tool_calls", false}});
  EXPECT_TRUE(r.forced());
  EXPECT_FALSE(r.parallel);
  EXPECT_EQ(r.allowed().size(), 2u);
  r = read({{"tools", kTools},
            {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_time"}}}}}});
  EXPECT_EQ(r.choice, ToolChoice::kNamed);
  ASSERT_EQ(r.allowed().size(), 1u);
  EXPECT_EQ(r.allowed()[0].name, "get_time");
  // No tools: nothing to do, and "none"/"auto" are fine.
  EXPECT_FALSE(read({{"tool_choice", "auto"}}).active());
}

TEST(ToolCallsTest, ParametersKeepTheBodysKeyOrder) {
  const std::string text =
      R"({"tools": [{"type": "function", "function": {"name": "f", "parameters": )"
      R"({"type": "object", "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer"}}}}}]})";
  ToolRequest r = read(json::parse(text));
  EXPECT_LT(r.tools[0].parameters.find("alpha"), r.tools[0].parameters.find("zeta"));  // sorted
  keep_parameter_order(text, &r);
  EXPECT_EQ(r.tools[0].parameters,
            R"({"type":"object","properties":{"zeta":{"type":"string"},"alpha":{"type":"integer"}}})");
}

TEST(ToolCallsTest, CapsNameTheLimit) {
  ToolRequest r;
  json many = json::array();
  for (int i = 0; i < 129; ++i)
    many.push_back({{"type", "function"}, {"function", {{"name", "f" + std::to_string(i)}}}});
  auto e = read_tool_request({{"tools", many}}, &r);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("at most 128"), std::string::npos) << e->message;
  EXPECT_EQ(e->param, "tools");
  json big = {{{"type", "function"},
               {"function", {{"name", "f"}, {"description", std::string(kMaxToolsBytes, 'x')}}}}};
  e = read_tool_request({{"tools", big}}, &r);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find(std::to_string(kMaxToolsBytes)), std::string::npos) << e->message;
}

TEST(ToolCallsTest, ReadsToolHistoryInMessages) {
  json body = {
      {"messages",
       {{{"role", "user"}, {"content", "Weather?"}},
        {{"role", "assistant"},
         {"content", nullptr},
         {"tool_calls",
          {{{"id", "call_1"},
            {"type", "function"},
            {"function", {{"name", "get_weather"}, {"arguments", "{\"city\":\"Paris\"}"}}}}}}},
        {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "21 C"}}}},
      {"tools", kTools}};
  auto parsed = parse_completion_request(body, /*chat=*/true, 1000);
  ASSERT_TRUE(std::holds_alternative<CompletionRequest>(parsed))
      << std::get<ApiError>(parsed).message;
  const CompletionRequest& r = std::get<CompletionRequest>(parsed);
  ASSERT_EQ(r.messages.size(), 3u);
  ASSERT_EQ(r.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(r.messages[1].tool_calls[0].id, "call_1");
  EXPECT_EQ(r.messages[1].tool_calls[0].name, "get_weather");
  EXPECT_EQ(r.messages[1].tool_calls[0].arguments, "{\"city\":\"Paris\"}");
  EXPECT_EQ(r.messages[2].role, "tool");
  EXPECT_EQ(r.messages[2].tool_call_id, "call_1");
  EXPECT_EQ(r.messages[2].content, "21 C");
  EXPECT_EQ(r.tools.tools.size(), 2u);
}

TEST(ToolCallsTest, AnswersCallsOrText) {
  const ToolRequest r = read({{"tools", kTools}});
  ToolAnswer a = answer(
      r, ToolFormat::kHermes,
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
      "</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>");
  EXPECT_FALSE(a.content.has_value());  // only calls: content is null
  ASSERT_EQ(a.calls.size(), 2u);
  EXPECT_EQ(a.calls[0].id, "call_0");
  EXPECT_EQ(a.calls[1].id, "call_1");
  EXPECT_EQ(a.calls[0].arguments, "{\"city\":\"Paris\"}");
  const json calls = json::parse(tool_calls_json(a.calls).dump());
  EXPECT_EQ(calls[0]["type"], "function");
  EXPECT_EQ(calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(calls[1]["function"]["arguments"], "{}");

  // Only a line break before the call: still no content.
  a = answer(r, ToolFormat::kHermes, "\n<tool_call>{\"name\": \"get_time\"}</tool_call>\n");
  EXPECT_FALSE(a.content.has_value());
  EXPECT_EQ(a.calls.size(), 1u);
  a = answer(r, ToolFormat::kHermes, "Checking.\n<tool_call>{\"name\": \"get_time\"}</tool_call>");
  EXPECT_EQ(a.content, "Checking.\n");

  a = answer(r, ToolFormat::kHermes, "No need for tools.");
  EXPECT_EQ(a.content, "No need for tools.");
  EXPECT_TRUE(a.calls.empty());

  // A call to a function that was not offered stands as text.
  const std::string unknown = "<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call>";
  a = answer(r, ToolFormat::kHermes, unknown);
  EXPECT_TRUE(a.calls.empty());
  EXPECT_EQ(a.content, unknown);

  // parallel_tool_calls: false keeps the first call.
  const ToolRequest one = read({{"tools", kTools}, {"parallel_tool_calls", false}});
  a = answer(
      one, ToolFormat::kGeneric,
      R"({"tool_calls": [{"name": "get_time", "arguments": {}}, {"name": "get_time", "arguments": {}}]})");
  EXPECT_EQ(a.calls.size(), 1u);
}

TEST(ToolCallsTest, AForcedCallThatDoesNotComeIsAnError) {
  const ToolRequest required = read({{"tools", kTools}, {"tool_choice", "required"}});
  auto a = read_tool_answer(required, ToolFormat::kHermes, "Just text.", counter_ids());
  ASSERT_TRUE(std::holds_alternative<ApiError>(a));
  EXPECT_EQ(std::get<ApiError>(a).http_status, 500);
  EXPECT_EQ(std::get<ApiError>(a).code, "tool_call_not_produced");

  const ToolRequest named =
      read({{"tools", kTools},
            {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_time"}}}}}});
  a = read_tool_answer(named, ToolFormat::kLlama3,
                       "{\"name\": \"get_weather\", \"parameters\": {}}", counter_ids());
  ASSERT_TRUE(std::holds_alternative<ApiError>(a));  // the wrong function
  EXPECT_NE(std::get<ApiError>(a).message.find("get_time"), std::string::npos);
  a = read_tool_answer(named, ToolFormat::kLlama3, "{\"name\": \"get_time\", \"parameters\": {}}",
                       counter_ids());
  ASSERT_TRUE(std::holds_alternative<ToolAnswer>(a));
  EXPECT_EQ(std::get<ToolAnswer>(a).calls.size(), 1u);

  // Forced: nothing streams as text, since the answer must be a call.
  ToolCallResponder s(required, ToolFormat::kHermes, counter_ids());
  EXPECT_EQ(s.push("Hello "), "");
  EXPECT_EQ(s.push("<tool_call>{\"name\": \"get_time\"}</tool_call>"), "");
  auto done = s.finish();
  ASSERT_TRUE(std::holds_alternative<ToolAnswer>(done));
  EXPECT_EQ(std::get<ToolAnswer>(done).content, "Hello ");
  EXPECT_EQ(std::get<ToolAnswer>(done).calls.size(), 1u);

  // The grammar hook: what the forced output must look like.
  auto syntax = required_call_syntax(named, ToolFormat::kHermes);
  ASSERT_TRUE(syntax);
  EXPECT_NE(syntax->schema.find("get_time"), std::string::npos);
  EXPECT_EQ(syntax->schema.find("get_weather"), std::string::npos);
  EXPECT_FALSE(required_call_syntax(read({{"tools", kTools}}), ToolFormat::kHermes));
}

// What a client does with the deltas (index, then concatenated arguments) gives
// back the calls.
TEST(ToolCallsTest, StreamedDeltasAssembleIntoTheCalls) {
  const std::vector<ToolCall> calls = {
      {"call_a", "get_weather",
       R"({"city":"Zürich – Kreis 1","note":")" + std::string(100, 'x') + "\"}"},
      {"call_b", "get_time", "{}"}};
  const std::vector<nlohmann::ordered_json> deltas = tool_call_deltas(calls, 16);
  EXPECT_GT(deltas.size(), 8u);
  std::vector<ToolCall> got;
  for (const auto& d : deltas) {
    ASSERT_EQ(d["tool_calls"].size(), 1u);
    const auto& c = d["tool_calls"][0];
    const size_t index = c["index"].get<size_t>();
    if (c.contains("id")) {
      ASSERT_EQ(index, got.size());  // a new call opens with its id, type and name
      EXPECT_EQ(c["type"], "function");
      got.push_back({c["id"], c["function"]["name"], ""});
    }
    ASSERT_LT(index, got.size());
    const std::string piece = c["function"]["arguments"];
    EXPECT_LE(piece.size(), 16u);
    // Every piece is valid UTF-8 on its own: no character is split.
    EXPECT_EQ(json::parse(json(piece).dump(-1, ' ', false, json::error_handler_t::strict)), piece);
    got[index].arguments += piece;
  }
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(got[i].id, calls[i].id);
    EXPECT_EQ(got[i].name, calls[i].name);
    EXPECT_EQ(got[i].arguments, calls[i].arguments);
  }
}

TEST(ToolCallsTest, IdsFitTheFormat) {
  const std::string id = new_tool_call_id(ToolFormat::kHermes);
  EXPECT_EQ(id.rfind("call_", 0), 0u);
  EXPECT_EQ(id.size(), 29u);
  EXPECT_NE(id, new_tool_call_id(ToolFormat::kHermes));
  EXPECT_EQ(new_tool_call_id(ToolFormat::kMistral).size(), 9u);  // Mistral's templates demand 9
}

}  // namespace
}  // namespace swarm
