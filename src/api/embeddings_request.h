// POST /v1/embeddings (OpenAI's shape, doc/http-api.md "Embeddings"): the
// request read and checked, and the answer built. `input` is a string, an
// array of strings, an array of token ids, or an array of arrays of ids;
// `encoding_format` "float" (default) or "base64" (little-endian float32
// bytes). Every input is capped in count and length, with a 400 naming the
// field and the limit.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "api/api_error.h"
#include "engine/tokenizer.h"

namespace swarm {

inline constexpr size_t kMaxEmbeddingInputs = 2048;       // OpenAI's limit
inline constexpr size_t kMaxEmbeddingTokensTotal = 300000; // over all inputs, as OpenAI's

struct EmbeddingsRequest {
  std::string model;                        // "" when the request names none
  std::vector<std::vector<int32_t>> inputs;  // token ids, one list per input
  bool base64 = false;
};

// Reads `body`, tokenizing text inputs with `tok` (the model's BOS first where
// it adds one; special tokens are not parsed in text). Each input must hold 1
// to `max_tokens` tokens.
std::variant<EmbeddingsRequest, ApiError> parse_embeddings_request(const nlohmann::json& body,
                                                                   const Tokenizer& tok,
                                                                   int max_tokens);

// {"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
//  "model", "usage": {"prompt_tokens", "total_tokens"}}.
nlohmann::ordered_json embeddings_response(const EmbeddingsRequest& req, const std::string& model,
                                           const std::vector<std::vector<float>>& vectors);

}  // namespace swarm
