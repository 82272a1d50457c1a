// The OpenAI-compatible HTTP API over any GenerationBackend: `swarm serve`
// (one model in this process) and `swarm gateway` (a chain of nodes) both
// serve it. The server speaks text and JSON; the backend speaks token ids.
//
//   GET  /v1/models, /v1/models/{id}, /health, /metrics (doc/metrics.md)
//   POST /v1/chat/completions, /v1/completions   (stream: true -> SSE)
//   POST /v1/embeddings                          (serve; 404 on a gateway)
//   GET  /swarm and the swarm page at / (a gateway; doc/swarm-page.md)
// (also without the /v1 prefix, as llama.cpp's server accepts them).
//
// Requests are served concurrently by a pool of HTTP threads, all calling the
// backend at once, which batches them. Every error is OpenAI's JSON error body
// with the matching status; no request body can crash the server. Connections
// pass through HttpServer first: deadlines, connection caps and size limits
// (doc/http-api.md).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "api/api_key_check.h"
#include "api/api_metrics.h"
#include "api/http_server.h"
#include "api/metric_families.h"
#include "api/openai_request.h"
#include "api/request_activity.h"
#include "api/skill_gateway.h"
#include "api/swarm_view.h"
#include "engine/chat_template.h"
#include "engine/status.h"
#include "engine/tokenizer.h"
#include "pipeline/generation.h"
#include "trust/ledger.h"

namespace swarm {

struct ApiOptions {
  // Names the model is served under; the first is the default for requests
  // that name none. At least one.
  std::vector<std::string> model_names;
  // A completion naming another model: 404 (strict), or served by this one
  // as llama-server does (clients that send "gpt-4o-mini" work).
  bool strict_model_names = false;
  // Origins browsers may call from (CORS); empty: any, each echoed back.
  std::vector<std::string> cors_origins;
  const Tokenizer* tokenizer = nullptr;  // must outlive the server
  // The model's content hash (net/model_id.h) where the caller knows it; "": the
  // first model name stands for it. Named in every answer's system_fingerprint.
  std::string model_id;
  std::string chat_template;  // the model's Jinja template (model_chat_template), may be ""
  std::string chat_template_override;  // --chat-template NAME; "" = detect from chat_template
  int context_length = 0;              // <= 0 or above the backend's: the backend's
  int default_max_tokens = -1;         // for requests that give none; -1: until the context is full
  HttpLimits http;  // deadlines, connection caps, size limits, worker threads
  // Called once per finished completion with a one-line summary, and for what
  // the HTTP front door refuses or cuts off (rate-limited); may be empty.
  std::function<void(const std::string&)> log;
  // Requesters' API keys and credits (doc/trust.md, "Credits ledger"); must
  // outlive the server. Null: no key is asked for and nothing is charged.
  // Otherwise a request needs `Authorization: Bearer KEY` with a key the ledger
  // knows (401 without), and with `charge` the most it may cost (prompt +
  // max_tokens at the route's prices) is held from the key's balance (402 when
  // it does not fit) and settled from the nodes' work when it ends.
  trust::Ledger* ledger = nullptr;
  bool charge = true;
  // Keys that open the API without an account (--api-key): never charged.
  // With these or a ledger, every route but /health, /metrics and CORS
  // preflights needs a key (doc/http-api.md, "API keys").
  std::vector<std::string> api_keys;
  // GET /trust (a gateway): audits, exclusions and reputation as JSON text
  // (doc/trust.md); empty: 404.
  std::function<std::string()> trust_status;
  // GET /metrics: the backend's and the process's own figures, read at each
  // scrape and written after the API's (doc/metrics.md); may be empty.
  std::function<MetricFamilies()> metrics;
  // GET /swarm (JSON) and the swarm page at / that draws it (a gateway): what
  // the backend knows of its swarm, read at each poll; the server adds its
  // own requests and tokens per second. Empty: 404 for both.
  std::function<SwarmState()> swarm;
  // The skills market (a gateway with --bootstrap; doc/skills.md): requests
  // naming a skill that none of model_names is go to its providers, and
  // /v1/models lists the skills. Must outlive the server; null: no skills.
  SkillGateway* skills = nullptr;
};

class OpenAiServer {
 public:
  // InvalidArgument for an unknown chat_template_override, no model name or no tokenizer.
  static Result<std::unique_ptr<OpenAiServer>> Create(ApiOptions options,
                                                      GenerationBackend& backend);
  ~OpenAiServer();  // stop()s
  OpenAiServer(const OpenAiServer&) = delete;
  OpenAiServer& operator=(const OpenAiServer&) = delete;

  // Binds host:port (port 0: a free one) and serves on a background thread.
  // Returns the bound port once connections are accepted, or IOError.
  Result<int> listen(const std::string& host, int port);
  // Stops accepting, ends streams in progress and waits for the HTTP threads.
  void stop();

  ChatFamily chat_family() const { return family_; }
  // What chose the chat family, for the caller to log once.
  const std::string& chat_family_note() const { return family_note_; }
  int context_length() const;
  // The HTTP front door's counters (connections, threads, refusals).
  HttpServer::Stats http_stats() const { return http_->stats(); }

 private:
  OpenAiServer(ApiOptions options, GenerationBackend& backend, ChatFamily family, std::string note);
  void install_routes();
  void install_swarm_page();
  // A chat request's messages (and tools) as the prompt text the model's template
  // makes of them.
  Result<std::string> render_messages(const CompletionRequest& request) const;
  // How this model is shown tools and writes calls (engine/chat_tools.h).
  ToolFormat tool_format() const;
  // `native`: llama-server's POST /completion (its request and answer shapes).
  void handle_completion(const httplib::Request& req, httplib::Response& res, bool chat,
                         bool native = false);
  // A request naming a skill (options_.skills) rather than this server's
  // model: answered by the skills market (true), else false and untouched.
  bool forward_to_skill(const httplib::Request& req, httplib::Response& res, std::string_view task);
  // POST /v1/embeddings (api/embeddings_request.h); 404 where the backend has none.
  void handle_embeddings(const httplib::Request& req, httplib::Response& res);
  // With keys or a ledger: the requester's account (id 0 for an --api-key
  // key, which is never charged), or false after answering 401.
  bool authorize(const httplib::Request& req, httplib::Response& res, trust::Account* account);

  ApiOptions options_;
  StaticApiKeys static_keys_;
  GenerationBackend& backend_;
  ChatFamily family_;
  std::string family_note_;
  std::unique_ptr<HttpServer> http_;
  ApiMetrics metrics_;
  RequestActivity activity_;  // the swarm page's live requests and tokens/s
  std::atomic<bool> stopping_{false};
};

}  // namespace swarm
