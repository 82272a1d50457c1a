// `swarm`: one binary, one subcommand per job, flags as llama.cpp's tools spell them.
#include <spdlog/cfg/env.h>

#include <CLI/CLI.hpp>

#include "cli/common.h"

int main(int argc, char** argv) {
  spdlog::cfg::load_env_levels();  // SPDLOG_LEVEL=debug shows the detail logs
  CLI::App app{"SwarmInfer: LLM inference across a swarm of machines"};
  app.require_subcommand(1);
  swarm::cli::register_generate(app);
  swarm::cli::register_tokenize(app);
  swarm::cli::register_serve(app);
  swarm::cli::register_logits(app);
  swarm::cli::register_hidden(app);
  swarm::cli::register_synth(app);
  swarm::cli::register_convert(app);
  swarm::cli::register_bench(app);
  swarm::cli::register_node(app);
  swarm::cli::register_gateway(app);
  swarm::cli::register_chat(app);
  swarm::cli::register_loadgen(app);
  swarm::cli::register_keygen(app);
  swarm::cli::register_info(app);
  swarm::cli::register_spec_eval(app);
  swarm::cli::register_dht(app);
  swarm::cli::register_status(app);
  swarm::cli::register_model_id(app);
  swarm::cli::register_ledger(app);
  swarm::cli::register_sim(app);
  swarm::cli::register_devices(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
