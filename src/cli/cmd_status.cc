// swarm status --bootstrap HOST:PORT[,...] [--model-id ID] [--json]
// What the swarm looks like from its DHT: every announced model, which node
// serves which layers (from their signed records), the throughput of each run
// of layers, and the gaps nobody serves. Records that fail verification are
// counted, not shown.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "cli/dht_swarm.h"

namespace swarm::cli {
namespace {

using json = nlohmann::json;

struct ModelView {
  discovery::ModelAnnouncement model;
  discovery::RecordLookup lookup;
  std::vector<ThroughputRun> runs;
  bool servable = false;
};

json to_json(const ModelView& v) {
  json nodes = json::array(), runs = json::array(), gaps = json::array();
  for (const discovery::NodeRecord& r : v.lookup.records)
    nodes.push_back({{"node_id", r.node_id},
                     {"addresses", r.addresses},
                     {"layer_begin", r.layer_begin},
                     {"layer_end", r.layer_end},
                     {"throughput", r.throughput},
                     {"free_kv_bytes", r.free_kv_bytes},
                     {"price_per_1k", r.price_per_1k},
                     {"expires_at", r.expires_at}});
  for (const ThroughputRun& t : v.runs) {
    const json range = {{"begin", t.range.first}, {"end", t.range.last}};
    runs.push_back({{"begin", t.range.first},
                    {"end", t.range.last},
                    {"layer_tokens_per_second", t.layer_tokens_per_second}});
    if (t.layer_tokens_per_second == 0) gaps.push_back(range);
  }
  const discovery::RejectCounts& rc = v.lookup.rejected;
  return {{"model_id", v.model.model_id},
          {"name", v.model.name},
          {"n_layer", v.model.n_layer},
          {"servable", v.servable},
          {"nodes", nodes},
          {"throughput", runs},
          {"gaps", gaps},
          {"rejected",
           {{"corrupt", rc.corrupt},
            {"unsupported", rc.unsupported},
            {"invalid", rc.invalid},
            {"other_model", rc.other_model},
            {"superseded", rc.superseded}}}};
}

void print_text(const ModelView& v) {
  std::printf("model %s %s: %d layers, %s\n",
              v.model.name.empty() ? "(unnamed)" : v.model.name.c_str(), v.model.model_id.c_str(),
              v.model.n_layer, v.servable ? "servable" : "NOT servable");
  for (const discovery::NodeRecord& r : v.lookup.records) {
    char speed[64];
    if (r.throughput > 0)
      std::snprintf(speed, sizeof speed, "%.1f layer-tok/s", r.throughput);
    else
      std::snprintf(speed, sizeof speed, "speed not measured yet");
    std::printf("  layers [%d,%d)  node %s at %s  %s  free KV %.1f MiB  price %g\n", r.layer_begin,
                r.layer_end, r.node_id.c_str(), r.addresses.front().c_str(), speed,
                static_cast<double>(r.free_kv_bytes) / (1 << 20), r.price_per_1k);
  }
  // Unmeasured nodes count as kDefaultLayerTokensPerSecond, as route choice and
  // layer assignment count them.
  std::string gaps;
  for (const ThroughputRun& t : v.runs) {
    std::printf("  throughput [%d,%d): %.1f layer-tok/s\n", t.range.first, t.range.last,
                t.layer_tokens_per_second);
    if (t.layer_tokens_per_second == 0)
      gaps += (gaps.empty() ? "" : " ") +
              ("[" + std::to_string(t.range.first) + "," + std::to_string(t.range.last) + ")");
  }
  std::printf("  gaps: %s\n", gaps.empty() ? "none" : gaps.c_str());
  if (v.lookup.rejected.total() > 0)
    std::printf(
        "  ignored records: %zu forged or malformed, %zu expired or invalid, %zu other "
        "version, %zu other model, %zu superseded\n",
        v.lookup.rejected.corrupt, v.lookup.rejected.invalid, v.lookup.rejected.unsupported,
        v.lookup.rejected.other_model, v.lookup.rejected.superseded);
}

}  // namespace

void register_status(CLI::App& app) {
  struct Options {
    std::string bootstrap, dht_listen, model_id;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("status", "Show the swarm as its DHT announces it");
  cmd->add_option("--bootstrap", o->bootstrap, "DHT peers to join through: HOST:PORT,...")
      ->required();
  cmd->add_option("--dht-listen", o->dht_listen,
                  "IPv4 HOST:PORT for this DHT node (default: port 0)");
  cmd->add_option("--model-id", o->model_id, "Show this model id even if no announcement names it");
  cmd->add_flag("--json", o->json, "One JSON object instead of text");
  cmd->callback([o] {
    spdlog::set_default_logger(spdlog::stderr_color_mt("status"));
    auto dht = start_dht(o->dht_listen, o->bootstrap);
    if (!wait_for_dht(*dht, std::chrono::seconds(10)))
      fail("--bootstrap: no DHT peer answered at " + o->bootstrap);
    auto models = dht->find_models();
    std::vector<discovery::ModelAnnouncement> list =
        models.ok() ? *models : std::vector<discovery::ModelAnnouncement>{};
    if (!o->model_id.empty() && std::none_of(list.begin(), list.end(), [&](const auto& m) {
          return m.model_id == o->model_id;
        }))
      list.push_back({o->model_id, 0, ""});
    std::vector<ModelView> views;
    for (const discovery::ModelAnnouncement& m : list) {
      ModelView v;
      v.model = m;
      auto lookup = dht->find_nodes(m.model_id, discovery::unix_now());
      if (lookup.ok()) v.lookup = *lookup;
      // The announcement's layer count is a hint; records show at least this many.
      for (const discovery::NodeRecord& r : v.lookup.records)
        v.model.n_layer = std::max(v.model.n_layer, r.layer_end);
      const std::vector<double> per_layer =
          layer_throughput(peer_snapshots(v.lookup.records, v.model.n_layer), v.model.n_layer);
      v.runs = throughput_runs(per_layer);
      v.servable = !per_layer.empty() && std::none_of(per_layer.begin(), per_layer.end(),
                                                      [](double t) { return t == 0; });
      views.push_back(std::move(v));
    }
    if (o->json) {
      json out = {{"models", json::array()}};
      for (const ModelView& v : views) out["models"].push_back(to_json(v));
      std::printf("%s\n", out.dump().c_str());
    } else if (views.empty()) {
      std::printf("no models announced\n");
    } else {
      for (const ModelView& v : views) print_text(v);
    }
  });
}

}  // namespace swarm::cli
