#include "api/openai_server.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <optional>
#include <random>
#include <type_traits>

#include "api/api_error.h"
#include "api/http_errors.h"
#include "api/cors.h"
#include "api/embeddings_request.h"
#include "api/llama_tokenize.h"
#include "api/logprobs_json.h"
#include "api/openai_request.h"
#include "api/request_billing.h"
#include "api/system_fingerprint.h"
#include "api/tool_call_grammar.h"
#include "api/web_assets.h"
#include "engine/mix64.h"
#include "trust/credits.h"

namespace swarm {
namespace {

using nlohmann::json;                  // requests
using OJson = nlohmann::ordered_json;  // responses, fields in OpenAI's order

// Generated text may hold bytes that never become valid UTF-8 (a model can emit
// any byte token): JSON gets U+FFFD for them instead of an exception.
std::string dump(const OJson& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Text as a client reads it back from dump(): what is not UTF-8 as U+FFFD. A
// resumable job's text is made so piece by piece, as its chunks go out, so that
// the bytes a client counts are the bytes the server counts when it resumes.
std::string as_sent(const std::string& text) {
  const json back = json::parse(dump(OJson(text)), nullptr, /*allow_exceptions=*/false);
  return back.is_string() ? back.get<std::string>() : text;
}

void send_json(httplib::Response& res, int status, const OJson& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

std::string random_id(const char* prefix) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof kAlphabet - 1)];
  return id;
}

uint64_t random_seed() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return rng();
}

// OpenAI's usage object, with what it cost in credits and the nodes that
// served it (`cost_credits`, `served_by`: doc/trust.md); with speculative
// decoding also OpenAI's predicted-output counts (drafts accepted and
// rejected) and a `speculation` object with the details.
OJson usage_json(const GenerationResult& r, const Bill& bill) {
  OJson u = {{"prompt_tokens", r.prompt_tokens},
             {"completion_tokens", r.completion_tokens},
             {"total_tokens", r.prompt_tokens + r.completion_tokens},
             {"cost_credits", trust::to_credits(bill.cost)},
             {"served_by", served_by_json(r.work, bill)}};
  const SpeculationReport& s = r.speculation;
  if (!s.drafter.empty()) {
    u["completion_tokens_details"] = {{"accepted_prediction_tokens", s.accepted},
                                      {"rejected_prediction_tokens", s.drafted - s.accepted}};
    u["speculation"] = {
        {"drafter", s.drafter},
        {"drafted_tokens", s.drafted},
        {"accepted_tokens", s.accepted},
        {"acceptance_rate", s.drafted > 0 ? static_cast<double>(s.accepted) / s.drafted : 0.0},
        {"mean_accepted_length",
         s.chains > 0 ? static_cast<double>(s.accepted + s.chains) / s.chains : 0.0},
        {"plain_steps", s.plain_steps},
        {"speculative_steps", s.speculative_steps},
        {"runs", s.runs},
        {"cancelled_runs", s.cancelled_runs},
        {"shadow_chains", s.shadow_chains},
        {"proposals", s.proposals},
        {"empty_proposals", s.empty_proposals},
        {"proposals_after_guess", s.proposals_after_guess},
        {"guesses_after_guess", s.guesses_after_guess},
        {"width", s.width},
        {"in_flight", s.in_flight},
        {"drafts_per_round_trip", s.drafts_per_round_trip},
        {"controller_acceptance", s.acceptance},
        {"round_trip_s", s.round_trip_s},
        {"bottleneck_s", s.bottleneck_s},
        {"goodput_bound_tok_s", s.goodput_bound}};
  }
  return u;
}

// One completion, ready for the backend.
struct Job {
  bool chat = false;
  std::string id, model;
  int64_t created = 0;
  GenerationRequest gen;
  bool stream = false, include_usage = false;
  std::string echo;  // completions with echo: the prompt's text
  std::optional<trust::Hold> hold;  // credits held from the requester's balance (a ledger)
  bool native = false;  // llama-server's POST /completion: its own answer shape
  size_t index = 0;     // the choice (n > 1)
  std::string fingerprint;  // system_fingerprint
  ToolRequest tools;    // chat: the output is read for calls when tools.active()
  ToolFormat tool_format = ToolFormat::kGeneric;
  bool token_ids = false;  // swarm_token_ids: chunks carry the completion's token ids
  // swarm_resume: its tokens end gen.prompt (they are prefilled), but they are
  // the completion's, so run_job decodes them as generated text.
  std::optional<SwarmResume> resume;
};

// How many of a job's prompt tokens are a resumed completion's.
size_t resumed_count(const Job& job) { return job.resume ? job.resume->tokens.size() : 0; }

// Whether a client may resume the job elsewhere, counting the bytes it got.
bool resumable(const Job& job) { return job.token_ids || job.resume; }

// The bytes of text `tokens` give after `prompt`, as run_job sends them
// (spacing and characters split across the seam as decode() of the whole
// gives them, nothing past a stop string), held-back text included: the most
// a client given these tokens can have.
size_t continuation_bytes(const Tokenizer& tok, const std::vector<int32_t>& prompt,
                          const std::vector<int32_t>& tokens,
                          const std::vector<std::string>& stop) {
  TokenStreamDecoder decoder(tok);
  for (int32_t id : prompt) decoder.push(id);
  StopMatcher stops(stop);
  size_t n = 0;
  for (int32_t id : tokens) n += as_sent(stops.push(decoder.push(id))).size();
  n += as_sent(stops.push(decoder.flush())).size();
  return n + as_sent(stops.flush()).size();
}

// What a resume is checked against once the prompt and the limits are known:
// room left under max_tokens (the whole completion's limit), no end-of-
// generation token (the backend never hands those out: a completion that
// sampled one had ended), and text_bytes within the text the tokens give.
std::optional<ApiError> check_resume(const SwarmResume& resume, const Tokenizer& tok,
                                     const std::vector<int32_t>& prompt, int64_t max_tokens,
                                     const SamplingParams& sp) {
  const std::vector<int32_t>& stop_tokens = sp.stop_tokens;
  auto refuse = [](const std::string& why) {
    return invalid_request("Invalid 'swarm_resume': " + why, "swarm_resume", "invalid_value");
  };
  const int64_t n = static_cast<int64_t>(resume.tokens.size());
  if (n >= max_tokens)
    return refuse("its " + std::to_string(n) + " tokens leave nothing to generate under the " +
                  std::to_string(max_tokens) + " tokens the completion may have (max_tokens).");
  for (size_t i = 0; i < resume.tokens.size(); ++i)
    if (std::find(stop_tokens.begin(), stop_tokens.end(), resume.tokens[i]) != stop_tokens.end())
      return refuse("'tokens[" + std::to_string(i) + "]' is an end-of-generation token (" +
                    std::to_string(resume.tokens[i]) + "): a completion ends there.");
  const size_t bytes = continuation_bytes(tok, prompt, resume.tokens, sp.stop);
  if (static_cast<uint64_t>(resume.text_bytes) > bytes)
    return refuse("'text_bytes' is " + std::to_string(resume.text_bytes) +
                  ", but the tokens' text has " + std::to_string(bytes) + " bytes.");
  return std::nullopt;
}

// The jobs of a request's `n` choices: choice 0 is `job` itself; choice i > 0
// has the index i and the seed mix64(seed + i), so each choice differs and
// the same seed gives the same choices again.
std::vector<Job> choice_jobs(const Job& job, int n) {
  std::vector<Job> jobs(static_cast<size_t>(std::max(1, n)), job);
  for (size_t i = 1; i < jobs.size(); ++i) {
    jobs[i].index = i;
    jobs[i].gen.sampling.seed = mix64(job.gen.sampling.seed + i);
  }
  return jobs;
}

// The swarm page's id of a choice: the request's, with the index after the first.
std::string activity_id_of(const Job& job) {
  return job.index == 0 ? job.id : job.id + "." + std::to_string(job.index);
}

// Usage over choices: the prompt counts once (as OpenAI counts it), the
// completions add up; speculation is the first choice's.
void add_choice_usage(GenerationResult* total, const GenerationResult& more) {
  total->completion_tokens += more.completion_tokens;
  total->work.insert(total->work.end(), more.work.begin(), more.work.end());
}

// Where a job's output goes while it runs.
struct JobSink {
  std::function<void()> first_token;  // the backend produced its first token; may be empty
  std::function<void()> token;        // called per token the backend produces; may be empty
  std::function<bool(const std::string&)> text;  // text safe to show now; false: the client is gone
  std::function<bool()> alive;                   // checked per token; false: cancel
  std::function<void(int32_t)> id;  // each new completion token's id, before its text; may be empty
  // With logprobs asked for: each token's, just before its text (may be empty).
  std::function<void(const TokenLogprob&)> logprob;
  // With the prompt's asked for: all of them, before the first token.
  std::function<void(const std::vector<TokenLogprob>&)> prompt_logprobs;
};

struct Outcome {
  Status status;
  bool cancelled = false;  // the sink asked to stop (client gone, server stopping)
  std::string finish_reason;
  std::string stopping_word;  // the stop string that ended it, if one did
  GenerationResult result;
  Bill bill;
};

// Runs `job`, turning tokens into text: UTF-8 characters split across tokens
// are held back until complete (TokenStreamDecoder), and so is anything that
// may be the start of a stop string (StopMatcher); a completed stop string
// ends the generation and is not shown.
//
// A resumed completion's tokens (Job::resume) pass through the decoder and the
// stop strings first, as if just generated, so held-back text and a stop
// string split across the seam come out as they would have; of the text they
// give, the client's text_bytes are dropped and the rest goes out with the
// first new token's. A stop string wholly inside them ends the completion
// before anything runs.
Outcome run_job(GenerationBackend& backend, const Tokenizer& tok, const Job& job,
                const JobSink& sink) {
  const size_t n_resumed = resumed_count(job);
  const size_t n_prompt = job.gen.prompt.size() - n_resumed;
  TokenStreamDecoder decoder(tok);
  for (size_t i = 0; i < n_prompt; ++i)
    decoder.push(job.gen.prompt[i]);  // so spacing continues the prompt
  StopMatcher stops(job.gen.sampling.stop);
  bool first = true;
  auto open = [&] {
    if (!first) return;
    first = false;
    if (sink.first_token) sink.first_token();
  };
  // The text the client has already: dropped from the front of what is shown.
  size_t skip = job.resume ? static_cast<size_t>(job.resume->text_bytes) : 0;
  auto unseen = [&skip, sent = resumable(job)](std::string text) {
    if (sent) text = as_sent(text);
    const size_t drop = std::min(skip, text.size());
    skip -= drop;
    return text.erase(0, drop);
  };
  std::string carried;  // the resumed tokens' text the client lacks
  if (job.resume) {
    for (size_t i = n_prompt; i < job.gen.prompt.size() && !stops.stopped(); ++i)
      carried += unseen(stops.push(decoder.push(job.gen.prompt[i])));  // a piece per token, as sent
  }
  Outcome out;
  if (stops.stopped()) {  // the first server had generated the stop string: nothing is left to run
    open();
    if (!carried.empty() && !sink.text(carried)) out.cancelled = true;
    out.finish_reason = "stop";
    out.stopping_word = stops.matched();
    out.result.prompt_tokens = static_cast<int>(n_prompt);
    out.result.completion_tokens = static_cast<int>(n_resumed);
    return out;
  }
  auto on_token = [&](int32_t id) -> bool {
    open();
    if (sink.token) sink.token();
    if (sink.alive && !sink.alive()) {
      out.cancelled = true;
      return false;
    }
    if (sink.id) sink.id(id);
    std::string text = unseen(stops.push(decoder.push(id)));
    text.insert(0, carried);
    carried.clear();
    if (!text.empty() && !sink.text(text)) {
      out.cancelled = true;
      return false;
    }
    return !stops.stopped();
  };
  GenerationRequest gen = job.gen;
  if (gen.logprobs >= 0) gen.on_logprob = sink.logprob;
  if (gen.prompt_logprobs) gen.on_prompt_logprobs = sink.prompt_logprobs;
  auto r = backend.generate(gen, on_token);
  if (!r.ok()) {
    out.status = r.status();
    return out;
  }
  out.result = *r;
  // Usage counts the resumed tokens as the completion's, not the prompt's.
  out.result.prompt_tokens -= static_cast<int>(n_resumed);
  out.result.completion_tokens += static_cast<int>(n_resumed);
  if (out.cancelled) return out;
  if (!stops.stopped()) {
    std::string tail = unseen(stops.push(decoder.flush()));
    tail += unseen(stops.flush());
    tail.insert(0, carried);
    if (!tail.empty()) {
      open();  // a resume's text may come with no new token at all
      if (!sink.text(tail)) out.cancelled = true;
    }
  }
  out.finish_reason = stops.stopped() ? "stop" : r->finish_reason;
  out.stopping_word = stops.matched();
  return out;
}

// Sampling settings as llama-server reports them (/completion, /props).
OJson sampling_settings(const SamplingParams& sp, int64_t n_predict) {
  return {{"n_predict", n_predict},          {"seed", sp.seed},
          {"temperature", sp.temperature},   {"top_k", sp.top_k},
          {"top_p", sp.top_p},               {"min_p", sp.min_p},
          {"repeat_penalty", sp.repeat_penalty}, {"repeat_last_n", sp.repeat_last_n},
          {"stop", sp.stop}};
}

// llama-server's answer to POST /completion (the last event of a stream, with
// `content` ""): the text, why it stopped, and its timings.
OJson native_completion(const Job& job, const Outcome& o, const std::string& content) {
  const GenerationResult& g = o.result;
  const SamplingParams& sp = job.gen.sampling;
  const char* stop_type = !o.stopping_word.empty() ? "word" : o.finish_reason == "length" ? "limit" : "eos";
  const double prompt_ms = g.prompt_seconds * 1000, predicted_ms = g.generation_seconds * 1000;
  return {{"content", content},
          {"id_slot", 0},
          {"stop", true},
          {"model", job.model},
          {"tokens_predicted", g.completion_tokens},
          {"tokens_evaluated", g.prompt_tokens},
          {"generation_settings", sampling_settings(sp, sp.max_tokens)},
          {"stop_type", stop_type},
          {"stopping_word", o.stopping_word},
          {"tokens_cached", 0},
          {"timings",
           {{"prompt_n", g.prompt_tokens},
            {"prompt_ms", prompt_ms},
            {"prompt_per_second", prompt_ms > 0 ? g.prompt_tokens * 1000.0 / prompt_ms : 0.0},
            {"predicted_n", g.completion_tokens},
            {"predicted_ms", predicted_ms},
            {"predicted_per_second",
             predicted_ms > 0 && g.completion_tokens > 1 ? (g.completion_tokens - 1) * 1000.0 / predicted_ms : 0.0}}},
          {"truncated", false}};
}

// The assistant message of a chat answer read for tool calls.
OJson tool_message(const ToolAnswer& a) {
  OJson m = {{"role", "assistant"}};
  m["content"] = a.content ? OJson(*a.content) : OJson(nullptr);
  if (!a.calls.empty()) m["tool_calls"] = tool_calls_json(a.calls);
  return m;
}

OJson chunk_head(const Job& job) {
  return {{"id", job.id},
          {"object", job.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", job.created},
          {"model", job.model},
          {"system_fingerprint", job.fingerprint}};
}

// A streamed chunk with one choice: chat `delta` or completion `text`.
OJson choice_chunk(const Job& job, const OJson& delta_or_text, const OJson& finish_reason,
                   OJson logprobs = nullptr) {
  OJson c = chunk_head(job);
  OJson choice = {{"index", job.index}};
  if (job.chat)
    choice["delta"] = delta_or_text;
  else
    choice["text"] = delta_or_text;
  choice["logprobs"] = std::move(logprobs);
  choice["finish_reason"] = finish_reason;
  c["choices"] = OJson::array({choice});
  if (job.include_usage) c["usage"] = nullptr;
  return c;
}

std::string sse(const OJson& j) { return "data: " + dump(j) + "\n\n"; }

// swarm_token_ids: a chunk carries the ids that arrived since the last one that
// did, so that after any chunk the ids and the text so far are a point to
// resume from (doc/http-api.md, "Resuming a completion elsewhere").
OJson with_token_ids(const Job& job, OJson chunk, std::vector<int32_t>* ids) {
  if (!job.token_ids) return chunk;
  chunk["swarm_token_ids"] = *ids;
  ids->clear();
  return chunk;
}

// A request's usage; a resumed completion's also says how many of its
// completion tokens another server generated.
OJson request_usage(const Job& job, const GenerationResult& total, const Bill& bill) {
  OJson u = usage_json(total, bill);
  if (job.resume) u["swarm_resumed_tokens"] = job.resume->tokens.size();
  return u;
}

// A job's logprobs as they arrive, handed out in its answer's shape: all at
// once, or a stream chunk's worth at a time (api/logprobs_json.h).
class JobLogprobs {
 public:
  JobLogprobs(const Job& job, const Tokenizer& tok) : job_(job), tok_(tok), completion_(tok) {}
  bool wanted() const { return job_.gen.logprobs >= 0; }
  // Completions with echo: the prompt's tokens, the first unscored.
  void prompt(const std::vector<TokenLogprob>& lps) {
    if (job_.gen.prompt.empty()) return;
    completion_.add_unscored(job_.gen.prompt.front());
    for (const TokenLogprob& lp : lps) completion_.add(lp);
    prompt_pending_ = true;
  }
  void add(const TokenLogprob& lp) { pending_.push_back(lp); }
  bool pending() const { return !pending_.empty() || prompt_pending_; }
  // What arrived since the last take: choice.logprobs (null when not wanted),
  // or llama-server's completion_probabilities. `whole`: a whole answer.
  OJson take(bool whole) {
    if (!wanted()) return nullptr;
    std::vector<TokenLogprob> lps;
    lps.swap(pending_);
    prompt_pending_ = false;
    if (job_.native) return native_probabilities(tok_, lps);
    if (job_.chat) return chat_logprobs(tok_, lps, whole);
    for (const TokenLogprob& lp : lps) completion_.add(lp);
    return completion_.take();
  }

 private:
  const Job& job_;
  const Tokenizer& tok_;
  CompletionLogprobs completion_;
  std::vector<TokenLogprob> pending_;
  bool prompt_pending_ = false;
};

// How a completion ended, as metrics and the swarm page name it.
std::string outcome_of(const Outcome& o) {
  return !o.status.ok() ? "error" : o.cancelled ? "cancelled" : o.finish_reason;
}

// A file name as a route pattern (cpp-httplib's patterns are regular expressions).
std::string route_of(std::string_view path) {
  std::string r = "/";
  for (char c : path) {
    if (std::string_view(".^$|()[]{}*+?\\").find(c) != std::string_view::npos) r += '\\';
    r += c;
  }
  return r;
}

// A streamed response: the worker thread runs the job and appends SSE events;
// the HTTP thread writes them out as they come.
struct StreamState {
  std::mutex mu;
  std::condition_variable cv;
  std::string pending;            // events not yet written
  bool opened = false;            // the first event exists: the status is 200
  bool finished = false;          // nothing more will be appended
  std::optional<ApiError> error;  // failed before opening: answer with this instead
  std::vector<bool> opened_choice;  // each choice's first events are out
  std::vector<Outcome> results;     // each choice's, as it ends
  int remaining = 0;                // choices still running
  std::atomic<bool> client_gone{false};
  std::atomic<bool> failed{false};  // a choice failed: the others stop
  bool tool_call_failed = false;    // a forced call did not come: its error ended the stream
  std::vector<std::thread> workers;  // one per choice
  void join() {
    for (std::thread& t : workers)
      if (t.joinable()) t.join();
  }
};

const char* kBadJson =
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid "
    "JSON.)";

}  // namespace

Result<std::unique_ptr<OpenAiServer>> OpenAiServer::Create(ApiOptions options,
                                                           GenerationBackend& backend) {
  if (options.model_names.empty())
    return Status::InvalidArgument("the API needs at least one model name");
  for (const std::string& n : options.model_names)
    if (n.empty()) return Status::InvalidArgument("a model name must not be empty");
  if (options.tokenizer == nullptr) return Status::InvalidArgument("the API needs a tokenizer");
  const HttpLimits& h = options.http;
  if (h.warm_threads < 0 || h.max_connections < 1 || h.max_connections_per_client < 1 ||
      h.max_header_count < 1 || h.max_header_bytes < 1024 || h.listen_backlog < 1 ||
      h.max_requests_per_connection < 1 || h.header_timeout.count() <= 0 ||
      h.body_timeout.count() <= 0 || h.idle_timeout.count() <= 0 || h.write_timeout.count() <= 0)
    return Status::InvalidArgument("HTTP limits: every count and timeout must be positive");
  std::string note;
  auto family = choose_chat_family(options.chat_template, options.chat_template_override, &note);
  if (!family.ok()) return family.status();
  return std::unique_ptr<OpenAiServer>(
      new OpenAiServer(std::move(options), backend, *family, std::move(note)));
}

OpenAiServer::OpenAiServer(ApiOptions options, GenerationBackend& backend, ChatFamily family,
                           std::string note)
    : options_(std::move(options)),
      static_keys_(options_.api_keys),
      backend_(backend),
      family_(family),
      family_note_(std::move(note)),
      http_(std::make_unique<HttpServer>(
          options_.http,
          [](int status, const std::string& message) {
            ApiError e{status, message, status >= 500 ? "server_error" : "invalid_request_error",
                       "", ""};
            if (status == 429) {
              e.type = "requests";
              e.code = "rate_limit_exceeded";
            }
            return dump(e.body());
          },
          options_.log)) {
  install_routes();
}

OpenAiServer::~OpenAiServer() { stop(); }

int OpenAiServer::context_length() const {
  const int b = backend_.context_length();
  if (b <= 0) return std::max(options_.context_length, 1);
  return options_.context_length > 0 ? std::min(options_.context_length, b) : b;
}

Result<int> OpenAiServer::listen(const std::string& host, int port) {
  return http_->start(host, port);
}

void OpenAiServer::stop() {
  stopping_ = true;
  backend_.release_waiting();  // requests queued for capacity must not hold the stop up
  if (http_) http_->stop();
}

void OpenAiServer::install_routes() {
  httplib::Server& s = *http_;
  // CORS: the caller's origin is echoed where it may call (any origin unless
  // --cors-origin lists them); a request without an Origin is no browser's.
  s.set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const std::string origin = req.get_header_value("Origin");
    if (origin.empty()) {
      if (options_.cors_origins.empty()) res.set_header("Access-Control-Allow-Origin", "*");
      return;
    }
    res.set_header("Vary", "Origin");
    if (!cors_allowed(options_.cors_origins, origin)) return;  // the browser refuses the answer
    res.set_header("Access-Control-Allow-Origin", origin);
  });
  const int64_t started = static_cast<int64_t>(std::time(nullptr));

  install_openai_error_handlers(s);

  // Preflights allow the headers the browser asks for (the openai package
  // sends its own x-stainless-* ones), as long as they are header names.
  s.Options(".*", [](const httplib::Request& req, httplib::Response& res) {
    res.status = 204;
    res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    res.set_header("Access-Control-Allow-Headers",
                   preflight_allowed_headers(req.get_header_value("Access-Control-Request-Headers")));
    res.set_header("Access-Control-Max-Age", "86400");
  });

  s.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"status", "ok"}});
  });
  // llama-server's own tokenizer endpoints (api/llama_tokenize.h).
  // A POST that answers a JSON body with JSON: `handler(body)` gives the
  // answer or the error.
  auto json_endpoint = [this](auto handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      trust::Account account;
      if (!authorize(req, res, &account)) return;
      const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
      if (body.is_discarded()) return send_api_error(res, invalid_request(kBadJson));
      std::variant<OJson, ApiError> out;
      if constexpr (std::is_invocable_v<decltype(handler), const json&, const std::string&>)
        out = handler(body, req.body);  // a handler that needs the body's own key order
      else
        out = handler(body);
      if (auto* e = std::get_if<ApiError>(&out)) return send_api_error(res, *e);
      send_json(res, 200, std::get<OJson>(out));
    };
  };
  s.Post("/completion", [this](const httplib::Request& req, httplib::Response& res) {
    handle_completion(req, res, /*chat=*/false, /*native=*/true);
  });
  s.Post("/tokenize", json_endpoint([this](const json& b) { return tokenize_request(b, *options_.tokenizer); }));
  s.Post("/detokenize", json_endpoint([this](const json& b) { return detokenize_request(b, *options_.tokenizer); }));
  // llama-server's /apply-template: the prompt a chat request's messages become.
  s.Post("/apply-template", json_endpoint([this](const json& body, const std::string& text_body)
                                               -> std::variant<OJson, ApiError> {
    auto parsed = parse_completion_request(body, /*chat=*/true, options_.tokenizer->vocab_size());
    if (auto* e = std::get_if<ApiError>(&parsed)) return *e;
    keep_parameter_order(text_body, &std::get<CompletionRequest>(parsed).tools);
    auto text = render_messages(std::get<CompletionRequest>(parsed));
    if (!text.ok()) return invalid_request(text.status().message(), "messages");
    return OJson{{"prompt", *text}};
  }));
  // llama-server's /props: what its clients read to set themselves up.
  s.Get("/props", [this](const httplib::Request& req, httplib::Response& res) {
    trust::Account account;
    if (!authorize(req, res, &account)) return;
    const SamplingParams d;
    send_json(res, 200,
              {{"default_generation_settings",
                {{"n_ctx", context_length()},
                 {"model", options_.model_names.front()},
                 {"params", sampling_settings(d, options_.default_max_tokens)}}},
               {"model_path", options_.model_names.front()},
               {"model_alias", options_.model_names.front()},
               {"chat_template", options_.chat_template},
               {"modalities", {{"vision", false}, {"audio", false}}},
               {"build_info", "swarminfer"},
               // The weights' content hash: a skill provider in front of this
               // server (swarm node --backend) announces it, so greedy streams
               // cut off elsewhere can resume here (doc/skills.md).
               {"swarm_model_id", options_.model_id}});
  });
  s.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics_.count_request(req.path, res.status);
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    const HttpServer::Stats h = http_->stats();
    MetricSnapshot snap;
    snap.gauge("swarm_http_open_connections", "HTTP connections open now", h.open_connections)
        .gauge("swarm_http_threads", "HTTP worker threads now", h.threads)
        .counter("swarm_http_refused_connections_total",
                 "HTTP connections refused over a connection cap (503 or 429)", h.refused)
        .counter("swarm_http_timed_out_connections_total",
                 "HTTP connections cut off by a header or body deadline (408)", h.timed_out);
    MetricFamilies extra = snap.take();
    if (options_.metrics)
      for (prometheus::MetricFamily& f : options_.metrics()) extra.push_back(std::move(f));
    res.status = 200;
    res.set_content(metrics_.text(extra), kMetricsContentType);
  });
  if (options_.swarm) install_swarm_page();
  if (options_.trust_status)
    s.Get("/trust", [this](const httplib::Request&, httplib::Response& res) {
      res.status = 200;
      res.set_content(options_.trust_status(), "application/json");
    });

  auto model_object = [started](const std::string& name) {
    return OJson{
        {"id", name}, {"object", "model"}, {"created", started}, {"owned_by", "swarminfer"}};
  };
  auto list_models = [this, model_object, started](const httplib::Request& req, httplib::Response& res) {
    trust::Account account;
    if (!authorize(req, res, &account)) return;
    OJson data = OJson::array();
    for (const std::string& n : options_.model_names) {
      OJson m = model_object(n);
      // Beside skills, say what this model is: a chain of nodes, at its
      // route's price when one exists now.
      if (options_.skills) {
        auto price = backend_.price_per_1k_tokens_now();
        m["swarm"] = price.ok() ? OJson{{"kind", "chain"}, {"available", true}, {"price_per_1k", *price}}
                                : OJson{{"kind", "chain"}, {"available", false}};
      }
      data.push_back(std::move(m));
    }
    if (options_.skills)
      for (OJson& e : options_.skills->model_entries(started)) data.push_back(std::move(e));
    send_json(res, 200, {{"object", "list"}, {"data", data}});
  };
  auto get_model = [this, model_object, started](const httplib::Request& req, httplib::Response& res) {
    trust::Account account;
    if (!authorize(req, res, &account)) return;
    const std::string name = req.matches[1];
    if (std::find(options_.model_names.begin(), options_.model_names.end(), name) ==
        options_.model_names.end()) {
      if (options_.skills)
        for (OJson& e : options_.skills->model_entries(started))
          if (e["id"] == name) return send_json(res, 200, e);
      send_api_error(
          res,
          ApiError{404, "The model `" + name + "` does not exist or you do not have access to it.",
                   "invalid_request_error", "model", "model_not_found"});
      return;
    }
    send_json(res, 200, model_object(name));
  };
  for (const char* prefix : {"/v1", ""}) {
    const std::string p = prefix;
    s.Get(p + "/models", list_models);
    s.Get(p + "/models/(.+)", get_model);
    s.Post(p + "/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      if (!forward_to_skill(req, res, discovery::kTaskChat)) handle_completion(req, res, true);
    });
    s.Post(p + "/completions", [this](const httplib::Request& req, httplib::Response& res) {
      if (!forward_to_skill(req, res, discovery::kTaskCompletions)) handle_completion(req, res, false);
    });
    s.Post(p + "/embeddings", [this](const httplib::Request& req, httplib::Response& res) {
      if (!forward_to_skill(req, res, discovery::kTaskEmbeddings)) handle_embeddings(req, res);
    });
    // Images come only from skills: this server's own models write text.
    s.Post(p + "/images/generations", [this](const httplib::Request& req, httplib::Response& res) {
      if (forward_to_skill(req, res, discovery::kTaskImages)) return;
      trust::Account account;
      if (!authorize(req, res, &account)) return;
      send_api_error(res, ApiError{404,
                               "No image model is served here: the request must name an image "
                               "skill that a provider announces (GET /v1/models lists them).",
                               "invalid_request_error", "model", "model_not_found"});
    });
  }
}

void OpenAiServer::install_swarm_page() {
  httplib::Server& s = *http_;
  s.Get("/swarm", [this](const httplib::Request&, httplib::Response& res) {
    SwarmView view;
    view.swarm = options_.swarm();
    const auto now = RequestActivity::Clock::now();
    view.requests = activity_.requests(now);
    view.live_requests = activity_.live_count();
    view.rate_bucket_seconds = activity_.rate_bucket_seconds();
    view.tokens_per_second = activity_.rates(now);
    res.set_header("Cache-Control", "no-store");
    send_json(res, 200, swarm_view_json(view));
  });
  for (const WebAsset& asset : web_assets()) {
    auto serve = [&asset](const httplib::Request&, httplib::Response& res) {
      res.set_header("Cache-Control", "no-cache");
      res.set_content(asset.body.data(), asset.body.size(), std::string(asset.content_type));
    };
    s.Get(route_of(asset.path), serve);
    if (asset.path == "index.html") s.Get("/", serve);
  }
}

bool OpenAiServer::authorize(const httplib::Request& req, httplib::Response& res,
                             trust::Account* account) {
  if (options_.ledger == nullptr && static_keys_.empty()) return true;
  const std::optional<std::string> key = request_api_key(req);
  if (!key) {
    send_api_error(res, missing_key_error());
    return false;
  }
  if (static_keys_.contains(*key)) {
    *account = trust::Account{};  // id 0: an operator's key, nothing is held or charged
    return true;
  }
  if (options_.ledger == nullptr) {
    send_api_error(res, invalid_key_error(*key));
    return false;
  }
  auto found = options_.ledger->authorize(*key);
  if (found.ok()) {
    *account = *found;
    return true;
  }
  if (found.status().code() == Status::Code::kNotFound)
    send_api_error(res, invalid_key_error(*key));
  else
    send_api_error(res, error_from_status(found.status()));
  return false;
}

ToolFormat OpenAiServer::tool_format() const {
  return choose_tool_format(family_, options_.chat_template);
}

bool OpenAiServer::forward_to_skill(const httplib::Request& req, httplib::Response& res,
                                    std::string_view task) {
  if (!options_.skills) return false;
  const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("model") || !body["model"].is_string()) return false;
  const std::string model = body["model"].get<std::string>();
  if (std::find(options_.model_names.begin(), options_.model_names.end(), model) !=
          options_.model_names.end() ||
      !options_.skills->serves(model))
    return false;
  trust::Account account;
  if (!authorize(req, res, &account)) return true;
  SkillBilling billing;
  if (options_.ledger && options_.charge) billing = {options_.ledger, account};
  options_.skills->handle(req, res, task, body, billing);
  return true;
}

void OpenAiServer::handle_embeddings(const httplib::Request& req, httplib::Response& res) {
  trust::Account account;
  if (!authorize(req, res, &account)) return;
  if (!backend_.supports_embeddings())
    return send_api_error(res, ApiError{404,
                                    "Embeddings are not served here: a swarm gateway holds no "
                                    "weights and its nodes return tokens, not hidden states. Serve "
                                    "the model with `swarm serve` for /v1/embeddings.",
                                    "invalid_request_error", "", "unsupported_endpoint"});
  const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return send_api_error(res, invalid_request(kBadJson));
  auto parsed = parse_embeddings_request(body, *options_.tokenizer, context_length());
  if (auto* e = std::get_if<ApiError>(&parsed)) return send_api_error(res, *e);
  const EmbeddingsRequest& r = std::get<EmbeddingsRequest>(parsed);
  std::string model = r.model.empty() ? options_.model_names.front() : r.model;
  if (std::find(options_.model_names.begin(), options_.model_names.end(), model) ==
      options_.model_names.end()) {
    if (options_.strict_model_names)
      return send_api_error(res, ApiError{404,
                                      "The model `" + model +
                                          "` does not exist or you do not have access to it.",
                                      "invalid_request_error", "model", "model_not_found"});
    model = options_.model_names.front();
  }
  auto vectors = backend_.embed(r.inputs);
  if (!vectors.ok()) return send_api_error(res, error_from_status(vectors.status()));
  send_json(res, 200, embeddings_response(r, model, *vectors));
}

Result<std::string> OpenAiServer::render_messages(const CompletionRequest& request) const {
  const Tokenizer& tok = *options_.tokenizer;
  const std::string bos = tok.bos() >= 0 ? tok.token_text(tok.bos()) : "";
  const std::string eos = tok.eos() >= 0 ? tok.token_text(tok.eos()) : "";
  const bool tool_history =
      std::any_of(request.messages.begin(), request.messages.end(), [](const ChatMessage& m) {
        return m.role == "tool" || !m.tool_calls.empty();
      });
  if (request.tools.allowed().empty() && !tool_history)
    return render_chat(family_, request.messages, /*add_generation_prompt=*/true, bos, eos);
  return render_chat_with_tools(family_, tool_format(), request.messages, request.tools.allowed(),
                                /*add_generation_prompt=*/true, bos, eos);
}

void OpenAiServer::handle_completion(const httplib::Request& req, httplib::Response& res,
                                     bool chat, bool native) {
  const Tokenizer& tok = *options_.tokenizer;
  trust::Account account;
  if (!authorize(req, res, &account)) return;
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return send_api_error(res, invalid_request(kBadJson));
  // llama-server's /completion calls the prompt `content` too.
  if (native && body.is_object() && body.contains("content") && !body.contains("prompt")) {
    body["prompt"] = std::move(body["content"]);
    body.erase("content");
  }
  auto parsed = parse_completion_request(body, chat, tok.vocab_size());
  if (auto* e = std::get_if<ApiError>(&parsed)) return send_api_error(res, *e);
  CompletionRequest& r = std::get<CompletionRequest>(parsed);
  if (chat) keep_parameter_order(req.body, &r.tools);
  if (native && (r.swarm_token_ids || r.resume)) {
    const char* param = r.resume ? "swarm_resume" : "swarm_token_ids";
    return send_api_error(res, invalid_request(std::string("POST /completion does not take '") + param +
                                               "'; use /v1/completions or /v1/chat/completions.",
                                           param, "unsupported_parameter"));
  }

  Job job;
  job.chat = chat;
  job.native = native;
  job.model = r.model.empty() ? options_.model_names.front() : r.model;
  const bool known = std::find(options_.model_names.begin(), options_.model_names.end(), job.model) !=
                     options_.model_names.end();
  if (!known && options_.strict_model_names)
    return send_api_error(res, ApiError{404,
                                    "The model `" + job.model +
                                        "` does not exist or you do not have access to it.",
                                    "invalid_request_error", "model", "model_not_found"});
  if (!known) job.model = options_.model_names.front();

  // The prompt as token ids.
  std::vector<int32_t>& prompt = job.gen.prompt;
  const char* prompt_param = chat ? "messages" : "prompt";
  if (chat) {
    auto text = render_messages(r);
    if (!text.ok()) return send_api_error(res, invalid_request(text.status().message(), "messages"));
    // The template's markers are special tokens; what users wrote is inside them verbatim.
    prompt = tok.encode(*text, tok.add_bos_default(), /*parse_special=*/true);
  } else if (r.prompt_is_ids) {
    prompt = r.prompt_ids;
    if (r.echo) job.echo = tok.decode(prompt);
  } else {
    // As llama.cpp's server and Hugging Face tokenizers do: special tokens written
    // in the prompt are matched.
    prompt = tok.encode(r.prompt_text, tok.add_bos_default(), /*parse_special=*/true);
    if (r.echo) job.echo = r.prompt_text;
  }
  if (prompt.empty())
    return send_api_error(res, invalid_request("The prompt is empty: it has no tokens.", prompt_param,
                                           "invalid_value"));

  // It must fit in the context with room to generate.
  // A resumed completion's tokens are in the context too, and one more must fit.
  const int ctx = context_length();
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  const int64_t n_resumed = r.resume ? static_cast<int64_t>(r.resume->tokens.size()) : 0;
  const int64_t least = std::max<int64_t>(r.max_tokens.value_or(1), n_resumed + 1);
  if (n_prompt + least > ctx) {
    std::string msg =
        "This model's maximum context length is " + std::to_string(ctx) +
        " tokens. However, you requested " + std::to_string(n_prompt + least) + " tokens (" +
        std::to_string(n_prompt) + " in the " + prompt_param + ", " + std::to_string(least) +
        " in the completion). Please reduce the length of the " + prompt_param + " or completion.";
    return send_api_error(res, invalid_request(msg, prompt_param, "context_length_exceeded"));
  }
  int64_t max_tokens = ctx - n_prompt;
  if (r.max_tokens)
    max_tokens = *r.max_tokens;
  else if (options_.default_max_tokens > 0)
    max_tokens = std::min<int64_t>(max_tokens, options_.default_max_tokens);

  SamplingParams& sp = job.gen.sampling;
  sp = r.sampling;
  sp.seed = r.seed ? *r.seed : random_seed();
  if (!r.ignore_eos) sp.stop_tokens = tok.eog_ids();
  sp.max_tokens = static_cast<int>(max_tokens);
  sp.grammar_start = static_cast<int>(n_prompt);  // the grammar constrains the completion alone
  if (chat && r.tools.forced()) {
    if (!sp.grammar.empty())
      return send_api_error(res, invalid_request("A forced tool call (tool_choice 'required' or a named "
                                             "function) cannot be combined with structured output: "
                                             "the call is the answer's grammar.",
                                             "tool_choice", "invalid_value"));
    // The call is made certain by constraining sampling to its syntax. Should
    // no grammar fit the caps, sampling runs free and the answer is still read
    // (a 500 tool_call_not_produced when it holds no call).
    if (auto g = forced_call_grammar(r.tools, tool_format()); g.ok()) sp.grammar = *g;
  }
  if (Status st = sp.validate(tok.vocab_size()); !st.ok())
    return send_api_error(res, invalid_request(st.message()));
  if (r.resume) {
    if (auto e = check_resume(*r.resume, tok, prompt, max_tokens, sp)) return send_api_error(res, *e);
    // max_tokens bounds the whole completion; the grammar (grammar_start, the
    // original prompt's end) sees the resumed tokens as completion, since the
    // sampler accepts every prompt token.
    sp.max_tokens = static_cast<int>(max_tokens - n_resumed);
    prompt.insert(prompt.end(), r.resume->tokens.begin(), r.resume->tokens.end());
    job.resume = std::move(r.resume);
  }
  job.token_ids = r.swarm_token_ids;

  job.id = random_id(chat ? "chatcmpl-" : "cmpl-");
  job.gen.on_chain = [this, id = job.id](const std::vector<ChainStage>& chain) {
    activity_.route(id, chain);
  };
  if (r.logprobs >= 0 && !backend_.supports_logprobs())
    return send_api_error(res, invalid_request("logprobs are not available from this server's backend.",
                                           native ? "n_probs" : "logprobs", "unsupported_parameter"));
  job.gen.logprobs = r.logprobs;
  job.gen.prompt_logprobs = !chat && r.echo && r.logprobs >= 0;
  if (native && r.n > 1)
    return send_api_error(res, invalid_request("POST /completion gives one completion; use /v1/completions for n > 1.",
                                           "n", "invalid_value"));
  job.created = static_cast<int64_t>(std::time(nullptr));
  job.stream = r.stream;
  job.include_usage = r.include_usage;
  job.fingerprint = system_fingerprint(options_.model_id.empty() ? options_.model_names.front()
                                                                  : options_.model_id);
  job.tools = r.tools;
  job.tool_format = tool_format();

  // The most it may cost leaves the balance before anything runs.
  if (options_.ledger && options_.charge && account.id != 0) {
    auto price = backend_.price_per_1k_tokens();
    if (!price.ok()) return send_api_error(res, error_from_status(price.status()));
    const int64_t tokens = (n_prompt + max_tokens) * r.n;  // every choice reads the prompt
    auto cost = trust::max_cost(*price, tokens);
    if (!cost.ok()) return send_api_error(res, error_from_status(Status::Unavailable(cost.status().message())));
    auto hold = options_.ledger->reserve(account, *cost, job.id);
    if (!hold.ok()) {
      if (hold.status().code() == Status::Code::kResourceExhausted)
        return send_api_error(res, insufficient_quota_error(hold.status().message(), tokens, *price));
      return send_api_error(res, error_from_status(hold.status()));
    }
    job.hold = *hold;
  }

  auto log = [this, what = req.method + " " + req.path](const Job& job, const Outcome& o) {
    metrics_.count_completion(o.result, outcome_of(o));
    if (!options_.log) return;
    char line[1024];
    const double tps = o.result.generation_seconds > 0 && o.result.completion_tokens > 1
                           ? (o.result.completion_tokens - 1) / o.result.generation_seconds
                           : 0.0;
    std::snprintf(line, sizeof line,
                  "%s %s: prompt %d, completion %d tokens, %s, %s; first token %.3f s, %.1f tok/s",
                  what.c_str(), job.id.c_str(), o.result.prompt_tokens, o.result.completion_tokens,
                  o.status.ok() ? (o.cancelled ? "cancelled" : o.finish_reason.c_str())
                                : o.status.ToString().c_str(),
                  o.result.route.c_str(), o.result.prompt_seconds, tps);
    std::string text = line;
    if (job.hold)
      text += "; charged " + trust::format_credits(o.bill.cost) + " of " +
              trust::format_credits(job.hold->amount) + " credits held";
    const SpeculationReport& s = o.result.speculation;
    if (!s.drafter.empty()) {
      std::snprintf(line, sizeof line,
                    "; speculation %s: %d drafted, %d accepted, %d chains, %d plain and %d "
                    "speculative steps, %d of %d runs cancelled, k %d, W %d, D %d, a %.3f, "
                    "rt %.4f s, bt %.4f s, bound %.2f tok/s",
                    s.drafter.c_str(), s.drafted, s.accepted, s.chains, s.plain_steps,
                    s.speculative_steps, s.cancelled_runs, s.runs, s.width, s.in_flight,
                    s.drafts_per_round_trip, s.acceptance, s.round_trip_s, s.bottleneck_s,
                    s.goodput_bound);
      text += line;
    }
    options_.log(text);
  };

  // One job per choice (n): the same request with its own seed and index;
  // they run at once, and the backend batches them.
  std::vector<Job> choices = choice_jobs(job, r.n);

  if (!job.stream) {
    struct Choice {
      std::string text;
      OJson logprobs;
      std::vector<int32_t> ids;  // swarm_token_ids
      Outcome o;
    };
    std::vector<Choice> out(choices.size());
    auto run_choice = [&](size_t i) {
      const Job& cj = choices[i];
      Choice& c = out[i];
      c.text = cj.echo;
      JobLogprobs logprobs(cj, tok);
      JobSink sink;
      sink.logprob = [&logprobs](const TokenLogprob& lp) { logprobs.add(lp); };
      sink.prompt_logprobs = [&logprobs](const std::vector<TokenLogprob>& lps) { logprobs.prompt(lps); };
      sink.text = [&c](const std::string& t) {
        c.text += t;
        return true;
      };
      if (cj.token_ids) sink.id = [&c](int32_t id) { c.ids.push_back(id); };
      sink.alive = [this] { return !stopping_.load(); };
      const std::string activity_id = activity_id_of(cj);
      sink.token = [this, activity_id] { activity_.token(activity_id, RequestActivity::Clock::now()); };
      auto busy = metrics_.in_flight();
      activity_.begin(activity_id, cj.model, static_cast<int>(n_prompt), RequestActivity::Clock::now());
      c.o = run_job(backend_, tok, cj, sink);
      activity_.end(activity_id, outcome_of(c.o), RequestActivity::Clock::now());
      c.logprobs = logprobs.take(true);
    };
    {
      std::vector<std::thread> others;
      for (size_t i = 1; i < choices.size(); ++i) others.emplace_back(run_choice, i);
      run_choice(0);
      for (std::thread& t : others) t.join();
    }
    // One bill for all choices: the hold covers them all.
    const Outcome* failed = nullptr;
    std::vector<NodeWork> work;
    for (const Choice& c : out) {
      if (!c.o.status.ok() && failed == nullptr) failed = &c.o;
      work.insert(work.end(), c.o.result.work.begin(), c.o.result.work.end());
    }
    const Bill bill = close_hold(options_.ledger, job.hold, failed ? failed->status : Status::Ok(),
                                 work, options_.log);
    for (Choice& c : out) {
      c.o.bill = bill;
      log(job, c.o);
    }
    if (failed) return send_api_error(res, error_from_status(failed->status));
    for (const Choice& c : out)
      if (c.o.cancelled)
        return send_api_error(res, error_from_status(Status::Unavailable("the server is shutting down")));
    if (job.native) {
      OJson answer = native_completion(job, out[0].o, out[0].text);
      if (job.gen.logprobs >= 0) answer["completion_probabilities"] = out[0].logprobs;
      return send_json(res, 200, answer);
    }
    OJson list = OJson::array();
    GenerationResult total = out[0].o.result;
    for (size_t i = 0; i < out.size(); ++i) {
      OJson choice = {{"index", i}};
      std::string finish_reason = out[i].o.finish_reason;
      if (chat && job.tools.active()) {
        // Each choice is read for calls on its own; one that fails a forced call fails the request.
        auto answer = read_tool_answer(job.tools, job.tool_format, out[i].text,
                                       [&job] { return new_tool_call_id(job.tool_format); });
        if (auto* e = std::get_if<ApiError>(&answer)) return send_api_error(res, *e);
        ToolAnswer& a = std::get<ToolAnswer>(answer);
        choice["message"] = tool_message(a);
        if (!a.calls.empty()) finish_reason = "tool_calls";
      } else if (chat) {
        choice["message"] = {{"role", "assistant"}, {"content", out[i].text}};
      } else {
        choice["text"] = out[i].text;
      }
      choice["logprobs"] = out[i].logprobs;
      choice["finish_reason"] = finish_reason;
      if (job.token_ids) choice["swarm_token_ids"] = out[i].ids;
      list.push_back(std::move(choice));
      if (i > 0) add_choice_usage(&total, out[i].o.result);
    }
    OJson answer = {{"id", job.id},
                    {"object", chat ? "chat.completion" : "text_completion"},
                    {"created", job.created},
                    {"model", job.model},
                    {"choices", std::move(list)},
                    {"usage", request_usage(job, total, bill)},
                    {"system_fingerprint", job.fingerprint}};
    return send_json(res, 200, answer);
  }

  // Streaming. Each choice runs on its own thread and appends SSE events
  // (with its index); the HTTP thread writes them out as they come. The
  // response opens (200) only when a first token exists, so a backend that
  // fails at once (no route) still gets its proper status.
  auto st = std::make_shared<StreamState>();
  st->remaining = static_cast<int>(choices.size());
  st->opened_choice.assign(choices.size(), false);
  st->results.resize(choices.size());
  auto opening = [st](const Job& cj, JobLogprobs& logprobs) {  // with st->mu held
    st->opened = true;
    if (st->opened_choice[cj.index]) return;
    st->opened_choice[cj.index] = true;
    if (cj.chat)
      st->pending += sse(choice_chunk(cj, {{"role", "assistant"}, {"content", ""}}, nullptr));
    if (!cj.echo.empty())
      st->pending += sse(choice_chunk(cj, cj.echo, nullptr, logprobs.take(false)));
  };
  auto worker = [this, st, opening, log](Job cj) {
    JobLogprobs logprobs(cj, *options_.tokenizer);
    std::vector<int32_t> ids;  // swarm_token_ids not yet sent
    // A chunk of text with the logprobs of the tokens that arrived since the last.
    auto text_event = [&](const std::string& t) {
      if (cj.native) {
        OJson e = {{"content", t}, {"stop", false}, {"id_slot", 0}};
        if (logprobs.wanted()) e["completion_probabilities"] = logprobs.take(false);
        return sse(e);
      }
      return sse(with_token_ids(cj,
                                choice_chunk(cj, cj.chat ? OJson{{"content", t}} : OJson(t),
                                             nullptr, logprobs.take(false)),
                                &ids));
    };
    const std::string activity_id = activity_id_of(cj);
    // With tools the text passes through the reader of calls first.
    std::optional<ToolCallResponder> calls;
    if (cj.chat && cj.tools.active())
      calls.emplace(cj.tools, cj.tool_format, [&cj] { return new_tool_call_id(cj.tool_format); });
    JobSink sink;
    sink.logprob = [&](const TokenLogprob& lp) { logprobs.add(lp); };
    sink.prompt_logprobs = [&](const std::vector<TokenLogprob>& lps) { logprobs.prompt(lps); };
    sink.first_token = [&] {
      {
        std::lock_guard<std::mutex> lk(st->mu);
        opening(cj, logprobs);
      }
      st->cv.notify_all();
    };
    sink.text = [&](const std::string& text) {
      if (st->client_gone) return false;
      const std::string t = calls ? calls->push(text) : text;
      if (t.empty()) return true;
      {
        std::lock_guard<std::mutex> lk(st->mu);
        st->pending += text_event(t);
      }
      st->cv.notify_all();
      return true;
    };
    sink.alive = [&] { return !st->client_gone && !stopping_ && !st->failed; };
    sink.token = [&] { activity_.token(activity_id, RequestActivity::Clock::now()); };
    if (cj.token_ids) sink.id = [&ids](int32_t id) { ids.push_back(id); };
    Outcome o;
    {
      auto busy = metrics_.in_flight();
      activity_.begin(activity_id, cj.model,
                      static_cast<int>(cj.gen.prompt.size() - resumed_count(cj)),
                      RequestActivity::Clock::now());
      o = run_job(backend_, *options_.tokenizer, cj, sink);
      activity_.end(activity_id, outcome_of(o), RequestActivity::Clock::now());
    }
    std::variant<ToolAnswer, ApiError> answer;
    if (calls && o.status.ok() && !o.cancelled) answer = calls->finish();
    bool last = false;
    {
      std::lock_guard<std::mutex> lk(st->mu);
      if (!o.status.ok()) {
        if (!st->opened && !st->error)
          st->error = error_from_status(o.status);
        else if (st->opened)  // the status line has gone out: the error travels as an event, as OpenAI's do
          st->pending += sse(error_from_status(o.status).body());
        st->failed = true;
      } else if (!o.cancelled && cj.native) {
        st->opened = true;
        if (logprobs.pending()) st->pending += text_event("");
        st->pending += sse(native_completion(cj, o, ""));  // llama-server sends no [DONE]
      } else if (!o.cancelled && calls && std::holds_alternative<ApiError>(answer)) {
        // A forced call that did not come: the error ends the stream, as a failure would.
        opening(cj, logprobs);
        st->pending += sse(std::get<ApiError>(answer).body());
        st->failed = true;
        st->tool_call_failed = true;
      } else if (!o.cancelled) {
        opening(cj, logprobs);
        if (auto* a = std::get_if<ToolAnswer>(&answer); a && calls) {
          // The held text goes out with the logprobs of the tokens held with it.
          if (a->content && !a->content->empty()) st->pending += text_event(*a->content);
          for (const OJson& delta : tool_call_deltas(a->calls))
            st->pending += sse(choice_chunk(cj, delta, nullptr,
                                            logprobs.pending() ? logprobs.take(false) : OJson(nullptr)));
          if (!a->calls.empty()) o.finish_reason = "tool_calls";
        }
        // Tokens that left no text (held back for a stop string, or none at all).
        if (logprobs.wanted() && logprobs.pending()) st->pending += text_event("");
        st->pending += sse(with_token_ids(
            cj, choice_chunk(cj, cj.chat ? OJson::object() : OJson(""), o.finish_reason), &ids));
      }
      st->results[cj.index] = o;  // with the finish reason the answer gave
      last = --st->remaining == 0;
    }
    if (!last) return;
    // The last choice to end closes the bill for all and ends the stream.
    const Outcome* failed = nullptr;
    std::vector<NodeWork> work;
    GenerationResult total;
    for (size_t i = 0; i < st->results.size(); ++i) {
      const Outcome& r = st->results[i];
      if (!r.status.ok() && failed == nullptr) failed = &r;
      work.insert(work.end(), r.result.work.begin(), r.result.work.end());
      if (i == 0)
        total = r.result;
      else
        add_choice_usage(&total, r.result);
    }
    const Bill bill = close_hold(options_.ledger, cj.hold, failed ? failed->status : Status::Ok(),
                                 work, options_.log);
    for (Outcome& r : st->results) {
      r.bill = bill;
      log(cj, r);
    }
    {
      std::lock_guard<std::mutex> lk(st->mu);
      const bool cancelled = std::any_of(st->results.begin(), st->results.end(),
                                         [](const Outcome& r) { return r.cancelled; });
      // A choice failed before any had opened, but another opened since.
      if (st->error && st->opened && failed) st->pending += sse(st->error->body());
      if (!failed && !cancelled && !st->tool_call_failed && !cj.native) {
        if (cj.include_usage) {
          OJson u = chunk_head(cj);
          u["choices"] = OJson::array();
          u["usage"] = request_usage(cj, total, bill);
          st->pending += sse(u);
        }
        st->pending += "data: [DONE]\n\n";
      }
      st->opened = true;
      st->finished = true;
    }
    st->cv.notify_all();
  };
  for (Job& cj : choices) st->workers.emplace_back(worker, cj);
  {
    std::unique_lock<std::mutex> lk(st->mu);
    st->cv.wait(lk, [&] { return st->opened || st->finished; });
  }
  if (st->error && st->finished) {
    st->join();
    return send_api_error(res, *st->error);
  }
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [st](size_t, httplib::DataSink& sink) {
        std::string out;
        bool finished;
        {
          std::unique_lock<std::mutex> lk(st->mu);
          st->cv.wait(lk, [&] { return !st->pending.empty() || st->finished; });
          out.swap(st->pending);
          finished = st->finished;
        }
        if (!out.empty() && !sink.write(out.data(), out.size())) {
          st->client_gone = true;
          return false;
        }
        if (finished) sink.done();
        return true;
      },
      [st](bool) {
        st->client_gone = true;
        st->join();
      });
}

}  // namespace swarm
