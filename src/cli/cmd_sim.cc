// swarm sim SCENARIO.toml [--out DIR] [--seed N] [--duration S] [--arrival-rate R]
//           [--speculation on|off] [--no-churn] [--nodes N] [--json]
// Simulates a swarm serving a model (SimGrid; doc/simulation.md): the nodes,
// gateways and network of the scenario, driving the same routing, layer
// assignment, batch planning, speculation and failover code the real swarm
// runs. Prints a line per time window and a summary; with --out, writes them
// as JSON lines (sim.jsonl) and a plot (sim.png, when gnuplot is installed).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "sim/plot.h"
#include "sim/scenario.h"
#include "sim/simulation.h"

namespace swarm::cli {
namespace {

void print_human(const std::string& line) {
  const nlohmann::json j = nlohmann::json::parse(line);
  if (j.contains("run")) {
    std::printf("requests %d: %.2f tok/s in all, %.2f tok/s per stream, first token after %.0f ms "
                "(%.1f simulated s)\n",
                j["requests"].get<int>(), j["aggregate_tok_s"].get<double>(),
                j["stream_tok_s"].get<double>(), j["ttft_ms"].get<double>(),
                j["span_s"].get<double>());
  } else if (j.contains("summary")) {
    std::printf(
        "summary %.0f-%.0f s: %.1f tok/s, per-token latency p50 %.1f ms p95 %.1f ms p99 %.1f ms, "
        "ttft p50 %.0f ms, utilisation %.3f, recoveries %d, requests done %d (wall %.1f s)\n",
        j["from_s"].get<double>(), j["to_s"].get<double>(), j["tok_s"].get<double>(),
        j["latency_ms_p50"].get<double>(), j["latency_ms_p95"].get<double>(),
        j["latency_ms_p99"].get<double>(), j["ttft_ms_p50"].get<double>(),
        j["utilisation"].get<double>(), j["recoveries"].get<int>(), j["requests_done"].get<int>(),
        j["wall_s"].get<double>());
  } else {
    std::printf(
        "t=%6.0f s  %9.1f tok/s  p50 %8.1f ms  p99 %8.1f ms  ttft %8.0f ms  util %.3f  rec %d  "
        "in flight %d  online %d\n",
        j["t_s"].get<double>(), j["tok_s"].get<double>(), j["latency_ms_p50"].get<double>(),
        j["latency_ms_p99"].get<double>(), j["ttft_ms_p50"].get<double>(),
        j["utilisation"].get<double>(), j["recoveries"].get<int>(), j["in_flight"].get<int>(),
        j["nodes_online"].get<int>());
  }
  std::fflush(stdout);
}

}  // namespace

void register_sim(CLI::App& app) {
  struct Opts {
    std::string scenario, out;
    int64_t seed = -1;
    int nodes = 0;
    double duration = 0, arrival_rate = -1;
    std::string speculation;
    bool json = false, no_churn = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("sim", "Simulate a swarm from a scenario file (SimGrid)");
  cmd->add_option("scenario", o->scenario, "Scenario (TOML; see doc/simulation.md)")->required();
  cmd->add_option("--out", o->out, "Write sim.jsonl and sim.png into this folder");
  cmd->add_option("--seed", o->seed, "Override the scenario's seed")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 53));
  cmd->add_option("--duration", o->duration, "Override the simulated seconds")
      ->check(CLI::Range(0.001, 1e7));
  cmd->add_option("--arrival-rate", o->arrival_rate, "Override requests.arrival_rate (requests/s)")
      ->check(CLI::Range(0.0, 1e6));
  cmd->add_option("--speculation", o->speculation, "Override speculation.enabled")
      ->check(CLI::IsMember({"on", "off"}));
  cmd->add_option("--nodes", o->nodes, "Scale every class's count so the swarm has about N nodes")
      ->check(CLI::Range(1, 10000000));
  cmd->add_flag("--no-churn", o->no_churn, "Run without churn (scheduled kills stay)");
  cmd->add_flag("--json", o->json, "Print JSON lines instead of a table");
  cmd->callback([o] {
    Result<sim::Scenario> s = sim::load_scenario(o->scenario);
    check(s.status());
    if (o->seed >= 0) s->seed = static_cast<uint64_t>(o->seed);
    if (o->duration > 0) s->duration_s = o->duration;
    if (o->arrival_rate >= 0) s->requests.arrival_rate = o->arrival_rate;
    if (s->requests.arrival_rate == 0 && s->requests.streams == 0)
      fail("--arrival-rate 0 leaves no request");
    if (!o->speculation.empty()) s->speculation.enabled = o->speculation == "on";
    if (o->no_churn) s->churn.enabled = false;
    if (o->nodes > 0) {
      if (!s->fixed_ranges.empty())
        fail("--nodes: the scenario fixes every node's layers (fixed_ranges)");
      sim::scale_nodes(*s, o->nodes);
    }
    std::ofstream jsonl;
    if (!o->out.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(o->out, ec);
      if (ec) fail("--out: cannot create " + o->out + ": " + ec.message());
      jsonl.open(o->out + "/sim.jsonl");
      if (!jsonl) fail("--out: cannot write " + o->out + "/sim.jsonl");
    }
    const bool json = o->json;
    Result<sim::SimResult> r = sim::run_simulation(*s, [&](const std::string& line) {
      if (json) {
        std::printf("%s\n", line.c_str());
        std::fflush(stdout);
      } else {
        print_human(line);
      }
      if (jsonl.is_open()) jsonl << line << "\n" << std::flush;
    });
    check(r.status());
    if (!o->out.empty()) {
      const Status plot = sim::write_plot(r->windows, o->out, s->name);
      if (!plot.ok()) {
        std::fprintf(stderr, "swarm sim: no plot: %s\n", plot.message().c_str());
      } else if (!json) {
        std::printf("plot: %s/sim.png\n", o->out.c_str());
      }
    }
  });
}

}  // namespace swarm::cli
