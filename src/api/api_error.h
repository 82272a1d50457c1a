// Errors as OpenAI's API reports them: an HTTP status and a body
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
// where param and code are null unless they say something.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "engine/status.h"

namespace swarm {

struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the request field at fault; "" -> null
  std::string code;   // a machine-readable reason ("model_not_found"); "" -> null

  nlohmann::ordered_json body() const;
};

// 400 invalid_request_error naming `param`.
ApiError invalid_request(std::string message, std::string param = "", std::string code = "");

// "a string", "an integer", "an object", ...: a JSON value's type as an error names it.
const char* json_type_name(const nlohmann::json& v);

// 400 invalid_type: `param` holds a JSON value of another type than `expected`
// ("a string", "an array of objects"): "Invalid type for 'param': expected
// ..., but got an integer instead.", as OpenAI words it.
ApiError wrong_type(const std::string& param, const char* expected, const nlohmann::json& v);

// A backend's Status as an HTTP error: InvalidArgument -> 400, Unavailable and
// ResourceExhausted (no route, overloaded, shutting down) -> 503, anything
// else -> 500.
ApiError error_from_status(const Status& status);

}  // namespace swarm
