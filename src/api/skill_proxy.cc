#include "api/skill_proxy.h"

#include <httplib.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>

#include "api/api_error.h"
#include "api/http_errors.h"
#include "api/skill_admission.h"
#include "api/skill_load_stats.h"
#include "api/sse_meter.h"

namespace swarm {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using OJson = nlohmann::ordered_json;

// A model list is small; an upstream is not trusted to keep it so.
constexpr size_t kMaxModelListBytes = 4u << 20;

std::string dump(const OJson& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string seconds_text(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

bool ends_with(const std::string& s, std::string_view tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

bool starts_with_ci(const std::string& s, std::string_view head) {
  if (s.size() < head.size()) return false;
  for (size_t i = 0; i < head.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != head[i]) return false;
  return true;
}

// The upstream's path for an API route given as what follows /v1
// ("/chat/completions"): see parse_upstream_url.
std::string upstream_path(const UpstreamUrl& u, const std::string& route) {
  if (ends_with(u.prefix, "/v1")) return u.prefix + route;
  return u.prefix + "/v1" + route;
}

// What a non-streaming generation measured: the whole answer is its first token.
std::optional<SkillLoadStats::Generation> plain_generation(const std::string& body,
                                                           Clock::duration elapsed) {
  SkillLoadStats::Generation g;
  g.ttft = elapsed;
  const json j = json::parse(body, nullptr, false);
  if (j.is_object())
    if (auto u = j.find("usage"); u != j.end() && u->is_object())
      if (auto t = u->find("completion_tokens"); t != u->end() && t->is_number_integer())
        g.tokens = t->get<int64_t>();
  return g;
}

enum class RouteKind { kGeneration, kOther, kModels };

}  // namespace

Result<UpstreamUrl> parse_upstream_url(const std::string& url) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("upstream URL '" + url + "': " + why +
                                   " (expected http://HOST:PORT[/PATH])");
  };
  if (starts_with_ci(url, "https://"))
    return bad("https is not supported; the wrapped server is reached over plain http");
  if (!starts_with_ci(url, "http://")) return bad("it must start with http://");
  std::string rest = url.substr(7);
  if (rest.find_first_of("?#@ \t\r\n") != std::string::npos)
    return bad("no query, fragment, user or spaces allowed");
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.find("//") != std::string::npos) return bad("empty path segment");
  UpstreamUrl out;
  size_t colon;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos || close == 1) return bad("unterminated IPv6 address");
    out.host = authority.substr(0, close + 1);
    if (close + 1 >= authority.size() || authority[close + 1] != ':') return bad("no port");
    colon = close + 1;
  } else {
    colon = authority.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    out.host = authority.substr(0, colon);
    if (out.host.empty()) return bad("no host");
    if (out.host.find(':') != std::string::npos) return bad("an IPv6 address needs brackets");
  }
  const std::string port = authority.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return bad("the port must be a number");
  out.port = std::stoi(port);
  if (out.port < 1 || out.port > 65535) return bad("the port must be in 1..65535");
  out.prefix = path;
  return out;
}

struct SkillProxy::Impl {
  explicit Impl(SkillProxyOptions o)
      : options(std::move(o)),
        admission(options.capacity, options.max_queue),
        stats(options.failure_window) {
    http = std::make_unique<HttpServer>(
        options.http,
        [](int status, const std::string& message) {
          ApiError e{status, message, status >= 500 ? "server_error" : "invalid_request_error", "",
                     ""};
          if (status == 429) {
            e.type = "requests";
            e.code = "rate_limit_exceeded";
          }
          return dump(e.body());
        },
        options.log);
    if (options.tls) http->set_tls(options.tls);
    install_routes();
  }

  // One upstream call, known to stop() so that it can cut it short.
  class Tracked {
   public:
    Tracked(Impl* impl, UpstreamRequest request) : impl_(impl) {
      call_ = UpstreamCall::Start(std::move(request));
      std::lock_guard<std::mutex> lk(impl_->calls_mu);
      if (impl_->stopping) call_->cancel();
      impl_->calls.insert(call_.get());
    }
    ~Tracked() {
      {
        std::lock_guard<std::mutex> lk(impl_->calls_mu);
        impl_->calls.erase(call_.get());
      }
      call_.reset();
    }
    UpstreamCall& operator*() { return *call_; }
    UpstreamCall* operator->() { return call_.get(); }

   private:
    Impl* impl_;
    std::unique_ptr<UpstreamCall> call_;
  };

  // Holds an admission slot until destroyed.
  struct Slot {
    explicit Slot(Admission& a) : admission(a) {}
    ~Slot() { admission.release(); }
    Admission& admission;
  };

  std::string where() const {
    return options.upstream.host + ":" + std::to_string(options.upstream.port);
  }

  UpstreamRequest request_for(const std::string& method, const std::string& route) const {
    UpstreamRequest r;
    r.host = options.upstream.host;
    r.port = options.upstream.port;
    r.method = method;
    r.path = upstream_path(options.upstream, route);
    r.timeouts = options.timeouts;
    return r;
  }

  ApiError unreachable(const std::string& why) const {
    return ApiError{502, "the backend at " + where() + " could not be reached: " + why,
                    "server_error", "", "backend_unreachable"};
  }
  ApiError cut_off(const std::string& why) const {
    return ApiError{502,
                    "the backend at " + where() + " failed part way through its answer: " + why,
                    "server_error", "", "backend_failed"};
  }

  void log_line(const std::string& line) const {
    if (options.log) options.log(line);
  }
  void record_failure(const std::string& why) {
    {
      std::lock_guard<std::mutex> lk(stats_mu);
      stats.failed(Clock::now());
    }
    log_line("skill proxy: " + why);
  }
  void record_answer(const std::optional<SkillLoadStats::Generation>& g) {
    std::lock_guard<std::mutex> lk(stats_mu);
    stats.answered(Clock::now(), g);
  }
  // A whole (non-streamed) answer with `status`, `elapsed` after forwarding.
  void record_plain(RouteKind kind, int status, const std::string& body, Clock::duration elapsed) {
    if (status >= 500) return record_failure("the backend answered " + std::to_string(status));
    if (kind == RouteKind::kModels) {
      std::lock_guard<std::mutex> lk(stats_mu);
      stats.probed(true);
      return;
    }
    record_answer(kind == RouteKind::kGeneration && status == 200 ? plain_generation(body, elapsed)
                                                                  : std::nullopt);
  }
  // The end of a stream with `status` that `meter` watched; `ok` false when
  // it was cut off.
  void record_stream_end(int status, const SseMeter& meter, bool ok, const std::string& error,
                         RouteKind kind, Clock::time_point started) {
    if (!ok) return record_failure("stream cut off: " + error);
    if (status >= 500) return record_failure("the backend answered " + std::to_string(status));
    if (meter.saw_error()) return record_failure("the backend's stream ended with an error event");
    record_answer(kind == RouteKind::kGeneration ? meter.generation(started, Clock::now())
                                                 : std::nullopt);
  }

  void forward(const httplib::Request& req, httplib::Response& res, const std::string& method,
               const std::string& route, RouteKind kind) {
    std::shared_ptr<Slot> slot;
    if (kind != RouteKind::kModels) {  // a model list costs the upstream nothing
      const auto outcome = admission.acquire(options.queue_timeout);
      if (outcome != Admission::Outcome::kAdmitted) return send_api_error(res, busy(outcome));
      slot = std::make_shared<Slot>(admission);
    }
    UpstreamRequest up = request_for(method, route);
    if (method == "POST") {
      up.body = req.body;
      const std::string ct = req.get_header_value("Content-Type");
      if (!ct.empty()) up.content_type = ct;
    }
    if (req.has_header("Authorization"))
      up.headers.emplace_back("Authorization", req.get_header_value("Authorization"));
    const Clock::time_point started = Clock::now();
    auto call = std::make_shared<Tracked>(this, std::move(up));
    const int status = (*call)->wait_for_status();
    if (status == 0) {
      const std::string why = (*call)->error();
      record_failure("the backend could not be reached: " + why);
      return send_api_error(res, unreachable(why));
    }
    std::string content_type = (*call)->header("Content-Type");
    if (starts_with_ci(content_type, "text/event-stream")) {
      struct Stream {
        std::shared_ptr<Slot> slot;
        std::shared_ptr<Tracked> call;
        SseMeter meter;
        bool finished = false;
      };
      auto st = std::make_shared<Stream>();
      st->slot = std::move(slot);
      st->call = std::move(call);
      res.status = status;
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          content_type,
          // One call streams it all: httplib checks for a stopping server
          // between calls and would end the response there without its last
          // chunk, where this loop ends it with an error event once stop()
          // has cancelled the upstream call.
          [this, st, kind, started, status](size_t, httplib::DataSink& sink) {
            UpstreamCall& c = **st->call;
            std::string piece;
            while (!st->finished) {
              std::string out;
              if (c.next(&piece)) {
                out = st->meter.take(piece, Clock::now());
              } else {
                st->finished = true;
                const bool ok = c.ok();
                record_stream_end(status, st->meter, ok, c.error(), kind, started);
                out = ok ? st->meter.rest() : "data: " + dump(cut_off(c.error()).body()) + "\n\n";
              }
              if (!out.empty() && !sink.write(out.data(), out.size())) {
                c.cancel();  // the caller left; not the upstream's failure
                return false;
              }
            }
            sink.done();
            return true;
          },
          [st](bool) {
            st->call.reset();  // closes the upstream's connection if it is still open
            st->slot.reset();
          });
      return;
    }
    std::string body;
    if (!(*call)->read_all(&body)) {
      const std::string why = (*call)->error();
      record_failure("answer cut off: " + why);
      return send_api_error(res, cut_off(why));
    }
    record_plain(kind, status, body, Clock::now() - started);
    res.status = status;
    res.set_content(std::move(body), content_type.empty() ? "application/json" : content_type);
  }

  ApiError busy(Admission::Outcome o) const {
    const std::string limits = "it answers " + std::to_string(options.capacity) +
                               " requests at once (capacity) and queues " +
                               std::to_string(options.max_queue) + " more (max_queue)";
    std::string message;
    if (o == Admission::Outcome::kTimedOut)
      message = "the provider is busy: no slot came free within " +
                seconds_text(options.queue_timeout) + " (queue_timeout); " + limits;
    else if (o == Admission::Outcome::kStopping)
      message = "the provider is shutting down";
    else
      message = "the provider is busy: " + limits + ", and both are full";
    return ApiError{503, message, "server_error", "", "provider_busy"};
  }

  void install_routes() {
    httplib::Server& s = *http;
    install_openai_error_handlers(s);

    s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      bool warm;
      {
        std::lock_guard<std::mutex> lk(stats_mu);
        warm = stats.warm();
      }
      if (warm) {
        res.status = 200;
        res.set_content(R"({"status":"ok"})", "application/json");
        return;
      }
      send_api_error(res, ApiError{503,
                               "the backend at " + where() +
                                   " has not answered successfully since its last failure",
                               "server_error", "", "backend_unavailable"});
    });
    s.Get(R"(/(?:v1/)?models)", [this](const httplib::Request& req, httplib::Response& res) {
      forward(req, res, "GET", "/models", RouteKind::kModels);
    });
    s.Post(R"(/(?:v1/)?(chat/completions|completions|embeddings|images/generations))",
           [this](const httplib::Request& req, httplib::Response& res) {
             const std::string route = "/" + req.matches[1].str();
             const RouteKind kind = route == "/chat/completions" || route == "/completions"
                                        ? RouteKind::kGeneration
                                        : RouteKind::kOther;
             forward(req, res, "POST", route, kind);
           });
  }

  void stop() {
    admission.stop();
    {
      std::lock_guard<std::mutex> lk(calls_mu);
      stopping = true;
      for (UpstreamCall* c : calls) c->cancel();
    }
    http->stop();
  }

  const SkillProxyOptions options;
  std::unique_ptr<HttpServer> http;
  Admission admission;
  mutable std::mutex stats_mu;
  SkillLoadStats stats;
  std::mutex calls_mu;
  std::set<UpstreamCall*> calls;
  bool stopping = false;
};

Result<std::unique_ptr<SkillProxy>> SkillProxy::Create(SkillProxyOptions options) {
  if (options.upstream.host.empty() || options.upstream.port < 1 || options.upstream.port > 65535)
    return Status::InvalidArgument("skill proxy: the upstream needs a host and a port in 1..65535");
  if (options.capacity < 1)
    return Status::InvalidArgument("skill proxy: capacity must be at least 1");
  if (options.max_queue < 0)
    return Status::InvalidArgument("skill proxy: max_queue must not be negative");
  if (options.queue_timeout.count() < 0 || options.failure_window.count() <= 0 ||
      options.timeouts.connect.count() <= 0 || options.timeouts.first_byte.count() <= 0 ||
      options.timeouts.idle.count() <= 0)
    return Status::InvalidArgument("skill proxy: every timeout and window must be positive");
  const HttpLimits& h = options.http;
  if (h.warm_threads < 0 || h.max_connections < 1 || h.max_connections_per_client < 1 ||
      h.max_header_count < 1 || h.max_header_bytes < 1024 || h.listen_backlog < 1 ||
      h.max_requests_per_connection < 1 || h.header_timeout.count() <= 0 ||
      h.body_timeout.count() <= 0 || h.idle_timeout.count() <= 0 || h.write_timeout.count() <= 0)
    return Status::InvalidArgument("HTTP limits: every count and timeout must be positive");
  return std::unique_ptr<SkillProxy>(new SkillProxy(std::make_unique<Impl>(std::move(options))));
}

SkillProxy::SkillProxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SkillProxy::~SkillProxy() { stop(); }

Result<int> SkillProxy::listen(const std::string& host, int port) {
  return impl_->http->start(host, port);
}

void SkillProxy::stop() { impl_->stop(); }

Result<std::vector<std::string>> SkillProxy::probe_models() {
  Impl& m = *impl_;
  UpstreamRequest up = m.request_for("GET", "/models");
  up.max_body_bytes = kMaxModelListBytes;
  Impl::Tracked call(&m, std::move(up));
  const int status = call->wait_for_status();
  std::string body;
  if (status == 0 || !call->read_all(&body)) {
    const std::string why = call->error();
    m.record_failure("probing the model list failed: " + why);
    return Status::IOError("the backend at " + m.where() + " could not be reached: " + why);
  }
  if (status >= 500)
    m.record_failure("probing the model list: the backend answered " + std::to_string(status));
  if (status != 200) {
    if (status < 500) {
      std::lock_guard<std::mutex> lk(m.stats_mu);
      m.stats.probed(false);
    }
    return Status::IOError("the backend at " + m.where() + " answered GET " +
                           upstream_path(m.options.upstream, "/models") + " with " +
                           std::to_string(status));
  }
  const json j = json::parse(body, nullptr, false);
  std::vector<std::string> ids;
  bool list = j.is_object() && j.contains("data") && j["data"].is_array();
  if (list) {
    for (const json& model : j["data"]) {
      auto id = model.is_object() ? model.find("id") : model.end();
      if (!model.is_object() || id == model.end() || !id->is_string()) {
        list = false;
        break;
      }
      ids.push_back(id->get<std::string>());
    }
  }
  std::lock_guard<std::mutex> lk(m.stats_mu);
  m.stats.probed(list);
  if (!list)
    return Status::Corruption("the backend at " + m.where() +
                              " answered its model list with something else than "
                              "{\"data\":[{\"id\":...}]}");
  return ids;
}

Status SkillProxy::measure(const std::string& model) {
  Impl& m = *impl_;
  UpstreamRequest up = m.request_for("POST", "/completions");
  up.body = json{
      {"model", model},
      {"prompt", "Hello"},
      {"max_tokens", 8},
      {"temperature", 0},
      {"stream",
       true}}.dump();
  const Clock::time_point started = Clock::now();
  Impl::Tracked call(&m, std::move(up));
  const int status = call->wait_for_status();
  if (status == 0) {
    m.record_failure("measuring " + model + ": " + call->error());
    return Status::IOError("the backend at " + m.where() +
                           " could not be reached: " + call->error());
  }
  if (starts_with_ci(call->header("Content-Type"), "text/event-stream")) {
    SseMeter meter;
    std::string piece;
    while (call->next(&piece)) meter.take(piece, Clock::now());
    const bool ok = call->ok();
    m.record_stream_end(status, meter, ok, call->error(), RouteKind::kGeneration, started);
    if (!ok) return Status::IOError("measuring " + model + ": " + call->error());
    if (meter.saw_error())
      return Status::IOError("measuring " + model + ": the backend's stream ended with an error");
    return Status::Ok();
  }
  std::string body;
  if (!call->read_all(&body)) {
    m.record_failure("measuring " + model + ": " + call->error());
    return Status::IOError("measuring " + model + ": " + call->error());
  }
  m.record_plain(RouteKind::kGeneration, status, body, Clock::now() - started);
  if (status != 200)
    return Status::IOError("measuring " + model + ": the backend answered " +
                           std::to_string(status) + ": " + body.substr(0, 500));
  return Status::Ok();
}

SkillLoad SkillProxy::load(std::chrono::steady_clock::time_point now) const {
  SkillLoad out;
  out.capacity = impl_->options.capacity;
  impl_->admission.counts(&out.active, &out.queued);
  std::lock_guard<std::mutex> lk(impl_->stats_mu);
  out.tokens_per_second = impl_->stats.tokens_per_second();
  out.ttft_seconds = impl_->stats.ttft_seconds();
  out.completed = impl_->stats.completed();
  out.failures_in_window = impl_->stats.failures_in_window(now);
  out.warm = impl_->stats.warm();
  return out;
}

}  // namespace swarm
