#include "engine/json_schema_grammar.h"

#include <map>
#include <set>

#include "engine/grammar.h"

namespace swarm {
namespace {

using nlohmann::json;

// The JSON building blocks every schema grammar may use. An exponent has at
// most 2 digits: with 16 digits before the point that stays below 1e116, so
// every number parses to a finite double (a 16-digit exponent made JSON.parse
// give Infinity, which schema validators then refuse).
constexpr const char* kPrimitives = R"(ws ::= | " " | "\n" [ \t]{0,20}
string ::= "\"" char* "\"" ws
char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
integral ::= "-"? ("0" | [1-9] [0-9]{0,15})
number ::= integral ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})? ws
integer ::= integral ws
safe-integer ::= "-"? ("0" | [1-9] [0-9]{0,14}) ws
boolean ::= ("true" | "false") ws
null ::= "null" ws
value ::= object | array | string | number | boolean | null
object ::= "{" ws ( string ":" ws value ( "," ws string ":" ws value )* )? "}" ws
array ::= "[" ws ( value ( "," ws value )* )? "]" ws
)";

const std::set<std::string>& ignored_keywords() {
  static const std::set<std::string> k{"title", "description", "default", "examples", "format",
                                       "$schema", "$id", "$comment", "$defs", "definitions",
                                       "readOnly", "writeOnly", "deprecated", "contentMediaType",
                                       "contentEncoding"};
  return k;
}


class SchemaConverter {
 public:
  explicit SchemaConverter(const json& root) : root_(root) {}

  Result<std::string> convert() {
    const std::string top = visit(root_, "", 0);
    if (!status_.ok()) return status_;
    std::string out = "root ::= ws " + top + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    out += kPrimitives;
    // Check what we built: a converter bug should be an error, not a bad grammar downstream.
    const Result<Grammar> g = parse_gbnf(out);
    if (!g.ok()) return Status::InvalidArgument("json_schema: the schema's grammar is too large: " +
                                                g.status().message());
    return out;
  }

 private:
  void fail(const std::string& where, const std::string& what) {
    if (status_.ok())
      status_ = Status::InvalidArgument("json_schema at '" + (where.empty() ? "/" : where) + "': " + what);
  }

  std::string add_rule(const std::string& body) {
    const std::string name = reserve();
    rules_.emplace(name, body);
    return name;
  }

  std::string reserve() { return "s" + std::to_string(next_++); }

  // The rule name for `schema` (a primitive's, or a new one).
  std::string visit(const json& schema, const std::string& path, int depth) {
    if (!status_.ok()) return "value";
    if (depth > kMaxSchemaDepth) {
      fail(path, "nested deeper than " + std::to_string(kMaxSchemaDepth) + " (the limit)");
      return "value";
    }
    if (schema.is_boolean()) {
      if (!schema.get<bool>()) fail(path, "the schema false matches nothing");
      return "value";
    }
    if (!schema.is_object()) {
      fail(path, "a schema must be an object or a boolean");
      return "value";
    }
    for (const auto& [key, v] : schema.items()) {
      static const std::set<std::string> handled{
          "type", "properties", "required", "additionalProperties", "items", "minItems",
          "maxItems", "enum", "const", "anyOf", "oneOf", "$ref", "minLength", "maxLength",
          "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
      if (!handled.count(key) && !ignored_keywords().count(key)) {
        fail(path, "'" + key + "' is not supported");
        return "value";
      }
    }
    if (auto r = schema.find("$ref"); r != schema.end()) return visit_ref(*r, path, depth);
    if (auto c = schema.find("const"); c != schema.end())
      return add_rule(gbnf_literal(c->dump()) + " ws");
    if (auto e = schema.find("enum"); e != schema.end()) {
      if (!e->is_array() || e->empty()) {
        fail(path + "/enum", "must be a non-empty array");
        return "value";
      }
      std::string body;
      for (const json& v : *e) body += (body.empty() ? "" : " | ") + gbnf_literal(v.dump());
      return add_rule("(" + body + ") ws");
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      auto a = schema.find(key);
      if (a == schema.end()) continue;
      if (!a->is_array() || a->empty()) {
        fail(path + "/" + key, "must be a non-empty array");
        return "value";
      }
      std::string body;
      for (size_t i = 0; i < a->size(); ++i)
        body += (i ? " | " : "") +
                visit((*a)[i], path + "/" + key + "/" + std::to_string(i), depth + 1);
      return add_rule(body);
    }
    auto t = schema.find("type");
    if (t == schema.end()) {
      if (schema.contains("properties") || schema.contains("additionalProperties"))
        return visit_object(schema, path, depth);
      if (schema.contains("items")) return visit_array(schema, path, depth);
      return "value";
    }
    if (t->is_array()) {
      if (t->empty()) {
        fail(path + "/type", "must not be empty");
        return "value";
      }
      std::string body;
      for (const json& one : *t) {
        if (!one.is_string()) {
          fail(path + "/type", "must be a string or an array of strings");
          return "value";
        }
        body += (body.empty() ? "" : " | ") + visit_type(one.get<std::string>(), schema, path, depth);
      }
      return add_rule(body);
    }
    if (!t->is_string()) {
      fail(path + "/type", "must be a string or an array of strings");
      return "value";
    }
    return visit_type(t->get<std::string>(), schema, path, depth);
  }

  static bool has_bounds(const json& schema) {
    for (const char* key : {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
      if (schema.contains(key)) return true;
    return false;
  }

  // Integers: bounds are accepted when they hold every integer of at most 15
  // digits (|x| < 10^15), which is then what the grammar allows. That covers
  // the safe-integer range, +-(2^53 - 1), that zod and other schema writers put
  // on every integer; narrower ranges are refused rather than not enforced.
  std::string visit_integer(const json& schema, const std::string& path) {
    if (!has_bounds(schema)) return "integer";
    constexpr double kLimit = 1e15 - 1;
    for (const char* key : {"minimum", "exclusiveMinimum"})
      if (auto b = schema.find(key); b != schema.end() && !(b->is_number() && b->get<double>() <= -kLimit)) {
        fail(path, "'" + std::string(key) + "' must be at most -(10^15 - 1): a range narrower "
                   "than 15-digit integers cannot be enforced");
        return "value";
      }
    for (const char* key : {"maximum", "exclusiveMaximum"})
      if (auto b = schema.find(key); b != schema.end() && !(b->is_number() && b->get<double>() >= kLimit)) {
        fail(path, "'" + std::string(key) + "' must be at least 10^15 - 1: a range narrower "
                   "than 15-digit integers cannot be enforced");
        return "value";
      }
    return "safe-integer";
  }

  std::string visit_type(const std::string& type, const json& schema, const std::string& path,
                         int depth) {
    if (type == "object") return visit_object(schema, path, depth);
    if (type == "array") return visit_array(schema, path, depth);
    if (type == "string") return visit_string(schema, path);
    if (type == "integer") return visit_integer(schema, path);
    if (has_bounds(schema)) {
      fail(path, "'minimum'/'maximum' are supported on integers only (as the safe-integer range)");
      return "value";
    }
    if (type == "number" || type == "boolean" || type == "null") return type;
    fail(path + "/type", "unknown type '" + type + "'");
    return "value";
  }

  // A count keyword (minItems, maxLength, ...) within the repetition cap, or `absent`.
  int count(const json& schema, const char* key, const std::string& path, int absent) {
    auto it = schema.find(key);
    if (it == schema.end()) return absent;
    if (!it->is_number_integer() || it->get<int64_t>() < 0) {
      fail(path + "/" + key, "must be a non-negative integer");
      return absent;
    }
    if (it->get<int64_t>() > kMaxRepetition) {
      fail(path + "/" + key, "is above " + std::to_string(kMaxRepetition) + " (the limit)");
      return absent;
    }
    return static_cast<int>(it->get<int64_t>());
  }

  static std::string repeat(const std::string& what, int min, int max) {
    if (max < 0) return min == 0 ? "(" + what + ")*" : "(" + what + "){" + std::to_string(min) + ",}";
    return "(" + what + "){" + std::to_string(min) + "," + std::to_string(max) + "}";
  }

  std::string visit_string(const json& schema, const std::string& path) {
    const int min = count(schema, "minLength", path, 0);
    const int max = count(schema, "maxLength", path, -1);
    if (min == 0 && max < 0) return "string";
    if (max >= 0 && max < min) fail(path + "/maxLength", "is below minLength");
    return add_rule("\"\\\"\" " + repeat("char", min, max) + " \"\\\"\" ws");
  }

  std::string visit_array(const json& schema, const std::string& path, int depth) {
    std::string item = "value";
    if (auto it = schema.find("items"); it != schema.end()) {
      if (it->is_array()) {
        fail(path + "/items", "an array of schemas (tuple) is not supported");
        return "value";
      }
      item = visit(*it, path + "/items", depth + 1);
    }
    const int min = count(schema, "minItems", path, 0);
    const int max = count(schema, "maxItems", path, -1);
    if (max >= 0 && max < min) {
      fail(path + "/maxItems", "is below minItems");
      return "value";
    }
    if (max == 0) return add_rule("\"[\" ws \"]\" ws");
    const std::string more = repeat("\",\" ws " + item, min > 0 ? min - 1 : 0, max < 0 ? -1 : max - 1);
    const std::string items = item + " " + more;
    return add_rule("\"[\" ws " + (min > 0 ? items : "(" + items + ")?") + " \"]\" ws");
  }

  std::string visit_object(const json& schema, const std::string& path, int depth) {
    const json* props = nullptr;
    if (auto p = schema.find("properties"); p != schema.end()) {
      if (!p->is_object()) {
        fail(path + "/properties", "must be an object");
        return "value";
      }
      props = &*p;
    }
    std::set<std::string> required;
    if (auto r = schema.find("required"); r != schema.end()) {
      if (!r->is_array()) {
        fail(path + "/required", "must be an array of strings");
        return "value";
      }
      for (const json& k : *r) {
        if (!k.is_string()) {
          fail(path + "/required", "must be an array of strings");
          return "value";
        }
        if (!props || !props->contains(k.get<std::string>())) {
          fail(path + "/required", "names '" + k.get<std::string>() + "', which properties does not define");
          return "value";
        }
        required.insert(k.get<std::string>());
      }
    }
    // Extra keys: allowed when additionalProperties is true or a schema, or
    // when the object lists no properties at all.
    std::string extra_value;
    auto ap = schema.find("additionalProperties");
    if (ap != schema.end() && !(ap->is_boolean() && !ap->get<bool>())) {
      extra_value = ap->is_boolean() ? "value" : visit(*ap, path + "/additionalProperties", depth + 1);
    } else if (ap == schema.end() && (!props || props->empty())) {
      extra_value = "value";
    }
    if (!status_.ok()) return "value";

    struct Key {
      std::string kv;  // the rule for "key": value
      bool required;
    };
    std::vector<Key> keys;
    if (props)
      for (const auto& [name, sub] : props->items()) {
        const std::string v = visit(sub, path + "/properties/" + name, depth + 1);
        keys.push_back({gbnf_literal(json(name).dump()) + " ws \":\" ws " + v, required.count(name) > 0});
      }
    const std::string extra_kv = extra_value.empty() ? "" : "string \":\" ws " + extra_value;

    // after[i]: the rest from key i when something was written before it (so
    // each key starts with a comma); first[i]: the same with nothing written yet.
    const size_t n = keys.size();
    std::vector<std::string> after(n + 1), first(n + 1);
    after[n] = extra_kv.empty() ? "\"\"" : "(\",\" ws " + extra_kv + ")*";
    first[n] = extra_kv.empty() ? "\"\"" : "(" + extra_kv + " (\",\" ws " + extra_kv + ")*)?";
    for (size_t i = n; i-- > 0;) {
      const std::string a = add_rule(after[i + 1]);
      const std::string f = add_rule(first[i + 1]);
      after[i] = "\",\" ws " + keys[i].kv + " " + a + (keys[i].required ? "" : " | " + a);
      first[i] = keys[i].kv + " " + a + (keys[i].required ? "" : " | " + f);
    }
    const std::string body = add_rule(first[0]);
    return add_rule("\"{\" ws " + body + " \"}\" ws");
  }

  std::string visit_ref(const json& ref, const std::string& path, int depth) {
    if (!ref.is_string()) {
      fail(path + "/$ref", "must be a string");
      return "value";
    }
    const std::string r = ref.get<std::string>();
    if (auto it = refs_.find(r); it != refs_.end()) return it->second;
    std::string pointer;
    if (r == "#") {
      pointer = "";
    } else if (r.rfind("#/", 0) == 0) {
      pointer = r.substr(1);
    } else {
      fail(path + "/$ref", "only references within the schema (\"#/$defs/...\") are supported, not '" + r + "'");
      return "value";
    }
    const json* target = nullptr;
    try {
      target = &root_.at(json::json_pointer(pointer));
    } catch (const json::exception&) {
      fail(path + "/$ref", "'" + r + "' names nothing in the schema");
      return "value";
    }
    // Named before it is visited, so a recursive schema refers to itself.
    const std::string name = reserve();
    refs_.emplace(r, name);
    const std::string body = visit(*target, pointer, depth + 1);
    rules_.emplace(name, body);
    return name;
  }

  const json& root_;
  Status status_;
  std::map<std::string, std::string> rules_;
  std::map<std::string, std::string> refs_;
  int next_ = 0;
};

}  // namespace

Result<std::string> grammar_from_json_schema(const nlohmann::json& schema) {
  return SchemaConverter(schema).convert();
}

std::string json_object_grammar() { return std::string("root ::= ws object\n") + kPrimitives; }

}  // namespace swarm
