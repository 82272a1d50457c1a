#include "api/http_errors.h"

#include <exception>
#include <string>

#include "api/http_server.h"

namespace swarm {

void send_api_error(httplib::Response& res, const ApiError& e) {
  res.status = e.http_status;
  res.set_content(e.body().dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace),
                  "application/json");
}

void install_openai_error_handlers(httplib::Server& s) {
  s.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // ours already
        ApiError e{res.status, "", "invalid_request_error", "", ""};
        if (auto refusal = HttpServer::current_refusal()) {  // a deadline or a size limit
          res.status = e.http_status = refusal->status;
          e.message = refusal->message;
          res.set_header("Connection", "close");
        } else if (res.status == 404) {
          e.message = "Invalid URL (" + req.method + " " + req.path + ")";
        } else if (res.status == 413) {
          e.message = "The request body is too large.";
        } else {
          e.message = "HTTP error " + std::to_string(res.status);
        }
        if (res.status >= 500) e.type = "server_error";
        send_api_error(res, e);
        return httplib::Server::HandlerResponse::Handled;
      }));
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        send_api_error(res, ApiError{500, "Internal error: " + what, "server_error", "", ""});
      });
}

}  // namespace swarm
