// Structured output through a real swarm: the gateway sends the grammar in the
// session's sampling config, the last stage compiles it against its model's
// vocabulary and masks what it rejects, so a json_schema request to a 2-stage
// gateway returns JSON of that schema; audits that replay the last stage's
// sampler apply the same grammar, so an honest constrained swarm passes them.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "swarm_harness.h"

namespace {

using json = nlohmann::json;
using swarm::testing::ChildProcess;
using swarm::testing::kPrompts;
using swarm::testing::read_file;

const json& person_schema() {
  static const json s = json::parse(R"({"type": "object",
      "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer"},
                     "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
                     "kind": {"enum": ["x", "y"]}},
      "required": ["name", "age", "kind"], "additionalProperties": false})");
  return s;
}

// Whether `text` is JSON of person_schema(); why not otherwise.
std::string not_a_person(const std::string& text) {
  const json v = json::parse(text, nullptr, false);
  if (v.is_discarded() || !v.is_object()) return "not a JSON object";
  if (!v.contains("name") || !v["name"].is_string() || v["name"].get<std::string>().size() > 8 * 4)
    return "bad name";
  if (!v.contains("age") || !v["age"].is_number_integer()) return "bad age";
  if (!v.contains("kind") || !(v["kind"] == "x" || v["kind"] == "y")) return "bad kind";
  for (const auto& [k, x] : v.items()) {
    if (k == "tags") {
      if (!x.is_array() || x.size() > 2) return "bad tags";
      for (const json& t : x)
        if (t != "a" && t != "b") return "bad tag";
    } else if (k != "name" && k != "age" && k != "kind") {
      return "extra key " + k;
    }
  }
  return "";
}

class StructuredOutputSwarmTest : public swarm::testing::SwarmHarness {
 protected:
  json request(const std::string& prompt, int seed, double temperature) {
    return {{"model", "tiny"},
            {"prompt", prompt},
            {"max_tokens", 120},
            {"temperature", temperature},
            {"seed", seed},
            {"response_format",
             {{"type", "json_schema"}, {"json_schema", {{"name", "person"}, {"schema", person_schema()}, {"strict", true}}}}}};
  }
  json trust() {
    httplib::Client c("127.0.0.1", gateway()->port());
    auto res = c.Get("/trust");
    if (!res || res->status != 200) return json::object();
    return json::parse(res->body, nullptr, false);
  }
};

TEST_F(StructuredOutputSwarmTest, AJsonSchemaRequestThroughATwoStageGatewayReturnsValidJson) {
  ASSERT_TRUE(start_chain({{0, 2}, {2, 4}})) << read_file(gateway_log());
  for (int seed = 1; seed <= 4; ++seed) {
    const json got = post_completion(request(kPrompts[seed % 4], seed, 1.0));
    ASSERT_FALSE(got.contains("error")) << got.dump() << read_file(gateway_log());
    const std::string text = got["choices"][0]["text"];
    EXPECT_EQ(got["choices"][0]["finish_reason"], "stop") << text;
    EXPECT_EQ(not_a_person(text), "") << text;
  }
  // A grammar the node cannot enforce never reaches it: the gateway answers 400.
  json bad = request(kPrompts[0], 1, 1.0);
  bad["response_format"]["json_schema"]["schema"]["properties"]["age"]["minimum"] = 0;
  const json refused = post_completion(bad);
  EXPECT_EQ(refused.value("error", 0), 400) << refused.dump();
  EXPECT_NE(refused.value("body", "").find("minimum"), std::string::npos) << refused.dump();
}

TEST_F(StructuredOutputSwarmTest, AuditsReplayTheGrammarAndAnHonestSwarmPassesThem) {
  const auto a = keygen("a"), b = keygen("b");
  ChildProcess* na = start_node({"--layers", "0:2", "--identity", a.path});
  ChildProcess* nb = start_node({"--layers", "2:4", "--identity", b.path});
  ASSERT_TRUE(na->ok() && nb->ok());
  ASSERT_TRUE(start_gateway({"--peers", na->address() + "@" + a.node_id + "," + nb->address() + "@" + b.node_id,
                             "--audit-rate", "1", "--audit-local", model_, "--speculate", "ngram"})
                  ->ok());
  // Sampled and greedy: a constrained greedy choice is not the plain argmax,
  // so both need the replay to apply the grammar.
  for (int i = 0; i < 4; ++i) {
    const json got = post_completion(request(kPrompts[i], i + 1, i < 2 ? 1.0 : 0.0));
    ASSERT_FALSE(got.contains("error")) << got.dump() << read_file(gateway_log());
    EXPECT_EQ(not_a_person(got["choices"][0]["text"]), "") << got.dump();
  }
  json t;
  swarm::testing::eventually(
      [&] {
        t = trust();
        const json& au = t.value("audits", json::object());
        return au.value("submitted", -1) == au.value("done", 0) + au.value("failed", 0) + au.value("dropped", 0);
      },
      std::chrono::seconds(60));
  const json& au = t["audits"];
  EXPECT_EQ(au.value("done", 0), 4) << t.dump();
  EXPECT_EQ(au.value("frauds", -1), 0) << t.dump() << read_file(gateway_log());
  EXPECT_EQ(au.value("disputes", -1), 0) << t.dump();
  EXPECT_GT(au.value("choices_checked", 0), 4) << t.dump();  // the last stage's choices were replayed
  EXPECT_TRUE(t["excluded"].empty()) << t.dump();
}

}  // namespace
