// Structured output in a completion request: OpenAI's response_format
// ({"type": "json_object"} or {"type": "json_schema", "json_schema": {"name",
// "schema", "strict"}}), and llama.cpp server's `grammar` (GBNF text),
// `json_schema` and response_format {"type": "json_object", "schema": ...}.
// Each becomes one GBNF grammar for the sampler (SamplingParams::grammar); a
// grammar that does not parse, a schema using what the converter cannot
// enforce, or two of these at once is a 400 naming the field and the problem
// (doc/http-api.md, "Structured output").
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "api/api_error.h"

namespace swarm {

// Reads the structured-output fields of `body` (a JSON object) into `grammar`
// ("" when the request asks for none).
std::optional<ApiError> read_structured_output(const nlohmann::json& body, std::string* grammar);

}  // namespace swarm
