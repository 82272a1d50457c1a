#include "cli/skill_provider.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "api/openai_server.h"
#include "api/skill_proxy.h"
#include "cli/api_serving.h"
#include "cli/common.h"
#include "cli/dht_swarm.h"
#include "cli/periodic.h"
#include "discovery/announcer.h"
#include "discovery/skill_record.h"
#include "engine/chat_template.h"
#include "engine/grammar_vocab.h"
#include "engine/model_loader.h"
#include "net/identity.h"
#include "net/model_id.h"
#include "node/skill_price.h"
#include "pipeline/local_backend.h"

namespace swarm::cli {
namespace {

using Clock = std::chrono::steady_clock;

// --skill: the model served by this process's engine on a loopback port, as
// `swarm serve` serves it; the proxy stands in front of it.
struct LocalEngine {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<LocalBackend> backend;
  std::unique_ptr<OpenAiServer> server;
  int port = 0;
  std::string content_id;
};

std::unique_ptr<LocalEngine> start_engine(const SkillProviderFlags& f, const std::string& name) {
  auto out = std::make_unique<LocalEngine>();
  auto source = open_model_source(f.model);
  check(source.status());
  auto id = net::model_content_id(*source);
  check(id.status());
  out->content_id = *id;
  auto model = load_model_on(f.model, LoadOptions{}, f.device);
  if (!model->has_embed() || !model->has_head())
    fail(f.model + ": --skill needs the embedding and the output head (a whole model)");
  out->tokenizer = load_tokenizer(f.model, model->config().n_vocab);
  ApiOptions api;
  api.model_names = {name};
  api.strict_model_names = true;
  api.tokenizer = out->tokenizer.get();
  api.model_id = *id;
  api.chat_template = model_chat_template(model->source());
  out->backend = std::make_unique<LocalBackend>(
      std::move(model),
      LocalBackendOptions{.threads = f.threads,
                          .context_length = f.ctx,
                          .max_sequences = f.capacity,
                          .grammar_vocab = GrammarVocab::from_tokenizer(*out->tokenizer),
                          .slowdown = f.slowdown});
  auto server = OpenAiServer::Create(api, *out->backend);
  check(server.status());
  out->server = std::move(server).value();
  auto port = out->server->listen("127.0.0.1", 0);
  check(port.status());
  out->port = *port;
  return out;
}

// The weights' content id a SwarmInfer server behind --backend gives in its
// GET /props (llama-server's route); "" for any other server.
std::string engine_model_id(const UpstreamUrl& upstream) {
  UpstreamRequest req;
  req.host = upstream.host;
  req.port = upstream.port;
  req.method = "GET";
  req.path = "/props";
  req.timeouts.first_byte = std::chrono::seconds(10);
  req.max_body_bytes = 1 << 20;
  auto call = UpstreamCall::Start(std::move(req));
  std::string body;
  if (call->wait_for_status() != 200 || !call->read_all(&body)) return "";
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object() || j.value("build_info", "") != "swarminfer") return "";
  const std::string id = j.value("swarm_model_id", "");
  return discovery::validate_skill_name(id).ok() ? id : "";
}

std::vector<std::string> parse_tasks(const std::string& csv) {
  std::vector<std::string> out;
  for (const std::string& t : split_list(csv)) {
    if (t != discovery::kTaskChat && t != discovery::kTaskCompletions &&
        t != discovery::kTaskEmbeddings && t != discovery::kTaskImages)
      fail("--tasks: '" + t + "' is not one of chat, completions, embeddings, images");
    if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
  }
  if (out.empty()) fail("--tasks: no task given");
  return out;
}

}  // namespace

void run_skill_provider(const SkillProviderFlags& f, const sigset_t& signals) {
  if (f.engine == !f.backend.empty())
    fail("give one of --skill (serve -m with this node's engine) and --backend URL");
  if (f.engine && f.model.empty()) fail("--skill needs -m MODEL");
  if (!f.engine && !f.model.empty()) fail("-m is for --skill; a --backend serves its own models");
  if (f.bootstrap.empty() || f.identity.empty())
    fail("a skill provider is found through the DHT: give --bootstrap and --identity");
  if (f.capacity < 1) fail("--capacity: at least 1");
  if (f.slowdown > 1 && !f.engine) fail("--slowdown is for --skill (slow the backend itself)");
  for (const std::string& n : f.names)
    if (Status st = discovery::validate_skill_name(n); !st.ok()) fail("--skill-name: " + st.message());
  if (f.engine && f.names.size() > 1) fail("--skill-name: --skill serves one model under one name");
  const std::vector<std::string> tasks =
      parse_tasks(f.tasks.empty() ? "chat,completions,embeddings" : f.tasks);
  auto listen = parse_host_port(f.listen);
  if (!listen.ok()) fail("--listen: " + listen.status().message());
  auto identity = net::Identity::Load(f.identity);
  if (!identity.ok()) fail("--identity: " + identity.status().ToString());

  std::unique_ptr<LocalEngine> engine;
  SkillProxyOptions po;
  // Gateways reach the provider over HTTPS pinned to the key that signs its
  // records (doc/skills.md, "Transport security").
  auto tls = TlsServerContext::ForIdentity(*identity);
  if (!tls.ok()) fail("--identity: " + tls.status().message());
  po.tls = *tls;
  po.capacity = f.capacity;
  po.max_queue = f.max_queue;
  po.log = [](const std::string& line) { spdlog::warn("{}", line); };
  std::vector<std::string> skills = f.names;
  if (f.engine) {
    if (skills.empty()) skills = {default_model_name(f.model)};
    engine = start_engine(f, skills.front());
    po.upstream = UpstreamUrl{"127.0.0.1", engine->port, ""};
  } else {
    auto url = parse_upstream_url(f.backend);
    if (!url.ok()) fail("--backend: " + url.status().message());
    po.upstream = *url;
  }
  auto proxy = SkillProxy::Create(po);
  check(proxy.status());
  auto port = (*proxy)->listen(listen->first, listen->second);
  if (!port.ok()) fail("--listen " + f.listen + ": " + port.status().message());
  const std::string address = listen->first + ":" + std::to_string(*port);

  // What the backend serves decides the skills, unless --skill-name chose.
  auto models = (*proxy)->probe_models();
  if (!models.ok())
    fail("--backend " + f.backend + ": " + models.status().message() +
         " (start the server first; its GET /v1/models must answer)");
  if (skills.empty()) skills = *models;
  for (const std::string& s : skills) {
    if (std::find(models->begin(), models->end(), s) == models->end())
      spdlog::warn("the backend does not list `{}` among its models; requests for it may fail", s);
    if (Status st = discovery::validate_skill_name(s); !st.ok())
      fail("the backend's model `" + s + "` cannot be a skill name: " + st.message() +
           " (choose others with --skill-name)");
  }
  if (skills.empty()) fail("--backend " + f.backend + ": it lists no models");
  // A `swarm serve` behind --backend is our engine too: its /props names the
  // weights, and its streams can resume on any engine provider of them.
  std::string content_id = engine ? engine->content_id : "";
  if (!engine) content_id = engine_model_id(po.upstream);
  if (!content_id.empty() && !engine)
    spdlog::info("the backend is a SwarmInfer engine serving model {}: its greedy streams resume "
                 "on other providers of the same weights",
                 content_id.substr(0, 12));
  // The measuring run is a text completion: only for skills that answer one.
  if (std::find(tasks.begin(), tasks.end(), discovery::kTaskCompletions) != tasks.end()) {
    if (Status st = (*proxy)->measure(skills.front()); !st.ok())
      spdlog::warn("measuring `{}`: {}", skills.front(), st.message());
  }

  std::vector<std::string> addresses = split_list(f.announce_address);
  if (addresses.empty()) {
    const std::string& host = listen->first;
    if (host == "0.0.0.0" || host == "::" || host == "[::]")
      fail("--announce-address: needed when --listen is a wildcard (" + address +
           "): the HOST:PORT gateways reach this provider at");
    addresses = {address};
  }
  for (const std::string& a : addresses)
    if (Status st = discovery::validate_address(a); !st.ok())
      fail("--announce-address: " + st.message());

  auto dht = start_dht(f.dht_listen, f.bootstrap);
  wait_for_dht(*dht, std::chrono::seconds(10));
  std::atomic<double> announced_price{-1};
  SkillProxy* p = proxy->get();
  const net::Identity& me = *identity;
  // The load the prices follow, as the proxy measures it now.
  auto busy = [](const SkillLoad& load) {
    return node::skill_load({load.capacity, load.active, load.queued});
  };
  auto put = [&](int64_t issued_at, int64_t expires_at) {
    const SkillLoad load = p->load(Clock::now());
    const double price = node::announced_price(f.price, busy(load));
    announced_price = price;
    Status first;
    for (const std::string& s : skills) {
      discovery::SkillRecord r;
      r.addresses = addresses;
      r.skill = s;
      r.tasks = tasks;
      r.content_id = content_id;
      r.engine = !content_id.empty();
      r.price_per_1k = price;
      r.price_per_image = node::announced_price(f.price_per_image, busy(load));
      r.capacity = load.capacity;
      r.active = load.active;
      r.queued = load.queued;
      r.tokens_per_second = load.tokens_per_second;
      r.ttft_seconds = load.ttft_seconds;
      r.warm = load.warm;
      r.recent_failures = load.failures_in_window;
      r.issued_at = issued_at;
      r.expires_at = expires_at;
      Status st = dht->announce_skill(r, discovery::sign_skill_record(r, me));
      if (first.ok() && !st.ok()) first = st;
    }
    return first;
  };
  discovery::Announcer announcer(
      put, std::chrono::seconds(static_cast<int64_t>(f.announce_interval_s)));
  if (announcer.first_status().ok())
    spdlog::info("announced {} skill(s) ({}) at {} as node {}", skills.size(), skills.front(),
                 addresses.front(), me.node_id());
  else
    spdlog::warn("announcing skills: {} (trying again every {} s)",
                 announcer.first_status().message(), f.announce_interval_s);

  // The price follows the load: a move of 10% is announced at once, checked
  // every second. An idle provider probes its backend every announce
  // interval, so its record says whether the backend still answers.
  int64_t completed = p->load(Clock::now()).completed;
  auto last_probe = Clock::now();
  auto pricer = std::make_unique<Periodic>(std::chrono::seconds(1), [&] {
    const SkillLoad load = p->load(Clock::now());
    if (load.completed != completed || load.active > 0) {
      completed = load.completed;
      last_probe = Clock::now();
    } else if (Clock::now() - last_probe >= std::chrono::duration<double>(f.announce_interval_s)) {
      auto models = p->probe_models();
      if (!models.ok()) spdlog::warn("the backend does not answer: {}", models.status().message());
      last_probe = Clock::now();
    }
    if (!node::price_moved(announced_price, node::announced_price(f.price, busy(load)))) return;
    if (Status st = announcer.announce_now(); !st.ok())
      spdlog::warn("announcing a new price: {}", st.message());
  });

  std::printf("listening on %s\n", address.c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("signal {}: withdrawing the skill records and stopping", sig);
  pricer.reset();
  if (Status st = announcer.withdraw(); !st.ok()) spdlog::warn("withdrawing: {}", st.message());
  (*proxy)->stop();
  if (engine) engine->server->stop();
}

}  // namespace swarm::cli
