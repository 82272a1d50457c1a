#include "api/llama_tokenize.h"

#include <string>
#include <vector>

#include "engine/unicode.h"

namespace swarm {
namespace {

using OJson = nlohmann::ordered_json;

// A boolean field, or its default when absent; an error names it otherwise.
std::variant<bool, ApiError> flag(const nlohmann::json& body, const char* name, bool fallback) {
  if (!body.contains(name) || body[name].is_null()) return fallback;
  if (!body[name].is_boolean())
    return invalid_request(std::string("'") + name + "' must be a boolean", name);
  return body[name].get<bool>();
}

}  // namespace

std::variant<OJson, ApiError> tokenize_request(const nlohmann::json& body, const Tokenizer& tok) {
  if (!body.is_object()) return invalid_request("the body must be a JSON object");
  if (!body.contains("content") || !body["content"].is_string())
    return invalid_request("'content' must be a string: the text to tokenize", "content");
  bool with[3];
  const char* names[3] = {"add_special", "parse_special", "with_pieces"};
  const bool fallbacks[3] = {false, true, false};
  for (int i = 0; i < 3; ++i) {
    auto v = flag(body, names[i], fallbacks[i]);
    if (auto* e = std::get_if<ApiError>(&v)) return *e;
    with[i] = std::get<bool>(v);
  }
  const std::string text = body["content"].get<std::string>();
  const std::vector<int32_t> ids = tok.encode(text, with[0] && tok.add_bos_default(), with[1]);
  OJson tokens = OJson::array();
  for (int32_t id : ids) {
    if (!with[2]) {
      tokens.push_back(id);
      continue;
    }
    const std::string piece = tok.token_to_piece(id);
    OJson p;
    if (unicode::is_valid_utf8(piece)) {
      p = piece;
    } else {
      p = OJson::array();
      for (unsigned char c : piece) p.push_back(static_cast<int>(c));
    }
    tokens.push_back({{"id", id}, {"piece", p}});
  }
  return OJson{{"tokens", tokens}};
}

std::variant<OJson, ApiError> detokenize_request(const nlohmann::json& body, const Tokenizer& tok) {
  if (!body.is_object()) return invalid_request("the body must be a JSON object");
  if (!body.contains("tokens") || !body["tokens"].is_array())
    return invalid_request("'tokens' must be an array of token ids", "tokens");
  std::vector<int32_t> ids;
  ids.reserve(body["tokens"].size());
  for (const auto& t : body["tokens"]) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= tok.vocab_size())
      return invalid_request("'tokens' holds " + t.dump() + ", not a token id of this model's vocabulary of " +
                                 std::to_string(tok.vocab_size()),
                             "tokens");
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return OJson{{"content", tok.decode(ids, /*skip_special=*/false)}};
}

}  // namespace swarm
