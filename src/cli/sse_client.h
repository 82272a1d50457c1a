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
// Status whose message carries the server's error message. on_event returning
// false stops reading.
Status post_streaming(const std::string& url, const std::string& path, const nlohmann::json& body,
                      const std::function<bool(const nlohmann::json&)>& on_event);

}  // namespace swarm::cli
