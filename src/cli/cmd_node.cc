// swarm node -m MODEL [--layers A:B] --listen HOST:PORT [--identity KEYFILE] [--kv-memory BYTES]
//            [--idle-timeout S] [--link-delay-ms MS] [-t N] [--max-batch-tokens N]
//            [--slowdown F] [--allow ID,...|FILE] [--allow-anonymous]
//            [--max-sessions-per-caller N] [--max-steps-per-caller N]
//            [--connection-rate R] [--connection-burst N]
//            [--bootstrap HOST:PORT,... [--dht-listen HOST:PORT] [--announce-address HOST:PORT,...]
//             [--price P] [--memory BYTES] [--rebalance-interval S] [--announce-interval S]]
//            [--metrics-listen HOST:PORT]
// Serves layers [A, B) of MODEL to gateways over gRPC (doc/protocol.md). Prints
// "listening on HOST:PORT" on stdout once serving. SIGTERM (or Ctrl-C) drains:
// new sessions are refused, open ones run until closed or idle, then the process
// exits 0; a second signal exits at once.
//
// With --identity callers present their own identity (mutual TLS): --allow
// admits only the listed ones to sessions, and the quotas count sessions and
// queued steps per caller (doc/protocol.md, "Transport security").
//
// With --bootstrap the node joins the swarm's DHT and announces its signed
// record (doc/dht-records.md) until it drains, when it withdraws it. Without
// --layers it then picks its own block with routing::choose_layers from the
// records it reads (as many layers as --memory holds), and every
// --rebalance-interval re-checks with routing::should_move
// (doc/layer-assignment.md, node/rebalancer.h), reloading the new block when
// the rule says move.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "cli/common.h"
#include "cli/dht_swarm.h"
#include "cli/api_serving.h"
#include "cli/metrics_listener.h"
#include "cli/serving_metrics.h"
#include "cli/skill_provider.h"
#include "discovery/announcer.h"
#include "engine/clock.h"
#include "engine/compute_devices.h"
#include "engine/model_loader.h"
#include "engine/progress.h"
#include "engine/vulkan_sizes.h"
#include "net/caller.h"
#include "net/model_id.h"
#include "node/rebalancer.h"
#include "node/stage_server.h"
#include "routing/layer_assignment.h"

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

namespace {

bool is_wildcard(const std::string& address) {
  const std::string host = address.substr(0, address.rfind(':'));
  return host == "0.0.0.0" || host == "[::]" || host == "::";
}

// --announce-address A,B,...: each a HOST:PORT a record may carry, none a
// wildcard, at most discovery::kMaxAddresses, no repeats. Ends the command
// with a message naming the flag and the address otherwise.
std::vector<std::string> parse_announce_addresses(const std::string& csv) {
  std::vector<std::string> out;
  for (const std::string& a : split_list(csv)) {
    const std::string flag = "--announce-address: '" + a + "' ";
    Status st = discovery::validate_address(a);
    if (!st.ok())
      fail(flag + "is not HOST:PORT (a DNS name, IPv4 or [IPv6] host and a port 1..65535)");
    if (is_wildcard(a)) fail(flag + "is a wildcard; name the address gateways reach this node at");
    if (std::find(out.begin(), out.end(), a) != out.end()) fail(flag + "is listed twice");
    out.push_back(a);
  }
  if (out.size() > discovery::kMaxAddresses)
    fail("--announce-address: " + std::to_string(out.size()) + " addresses; a record holds at most " +
         std::to_string(discovery::kMaxAddresses));
  if (out.empty() && !csv.empty()) fail("--announce-address: '" + csv + "' names no address");
  return out;
}

// A stage server on the device `o.device` names, "" for the machine's
// default (cli/common.h's start_on_device: a default GPU that cannot hold the
// layers gives way to the CPU); `o.device` becomes the device it runs on, so
// a later restart (a rebalancing move) stays there.
Result<std::unique_ptr<node::StageServer>> start_server(node::NodeOptions& o) {
  const std::string asked = o.device;
  std::unique_ptr<node::StageServer> server;
  Status st = start_on_device(asked, [&](const std::string& device) {
    o.device = device;
    auto s = node::StageServer::Start(o);
    if (!s.ok()) return s.status();
    server = std::move(s).value();
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return server;
}

// Bytes a node choosing its layers may fill with weights on its device:
// a GPU's memory less the KV budget, or 0 on the CPU (all layers, or
// --memory, as before).
uint64_t gpu_memory_for_layers(const node::NodeOptions& o) {
  const std::string device = device_or_default(o.device);
  if (device == "cpu") return 0;
  for (const ComputeDevice& d : machine_devices().devices) {
    if (d.backend != "vulkan" || (device != d.id() && !(device == "vulkan" && d.index == 0)))
      continue;
    return d.memory_bytes > o.kv_memory_bytes ? d.memory_bytes - o.kv_memory_bytes : 0;
  }
  return 0;
}

struct DhtNodeOptions {
  std::string bootstrap, dht_listen, announce_address, memory;
  std::vector<std::string> announce_addresses;  // --announce-address, split and checked
  double price = 0;
  double rebalance_interval_s = 60, announce_interval_s = 60;
};

// A node in the DHT: what it serves (a StageServer that a move replaces), its
// record kept announced, and, for a node that chose its own layers, the
// periodic re-check of that choice.
class SwarmMember {
 public:
  SwarmMember(node::NodeOptions node, const DhtNodeOptions& o, bool choose_layers)
      : node_(std::move(node)), o_(o), choose_(choose_layers) {}

  // Joins the DHT, picks the layers if asked to, starts serving and announcing.
  // On a terminal each stage gets a line, and hashing and loading a bar.
  void start() {
    StageLines stages("node", choose_ ? 5 : 4);
    auto identity = net::Identity::Load(node_.identity_path);
    if (!identity.ok()) fail("--identity: " + identity.status().ToString());
    identity_ = std::make_unique<net::Identity>(std::move(identity).value());
    auto source = open_model_source(node_.model_path);
    check(source.status());
    n_layer_ = source->config.n_layer;
    model_name_ = source->config.name;
    stages.begin("identifying the model");
    auto id = net::model_content_id(*source);
    check(id.status());
    model_id_ = *id;
    capacity_ = n_layer_;
    if (!o_.memory.empty()) {
      auto bytes = parse_bytes(o_.memory);
      if (!bytes.ok()) fail("--memory: " + bytes.status().message());
      capacity_ = layers_that_fit(*source, *bytes);
    } else if (const auto gpu = gpu_memory_for_layers(node_); gpu > 0) {
      // The layers, their KV caches and the workspace at its largest for
      // the node's context live in the GPU's memory (the head's logits
      // counted, should this node take the last layers).
      const uint64_t work =
          vk::workspace_bytes(source->config, true, node::session_context(node_, source->config));
      const uint64_t for_weights = gpu > work ? gpu - work : 0;
      capacity_ = layers_that_fit(*source, for_weights);
      spdlog::info("{} layers fit in {} ({} MiB for weights after the KV budget and {} MiB of "
                   "workspace)", capacity_, device_or_default(node_.device), for_weights >> 20,
                   work >> 20);
    }
    stages.begin("joining the DHT through " + o_.bootstrap);
    dht_ = start_dht(o_.dht_listen.empty() ? default_dht_listen() : o_.dht_listen, o_.bootstrap);
    wait_for_dht(*dht_, std::chrono::seconds(10));
    if (choose_) {
      stages.begin("choosing layers");
      auto peers = peers_without_me();
      auto range = choose_layers(peers, n_layer_, capacity_, 0);
      check(range.status());
      spdlog::info("choosing layers [{},{}) ({} layers fit) from {} announced node(s)",
                   range->first, range->last, capacity_, peers.size());
      node_.first_layer = range->first;
      node_.last_layer = range->last;
    }
    stages.begin("loading layers " + std::to_string(node_.first_layer) + ":" +
                 std::to_string(node_.last_layer));
    auto server = start_server(node_);
    check(server.status());
    server_ = std::move(server).value();
    // A move restarts the server where gateways already know it, and loads
    // while the node serves and logs: no bar then.
    node_.listen = server_->address();
    node_.progress = false;
    addresses_ = o_.announce_addresses;
    if (addresses_.empty()) {
      addresses_ = {server_->address()};
      if (is_wildcard(server_->address()))
        fail("--announce-address: needed when --listen is a wildcard (" + server_->address() +
             "): the HOST:PORT gateways reach this node at");
      Status st = discovery::validate_address(server_->address());
      if (!st.ok())
        fail("--announce-address: needed, the bound address cannot be announced: " +
             st.message());
    }
    stages.begin("announcing");
    announcer_ = std::make_unique<discovery::Announcer>(
        *dht_, *identity_, [this] { return current_record(); },
        std::chrono::seconds(static_cast<int64_t>(o_.announce_interval_s)));
    Status st = dht_->announce_model({model_id_, n_layer_, model_name_});
    if (!st.ok()) spdlog::warn("announcing the model: {}", st.message());
    std::string listed;
    for (const std::string& a : addresses_) listed += (listed.empty() ? "" : ", ") + a;
    if (announcer_->first_status().ok())
      spdlog::info("announced node {} at {} (DHT {})", identity_->node_id(), listed,
                   dht_->address());
    else
      spdlog::warn("announcing node {} at {}: {} (trying again every {} s)",
                   identity_->node_id(), listed, announcer_->first_status().message(),
                   o_.announce_interval_s);
    if (choose_ && o_.rebalance_interval_s > 0)
      start_rebalancer();
  }

  const std::string& address() const { return server_->address(); }

  // For /metrics. A move starts a new server, so its counters start again from 0.
  node::StageStats stats() {
    std::lock_guard<std::mutex> lock(server_mu_);
    return server_->stats();
  }

  // Withdraws the record, stops moving, drains and waits: SIGTERM's path.
  void drain_and_wait() {
    if (rebalancer_) rebalancer_->stop();
    Status st = announcer_->withdraw();
    if (!st.ok()) spdlog::warn("withdrawing the node record: {}", st.message());
    server_->drain();
    server_->wait_drained();
    server_->shutdown();
  }

 private:
  std::string default_dht_listen() const {
    auto hp = parse_host_port(node_.listen);
    return hp.ok() ? hp->first + ":0" : "";
  }

  discovery::NodeRecord current_record() {
    std::lock_guard<std::mutex> lock(server_mu_);
    const node::StageLoad load = server_->load();
    discovery::NodeRecord r;
    r.addresses = addresses_;
    r.model_id = model_id_;
    r.layer_begin = load.first_layer;
    r.layer_end = load.last_layer;
    r.throughput = load.layer_tokens_per_second;
    r.free_kv_bytes = load.kv_bytes_free;
    r.price_per_1k = o_.price;
    return r;
  }

  std::vector<PeerSnapshot> peers_without_me() {
    auto found = dht_->find_nodes(model_id_, discovery::unix_now());
    if (!found.ok()) {
      spdlog::warn("DHT look-up: {}", found.status().message());
      return {};
    }
    std::vector<discovery::NodeRecord> others;
    for (discovery::NodeRecord& r : found->records)
      if (r.node_id != identity_->node_id()) others.push_back(std::move(r));
    return peer_snapshots(others, n_layer_);
  }

  // Serves `target` instead of the current block: the rebalancer's move.
  void move_to(LayerRange target) {
    const node::StageLoad load = server_->load();
    node::NodeOptions next = node_;
    next.first_layer = target.first;
    next.last_layer = target.last;
    {
      std::lock_guard<std::mutex> lock(server_mu_);
      // Sessions on the old block end here; gateways replay them elsewhere.
      server_->shutdown();
      server_.reset();
      auto server = node::StageServer::Start(next);
      if (!server.ok()) {
        spdlog::error("rebalance: cannot serve [{},{}): {}; staying at [{},{})", next.first_layer,
                      next.last_layer, server.status().message(), load.first_layer,
                      load.last_layer);
        server = node::StageServer::Start(node_);
        if (!server.ok()) {
          spdlog::critical("cannot serve the old block again: {}", server.status().message());
          std::_Exit(1);
        }
      } else {
        node_ = next;
      }
      server_ = std::move(server).value();
    }
    Status st = announcer_->announce_now();
    if (!st.ok()) spdlog::warn("announcing the move: {}", st.message());
  }

  void start_rebalancer() {
    node::RebalanceOptions ro;
    ro.interval_s = o_.rebalance_interval_s;
    ro.n_layer = n_layer_;
    ro.capacity_layers = capacity_;
    ro.public_key_hex = net::to_hex(identity_->public_key().data(), identity_->public_key().size());
    std::mt19937_64 rng(std::random_device{}());
    rebalancer_ = std::make_unique<node::Rebalancer>(
        Clock::real(),
        [rng]() mutable { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }, ro,
        [this] {
          // Only this thread replaces server_, so it reads it without server_mu_.
          node::Rebalancer::View v;
          v.peers_without_me = peers_without_me();
          const node::StageLoad load = server_->load();
          v.current = {load.first_layer, load.last_layer};
          v.layer_tokens_per_second = load.layer_tokens_per_second;
          return v;
        },
        [this](LayerRange target) { move_to(target); });
    rebalancer_->start();
  }

  node::NodeOptions node_;
  const DhtNodeOptions o_;
  const bool choose_;
  std::unique_ptr<net::Identity> identity_;
  std::unique_ptr<discovery::DhtNode> dht_;
  std::string model_id_, model_name_;
  std::vector<std::string> addresses_;  // announced, in the order gateways try them
  int n_layer_ = 0, capacity_ = 0;
  std::mutex server_mu_;  // guards server_ against a move while a record is made
  std::unique_ptr<node::StageServer> server_;
  std::unique_ptr<discovery::Announcer> announcer_;
  std::unique_ptr<node::Rebalancer> rebalancer_;  // a node that chose its own layers
};

}  // namespace

void register_node(CLI::App& app) {
  struct Options {
    node::NodeOptions node;
    std::string layers, kv_memory = "2G", metrics_listen;
    DhtNodeOptions dht;
    SkillProviderFlags skill;  // --skill / --backend (cli/skill_provider.h)
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("node", "Serve a range of a model's layers to the swarm");
  cmd->add_option("-m,--model", o->node.model_path,
                  "GGUF file or Hugging Face folder (not with --backend)");
  cmd->add_option(
      "--layers", o->layers,
      "Layers to serve, A:B (default: all; with --bootstrap, the block the swarm needs most)");
  cmd->add_option("--listen", o->node.listen,
                  "HOST:PORT to serve on; port 0 picks a free one (default 127.0.0.1:0)");
  cmd->add_option("--identity", o->node.identity_path,
                  "Ed25519 key file (swarm keygen): serve TLS with this identity, so gateways "
                  "pin HOST:PORT@NODE_ID; without it the node serves plaintext");
  cmd->add_option("--allow", o->node.allow,
                  "Serve sessions only to these callers: node ids or public keys, comma-separated, "
                  "or a file with one per line (needs --identity; list gateways and the nodes "
                  "that push to this one)");
  cmd->add_flag("--allow-anonymous", o->node.allow_anonymous,
                "Serve sessions to TLS callers that present no identity (counted by IP address)");
  cmd->add_option("--max-sessions-per-caller", o->node.quota.sessions_per_caller,
                  "Sessions one caller (node id, or IP address without one) holds (default 128)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-steps-per-caller", o->node.quota.steps_in_flight_per_caller,
                  "Steps one caller has waiting to run (default 1024)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--connection-rate", o->node.connections.per_second,
                  "New connections one address may open a second, on average; the rest are "
                  "closed at once (default 4; plaintext nodes; 127.0.0.1 and ::1 are not counted)")
      ->check(CLI::Range(0.001, 1e6));
  cmd->add_option("--connection-burst", o->node.connections.burst,
                  "... and at once after a quiet while (default 16)")
      ->check(CLI::Range(1.0, 1e6));
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
  // For tests that need a caller's unread answer to stay in flight long.
  cmd->add_option("--stuck-answer-ms", o->node.stuck_answer_ms,
                  "an answer waiting this long on its caller marks it as not reading")
      ->check(CLI::Range(1, 600'000))
      ->group("");
  // Misbehaviour on purpose, for tests and benchmarks of audits (doc/trust.md,
  // "Cheating nodes"): not listed in --help.
  cmd->add_option("--cheat", o->node.cheat.mode, "noise|skip-layer|replay|token|none")->group("");
  cmd->add_option("--cheat-rate", o->node.cheat.rate, "share of batches cheated on")->group("");
  cmd->add_flag("--cheat-unaudited-only", o->node.cheat.unaudited_only,
                "honest on steps that look like audits")->group("");
  cmd->add_option("--cheat-speed", o->node.cheat.speed_factor, "announce F x the measured speed")
      ->group("");
  cmd->add_option("--cheat-claim-model", o->node.cheat.claim_model,
                  "claim the model id of this file")->group("");
  cmd->add_option("--cheat-seed", o->node.cheat.seed, "seed of the cheat decisions")->group("");
  // Honest, but rounding as another device would (doc/trust.md, "Inexact nodes").
  cmd->add_option("--emulate-inexact", o->node.emulate_inexact,
                  "output rows off by up to this relative amount; announced as inexact")
      ->check(CLI::Range(0.0, 0.01))
      ->group("");
  cmd->add_option("-t,--threads", o->node.threads, "Compute threads (default: all cores)");
  cmd->add_flag("--no-mmap", o->node.no_mmap, kNoMmapHelp);
  o->node.device.clear();  // the machine's default unless --device names one
  cmd->add_option("--device", o->node.device, kDeviceHelp);
  cmd->add_option("--max-batch-tokens", o->node.max_batch_tokens,
                  "Tokens per batch at most; longer prompts run in chunks (default 512)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-c,--ctx-size", o->node.context,
                  "Positions one session may hold (default: the model's trained context)")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--max-sessions", o->node.max_sessions,
                  "Sessions open at once, from all callers (default 256)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option(
      "--bootstrap", o->dht.bootstrap,
      "Join the swarm's DHT through HOST:PORT,... and announce this node's signed record "
      "(needs --identity)");
  cmd->add_option("--dht-listen", o->dht.dht_listen,
                  "IPv4 HOST:PORT for this node's DHT peer (default: --listen's host, port 0)");
  cmd->add_option("--announce-address", o->dht.announce_address,
                  "HOST:PORT,... gateways should reach this node at, tried in this order "
                  "(default: the bound --listen)");
  cmd->add_option("--price", o->dht.price, "Credits per 1000 tokens, announced (default 0)")
      ->check(CLI::Range(0.0, 1e12));
  cmd->add_option(
      "--memory", o->dht.memory,
      "Memory for weights when choosing layers, e.g. 8G (default: room for the whole model)");
  cmd->add_option(
         "--rebalance-interval", o->dht.rebalance_interval_s,
         "Re-check a self-chosen block every S seconds, +-50% jitter; 0: never (default 60)")
      ->check(CLI::Range(0.0, 1e6));
  cmd->add_option("--announce-interval", o->dht.announce_interval_s,
                  "Re-announce the record every S seconds; it lives 3x as long (default 60)")
      ->check(CLI::Range(1.0, 1200.0));
  // Skills (doc/skills.md): a whole model, or a server the owner runs.
  cmd->add_flag("--skill", o->skill.engine,
                "Offer -m as a whole-model skill (OpenAI API over HTTP, batched as `swarm serve`) "
                "instead of serving layers; needs --bootstrap and --identity");
  cmd->add_option("--backend", o->skill.backend,
                  "Offer the models of this OpenAI-compatible server (http://HOST:PORT: "
                  "llama-server, vLLM, Ollama, swarm serve) as skills");
  cmd->add_option("--skill-name", o->skill.names,
                  "Skill name to offer (repeatable; default: the file's name, or every model the "
                  "backend lists)");
  cmd->add_option("--tasks", o->skill.tasks,
                  "What the skills answer: chat,completions,embeddings,images (default "
                  "chat,completions,embeddings)");
  cmd->add_option("--capacity", o->skill.capacity,
                  "Skill requests served at once (default 4); up to --skill-queue more wait")
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--skill-queue", o->skill.max_queue,
                  "Skill requests that may wait for a free slot (default 16); more get 503")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--price-per-image", o->skill.price_per_image,
                  "Base credits per image of an image skill (default 0)")
      ->check(CLI::Range(0.0, 1e12));
  cmd->add_option("--metrics-listen", o->metrics_listen,
                  "HOST:PORT to serve GET /metrics on (Prometheus' text format, plain HTTP; "
                  "doc/metrics.md); default: none");
  cmd->callback([o] {
    keep_freed_memory_for_reuse();
    if (o->skill.engine || !o->skill.backend.empty()) {
      SkillProviderFlags& f = o->skill;
      f.model = o->node.model_path;
      f.device = o->node.device;
      f.listen = o->node.listen;
      f.identity = o->node.identity_path;
      f.bootstrap = o->dht.bootstrap;
      f.dht_listen = o->dht.dht_listen;
      f.announce_address = o->dht.announce_address;
      f.price = o->dht.price;
      f.announce_interval_s = o->dht.announce_interval_s;
      f.threads = o->node.threads;
      f.ctx = o->node.context;
      f.slowdown = o->node.slowdown;
      if (!o->layers.empty()) fail("--layers is for layer nodes; a skill serves the whole model");
      const sigset_t signals = block_stop_signals();
      spdlog::set_default_logger(spdlog::stderr_color_mt("node"));
      run_skill_provider(f, signals);
      return;
    }
    if (o->node.model_path.empty()) fail("-m MODEL is required (or --backend URL for a skill)");
    o->node.price_per_1k = o->dht.price;
    o->node.progress = true;  // drawn only when stderr is a terminal
    std::optional<std::pair<std::string, int>> metrics_at;
    if (!o->metrics_listen.empty()) {
      auto hp = parse_host_port(o->metrics_listen);
      if (!hp.ok()) fail("--metrics-listen: " + hp.status().message());
      metrics_at = *hp;
    }
    // Serves /metrics from `collect` when --metrics-listen asks for it.
    auto serve_metrics = [&metrics_at](std::function<node::StageStats()> collect) {
      std::unique_ptr<MetricsListener> listener;
      if (!metrics_at) return listener;
      listener = std::make_unique<MetricsListener>([collect] { return node_metrics(collect()); });
      auto port = listener->start(metrics_at->first, metrics_at->second);
      check(port.status());
      spdlog::info("metrics on http://{}:{}/metrics", metrics_at->first, *port);
      return listener;
    };
    o->dht.announce_addresses = parse_announce_addresses(o->dht.announce_address);
    if ((!o->node.allow.empty() || o->node.allow_anonymous) && o->node.identity_path.empty())
      fail("--allow and --allow-anonymous need --identity: a plaintext node knows no caller");
    if (!o->node.allow.empty()) {  // before the model loads, which can take a while
      auto allow = net::AllowList::Parse(o->node.allow);
      if (!allow.ok()) fail("--allow: " + allow.status().message());
    }
    if (!o->dht.bootstrap.empty() && o->node.identity_path.empty())
      fail(
          "--bootstrap needs --identity: a node's DHT record is signed with its key (swarm keygen "
          "-o FILE)");
    if (o->dht.bootstrap.empty() &&
        (!o->dht.memory.empty() || !o->dht.announce_address.empty() || !o->dht.dht_listen.empty()))
      fail("--memory, --announce-address and --dht-listen need --bootstrap");
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
    if (!o->dht.bootstrap.empty()) {
      SwarmMember member(o->node, o->dht, o->layers.empty());
      member.start();
      auto metrics = serve_metrics([&member] { return member.stats(); });
      std::printf("listening on %s\n", member.address().c_str());
      std::fflush(stdout);
      int sig = 0;
      sigwait(&sigs, &sig);
      spdlog::info("signal {}: withdrawing the record and draining (again to stop now)", sig);
      std::thread([sigs] {
        int again = 0;
        sigwait(&sigs, &again);
        spdlog::warn("signal {}: stopping now", again);
        std::_Exit(1);
      }).detach();
      member.drain_and_wait();
      spdlog::info("drained; exiting");
      return;
    }
    auto server = start_server(o->node);
    check(server.status());
    node::StageServer* s = server->get();
    auto metrics = serve_metrics([s] { return s->stats(); });
    std::printf("listening on %s\n", (*server)->address().c_str());
    std::fflush(stdout);
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
