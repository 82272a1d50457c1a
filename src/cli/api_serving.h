// What `swarm serve` and `swarm gateway` share: the model name they serve under,
// and running the OpenAI server until SIGINT or SIGTERM.
#pragma once

#include <signal.h>

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "api/openai_server.h"
#include "pipeline/generation.h"

namespace swarm::cli {

// "dir/tiny-llama-Q8_0.gguf" -> "tiny-llama-Q8_0"; a folder -> its name.
std::string default_model_name(std::string path);

// The HTTP front door's flags (doc/http-api.md), shared by serve and gateway.
struct HttpFlags {
  int threads = 32, max_connections = 1024, max_connections_per_client = 128;
  double header_timeout_s = 10, body_timeout_s = 60;
  bool strict_model_name = false;  // --strict-model-name
  std::string cors_origin;         // --cors-origin LIST
  std::vector<std::string> api_keys;  // --api-key KEY, repeatable: never charged
};
// The API's own flags among them (model names, CORS) onto `api`.
void apply_api_flags(const HttpFlags& flags, ApiOptions* api);
void add_http_flags(CLI::App* cmd, HttpFlags& flags);
HttpLimits http_limits(const HttpFlags& flags);

// --api-keys FILE over the ledger at `db_path` (":memory:" for one that lives
// only as long as the process): opens it (releasing holds a dead process left,
// logged), imports the file's keys (each granted its credits once) and logs
// how many. Fails (exits) on a file or database that does not load.
std::unique_ptr<trust::Ledger> open_ledger_with_keys(const std::string& db_path,
                                                     const std::string& keys_path);

// Blocks SIGINT and SIGTERM in this thread (and so in every thread started after),
// returning the set to wait on. Call before starting any thread.
sigset_t block_stop_signals();

// Serves `api` over `backend` on `listen` (HOST:PORT), prints "listening on
// HOST:PORT" once connections are accepted, and returns when a signal of
// `signals` arrives.
void serve_until_signal(const ApiOptions& api, GenerationBackend& backend, const std::string& listen,
                        const sigset_t& signals);

}  // namespace swarm::cli
