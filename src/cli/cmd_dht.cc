// swarm dht --listen HOST:PORT [--bootstrap HOST:PORT,...]
// A DHT peer and nothing else: it stores and serves the swarm's records so that
// nodes and gateways have a fixed address to join through. Prints "listening on
// HOST:PORT" (UDP) once bound; SIGINT or SIGTERM stops it.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "cli/api_serving.h"
#include "cli/common.h"
#include "cli/dht_swarm.h"

namespace swarm::cli {

void register_dht(CLI::App& app) {
  struct Options {
    std::string listen = "127.0.0.1:4222", bootstrap;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("dht", "Run a bootstrap-only DHT peer for a swarm");
  cmd->add_option("--listen", o->listen,
                  "IPv4 HOST:PORT to bind (UDP); port 0 picks a free one (default 127.0.0.1:4222)");
  cmd->add_option("--bootstrap", o->bootstrap, "Other DHT peers to join through: HOST:PORT,...");
  cmd->callback([o] {
    spdlog::set_default_logger(spdlog::stderr_color_mt("dht"));
    const sigset_t signals = block_stop_signals();
    auto dht = start_dht(o->listen, o->bootstrap, "--listen");
    std::printf("listening on %s\n", dht->address().c_str());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("signal {}: leaving the DHT", sig);
  });
}

}  // namespace swarm::cli
