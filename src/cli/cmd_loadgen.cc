// swarm loadgen --url http://HOST:PORT [-c CONCURRENCY] [-r REQUESTS] [-n TOKENS] [--prompt TEXT]
//               [--label TEXT] [--json]
// Load for an OpenAI-compatible server (ours or any other): CONCURRENCY streams
// each send requests one after another (temperature 0, ignore_eos, so every
// request generates exactly TOKENS), and the run reports aggregate tokens/s,
// per-stream decode tokens/s and time to first token over the requests that
// succeeded. A failed request is counted by kind (HTTP status, or the transport
// error) and the run goes on; it fails only when every request failed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "cli/common.h"
#include "cli/sse_client.h"

namespace swarm::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct Sample {
  double ttft = 0;         // seconds to the first token
  double decode_rate = 0;  // tokens/s after the first
  double max_gap = 0;      // longest wait between two pieces of text, seconds
  int tokens = 0;
};

}  // namespace

void register_loadgen(CLI::App& app) {
  struct Opts {
    std::string url = "http://127.0.0.1:8080", model, label,
                prompt = "The licensee may copy and distribute verbatim copies of the Program's source code";
    int concurrency = 1, requests = 0, n = 64;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("loadgen", "Measure an OpenAI-compatible server under concurrent streams");
  cmd->add_option("--url", o->url, "Server base URL (default http://127.0.0.1:8080)");
  cmd->add_option("--model", o->model, "Model name (default: the server's first)");
  cmd->add_option("-c,--concurrency", o->concurrency, "Streams at once (default 1)")->check(CLI::Range(1, 1024));
  cmd->add_option("-r,--requests", o->requests, "Requests in all (default: one per stream)")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-n,--max-tokens", o->n, "Tokens per request (default 64)")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--prompt", o->prompt, "Prompt text");
  cmd->add_option("--label", o->label, "Label copied into the JSON line");
  cmd->add_flag("--json", o->json, "Print one JSON line");
  cmd->callback([o] {
    using nlohmann::json;
    const int total = o->requests > 0 ? o->requests : o->concurrency;
    json body = {{"prompt", o->prompt}, {"max_tokens", o->n}, {"temperature", 0}, {"ignore_eos", true},
                 {"stream", true}, {"stream_options", {{"include_usage", true}}}};
    if (!o->model.empty()) body["model"] = o->model;
    std::mutex mu;
    std::vector<Sample> samples;
    std::string first_error;
    std::map<std::string, int> errors;  // by kind: "http_503", "Read", ...
    int failed = 0;
    int next = 0;
    const auto t0 = Clock::now();
    std::vector<std::thread> workers;
    for (int w = 0; w < o->concurrency; ++w)
      workers.emplace_back([&] {
        for (;;) {
          {
            std::lock_guard<std::mutex> lock(mu);
            if (next >= total) return;
            ++next;
          }
          const auto start = Clock::now();
          auto first = start, last = start;
          int chunks = 0, tokens = 0;
          double max_gap = 0;
          std::string kind;
          const Status st = post_streaming(o->url, "/v1/completions", body, [&](const json& j) {
            if (j.contains("usage") && j["usage"].is_object()) tokens = j["usage"].value("completion_tokens", 0);
            if (j.contains("choices") && !j["choices"].empty() && j["choices"][0].value("text", "") != "") {
              const auto now = Clock::now();
              if (chunks++ == 0) first = now;
              else max_gap = std::max(max_gap, std::chrono::duration<double>(now - last).count());
              last = now;
            }
            return true;
          }, &kind);
          std::lock_guard<std::mutex> lock(mu);
          if (!st.ok()) {
            if (first_error.empty()) first_error = st.message();
            ++errors[kind.empty() ? "other" : kind];
            ++failed;
            continue;
          }
          const double decode = std::chrono::duration<double>(last - first).count();
          samples.push_back({std::chrono::duration<double>(first - start).count(),
                             tokens > 1 && decode > 0 ? (tokens - 1) / decode : 0.0, max_gap, tokens});
        }
      });
    for (auto& t : workers) t.join();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    double tokens = 0, rate = 0, ttft = 0, max_gap = 0;
    for (const Sample& s : samples)
      tokens += s.tokens, rate += s.decode_rate, ttft += s.ttft, max_gap = std::max(max_gap, s.max_gap);
    const double n = std::max<double>(1, static_cast<double>(samples.size()));
    if (o->json) {
      std::printf(
          "{\"bench\":\"loadgen\",\"label\":%s,\"concurrency\":%d,\"requests\":%d,\"max_tokens\":%d,"
          "\"succeeded\":%d,\"errors\":%d,\"error_kinds\":%s,\"first_error\":%s,"
          "\"aggregate_tok_s\":%.2f,\"stream_tok_s\":%.2f,\"ttft_ms\":%.1f,\"max_gap_ms\":%.1f,\"wall_s\":%.2f}\n",
          json(o->label).dump().c_str(), o->concurrency, total, o->n, static_cast<int>(samples.size()),
          failed, json(errors).dump().c_str(), json(first_error).dump().c_str(), tokens / wall, rate / n,
          1000 * ttft / n, 1000 * max_gap, wall);
    } else {
      std::printf("%d requests, %d at once, %d tokens each: %.1f tok/s in all, %.1f tok/s per stream, "
                  "first token after %.0f ms\n",
                  total, o->concurrency, o->n, tokens / wall, rate / n, 1000 * ttft / n);
      if (failed > 0) {
        std::string kinds;
        for (const auto& [k, c] : errors) kinds += (kinds.empty() ? "" : ", ") + k + " " + std::to_string(c);
        std::printf("%d of %d requests failed (%s); the first: %s\n", failed, total, kinds.c_str(),
                    first_error.c_str());
      }
    }
    std::fflush(stdout);
    if (samples.empty() && failed > 0) fail("every request failed; the first: " + first_error);
  });
}

}  // namespace swarm::cli
