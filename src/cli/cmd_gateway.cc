// swarm gateway -m MODEL --listen HOST:PORT (--peers HOST:PORT[@KEY],... | --bootstrap HOST:PORT,...)
//               [--dht-listen HOST:PORT] [--dht-refresh S] [--relay] [--wire-f16]
//               [-c CTX] [-n N] [--chat-template NAME] [--model-name NAME]
//               [--speculate auto|off|ngram|draft:MODEL] [--spec-max-draft N]
//               [--max-queue N] [--queue-timeout S] [HTTP limits: doc/http-api.md]
//               [--step-timeout S] [--failure-memory S] [--route-load-weight W] [--identity KEYFILE]
//               [--api-keys FILE] [--trust-db PATH]
// The OpenAI-compatible HTTP API in front of a swarm: loads only the model's
// tokenizer and metadata, finds a chain of peers covering every layer, and
// streams each request through it. A peer given as HOST:PORT@KEY (its node id or
// public key in hex) is reached over TLS pinned to that key and refused if it
// presents another. With --bootstrap it also learns nodes from their signed DHT
// records (every --dht-refresh seconds), each pinned to its record's key, and
// tries each address a record lists in turn. A request that finds no route
// looks again at once (DHT and peers) and waits up to 5 s while coverage may
// still come (doc/protocol.md, "When no route exists"). It calls TLS nodes as
// --identity's node (mutual TLS), or as an ephemeral identity made at start
// and logged, which nodes with an --allow list refuse. Nodes' reputation
// (doc/trust.md) is kept in --trust-db across restarts. Prints
// "listening on HOST:PORT"; SIGINT or SIGTERM stops it. With --api-keys a
// request needs one of the file's keys (401), the most it may cost is held
// from that key's credits (402 when they do not cover it) and its actual cost
// is paid to the nodes that served it, in the ledger at --trust-db
// (doc/trust.md, "Credits ledger"). The swarm page at / (and its JSON at
// /swarm) shows the swarm, its requests and tokens/s (doc/swarm-page.md).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "cli/api_serving.h"
#include "cli/common.h"
#include "cli/dht_swarm.h"
#include "cli/periodic.h"
#include "cli/serving_metrics.h"
#include "engine/chat_template.h"
#include "engine/model_arch.h"
#include "engine/model_loader.h"
#include "engine/tokenizer.h"
#include "net/model_id.h"
#include "net/peer_address.h"
#include "pipeline/model_drafter.h"
#include "pipeline/audit_reference.h"
#include "pipeline/pipeline_backend.h"
#include "trust/reputation_book.h"
#include "trust/credits.h"
#include "trust/ledger.h"

namespace swarm::cli {
namespace {

struct GatewayOptions {
  std::string model, listen = "127.0.0.1:8080", peers, chat_template, bootstrap, dht_listen;
  std::string identity, api_keys, trust_db = "swarm-gateway.db";
  double dht_refresh_s = 10;
  std::vector<std::string> names;
  int ctx = 0, n_predict = -1, step_timeout_ms = 0, link_delay_ms = 0, max_queue = 256;
  double queue_timeout_s = 60, step_timeout_s = 60, failure_memory_s = 60;
  double route_load_weight = ChainCosts{}.load_weight;
  bool relay = false, wire_f16 = false;
  HttpFlags http;
  std::string speculate = "auto";
  int spec_max_draft = 16, draft_threads = 1;
  double audit_rate = 0.05;
  std::string audit_local;
  bool audit_sync = false;
  int audit_threads = 1, audit_queue = 64;
  double probation_audit_rate = 0.25;
  int64_t probation_audits = 20;
  uint64_t audit_seed = 0;
  double time_value = SkillGatewayOptions{}.seconds_value;
  double skill_explore = SkillGatewayOptions{}.explore;
};

// Keeps the backend's peers equal to --peers plus the nodes the DHT's records
// name, looking again every `interval` until destroyed, and at once when a
// request finds no route (the backend's relook).
class DhtPeerRefresher {
 public:
  DhtPeerRefresher(discovery::DhtNode& dht, std::string model_id,
                   std::vector<net::PeerAddress> fixed, PipelineBackend& backend,
                   std::chrono::milliseconds interval)
      : dht_(dht), model_id_(std::move(model_id)), fixed_(std::move(fixed)), backend_(backend) {
    refresh();
    backend_.set_relook([this] { refresh(); });
    loop_ = std::make_unique<Periodic>(interval, [this] { refresh(); });
  }
  ~DhtPeerRefresher() {
    backend_.set_relook(nullptr);
    loop_.reset();
  }

 private:
  void refresh() {
    std::lock_guard<std::mutex> lock(refresh_mu_);  // the loop and requests' looks
    auto found = dht_.find_nodes(model_id_, discovery::unix_now());
    if (!found.ok()) {
      spdlog::warn("DHT look-up of model {}: {}", model_id_.substr(0, 12),
                   found.status().message());
      return;
    }
    std::vector<net::PeerAddress> peers = fixed_;
    for (net::PeerAddress& p : pinned_peers(found->records)) peers.push_back(std::move(p));
    if (found->rejected.corrupt + found->rejected.invalid + found->rejected.unsupported !=
        reported_rejects_) {
      reported_rejects_ =
          found->rejected.corrupt + found->rejected.invalid + found->rejected.unsupported;
      spdlog::warn(
          "DHT: ignoring {} forged or malformed, {} expired or invalid, {} other-version records",
          found->rejected.corrupt, found->rejected.invalid, found->rejected.unsupported);
    }
    if (found->records.size() != reported_nodes_) {
      reported_nodes_ = found->records.size();
      spdlog::info("DHT: {} node(s) announce model {}", reported_nodes_, model_id_.substr(0, 12));
    }
    backend_.set_peers(std::move(peers));
  }

  discovery::DhtNode& dht_;
  const std::string model_id_;
  const std::vector<net::PeerAddress> fixed_;
  PipelineBackend& backend_;
  std::mutex refresh_mu_;  // guards reported_*; one look-up at a time
  size_t reported_nodes_ = SIZE_MAX, reported_rejects_ = 0;
  std::unique_ptr<Periodic> loop_;
};

// Keeps the skills market's view equal to the skill records in the DHT,
// looking again every `interval` until destroyed.
class DhtSkillRefresher {
 public:
  DhtSkillRefresher(discovery::DhtNode& dht, SkillGateway& skills,
                    std::chrono::milliseconds interval)
      : dht_(dht), skills_(skills) {
    refresh();
    loop_ = std::make_unique<Periodic>(interval, [this] { refresh(); });
  }

 private:
  void refresh() {
    auto names = dht_.find_skill_names();
    if (!names.ok()) return;  // none announced yet, or the DHT is unreachable: keep the view
    std::vector<discovery::SkillRecord> records;
    size_t rejected = 0;
    for (const std::string& name : *names) {
      auto found = dht_.find_skill(name, discovery::unix_now());
      if (!found.ok()) continue;
      rejected += found->rejected.corrupt + found->rejected.invalid + found->rejected.unsupported;
      for (discovery::SkillRecord& r : found->records) records.push_back(std::move(r));
    }
    if (records.size() != reported_ || rejected != reported_rejects_) {
      reported_ = records.size();
      reported_rejects_ = rejected;
      spdlog::info("DHT: {} skill provider record(s) of {} skill(s){}", records.size(),
                   names->size(),
                   rejected ? fmt::format(", {} forged, malformed or expired ignored", rejected) : "");
    }
    skills_.set_records(std::move(records));
  }

  discovery::DhtNode& dht_;
  SkillGateway& skills_;
  size_t reported_ = SIZE_MAX, reported_rejects_ = 0;
  std::unique_ptr<Periodic> loop_;  // last: stops before the members above go
};

// GET /trust: what audits did and whom they excluded (doc/trust.md).
// An audit's proof of fraud forfeits the node's unpaid credits.
// The ledger's totals and each node's earnings, for /swarm; none if the
// ledger cannot be read now (the page then shows no credits, and says so).
std::optional<SwarmCredits> swarm_credits(trust::Ledger& ledger) {
  auto totals = ledger.totals();
  auto nodes = ledger.nodes();
  if (!totals.ok() || !nodes.ok()) {
    spdlog::warn("ledger unreadable for /swarm: {}",
                 (!totals.ok() ? totals.status() : nodes.status()).ToString());
    return std::nullopt;
  }
  SwarmCredits c;
  c.totals = *totals;
  for (trust::NodeEarnings& e : *nodes) c.nodes[e.node] = std::move(e);
  return c;
}

VerdictFn forfeit_on_fraud(trust::Ledger& ledger) {
  return [&ledger](const AuditJob& job, const std::vector<trust::Verdict>& verdicts) {
    for (const trust::Verdict& v : verdicts) {
      if (v.kind != trust::Verdict::Kind::kFraud || v.stage >= job.session.stages.size()) continue;
      const trust::AuditedStage& s = job.session.stages[v.stage];
      const std::string node = s.node_id.empty() ? s.address : s.node_id;
      auto lost = ledger.forfeit(node, v.reason);
      if (lost.ok())
        spdlog::warn("ledger: node {} forfeits {} unpaid credits (fraud: {})", node.substr(0, 16),
                     trust::format_credits(*lost), v.reason);
      else
        spdlog::error("ledger: forfeiting node {}: {}", node, lost.status().ToString());
    }
  };
}

std::string trust_status_json(PipelineBackend& backend, trust::ReputationBook* reputation) {
  const AuditStats a = backend.audit_stats();
  nlohmann::ordered_json j;
  j["audits"] = {{"submitted", a.submitted}, {"dropped", a.dropped},     {"done", a.done},
                 {"failed", a.failed},       {"queued", a.queued},       {"steps_checked", a.steps_checked},
                 {"passes", a.passes},       {"frauds", a.frauds},       {"disputes", a.disputes},
                 {"missing", a.missing},     {"positions", a.positions}, {"seconds", a.seconds},
                 {"second_opinions", a.second_opinions}, {"choices_checked", a.choices_checked},
                 {"draft_choices_checked", a.draft_choices_checked}, {"sketches_checked", a.sketches_checked}};
  j["excluded"] = nlohmann::json::array();
  for (const std::string& key : backend.excluded()) j["excluded"].push_back(key);
  if (reputation)
    j["reputation"] = reputation->dump(
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  return j.dump();
}

}  // namespace

void register_gateway(CLI::App& app) {
  auto o = std::make_shared<GatewayOptions>();
  CLI::App* cmd = app.add_subcommand("gateway", "Serve a swarm's model over an OpenAI-compatible HTTP API");
  cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder (only its tokenizer and metadata are read)")
      ->required();
  cmd->add_option("--listen", o->listen, "HOST:PORT to listen on; port 0 picks a free one (default 127.0.0.1:8080)");
  cmd->add_option("--peers", o->peers,
                  "Nodes to route through: HOST:PORT,... ; HOST:PORT@KEY (a node id or public key, hex) "
                  "connects with TLS and refuses a node that does not hold KEY");
  cmd->add_option("--bootstrap", o->bootstrap,
                  "Learn nodes from the swarm's DHT, joined through HOST:PORT,...; each is reached over TLS "
                  "pinned to the key that signed its record");
  cmd->add_option("--dht-listen", o->dht_listen, "IPv4 HOST:PORT for this DHT node (default: port 0)");
  cmd->add_option("--dht-refresh", o->dht_refresh_s, "Look the nodes up in the DHT every S seconds (default 10)")
      ->check(CLI::Range(0.05, 86400.0));
  cmd->add_option("--identity", o->identity,
                  "Ed25519 key file (swarm keygen) to present to TLS nodes (default: an ephemeral "
                  "identity, logged at start)");
  cmd->add_option("--trust-db", o->trust_db,
                  "SQLite file of the gateway's trust state: nodes' reputation and the credits ledger (doc/trust.md); "
                  "created if missing (default swarm-gateway.db in the working folder)");
  cmd->add_flag("--relay", o->relay, "Carry every stage's output through the gateway instead of pushing stage to stage");
  cmd->add_flag("--wire-f16", o->wire_f16, "Send hidden states as f16 (half the traffic; not bit-exact)");
  cmd->add_option("-c,--ctx-size", o->ctx, "Context length per request (default: the model's, at most 8192)")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate when a request gives no max_tokens (default -1)")
      ->check(CLI::Range(-1, 1 << 24));
  cmd->add_option("--chat-template", o->chat_template, "Override the template family (" + chat_family_names() + ")");
  cmd->add_option("--model-name", o->names, "Name to serve the model under (repeatable; default: the file's name)");
  cmd->add_option("--max-queue", o->max_queue,
                  "Requests that may wait for KV memory on a full chain; more get 503 (default 256)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--queue-timeout", o->queue_timeout_s,
                  "Seconds a request may wait for KV memory on a full chain before a 503 (default 60)")
      ->check(CLI::Range(0.001, 1e6));
  add_http_flags(cmd, o->http);
  cmd->add_option("--link-delay-ms", o->link_delay_ms, "Delay everything the gateway sends to nodes by this much (WAN emulation)")
      ->check(CLI::Range(0, 60000));
  cmd->add_option("--speculate", o->speculate,
                  "Speculative decoding: auto (default: n-gram drafts when they pay; off with "
                  "--relay); off; ngram (n-gram drafts, always); draft:MODEL (a draft model with "
                  "the same vocabulary)");
  cmd->add_option("--spec-max-draft", o->spec_max_draft,
                  "Unverified drafts in flight at most (default 16)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--draft-threads", o->draft_threads, "Threads for the draft model (default 1)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--step-timeout", o->step_timeout_s,
                  "Absolute step deadline in seconds: a step with no answer by then fails (default 60). "
                  "Sooner, a step overdue by a deadline derived from the chain's measured step times "
                  "fails if a stage does not answer a probe (doc/failover.md)")
      ->check(CLI::Range(0.001, 3600.0));
  cmd->add_option("--step-timeout-ms", o->step_timeout_ms,
                  "--step-timeout in milliseconds (overrides it)")
      ->check(CLI::Range(1, 3600000));
  cmd->add_option("--route-load-weight", o->route_load_weight,
                  "How much a node's load counts when choosing chains: its compute time is taken "
                  "as 1 + W x the sessions and queued steps it carries (default 1; 0: by speed "
                  "alone, every request on the fastest chain; doc/routing.md)")
      ->check(CLI::Range(0.0, 1000.0));
  cmd->add_option("--failure-memory", o->failure_memory_s,
                  "Seconds a failed node is avoided before it is tried again (default 60)")
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("--api-keys", o->api_keys,
                  "File of API keys, one a line: KEY CREDITS [NAME] (doc/trust.md); requests need "
                  "one (401) and are charged to its credits (402 when they do not cover a request)");
  cmd->add_option("--audit-rate", o->audit_rate,
                  "Share of steps whose results are recomputed and checked, per node (default 0.05; "
                  "new nodes more while on probation; 0: no audits)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--audit-local", o->audit_local,
                  "Recompute audited steps with this model file here (GGUF or HF folder of the same "
                  "weights); without it other nodes serving the same layers do")
      ->check(CLI::ExistingPath);
  cmd->add_flag("--audit-sync", o->audit_sync,
                "Check every step before its token is sent (needs --audit-local; plain decoding; "
                "about twice the compute)");
  cmd->add_option("--audit-threads", o->audit_threads,
                  "Compute threads of --audit-local (default 1; they run at the lowest priority)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--audit-queue", o->audit_queue,
                  "Sessions waiting for their audit at most; more are dropped and counted (default 64)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--probation-audit-rate", o->probation_audit_rate,
                  "Audit rate of a node until it has passed --probation-audits audits (default 0.25)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--probation-audits", o->probation_audits,
                  "Audits a node must pass before the base --audit-rate applies (default 20)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  cmd->add_option("--audit-seed", o->audit_seed, "Seed of the audit sampling (default: secret)")
      ->group("");
  cmd->add_option("--time-value", o->time_value,
                  "Credits one second of waiting is worth when choosing a skill provider: higher "
                  "prefers fast providers, lower cheap ones (default 0.01; doc/skills.md)")
      ->check(CLI::Range(0.0, 1e9));
  cmd->add_option("--skill-explore", o->skill_explore,
                  "Share of skill requests sent to the least-measured provider, so new ones get "
                  "measured (default 0.05)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->callback([o] {
    keep_freed_memory_for_reuse();
    auto hp = parse_host_port(o->listen);
    if (!hp.ok()) fail("--listen: " + hp.status().message());
    PipelineOptions po;
    auto spec = parse_speculate(o->speculate);
    if (!spec.ok()) fail(spec.status().message());
    po.speculation = *spec;
    po.speculation.max_draft = o->spec_max_draft;
    for (const std::string& spec : split_list(o->peers)) {
      auto peer = net::parse_peer_spec(spec);
      if (!peer.ok()) fail("--peers: " + peer.status().message());
      if (!parse_host_port(peer->address).ok()) fail("--peers: '" + spec + "' is not HOST:PORT[@KEY]");
      po.peers.push_back(*peer);
    }
    if (po.peers.empty() && o->bootstrap.empty()) fail("--peers or --bootstrap: no peer given");
    // Peers refused or unreachable are logged (spdlog) to stderr, beside the
    // request lines; stdout carries only the "listening on" line.
    spdlog::set_default_logger(spdlog::stderr_color_mt("gateway"));
    const sigset_t signals = block_stop_signals();
    use_caller_identity(o->identity);

    auto source = open_model_source(o->model);
    check(source.status());
    check(check_model_tensors(*source));
    auto ids = net::model_ids(*source);
    check(ids.status());
    const std::string* id = &ids->model_id;
    po.layout_id = ids->layout_id;
    const ModelConfig& cfg = source->config;
    auto tok = load_tokenizer(o->model, cfg.n_vocab);

    po.push = !o->relay;
    po.wire_f16 = o->wire_f16;
    po.context_length = o->ctx > 0 ? o->ctx : std::min(cfg.n_ctx_train, 8192);
    po.deadlines.ceiling = std::chrono::milliseconds(
        o->step_timeout_ms > 0 ? o->step_timeout_ms
                               : static_cast<int64_t>(o->step_timeout_s * 1000));
    po.failure_memory = std::chrono::milliseconds(static_cast<int64_t>(o->failure_memory_s * 1000));
    po.link_delay = std::chrono::milliseconds(o->link_delay_ms);
    po.max_queue = o->max_queue;
    po.queue_timeout = std::chrono::milliseconds(static_cast<int64_t>(o->queue_timeout_s * 1000 + 0.5));
    if (po.speculation.mode == SpeculationMode::kDraft) {
      auto draft = DraftModel::Load(po.speculation.draft_model, cfg.n_vocab, o->draft_threads);
      if (!draft.ok()) fail("--speculate: " + draft.status().message());
      po.speculation.draft = *draft;
    }
    // auto speculates where it pays, and relaying never lets it pay (drafts
    // need the stages to push to each other): plain decoding then. Asking for
    // drafts by name with --relay is a contradiction, refused.
    if (po.speculation.mode == SpeculationMode::kAuto && !po.push) {
      spdlog::info("--speculate auto: off, as --relay needs plain decoding");
      po.speculation.mode = SpeculationMode::kOff;
    }
    if (po.speculation.mode != SpeculationMode::kOff && !po.push)
      fail("--speculate " + o->speculate + ": needs push mode (drop --relay)");
    po.costs.load_weight = o->route_load_weight;
    po.audit_rate = o->audit_rate;
    po.audit_sync = o->audit_sync;
    po.audit_seed = o->audit_seed;
    po.audit_queue = o->audit_queue;
    if (o->audit_sync && o->audit_local.empty()) fail("--audit-sync needs --audit-local MODEL");
    if (!o->audit_local.empty()) {
      auto local = LocalReference::Load(o->audit_local, o->audit_threads);
      if (!local.ok()) fail(local.status().message());
      auto local_source = open_model_source(o->audit_local);
      check(local_source.status());
      auto local_ids = net::model_ids(*local_source);
      check(local_ids.status());
      if (local_ids->model_id != *id)
        fail("--audit-local " + o->audit_local + ": model id " + local_ids->model_id.substr(0, 16) +
             ", but the gateway serves " + id->substr(0, 16) + " (" +
             net::model_mismatch_reason(ids->layout_id, local_ids->layout_id) + ")");
      po.audit_local = std::move(local).value();
    }
    trust::ReputationParams reputation_params;
    reputation_params.probation_audit_rate = o->probation_audit_rate;
    reputation_params.probation_audits = o->probation_audits;
    auto reputation = trust::ReputationBook::Open(o->trust_db, reputation_params);
    if (!reputation.ok()) fail("--trust-db: " + reputation.status().message());
    po.reputation = reputation->get();
    {
      const auto known = (*reputation)->all(0);
      const auto excluded = std::count_if(known.begin(), known.end(),
                                          [](const auto& r) { return r.state.excluded; });
      std::fprintf(stderr, "trust database %s: reputation of %zu nodes, %zu excluded\n",
                   o->trust_db.c_str(), known.size(), static_cast<size_t>(excluded));
    }
    // Before the backend, which may call into it until it is destroyed.
    std::unique_ptr<trust::Ledger> ledger;
    if (!o->api_keys.empty()) ledger = open_ledger_with_keys(o->trust_db, o->api_keys);
    PipelineBackend backend(*id, cfg.n_layer, po);
    if (ledger) backend.set_verdict_listener(forfeit_on_fraud(*ledger));
    std::unique_ptr<discovery::DhtNode> dht;
    std::unique_ptr<DhtPeerRefresher> refresher;
    // The skills market: whole models and other servers that providers
    // announce in the DHT, served beside the swarm's own model.
    SkillGatewayOptions skill_options;
    skill_options.seconds_value = o->time_value;
    skill_options.explore = o->skill_explore;
    skill_options.reputation = [book = reputation->get()](const std::string& node_id) {
      if (book->excluded(node_id)) return 0.0;
      return book->score(node_id, std::chrono::duration<double>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count());
    };
    skill_options.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
    SkillGateway skills(skill_options);
    std::unique_ptr<DhtSkillRefresher> skill_refresher;
    if (!o->bootstrap.empty()) {
      const auto interval = std::chrono::milliseconds(static_cast<int64_t>(o->dht_refresh_s * 1000));
      dht = start_dht(o->dht_listen, o->bootstrap);
      wait_for_dht(*dht, std::chrono::seconds(10));
      refresher = std::make_unique<DhtPeerRefresher>(*dht, *id, po.peers, backend, interval);
      skill_refresher = std::make_unique<DhtSkillRefresher>(*dht, skills, interval);
    }
    if (auto chain = backend.route(); chain.ok())
      std::fprintf(stderr, "model %s (%s): chain %s\n", cfg.name.c_str(), id->substr(0, 12).c_str(),
                   describe_chain(*chain).c_str());
    else
      std::fprintf(stderr, "model %s (%s): no chain yet (%s); requests get 503 until one exists\n",
                   cfg.name.c_str(), id->substr(0, 12).c_str(), chain.status().message().c_str());

    ApiOptions api;
    api.model_names = o->names.empty() ? std::vector<std::string>{default_model_name(o->model)} : o->names;
    api.tokenizer = tok.get();
    api.model_id = *id;
    api.chat_template = model_chat_template(*source);
    api.chat_template_override = o->chat_template;
    api.default_max_tokens = o->n_predict;
    api.http = http_limits(o->http);
    apply_api_flags(o->http, &api);
    api.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
    api.ledger = ledger.get();
    if (dht) api.skills = &skills;
    api.trust_status = [&backend, &reputation] { return trust_status_json(backend, reputation->get()); };
    api.metrics = [&backend, ledger = ledger.get(), skills = api.skills] {
      MetricFamilies all = gateway_metrics(backend, ledger);
      if (skills)
        for (prometheus::MetricFamily& f : skills->metrics()) all.push_back(std::move(f));
      return all;
    };
    api.swarm = [&backend, ledger = ledger.get(), model = SwarmModel{api.model_names, *id, cfg.n_layer}] {
      SwarmState state{{model}, backend.standing(), std::nullopt};
      if (ledger) state.credits = swarm_credits(*ledger);
      return state;
    };
    serve_until_signal(api, backend, o->listen, signals);
  });
}

}  // namespace swarm::cli
