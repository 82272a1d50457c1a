// JSON Schema -> GBNF (engine/grammar.h), for structured output: OpenAI's
// response_format json_schema, llama.cpp's json_schema, and anything else that
// wants "valid JSON of this shape" from the sampler.
//
// Supported: type (one or a list) string / number / integer / boolean / null /
// object / array; properties with required (keys come in the order `properties`
// iterates in, by name for nlohmann::json; optional ones may be left out); additionalProperties
// (false or absent with properties: no other keys; true or a schema: more keys
// may follow the listed ones); items, minItems, maxItems; minLength and
// maxLength of strings; enum; const; anyOf / oneOf; $ref to "#/$defs/..." or
// "#/definitions/..." (recursion included); a schema of true or {} (any JSON).
// Annotations (title, description, default, examples, format, $schema, $id,
// $comment) are ignored. Any other keyword that would constrain the value
// (pattern, minimum, allOf, prefixItems, ...) is refused with an error naming
// it and where it is, rather than silently producing JSON the schema rejects.
//
// Generated JSON allows a little whitespace between tokens (at most one
// newline and 20 spaces or tabs), and numbers have at most 16 digits before
// and after the point and 2 in the exponent (so every number is a finite
// double), so no rule can make the model run on forever within one
// token.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "engine/status.h"

namespace swarm {

// Nesting of a schema at most this deep (objects, arrays, anyOf, $ref chains).
inline constexpr int kMaxSchemaDepth = 64;

// The GBNF grammar of the JSON texts `schema` accepts, or an error that says
// which keyword at which place (a JSON pointer) is the problem.
Result<std::string> grammar_from_json_schema(const nlohmann::json& schema);

// The grammar of any JSON object (response_format {"type": "json_object"}).
std::string json_object_grammar();

}  // namespace swarm
