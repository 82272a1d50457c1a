#include "api/skill_gateway.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>

#include "api/api_error.h"
#include "api/http_errors.h"
#include "api/request_billing.h"
#include "api/skill_stream.h"
#include "trust/credits.h"

namespace swarm {
namespace {

using json = nlohmann::json;
using OJson = nlohmann::ordered_json;

std::string dump(const OJson& j) { return j.dump(-1, ' ', false, OJson::error_handler_t::replace); }

std::string key_of(const std::string& skill, const std::string& node_id) {
  return skill + "/" + node_id;
}

bool has_task(const discovery::SkillRecord& r, std::string_view task) {
  return std::find(r.tasks.begin(), r.tasks.end(), task) != r.tasks.end();
}

// What `task` costs at `r`: per image for images, else per 1000 tokens.
double price_of(const discovery::SkillRecord& r, std::string_view task) {
  return task == discovery::kTaskImages ? r.price_per_image : r.price_per_1k;
}

// "host:port" or "[v6]:port" -> host and port (0 when unreadable).
std::pair<std::string, int> split_address(const std::string& a) {
  const size_t colon = a.rfind(':');
  if (colon == std::string::npos) return {a, 0};
  std::string host = a.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  int port = 0;
  for (char c : a.substr(colon + 1)) port = c >= '0' && c <= '9' ? port * 10 + (c - '0') : -1 << 20;
  return {host, port > 0 && port < 65536 ? port : 0};
}

// Whether a failover may replay the tokens so far: greedy sampling of one
// choice, without tools (whose calls are assembled from the whole answer).
bool greedy_single(const json& body) {
  auto t = body.find("temperature");
  if (t == body.end() || !t->is_number() || t->get<double>() != 0) return false;
  if (auto n = body.find("n"); n != body.end() && !(n->is_number_integer() && *n == 1)) return false;
  if (auto tools = body.find("tools"); tools != body.end() && !tools->is_null() &&
                                        !(tools->is_array() && tools->empty()))
    return false;
  return true;
}

int64_t requested_output(const json& body, std::string_view task, int64_t fallback) {
  if (task == discovery::kTaskImages) {
    auto n = body.find("n");
    return n != body.end() && n->is_number_integer() && *n > 0 ? n->get<int64_t>() : 1;
  }
  for (const char* k : {"max_completion_tokens", "max_tokens"})
    if (auto v = body.find(k); v != body.end() && v->is_number_integer() && *v > 0)
      return v->get<int64_t>();
  return fallback;
}

}  // namespace

// One request's state while it moves between providers.
struct SkillGateway::Attempt {
  std::string skill, path;
  std::string_view task;
  json body;                  // what providers get (without the gateway's own fields)
  SkillAsk ask;
  bool stream = false, chat = false, greedy = false;
  std::vector<std::string> tried;  // node ids
  int failovers = 0;
  std::string last_error;
  // The provider serving now.
  discovery::SkillRecord provider;
  std::unique_ptr<UpstreamCall> call;
  Clock::time_point started, first_text;
  // Credits held for the request, if it is charged.
  trust::Ledger* ledger = nullptr;
  std::optional<trust::Hold> hold;
  std::function<void(const std::string&)> log;

  // Pays the serving provider for `tokens` at its price from the hold, or
  // (a failure) returns the hold; once.
  void settle(const Status& status, int64_t tokens) {
    if (!hold) return;
    const bool image = task == discovery::kTaskImages;
    NodeWork w;
    w.node_id = provider.node_id;
    w.address = provider.addresses.empty() ? "" : provider.addresses.front();
    w.steps = 1;
    w.tokens = tokens;
    w.price_per_1k = image ? provider.price_per_image * 1000 : provider.price_per_1k;
    close_hold(ledger, hold, status, {w}, log);
    hold.reset();
  }
  ~Attempt() { settle(Status::Unavailable("the request ended before it was served"), 0); }
};

SkillGateway::SkillGateway(SkillGatewayOptions options)
    : options_(std::move(options)),
      rng_(options_.seed != 0 ? options_.seed : std::random_device{}()) {}

void SkillGateway::set_records(std::vector<discovery::SkillRecord> records) {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, Provider> next;
  for (discovery::SkillRecord& r : records) {
    const std::string key = key_of(r.skill, r.node_id);
    auto old = providers_.find(key);
    Provider p = old != providers_.end() ? std::move(old->second) : Provider{};
    p.record = std::move(r);
    next[key] = std::move(p);
  }
  // A provider whose record lapsed while requests run there keeps its counts
  // until they end: such requests hold their own copy of the record.
  providers_ = std::move(next);
}

bool SkillGateway::serves(const std::string& skill) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = providers_.lower_bound(skill + "/");
  return it != providers_.end() && it->second.record.skill == skill;
}

std::vector<OJson> SkillGateway::model_entries(int64_t created) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, OJson> by_skill;
  for (const auto& [key, p] : providers_) {
    const discovery::SkillRecord& r = p.record;
    auto [it, fresh] = by_skill.try_emplace(r.skill);
    OJson& e = it->second;
    if (fresh) {
      e = {{"id", r.skill},
           {"object", "model"},
           {"created", created},
           {"owned_by", "swarminfer"},
           {"swarm",
            {{"kind", "skill"},
             {"providers", 0},
             {"min_price_per_1k", r.price_per_1k},
             {"min_price_per_image", r.price_per_image},
             {"tasks", OJson::array()},
             {"content_ids", OJson::array()}}}};
    }
    OJson& s = e["swarm"];
    s["providers"] = s["providers"].get<int>() + 1;
    s["min_price_per_1k"] = std::min(s["min_price_per_1k"].get<double>(), r.price_per_1k);
    s["min_price_per_image"] = std::min(s["min_price_per_image"].get<double>(), r.price_per_image);
    for (const std::string& t : r.tasks)
      if (std::find(s["tasks"].begin(), s["tasks"].end(), t) == s["tasks"].end())
        s["tasks"].push_back(t);
    if (!r.content_id.empty() &&
        std::find(s["content_ids"].begin(), s["content_ids"].end(), r.content_id) ==
            s["content_ids"].end())
      s["content_ids"].push_back(r.content_id);
  }
  std::vector<OJson> out;
  for (auto& [skill, e] : by_skill) out.push_back(std::move(e));
  return out;
}

std::vector<SkillProviderView> SkillGateway::providers() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SkillProviderView> out;
  const double now = seconds_now();
  for (const auto& [key, p] : providers_)
    out.push_back({p.record.skill, p.record.node_id,
                   p.record.addresses.empty() ? "" : p.record.addresses[0],
                   p.record.price_per_1k, p.history.at(now), p.served, p.failed});
  return out;
}

double SkillGateway::seconds_now() const {
  return std::chrono::duration<double>(Clock::now() - epoch_).count();
}

void SkillGateway::log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

std::vector<discovery::SkillRecord> SkillGateway::route(const std::string& skill,
                                                        std::string_view task, const SkillAsk& ask,
                                                        const std::vector<std::string>& tried,
                                                        size_t limit, const Admit& admit) {
  std::lock_guard<std::mutex> lock(mu_);
  const double now = seconds_now();
  // Scratch kept between calls: a view of thousands of providers must not
  // allocate per request (doc/skills.md: under 1 ms at 1,000 records).
  offers_.clear();
  offer_of_.clear();
  for (auto it = providers_.lower_bound(skill + "/");
       it != providers_.end() && it->second.record.skill == skill; ++it) {
    const discovery::SkillRecord& r = it->second.record;
    SkillOffer o;
    o.serves_task = has_task(r, task);
    o.price = price_of(r, task);
    o.capacity = r.capacity;
    o.active = r.active;
    o.queued = r.queued;
    o.tokens_per_second = r.tokens_per_second;
    o.ttft_seconds = r.ttft_seconds;
    o.warm = r.warm;
    o.reputation = options_.reputation ? options_.reputation(r.node_id) : -1;
    o.excluded = std::find(tried.begin(), tried.end(), r.node_id) != tried.end() ||
                 (admit && !admit(r));
    o.seen = it->second.history.at(now);
    offers_.push_back(o);
    offer_of_.push_back(&it->second);
  }
  const double draw = std::uniform_real_distribution<double>(0, 1)(rng_);
  const SkillRoute route = rank_skill_offers(ask, offers_, draw);
  std::vector<discovery::SkillRecord> out;
  for (size_t i = 0; i < route.order.size() && i < limit; ++i)
    out.push_back(offer_of_[route.order[i].index]->record);
  return out;
}

double SkillGateway::highest_price(const std::string& skill, std::string_view task,
                                   const SkillAsk& ask) {
  std::lock_guard<std::mutex> lock(mu_);
  double price = 0;
  for (auto it = providers_.lower_bound(skill + "/");
       it != providers_.end() && it->second.record.skill == skill; ++it) {
    const discovery::SkillRecord& r = it->second.record;
    const double p = price_of(r, task);
    if (has_task(r, task) && (!ask.max_price || p <= *ask.max_price)) price = std::max(price, p);
  }
  return price;
}

void SkillGateway::started(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = providers_.find(key); it != providers_.end()) it->second.history.started();
}

void SkillGateway::ended(const std::string& key, bool ok, double ttft_s, double tokens_per_second) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = providers_.find(key);
  if (it == providers_.end()) return;
  it->second.history.ended();
  if (ok) {
    it->second.history.succeeded(ttft_s, tokens_per_second);
    ++it->second.served;
  } else {
    it->second.history.failed(seconds_now());
    ++it->second.failed;
  }
}

MetricFamilies SkillGateway::metrics() const {
  const std::vector<SkillProviderView> view = providers();
  MetricSnapshot m;
  std::map<std::string, int> per_skill;
  for (const SkillProviderView& p : view) ++per_skill[p.skill];
  for (const auto& [skill, n] : per_skill)
    m.gauge("swarm_skill_providers", "Providers of a skill in the gateway's view", n,
            {{"skill", skill}});
  for (const SkillProviderView& p : view) {
    const MetricLabels who = {{"skill", p.skill}, {"provider", p.node_id}};
    MetricLabels ok = who, failed = who;
    ok.push_back({"outcome", "served"});
    failed.push_back({"outcome", "failed"});
    m.counter("swarm_skill_requests_total",
              "Skill requests a provider served, or failed (unreachable, 5xx, cut off)",
              static_cast<double>(p.served), ok)
        .counter("swarm_skill_requests_total",
                 "Skill requests a provider served, or failed (unreachable, 5xx, cut off)",
                 static_cast<double>(p.failed), failed);
    m.gauge("swarm_skill_provider_tokens_per_second",
            "A provider's decode speed per stream as this gateway measured it (0: not yet)",
            p.seen.tokens_per_second, who)
        .gauge("swarm_skill_provider_ttft_seconds",
               "A provider's time to first token as this gateway measured it (0: not yet)",
               p.seen.ttft_seconds, who)
        .gauge("swarm_skill_provider_in_flight", "This gateway's requests on a provider now",
               p.seen.in_flight, who)
        .gauge("swarm_skill_provider_price_per_1k", "A provider's announced price per 1000 tokens",
               p.price, who);
  }
  std::lock_guard<std::mutex> lock(mu_);
  m.counter("swarm_skill_failovers_total", "Skill requests moved to another provider", failovers_)
      .counter("swarm_skill_resumes_total",
               "Skill streams cut off part way that continued exactly on another provider",
               resumes_);
  return m.take();
}

std::optional<ApiError> SkillGateway::read_request(const httplib::Request& req,
                                                   std::string_view task, const json& body,
                                                   Attempt& a) const {
  a.log = options_.log;
  a.task = task;
  a.path = std::string(discovery::route_of_task(task));
  a.skill = body.is_object() && body.contains("model") && body["model"].is_string()
                ? body["model"].get<std::string>()
                : "";
  a.chat = task == discovery::kTaskChat;
  const bool text = a.chat || task == discovery::kTaskCompletions;
  a.body = body;
  if (auto p = a.body.find("max_price"); p != a.body.end()) {
    if (!p->is_number() || !std::isfinite(p->get<double>()) || p->get<double>() < 0)
      return invalid_request("max_price must be a non-negative number: the most credits per 1000 "
                             "tokens (per image for images) this request may be served at.",
                             "max_price", "invalid_value");
    a.ask.max_price = p->get<double>();
    a.body.erase(p);  // the gateway's own field: providers never see it
  }
  if (auto s = a.body.find("stream"); text && s != a.body.end() && s->is_boolean())
    a.stream = s->get<bool>();
  a.greedy = text && greedy_single(a.body);
  a.ask.per_image = task == discovery::kTaskImages;
  a.ask.output_tokens = requested_output(a.body, task, options_.default_output_tokens);
  a.ask.prompt_tokens = static_cast<int64_t>(req.body.size() / 4);  // no tokenizer here
  a.ask.seconds_value = options_.seconds_value;
  a.ask.reputation_floor = options_.reputation_floor;
  a.ask.explore = options_.explore;
  return std::nullopt;
}

std::optional<ApiError> SkillGateway::reserve(const SkillBilling& billing, Attempt& a) {
  if (!billing.ledger || billing.account.id == 0) return std::nullopt;
  // The most it may cost: its tokens at the highest price among the
  // providers it may go to.
  const double price = highest_price(a.skill, a.task, a.ask) * (a.ask.per_image ? 1000 : 1);
  const int64_t tokens =
      a.ask.per_image ? a.ask.output_tokens : a.ask.prompt_tokens + a.ask.output_tokens;
  auto cost = trust::max_cost(price, tokens);
  if (!cost.ok()) return error_from_status(Status::Unavailable(cost.status().message()));
  static std::atomic<uint64_t> serial{0};
  const std::string id = "skill-" + std::to_string(reinterpret_cast<uintptr_t>(&a)) + "-" +
                         std::to_string(++serial);
  auto hold = billing.ledger->reserve(billing.account, *cost, id);
  if (!hold.ok()) {
    if (hold.status().code() == Status::Code::kResourceExhausted)
      return insufficient_quota_error(hold.status().message(), tokens, price);
    return error_from_status(hold.status());
  }
  a.ledger = billing.ledger;
  a.hold = *hold;
  return std::nullopt;
}

bool SkillGateway::start_next(Attempt& a, const json* resume) {
  while (static_cast<int>(a.tried.size()) < options_.max_attempts) {
    // A resume needs our engine and the same weights.
    const std::string weights = a.provider.content_id;
    const std::vector<discovery::SkillRecord> ranked =
        route(a.skill, a.task, a.ask, a.tried, 1,
              resume ? Admit([&weights](const discovery::SkillRecord& r) {
                return r.engine && !r.content_id.empty() && r.content_id == weights;
              })
                     : Admit());
    if (ranked.empty()) return false;
    a.provider = ranked.front();
    a.tried.push_back(a.provider.node_id);
    json body = a.body;
    if (a.stream && a.provider.engine) body["swarm_token_ids"] = true;
    if (resume) body["swarm_resume"] = *resume;
    const std::string key = key_of(a.skill, a.provider.node_id);
    started(key);
    a.started = Clock::now();
    a.first_text = {};
    int status = 0;
    for (const std::string& address : a.provider.addresses) {
      auto [host, port] = split_address(address);
      UpstreamRequest up;
      up.host = host;
      up.port = port;
      up.path = a.path;
      up.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
      up.timeouts = options_.timeouts;
      // HTTPS pinned to the key that signed the provider's record.
      up.pin = a.provider.public_key;
      a.call = UpstreamCall::Start(std::move(up));
      status = a.call->wait_for_status();
      if (status != 0) break;
    }
    // A busy or failing provider: the next one, at once. Anything else
    // (success, or the request's own fault) is the answer.
    if (status != 0 && status < 500 && status != 429) return true;
    std::string why = status == 0 ? a.call->error() : "HTTP " + std::to_string(status);
    if (status != 0) {
      std::string text_body;
      if (a.call->read_all(&text_body) && !text_body.empty()) why += ": " + text_body.substr(0, 200);
    }
    a.last_error = why;
    ended(key, false, 0, 0);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++failovers_;
    }
    log("skill " + a.skill + ": provider " + a.provider.node_id.substr(0, 12) + " failed (" + why +
        "); trying another");
    ++a.failovers;
  }
  return false;
}

void SkillGateway::handle(const httplib::Request& req, httplib::Response& res,
                          std::string_view task, const json& body, const SkillBilling& billing) {
  auto a = std::make_shared<Attempt>();
  if (auto e = read_request(req, task, body, *a)) return send_api_error(res, *e);
  if (auto e = reserve(billing, *a)) return send_api_error(res, *e);
  if (!start_next(*a, nullptr)) {
    if (a->tried.empty()) {
      std::string why = "no provider of `" + a->skill + "` serves " + std::string(task);
      if (a->ask.max_price) why += " within max_price " + std::to_string(*a->ask.max_price);
      return send_api_error(
          res, ApiError{503, why + " now.", "server_error", "model", "skill_unavailable"});
    }
    return send_api_error(res, ApiError{502,
                                        "every provider of `" + a->skill + "` tried (" +
                                            std::to_string(a->tried.size()) +
                                            ") failed; the last: " + a->last_error,
                                        "server_error", "", "providers_failed"});
  }
  res.set_header("X-Swarm-Provider", a->provider.node_id);
  if (a->call->wait_for_status() != 200 || !a->stream) return answer_whole(*a, res);
  // A stream: events pass on as they come (answer_stream).
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  auto stream = std::make_shared<SkillStream>(a->chat);
  stream->set_provider(a->provider.node_id, a->provider.price_per_1k, a->failovers);
  res.set_chunked_content_provider("text/event-stream",
                                   [this, a, stream](size_t, httplib::DataSink& sink) {
                                     return answer_stream(*a, *stream, sink);
                                   });
}

void SkillGateway::answer_whole(Attempt& a, httplib::Response& res) {
  const int status = a.call->wait_for_status();
  const std::string key = key_of(a.skill, a.provider.node_id);
  std::string answer;
  const bool read = a.call->read_all(&answer);
  const double elapsed = std::chrono::duration<double>(Clock::now() - a.started).count();
  if (!read) {
    ended(key, false, 0, 0);
    return send_api_error(res, ApiError{502, "the provider failed while answering: " + a.call->error(),
                                        "server_error", "", "provider_failed"});
  }
  std::string type = a.call->header("Content-Type");
  if (type.empty()) type = "application/json";
  log("skill " + a.skill + " " + std::string(a.task) + ": HTTP " + std::to_string(status) +
      " from " + a.provider.node_id.substr(0, 12));
  res.status = status;
  if (status != 200) {
    ended(key, true, NAN, 0);  // the request's own fault: no measurement
    return res.set_content(answer, type);
  }
  OJson j = OJson::parse(answer, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    ended(key, true, elapsed, 0);
    a.settle(Status::Ok(), a.ask.prompt_tokens + a.ask.output_tokens);
    return res.set_content(answer, type);
  }
  if (a.task == discovery::kTaskImages) {
    // Images API answers carry no usage: the gateway's account is added as
    // one, counting images.
    const int64_t images = j.contains("data") && j["data"].is_array()
                               ? static_cast<int64_t>(j["data"].size())
                               : a.ask.output_tokens;
    if (!j.contains("usage") || !j["usage"].is_object()) j["usage"] = {{"images", images}};
    j["usage"]["swarm"] = {{"provider", a.provider.node_id},
                           {"price_per_image", a.provider.price_per_image},
                           {"cost", a.provider.price_per_image * static_cast<double>(images)},
                           {"failovers", a.failovers}};
    ended(key, true, elapsed, 0);
    a.settle(Status::Ok(), images);
    return res.set_content(dump(j), type);
  }
  int64_t completion = 0, total = a.ask.prompt_tokens;
  if (j.contains("usage") && j["usage"].is_object()) {
    OJson& u = j["usage"];
    if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
      completion = u["completion_tokens"].get<int64_t>();
    total += completion;
    if (u.contains("total_tokens") && u["total_tokens"].is_number_integer())
      total = u["total_tokens"].get<int64_t>();
    add_swarm_usage(&u, a.provider.node_id, a.provider.price_per_1k, a.failovers);
  }
  // A whole answer has no first token to time: speed only.
  ended(key, true, completion > 1 ? NAN : elapsed, completion > 1 ? completion / elapsed : 0);
  a.settle(Status::Ok(), total);
  res.set_content(dump(j), type);
}

bool SkillGateway::answer_stream(Attempt& a, SkillStream& stream, httplib::DataSink& sink) {
  auto write = [&sink](const std::string& s) { return s.empty() || sink.write(s.data(), s.size()); };
  while (true) {
    std::string piece;
    const bool more = a.call->next(&piece);
    const std::string out = more ? stream.feed(piece) : stream.finish();
    if (stream.content_events() > 0 && a.first_text == Clock::time_point{})
      a.first_text = Clock::now();
    if (!write(out)) {  // the client is gone
      a.call->cancel();
      ended(key_of(a.skill, a.provider.node_id), true, NAN, 0);
      return false;
    }
    if (stream.done()) {
      a.settle(Status::Ok(), stream.usage_tokens() > 0
                                 ? stream.usage_tokens()
                                 : a.ask.prompt_tokens + stream.content_events());
      const double ttft = std::chrono::duration<double>(a.first_text - a.started).count();
      const double decode = std::chrono::duration<double>(Clock::now() - a.first_text).count();
      const double tps =
          stream.content_events() > 1 && decode > 0 ? (stream.content_events() - 1) / decode : 0;
      ended(key_of(a.skill, a.provider.node_id), true,
            a.first_text == Clock::time_point{} ? NAN : ttft, tps);
      log("skill " + a.skill + " stream from " + a.provider.node_id.substr(0, 12) + ": " +
          std::to_string(stream.content_events()) + " text events, " +
          std::to_string(a.failovers) + " failovers");
      sink.done();
      return true;
    }
    if (more && !stream.failed()) continue;
    // Cut off, or an error event: this provider failed.
    a.call->cancel();
    ended(key_of(a.skill, a.provider.node_id), false, 0, 0);
    const std::string why = a.call->error();
    log("skill " + a.skill + ": stream from " + a.provider.node_id.substr(0, 12) +
        " cut off after " + std::to_string(stream.token_ids().size()) + " tokens" +
        (why.empty() ? "" : " (" + why + ")"));
    const bool can_resume = a.greedy && a.provider.engine && stream.resumable();
    const bool nothing_sent = stream.text_bytes() == 0;
    const json resume = {{"tokens", stream.token_ids()}, {"text_bytes", stream.text_bytes()}};
    ++a.failovers;
    // Before any text, any provider may start afresh; after, only a resume.
    if ((can_resume || nothing_sent) && start_next(a, can_resume ? &resume : nullptr)) {
      if (a.call->wait_for_status() == 200) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          ++failovers_;
          if (can_resume) ++resumes_;
        }
        stream.resume_on_next_provider(/*keep_tokens=*/can_resume);
        stream.set_provider(a.provider.node_id, a.provider.price_per_1k, a.failovers);
        continue;
      }
      // It refused the continuation (4xx): the stream ends here.
      ended(key_of(a.skill, a.provider.node_id), true, NAN, 0);
    }
    write(stream.error_event());
    sink.done();
    return true;
  }
}

}  // namespace swarm
