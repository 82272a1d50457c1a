// swarm node -m MODEL --layers A:B --listen HOST:PORT [--identity KEYFILE] [--kv-memory BYTES]
//            [--idle-timeout S] [--link-delay-ms MS] [-t N] [--max-batch-tokens N]
//            [--slowdown F]
// Serves layers [A, B) of MODEL to gateways over gRPC (doc/protocol.md). Prints
// "listening on HOST:PORT" on stdout once serving. SIGTERM (or Ctrl-C) drains:
// new sessions are refused, open ones run until closed or idle, then the process
// exits 0; a second signal exits at once.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "cli/common.h"
#include "node/stage_server.h"

namespace swarm::cli {

Result<uint64_t> parse_bytes(const std::string& s) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  uint64_t mult = 1;
  const std::string suffix = end ? std::string(end) : "";
  if (suffix == "" || suffix == "B")
    mult = 1;
  else if (suffix == "K" || suffix == "KiB" || suffix == "k")
    mult = 1ull << 10;
  else if (suffix == "M" || suffix == "MiB")
    mult = 1ull << 20;
  else if (suffix == "G" || suffix == "GiB")
    mult = 1ull << 30;
  else if (suffix == "T" || suffix == "TiB")
    mult = 1ull << 40;
  else
    mult = 0;
  if (s.empty() || end == s.c_str() || errno != 0 || mult == 0 || !(v >= 0) || v * mult > 1.8e19)
    return Status::InvalidArgument("'" + s +
                                   "' is not a size (expected e.g. 2G, 512M or 1073741824)");
  return static_cast<uint64_t>(v * static_cast<double>(mult));
}

void register_node(CLI::App& app) {
  struct Options {
    node::NodeOptions node;
    std::string layers, kv_memory = "2G";
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("node", "Serve a range of a model's layers to the swarm");
  cmd->add_option("-m,--model", o->node.model_path, "GGUF file or Hugging Face folder")->required();
  cmd->add_option("--layers", o->layers, "Layers to serve, A:B (default: all)");
  cmd->add_option("--listen", o->node.listen,
                  "HOST:PORT to serve on; port 0 picks a free one (default 127.0.0.1:0)");
  cmd->add_option("--identity", o->node.identity_path,
                  "Ed25519 key file (swarm keygen): serve TLS with this identity, so gateways "
                  "pin HOST:PORT@NODE_ID; without it the node serves plaintext");
  cmd->add_option("--kv-memory", o->kv_memory,
                  "KV cache budget over all sessions, e.g. 2G (default 2G)");
  cmd->add_option("--idle-timeout", o->node.idle_timeout_s,
                  "Close sessions idle this many seconds (default 300)")
      ->check(CLI::Range(0.001, 1e9));
  cmd->add_option("--link-delay-ms", o->node.link_delay_ms,
                  "Delay every message sent by this much (WAN emulation)")
      ->check(CLI::Range(0, 600'000));
  cmd->add_option("--slowdown", o->node.slowdown,
                  "Make compute take F times as long, F >= 1 (emulates a slower machine)")
      ->check(CLI::Range(1.0, 1000.0));
  cmd->add_option("-t,--threads", o->node.threads, "Compute threads (default: all cores)");
  cmd->add_flag("--no-mmap", o->node.no_mmap, kNoMmapHelp);
  cmd->add_option("--max-batch-tokens", o->node.max_batch_tokens,
                  "Tokens per batch at most (default 512)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->callback([o] {
    if (!o->layers.empty()) {
      auto r = parse_layer_range(o->layers);
      check(r.status());
      o->node.first_layer = r->first;
      o->node.last_layer = r->second;
    }
    auto kv = parse_bytes(o->kv_memory);
    if (!kv.ok()) fail("--kv-memory: " + kv.status().message());
    o->node.kv_memory_bytes = *kv;

    // Every thread started from here on inherits the blocked signals; one
    // thread takes them with sigwait, so no handler runs in a random thread.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    // Logs go to stderr; stdout carries only the "listening on" line.
    spdlog::set_default_logger(spdlog::stderr_color_mt("node"));
    auto server = node::StageServer::Start(o->node);
    check(server.status());
    std::printf("listening on %s\n", (*server)->address().c_str());
    std::fflush(stdout);
    node::StageServer* s = server->get();
    std::thread([s, sigs] {
      int sig = 0;
      sigwait(&sigs, &sig);
      spdlog::info("signal {}: draining (again to stop now)", sig);
      s->drain();
      sigwait(&sigs, &sig);
      spdlog::warn("signal {}: stopping now", sig);
      std::_Exit(1);
    }).detach();
    s->wait_drained();
    s->shutdown();
    spdlog::info("drained; exiting");
  });
}

}  // namespace swarm::cli
