// Client side of the OpenAI streaming API, for `swarm chat` and `swarm loadgen`:
// POST a JSON body and hand each server-sent event's JSON to a callback.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/status.h"

namespace swarm::cli {

// POSTs `body` to `url` + `path` and calls on_event(json) for every `data:` event
// but [DONE]. An error event, a transport failure or a non-200 answer is a
// Status whose message carries the server's error message (the `message` of
// an OpenAI error body). on_event returning false stops reading. `error_kind`,
// if given, is set on failure to "http_<status>", "stream_error" (an error
// event after the answer began) or httplib's name of the transport error
// ("Connection", "Read", ...).
Status post_streaming(const std::string& url, const std::string& path, const nlohmann::json& body,
                      const std::function<bool(const nlohmann::json&)>& on_event,
                      std::string* error_kind = nullptr);

}  // namespace swarm::cli
