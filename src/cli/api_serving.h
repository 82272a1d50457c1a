// What `swarm serve` and `swarm gateway` share: the model name they serve under,
// and running the OpenAI server until SIGINT or SIGTERM.
#pragma once

#include <signal.h>

#include <string>

#include "api/openai_server.h"
#include "pipeline/generation.h"

namespace swarm::cli {

// "dir/tiny-llama-Q8_0.gguf" -> "tiny-llama-Q8_0"; a folder -> its name.
std::string default_model_name(std::string path);

// Blocks SIGINT and SIGTERM in this thread (and so in every thread started after),
// returning the set to wait on. Call before starting any thread.
sigset_t block_stop_signals();

// Serves `api` over `backend` on `listen` (HOST:PORT), prints "listening on
// HOST:PORT" once connections are accepted, and returns when a signal of
// `signals` arrives.
void serve_until_signal(const ApiOptions& api, GenerationBackend& backend, const std::string& listen,
                        const sigset_t& signals);

}  // namespace swarm::cli
