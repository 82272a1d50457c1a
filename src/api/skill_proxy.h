// A skill provider's front: an OpenAI-compatible HTTP endpoint that gateways
// call, forwarding each request to the server the provider wraps (`swarm node
// --backend URL`: llama-server, vLLM, Ollama, `swarm serve`; or, for `swarm
// node --skill`, the node's own engine served in the same process). It
//
// - passes requests and answers through unchanged: SSE streams piece by piece
//   with back-pressure, the upstream's status and OpenAI error bodies as they
//   are; an upstream that cannot be reached or fails mid-answer is a 502 (or an
//   SSE error event once a stream has begun) with an OpenAI-style body;
// - admits at most `capacity` requests at once; up to `max_queue` more wait
//   (each at most `queue_timeout`) and the rest get a 503 at once, so the
//   announced capacity and queue length are what a gateway will meet;
// - measures what it forwards (time to first token, decode tokens/s per
//   stream, failures), which the node announces in its skill record
//   (discovery/skill_record.h) and its price follows (node/skill_price.h).
//
// Routes: POST /v1/chat/completions, /v1/completions, /v1/embeddings,
// /v1/images/generations; GET /v1/models, /health (the proxy's own:
// {"status":"ok"} while the upstream's last answer succeeded, else 503). The
// same without /v1. A model list is forwarded outside the admission limits
// (it costs the upstream nothing, and a gateway must see it while generations
// fill every slot); it counts for `warm`, not as a completed request.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api/http_server.h"
#include "api/http_tls.h"
#include "api/upstream_call.h"
#include "engine/status.h"

namespace swarm {

// "http://host:port" (optionally with a path prefix such as "/v1", which the
// upstream's routes are taken to start with): what --backend accepts.
struct UpstreamUrl {
  std::string host;
  int port = 0;
  std::string prefix;  // "" or "/v1"-like, without a trailing slash
};
// InvalidArgument naming the problem for anything but http://HOST:PORT[/PATH]
// (https is not supported: the wrapped server is the owner's own, usually on
// loopback). HOST is a name, an IPv4 address or a bracketed IPv6 one.
//
// Where requests go: the proxy's routes are OpenAI's, "/v1" followed by a
// route ("/chat/completions", "/models"). A prefix that ends in "/v1" is taken
// as the API root itself and the route is appended to it; any other prefix
// (including none) is the server's base and gets "/v1" and the route. So
// http://h:8080 and http://h:8080/v1 both send chat to /v1/chat/completions,
// and http://h:8080/openai sends it to /openai/v1/chat/completions.
Result<UpstreamUrl> parse_upstream_url(const std::string& url);

struct SkillProxyOptions {
  UpstreamUrl upstream;
  int capacity = 4;   // requests forwarded at once
  int max_queue = 16;  // more wait up to queue_timeout; beyond, 503 at once
  std::chrono::milliseconds queue_timeout{30000};
  UpstreamTimeouts timeouts;
  HttpLimits http;
  // Window over which failures are counted for the record.
  std::chrono::seconds failure_window{300};
  std::function<void(const std::string&)> log;  // one line per failure; may be empty
  // Serve HTTPS with the provider's identity (api/http_tls.h): gateways pin
  // the key that signed its skill records. Null: plain HTTP.
  std::shared_ptr<TlsServerContext> tls;
};

// What the proxy measured, as of `now`.
struct SkillLoad {
  int capacity = 0;
  int active = 0;  // forwarded now
  int queued = 0;  // waiting for a slot now
  // Exponentially weighted means over completed generations (0: none yet).
  double tokens_per_second = 0;  // per stream, after the first token
  double ttft_seconds = 0;
  int64_t completed = 0;
  int64_t failures_in_window = 0;  // upstream unreachable, 5xx, or cut off mid-answer
  bool warm = false;               // the upstream's last answer (or probe) succeeded
};

class SkillProxy {
 public:
  static Result<std::unique_ptr<SkillProxy>> Create(SkillProxyOptions options);
  ~SkillProxy();  // stop()s
  SkillProxy(const SkillProxy&) = delete;
  SkillProxy& operator=(const SkillProxy&) = delete;

  // Binds host:port (0: a free one) and serves on background threads.
  Result<int> listen(const std::string& host, int port);
  void stop();

  // GET /v1/models on the upstream: the ids of the models it serves
  // (IOError if it cannot be reached, Corruption for an answer that is not a
  // model list). Marks the proxy warm or cold.
  Result<std::vector<std::string>> probe_models();
  // One short generation through the upstream (POST /v1/completions,
  // max_tokens 8, greedy) for `model`, counted in the measurements like any
  // request: a new provider's record carries a speed before its first user.
  Status measure(const std::string& model);

  SkillLoad load(std::chrono::steady_clock::time_point now) const;

 private:
  struct Impl;
  explicit SkillProxy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace swarm
