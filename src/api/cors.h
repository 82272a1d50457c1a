// Cross-origin requests from browsers (CORS) to the HTTP API: which origins
// may read its answers, and which request headers a preflight allows. Pure.
#pragma once

#include <string>
#include <vector>

namespace swarm {

// Whether a page from `origin` may read the API's answers: any when `allowed`
// is empty, else exactly those listed ("*" in the list: any).
bool cors_allowed(const std::vector<std::string>& allowed, const std::string& origin);

// The Access-Control-Allow-Headers of a preflight: the headers the browser
// asks for (Access-Control-Request-Headers), when every one is a header name
// and the list is at most 4 KiB, else the ones the API reads.
std::string preflight_allowed_headers(const std::string& requested);

// "a,b , c" -> {"a", "b", "c"} (--cors-origin).
std::vector<std::string> split_origins(const std::string& list);

}  // namespace swarm
