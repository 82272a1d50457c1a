// swarm chat --url http://HOST:PORT [--model NAME] [-n N] [--temp T] [--system TEXT] [--complete] TEXT
// A small OpenAI-API client: sends one chat message (or, with --complete, a text to
// continue), streams the answer to stdout as it arrives (SSE), then prints token
// counts and speed on stderr.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "cli/sse_client.h"

namespace swarm::cli {

void register_chat(CLI::App& app) {
  struct Opts {
    std::string url = "http://127.0.0.1:8080", model, system, message;
    int n = 128;
    float temp = 0.8f;
    int64_t seed = -1;
    bool complete = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("chat", "Send one chat message to an OpenAI-compatible server and stream the answer");
  cmd->add_option("--url", o->url, "Server base URL (default http://127.0.0.1:8080)");
  cmd->add_option("--model", o->model, "Model name (default: the server's first)");
  cmd->add_option("--system", o->system, "System message");
  cmd->add_option("-n,--max-tokens", o->n, "Tokens to generate at most (default 128)")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temp", o->temp, "Temperature (default 0.8)");
  cmd->add_option("--seed", o->seed, "Seed (default: the server picks)");
  cmd->add_flag("--complete", o->complete, "Continue TEXT as is (/v1/completions) instead of answering it as a chat message");
  cmd->add_option("message", o->message, "The user message (with --complete: the text to continue)")->required();
  cmd->callback([o] {
    using nlohmann::json;
    json messages = json::array();
    if (!o->system.empty()) messages.push_back({{"role", "system"}, {"content", o->system}});
    messages.push_back({{"role", "user"}, {"content", o->message}});
    json body = {{"max_tokens", o->n}, {"temperature", o->temp}, {"stream", true},
                 {"stream_options", {{"include_usage", true}}}};
    if (o->complete) {
      if (!o->system.empty()) fail("--system has no meaning with --complete");
      body["prompt"] = o->message;
      std::fputs(o->message.c_str(), stdout);  // the answer continues it
    } else {
      body["messages"] = messages;
    }
    if (!o->model.empty()) body["model"] = o->model;
    if (o->seed >= 0) body["seed"] = o->seed;

    json usage;
    int chunks = 0;
    const auto t0 = std::chrono::steady_clock::now();
    auto t_first = t0;
    const char* path = o->complete ? "/v1/completions" : "/v1/chat/completions";
    const Status st = post_streaming(o->url, path, body, [&](const json& j) {
      if (j.contains("usage") && j["usage"].is_object()) usage = j["usage"];
      if (!j.contains("choices") || j["choices"].empty()) return true;
      const json& choice = j["choices"][0];
      // A chat chunk carries delta.content; a completion chunk carries text.
      const json& piece = o->complete ? choice.value("text", json()) : choice["delta"].value("content", json());
      if (piece.is_string()) {
        const std::string text = piece;
        if (!text.empty() && chunks++ == 0) t_first = std::chrono::steady_clock::now();
        std::fputs(text.c_str(), stdout);
        std::fflush(stdout);
      }
      return true;
    });
    std::printf("\n");
    std::fflush(stdout);
    if (!st.ok()) fail(st.message());  // the server's own words, as it sent them
    const double gen = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_first).count();
    const int completion = usage.is_object() ? usage.value("completion_tokens", chunks) : chunks;
    std::fprintf(stderr, "%d prompt tokens, %d generated; first token after %.2f s, then %.1f tok/s\n",
                 usage.is_object() ? usage.value("prompt_tokens", 0) : 0, completion,
                 std::chrono::duration<double>(t_first - t0).count(), completion > 1 ? (completion - 1) / gen : 0.0);
  });
}

}  // namespace swarm::cli
