// OpenAI-style errors over HTTP, for every server of ours (the API, the skill
// proxy) and the gateway's skill routing: answering one, and the handlers
// that turn what cpp-httplib or the front door refuse (404, 413, deadlines,
// size limits, exceptions) into the same JSON body.
#pragma once

#include <httplib.h>

#include "api/api_error.h"

namespace swarm {

// `e` as the response: its status and body.
void send_api_error(httplib::Response& res, const ApiError& e);

// Error and exception handlers on `server` that answer with OpenAI's error body:
// the front door's refusals (api/http_server.h) with their status and message,
// an unknown route as "Invalid URL (METHOD PATH)", an exception as a 500.
void install_openai_error_handlers(httplib::Server& server);

}  // namespace swarm
