#include "api/api_error.h"

namespace swarm {

nlohmann::ordered_json ApiError::body() const {
  nlohmann::ordered_json e = {
      {"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  return {{"error", e}};
}

ApiError invalid_request(std::string message, std::string param, std::string code) {
  return ApiError{400, std::move(message), "invalid_request_error", std::move(param),
                  std::move(code)};
}

ApiError error_from_status(const Status& status) {
  switch (status.code()) {
    case Status::Code::kInvalidArgument:
      return invalid_request(status.message());
    case Status::Code::kUnavailable:
    case Status::Code::kResourceExhausted:
      return ApiError{503, status.ToString(), "server_error", "", "service_unavailable"};
    default:
      return ApiError{500, status.ToString(), "server_error", "", ""};
  }
}

const char* json_type_name(const nlohmann::json& v) {
  using nlohmann::json;
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a decimal";
    default:
      return "an unknown type";
  }
}

ApiError wrong_type(const std::string& param, const char* expected, const nlohmann::json& v) {
  return invalid_request("Invalid type for '" + param + "': expected " + expected + ", but got " +
                             json_type_name(v) + " instead.",
                         param, "invalid_type");
}

}  // namespace swarm
