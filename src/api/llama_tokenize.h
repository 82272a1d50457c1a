// llama-server's /tokenize and /detokenize, so clients made for llama.cpp work
// against `swarm serve` and the gateway alike (doc/http-api.md). Pure: a
// request body in, the answer's JSON or an error naming the field out.
#pragma once

#include <nlohmann/json.hpp>
#include <variant>

#include "api/api_error.h"
#include "engine/tokenizer.h"

namespace swarm {

// POST /tokenize {content, add_special = false, parse_special = true,
// with_pieces = false} -> {tokens: [id, ...]} or, with pieces,
// {tokens: [{id, piece}, ...]} where a piece that is not valid UTF-8 on its
// own is its bytes as numbers.
std::variant<nlohmann::ordered_json, ApiError> tokenize_request(const nlohmann::json& body,
                                                                const Tokenizer& tok);

// POST /detokenize {tokens: [id, ...]} -> {content}; ids outside the
// vocabulary are refused.
std::variant<nlohmann::ordered_json, ApiError> detokenize_request(const nlohmann::json& body,
                                                                  const Tokenizer& tok);

}  // namespace swarm
