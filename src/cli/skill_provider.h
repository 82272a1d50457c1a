// `swarm node --skill` and `swarm node --backend URL`: a node that offers
// whole capabilities (skills) rather than a range of layers (doc/skills.md).
// Both put an api/skill_proxy.h endpoint in front of an OpenAI-compatible
// server: with --skill this process's own engine (the model, batched as
// `swarm serve` serves it), with --backend the server the owner already runs
// (llama-server, vLLM, Ollama, another `swarm serve`). The node announces a
// signed skill record per skill in the DHT, its price following its load
// (node/skill_price.h), re-announced when the price moves.
#pragma once

#include <signal.h>

#include <string>
#include <vector>

namespace swarm::cli {

struct SkillProviderFlags {
  bool engine = false;      // --skill: serve -m with our engine
  std::string model;        // -m (with --skill)
  std::string device;       // --device (with --skill; "": the machine's default)
  std::string backend;      // --backend URL
  std::vector<std::string> names;  // --skill-name: what to offer (default: the file's name, or the backend's models)
  std::string tasks;        // --tasks LIST (default chat,completions,embeddings)
  std::string listen = "127.0.0.1:0";
  std::string identity, bootstrap, dht_listen, announce_address;
  double price = 0, price_per_image = 0;  // base prices
  int capacity = 4, max_queue = 16;
  double announce_interval_s = 60;
  int threads = 0, ctx = 0;
  double slowdown = 1;      // --slowdown with --skill: compute takes F times as long
};

// Runs the provider until SIGINT or SIGTERM (blocked in `signals`), then
// withdraws its records and exits. Ends the command with a message naming
// the flag on bad input.
void run_skill_provider(const SkillProviderFlags& flags, const sigset_t& signals);

}  // namespace swarm::cli
