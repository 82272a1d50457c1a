#include "cli/api_serving.h"

#include <cstdio>

#include "api/api_key_check.h"
#include "api/cors.h"
#include "cli/common.h"
#include "trust/api_keys.h"

namespace swarm::cli {

std::string default_model_name(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.size() > 5 && name.ends_with(".gguf")) name.resize(name.size() - 5);
  return name;
}

void add_http_flags(CLI::App* cmd, HttpFlags& f) {
  cmd->add_option("--http-threads", f.threads,
                  "HTTP worker threads kept ready (default 32; more start as connections need "
                  "them, up to --max-connections)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--max-connections", f.max_connections,
                  "HTTP connections open at once; more are answered 503 (default 1024)")
      ->check(CLI::Range(1, 65536));
  cmd->add_option("--max-connections-per-client", f.max_connections_per_client,
                  "HTTP connections open at once from one IP address; more are answered 429 "
                  "(default 128)")
      ->check(CLI::Range(1, 65536));
  cmd->add_option("--http-header-timeout", f.header_timeout_s,
                  "Seconds a request line and its headers may take to arrive, in all (default "
                  "10); later: 408 and the connection is closed")
      ->check(CLI::Range(0.01, 3600.0));
  cmd->add_option("--http-body-timeout", f.body_timeout_s,
                  "Seconds a request body may take to arrive, in all (default 60)")
      ->check(CLI::Range(0.01, 3600.0));
  cmd->add_flag("--strict-model-name", f.strict_model_name,
                "Answer 404 to a request naming a model other than --model-name's (default: "
                "serve it with this model, as llama-server does)");
  cmd->add_option("--cors-origin", f.cors_origin,
                  "Comma-separated origins browsers may call the API from (default: any)");
  cmd->add_option("--api-key", f.api_keys,
                  "An API key requests may give (Authorization: Bearer KEY or X-Api-Key: KEY); "
                  "repeatable. Without one of these or an --api-keys file's, requests get 401. "
                  "Requests with these keys are never charged")
      ->check([](const std::string& key) {
        Status st = check_api_key_syntax(key);
        return st.ok() ? std::string() : st.message();
      });
}

void apply_api_flags(const HttpFlags& f, ApiOptions* api) {
  api->strict_model_names = f.strict_model_name;
  api->cors_origins = split_origins(f.cors_origin);
  api->api_keys = f.api_keys;
}

HttpLimits http_limits(const HttpFlags& f) {
  auto ms = [](double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000 + 0.5)); };
  HttpLimits h;
  h.warm_threads = f.threads;
  h.max_connections = f.max_connections;
  h.max_connections_per_client = f.max_connections_per_client;
  h.header_timeout = ms(f.header_timeout_s);
  h.body_timeout = ms(f.body_timeout_s);
  return h;
}

std::unique_ptr<trust::Ledger> open_ledger_with_keys(const std::string& db_path,
                                                     const std::string& keys_path) {
  auto keys = trust::load_api_keys(keys_path);
  if (!keys.ok()) fail("--api-keys: " + keys.status().message());
  auto ledger = trust::Ledger::Open(db_path);
  if (!ledger.ok()) fail("--trust-db: " + ledger.status().message());
  if ((*ledger)->recovered_holds() > 0)
    std::fprintf(stderr,
                 "ledger %s: released %lld hold(s) of requests that never finished (a process "
                 "ended during them)\n",
                 db_path.c_str(), static_cast<long long>((*ledger)->recovered_holds()));
  auto counts = trust::import_api_keys(**ledger, *keys);
  if (!counts.ok()) fail("--api-keys: " + counts.status().message());
  std::fprintf(stderr, "API keys: %zu from %s (%d new, granted their credits; %d kept their balances)\n",
               keys->size(), keys_path.c_str(), counts->added, counts->kept);
  return std::move(*ledger);
}

sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

void serve_until_signal(const ApiOptions& api, GenerationBackend& backend, const std::string& listen,
                        const sigset_t& signals) {
  auto hp = parse_host_port(listen);
  if (!hp.ok()) fail("--listen: " + hp.status().message());
  auto server = OpenAiServer::Create(api, backend);
  check(server.status());
  std::fprintf(stderr, "%s\n", (*server)->chat_family_note().c_str());
  auto port = (*server)->listen(hp->first, hp->second);
  check(port.status());
  std::fprintf(stderr, "model %s, context %d tokens\n", api.model_names.front().c_str(),
               (*server)->context_length());
  const bool v6 = hp->first.find(':') != std::string::npos;
  std::printf("listening on %s%s%s:%d\n", v6 ? "[" : "", hp->first.c_str(), v6 ? "]" : "", *port);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "signal %d: stopping\n", sig);
  (*server)->stop();
}

}  // namespace swarm::cli
