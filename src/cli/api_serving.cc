#include "cli/api_serving.h"

#include <cstdio>

#include "cli/common.h"

namespace swarm::cli {

std::string default_model_name(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.size() > 5 && name.ends_with(".gguf")) name.resize(name.size() - 5);
  return name;
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
