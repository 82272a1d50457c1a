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

}  // namespace swarm
