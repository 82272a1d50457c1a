// Structured output end to end in the engine: the shipped model, sampled at
// temperature 1 over several seeds, under grammars made from many JSON
// schemas. Every output must parse as JSON and satisfy its schema, which a
// small validator for the supported subset checks independently of the grammar.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/json_schema_grammar.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"

namespace swarm {
namespace {

using nlohmann::json;

std::string shipped_model() { return std::string(SWARM_SOURCE_DIR) + "/models/kjv-target-Q8_0.gguf"; }

// Why `v` does not satisfy `schema` ("" if it does), for the subset
// grammar_from_json_schema supports.
std::string invalid(const json& v, const json& schema, const json& root) {
  if (schema.is_boolean()) return schema.get<bool>() ? "" : "false schema";
  if (auto r = schema.find("$ref"); r != schema.end())
    return invalid(v, root.at(json::json_pointer(r->get<std::string>().substr(1))), root);
  if (auto c = schema.find("const"); c != schema.end()) return v == *c ? "" : "not the const";
  if (auto e = schema.find("enum"); e != schema.end())
    return std::find(e->begin(), e->end(), v) != e->end() ? "" : "not in the enum";
  for (const char* key : {"anyOf", "oneOf"})
    if (auto a = schema.find(key); a != schema.end()) {
      for (const json& s : *a)
        if (invalid(v, s, root).empty()) return "";
      return std::string("matches no ") + key + " branch";
    }
  auto t = schema.find("type");
  if (t == schema.end()) return "";
  if (t->is_array()) {
    for (const json& one : *t) {
      json s = schema;
      s["type"] = one;
      if (invalid(v, s, root).empty()) return "";
    }
    return "matches none of the types";
  }
  const std::string type = *t;
  if (type == "null") return v.is_null() ? "" : "not null";
  if (type == "boolean") return v.is_boolean() ? "" : "not a boolean";
  if (type == "integer") return v.is_number_integer() ? "" : "not an integer";
  if (type == "number") return v.is_number() ? "" : "not a number";
  if (type == "string") {
    if (!v.is_string()) return "not a string";
    // Lengths in code points.
    size_t n = 0;
    for (unsigned char c : v.get<std::string>()) n += (c & 0xC0) != 0x80;
    if (n < schema.value("minLength", 0u) || n > schema.value("maxLength", 1u << 30)) return "bad length";
    return "";
  }
  if (type == "array") {
    if (!v.is_array()) return "not an array";
    if (v.size() < schema.value("minItems", 0u) || v.size() > schema.value("maxItems", 1u << 30))
      return "bad item count";
    if (auto items = schema.find("items"); items != schema.end())
      for (const json& x : v)
        if (std::string w = invalid(x, *items, root); !w.empty()) return "item: " + w;
    return "";
  }
  if (type == "object") {
    if (!v.is_object()) return "not an object";
    const json props = schema.value("properties", json::object());
    for (const json& k : schema.value("required", json::array()))
      if (!v.contains(k.get<std::string>())) return "missing " + k.get<std::string>();
    for (const auto& [k, x] : v.items()) {
      if (props.contains(k)) {
        if (std::string w = invalid(x, props[k], root); !w.empty()) return k + ": " + w;
      } else if (schema.contains("additionalProperties")) {
        const json& ap = schema["additionalProperties"];
        if (ap.is_boolean() && !ap.get<bool>()) return "extra key " + k;
        if (std::string w = invalid(x, ap, root); !w.empty()) return k + ": " + w;
      }
    }
    return "";
  }
  return "unknown type";
}

class StructuredGeneration : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = Model::Load(shipped_model());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(m).value().release();
    auto t = Tokenizer::Load(shipped_model());
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tok_ = std::move(t).value().release();
    vocab_ = new std::shared_ptr<const GrammarVocab>(GrammarVocab::from_tokenizer(*tok_));
  }

  // Generates under `grammar` from `prompt`; the text, and whether it ended
  // with a stop token (not the length limit).
  std::pair<std::string, bool> generate(const std::string& grammar, uint64_t seed, int max_tokens) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.seed = seed;
    p.grammar = grammar;
    p.stop_tokens = tok_->eog_ids();
    const std::vector<int32_t> prompt = tok_->encode("1 And God said, ");
    p.grammar_start = static_cast<int>(prompt.size());
    EXPECT_TRUE(p.validate(model_->config().n_vocab).ok());
    Sampler s(p, model_->config().n_vocab, *vocab_);
    EXPECT_TRUE(s.grammar_status().ok()) << s.grammar_status().ToString();
    ThreadPool pool(1);
    auto cache = model_->new_cache(static_cast<int>(prompt.size()) + max_tokens + 1);
    for (int32_t id : prompt) s.accept(id);
    std::vector<int32_t> feed = prompt, out;
    int position = static_cast<int>(prompt.size());
    for (int i = 0; i < max_tokens; ++i) {
      auto logits = model_->forward(feed, *cache, pool);
      EXPECT_TRUE(logits.ok());
      if (!logits.ok()) break;
      const int n_vocab = model_->config().n_vocab;
      const float* row = logits->data() + logits->size() - static_cast<size_t>(n_vocab);
      const int32_t id = s.sample(row, position++);
      if (s.is_stop_token(id)) return {tok_->decode(out), true};
      s.accept(id);
      out.push_back(id);
      feed = {id};
    }
    return {tok_->decode(out), false};
  }

  static Model* model_;
  static Tokenizer* tok_;
  static std::shared_ptr<const GrammarVocab>* vocab_;
};
Model* StructuredGeneration::model_ = nullptr;
Tokenizer* StructuredGeneration::tok_ = nullptr;
std::shared_ptr<const GrammarVocab>* StructuredGeneration::vocab_ = nullptr;

TEST_F(StructuredGeneration, EveryOutputIsValidJsonOfItsSchema) {
  const std::vector<json> schemas = {
      json::parse(R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                      "age": {"type": "integer"}, "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3}},
                      "required": ["name", "age"], "additionalProperties": false})"),
      json::parse(R"({"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 4})"),
      json::parse(R"({"type": "object", "properties": {
                      "book": {"enum": ["Genesis", "Exodus", "Psalms"]},
                      "verse": {"type": "object", "properties": {"chapter": {"type": "integer"},
                                "text": {"type": "string", "minLength": 1, "maxLength": 30}},
                                "required": ["chapter", "text"], "additionalProperties": false},
                      "holy": {"type": "boolean"}, "note": {"type": ["string", "null"], "maxLength": 8}},
                      "required": ["book", "verse"], "additionalProperties": false})"),
      json::parse(R"({"anyOf": [{"type": "integer"}, {"const": "none"}, {"type": "array", "items": {"type": "boolean"}, "maxItems": 2}]})"),
      json::parse(R"({"$defs": {"p": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                      "required": ["x", "y"], "additionalProperties": false}},
                      "type": "object", "properties": {"from": {"$ref": "#/$defs/p"}, "to": {"$ref": "#/$defs/p"}},
                      "required": ["from", "to"], "additionalProperties": false})"),
      json::parse(R"({"type": "string", "maxLength": 40})"),
  };
  int stopped = 0, total = 0;
  for (size_t i = 0; i < schemas.size(); ++i) {
    auto g = grammar_from_json_schema(schemas[i]);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    for (uint64_t seed = 1; seed <= 3; ++seed) {
      const auto [text, complete] = generate(*g, seed * 7919 + i, 400);
      ++total;
      stopped += complete;
      SCOPED_TRACE("schema " + std::to_string(i) + " seed " + std::to_string(seed) + ": " + text);
      ASSERT_TRUE(complete) << "no stop token within 400 tokens";
      json v;
      ASSERT_NO_THROW(v = json::parse(text));
      EXPECT_EQ(invalid(v, schemas[i], schemas[i]), "");
    }
  }
  EXPECT_EQ(stopped, total);
}

TEST_F(StructuredGeneration, AnyJsonObjectAndAHandWrittenGrammar) {
  int objects = 0;
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    const auto [text, complete] = generate(json_object_grammar(), seed, 300);
    SCOPED_TRACE(text);
    if (!complete) continue;  // an unbounded string may outrun the limit
    json v;
    ASSERT_NO_THROW(v = json::parse(text));
    EXPECT_TRUE(v.is_object());
    ++objects;
  }
  EXPECT_GT(objects, 0);
  const auto [verse, complete] = generate(R"(root ::= [A-Z] [a-z]{2,8} " " [0-9]{1,2} ":" [0-9]{1,2})", 5, 40);
  EXPECT_TRUE(complete) << verse;
  int colon = 0;
  for (char c : verse) colon += c == ':';
  EXPECT_EQ(colon, 1) << verse;
}

}  // namespace
}  // namespace swarm
