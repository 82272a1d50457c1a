// swarm status --bootstrap HOST:PORT[,...] [--model-id ID] [--probe-timeout-ms MS] [--json]
// What the swarm looks like from its DHT: every announced model, which node
// serves which layers (from their signed records), whether each can be reached
// (an Info call to each of its addresses in turn, pinned to its record's key),
// the throughput of each run of layers as nodes measured it, and the gaps
// nobody reachable serves. Records that fail verification are counted, not
// shown. Unreachable nodes count neither for coverage nor for throughput.
// Then the skills providers announce, each provider with its price, load and
// measured speed as its signed record says (doc/skills.md).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "routing/coverage_bar.h"
#include "cli/dht_swarm.h"
#include "pipeline/peer_probe.h"

namespace swarm::cli {
namespace {

using json = nlohmann::json;

struct NodeView {
  discovery::NodeRecord record;
  bool probed = false;  // false: --probe-timeout-ms 0, reachability unknown
  PeerProbe probe;
  bool counted() const { return !probed || probe.reached; }
  // The node's own measure: its Info's when it answered, else its record's.
  double layer_tokens_per_second() const {
    return probed && probe.reached ? probe.info.layer_tokens_per_second() : record.throughput;
  }
};

struct ModelView {
  discovery::ModelAnnouncement model;
  discovery::RecordLookup lookup;
  std::vector<NodeView> nodes;
  std::vector<ThroughputRun> runs;
  int covered_layers = 0;
  bool servable = false;
};

std::string range_text(const LayerRange& r) {
  return "[" + std::to_string(r.first) + "," + std::to_string(r.last) + ")";
}

json to_json(const ModelView& v) {
  json nodes = json::array(), runs = json::array(), gaps = json::array();
  int reachable = 0, unreachable = 0;
  for (const NodeView& n : v.nodes) {
    const discovery::NodeRecord& r = n.record;
    const double tps = n.layer_tokens_per_second();
    json j = {{"node_id", r.node_id},
              {"addresses", r.addresses},
              {"layer_begin", r.layer_begin},
              {"layer_end", r.layer_end},
              {"throughput", tps},
              {"throughput_measured", tps > 0},
              {"free_kv_bytes", r.free_kv_bytes},
              {"price_per_1k", r.price_per_1k},
              {"expires_at", r.expires_at},
              {"reachable", n.probed ? json(n.probe.reached) : json(nullptr)}};
    if (n.probed && n.probe.reached) j["reached_address"] = n.probe.address;
    if (n.probed && !n.probe.reached) j["unreachable_error"] = n.probe.error;
    reachable += n.probed && n.probe.reached;
    unreachable += n.probed && !n.probe.reached;
    nodes.push_back(std::move(j));
  }
  for (const ThroughputRun& t : v.runs) {
    const json range = {{"begin", t.range.first}, {"end", t.range.last}};
    runs.push_back({{"begin", t.range.first},
                    {"end", t.range.last},
                    {"nodes", t.service.nodes},
                    {"unmeasured_nodes", t.service.unmeasured},
                    {"layer_tokens_per_second", t.service.measured_layer_tokens_per_second}});
    if (t.service.nodes == 0) gaps.push_back(range);
  }
  const discovery::RejectCounts& rc = v.lookup.rejected;
  return {{"model_id", v.model.model_id},
          {"name", v.model.name},
          {"n_layer", v.model.n_layer},
          {"servable", v.servable},
          {"coverage",
           {{"layers_covered", v.covered_layers},
            {"reachable_nodes", reachable},
            {"unreachable_nodes", unreachable}}},
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
  // The layers as a picture: what the swarm covers, then one row per node.
  std::vector<std::pair<int, int>> ranges;
  for (const NodeView& n : v.nodes)
    if (!n.probed || n.probe.reached) ranges.emplace_back(n.record.layer_begin, n.record.layer_end);
  std::printf("  coverage   [%s]\n", coverage_bar(v.model.n_layer, ranges).c_str());
  for (const NodeView& n : v.nodes)
    std::printf("  %-10.10s [%s] %d:%d%s\n", n.record.node_id.c_str(),
                layer_bar(v.model.n_layer, n.record.layer_begin, n.record.layer_end).c_str(),
                n.record.layer_begin, n.record.layer_end, n.probed && !n.probe.reached ? " unreachable" : "");
  int unreachable = 0;
  for (const NodeView& n : v.nodes) {
    const discovery::NodeRecord& r = n.record;
    std::string at;
    for (const std::string& a : r.addresses) at += (at.empty() ? "" : ",") + a;
    std::string reach;
    if (n.probed && n.probe.reached) {
      reach = r.addresses.size() > 1 ? "  reachable at " + n.probe.address : "  reachable";
    } else if (n.probed) {
      ++unreachable;
      reach = "  UNREACHABLE (" + n.probe.error.substr(0, 200) + ")";
    }
    char speed[64];
    if (n.layer_tokens_per_second() > 0)
      std::snprintf(speed, sizeof speed, "%.1f layer-tok/s", n.layer_tokens_per_second());
    else
      std::snprintf(speed, sizeof speed, "speed not measured");
    std::printf("  layers [%d,%d)  node %s at %s%s  %s  free KV %.1f MiB  price %g\n",
                r.layer_begin, r.layer_end, r.node_id.c_str(), at.c_str(), reach.c_str(), speed,
                static_cast<double>(r.free_kv_bytes) / (1 << 20), r.price_per_1k);
  }
  // Throughput counts only what nodes measured; unmeasured nodes are named as such.
  std::string gaps;
  for (const ThroughputRun& t : v.runs) {
    const LayerService& s = t.service;
    std::string what;
    if (s.nodes == 0) {
      what = "nobody serves (gap)";
      gaps += (gaps.empty() ? "" : " ") + range_text(t.range);
    } else if (s.unmeasured == s.nodes) {
      what = "not measured";
    } else {
      char buf[96];
      std::snprintf(buf, sizeof buf, "%.1f layer-tok/s", s.measured_layer_tokens_per_second);
      what = buf;
      if (s.unmeasured > 0)
        what += " + " + std::to_string(s.unmeasured) + " node(s) not measured";
    }
    std::printf("  throughput %s: %s\n", range_text(t.range).c_str(), what.c_str());
  }
  std::printf("  coverage: %d/%d layers by %d node(s)", v.covered_layers, v.model.n_layer,
              static_cast<int>(v.nodes.size()) - unreachable);
  if (unreachable > 0) std::printf(", %d unreachable node(s) not counted", unreachable);
  std::printf("\n");
  std::printf("  gaps: %s\n", gaps.empty() ? "none" : gaps.c_str());
  if (v.lookup.rejected.total() > 0)
    std::printf(
        "  ignored records: %zu forged or malformed, %zu expired or invalid, %zu other "
        "version, %zu other model, %zu superseded\n",
        v.lookup.rejected.corrupt, v.lookup.rejected.invalid, v.lookup.rejected.unsupported,
        v.lookup.rejected.other_model, v.lookup.rejected.superseded);
}

// The skills providers announce (doc/skills.md), each provider as its
// record says (a skill's endpoint is HTTP: not probed here).
struct SkillView {
  std::string skill;
  discovery::SkillLookup lookup;
};

json skill_json(const SkillView& v) {
  json providers = json::array();
  for (const discovery::SkillRecord& r : v.lookup.records) {
    json p = discovery::skill_record_members(r);
    p["node_id"] = r.node_id;
    providers.push_back(std::move(p));
  }
  return {{"skill", v.skill}, {"providers", providers}};
}

void print_skill_text(const SkillView& v) {
  std::printf("skill %s: %zu provider(s)\n", v.skill.c_str(), v.lookup.records.size());
  for (const discovery::SkillRecord& r : v.lookup.records) {
    std::string tasks;
    for (const std::string& t : r.tasks) tasks += (tasks.empty() ? "" : ",") + t;
    std::printf("  %s at %s: %s, %.4g credits/1k tokens, %lld/%lld busy, %lld queued, ",
                r.node_id.substr(0, 12).c_str(), r.addresses.front().c_str(), tasks.c_str(),
                r.price_per_1k, static_cast<long long>(r.active), static_cast<long long>(r.capacity),
                static_cast<long long>(r.queued));
    if (r.tokens_per_second > 0)
      std::printf("%.1f tok/s, first token %.2f s", r.tokens_per_second, r.ttft_seconds);
    else
      std::printf("speed not measured");
    std::printf("%s%s\n", r.warm ? "" : ", COLD (its backend did not answer)",
                r.engine ? (", engine, model " + r.content_id.substr(0, 12)).c_str() : "");
  }
}

}  // namespace

void register_status(CLI::App& app) {
  struct Options {
    std::string bootstrap, dht_listen, model_id;
    int probe_timeout_ms = 1000;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("status", "Show the swarm as its DHT announces it");
  cmd->add_option("--bootstrap", o->bootstrap, "DHT peers to join through: HOST:PORT,...")
      ->required();
  cmd->add_option("--dht-listen", o->dht_listen,
                  "IPv4 HOST:PORT for this DHT node (default: port 0)");
  cmd->add_option("--model-id", o->model_id, "Show this model id even if no announcement names it");
  cmd->add_option("--probe-timeout-ms", o->probe_timeout_ms,
                  "Ask each announced node for its Info, each address this long; 0: do not, "
                  "trust the records (default 1000)")
      ->check(CLI::Range(0, 60000));
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
      std::vector<PeerProbe> probes;
      if (o->probe_timeout_ms > 0)
        probes = probe_peers(pinned_peers(v.lookup.records), {},
                             std::chrono::milliseconds(o->probe_timeout_ms));
      std::vector<ServedRange> counted;
      for (size_t i = 0; i < v.lookup.records.size(); ++i) {
        NodeView n;
        n.record = v.lookup.records[i];
        n.probed = i < probes.size();
        if (n.probed) n.probe = probes[i];
        if (n.counted())
          counted.push_back({n.record.layer_begin, n.record.layer_end, n.layer_tokens_per_second()});
        v.nodes.push_back(std::move(n));
      }
      const std::vector<LayerService> per_layer = layer_service(counted, v.model.n_layer);
      v.runs = throughput_runs(per_layer);
      v.covered_layers = static_cast<int>(std::count_if(
          per_layer.begin(), per_layer.end(), [](const LayerService& s) { return s.nodes > 0; }));
      v.servable = !per_layer.empty() && v.covered_layers == v.model.n_layer;
      views.push_back(std::move(v));
    }
    std::vector<SkillView> skills;
    if (auto names = dht->find_skill_names(); names.ok())
      for (const std::string& name : *names) {
        auto lookup = dht->find_skill(name, discovery::unix_now());
        if (lookup.ok() && !lookup->records.empty()) skills.push_back({name, *lookup});
      }
    if (o->json) {
      json out = {{"models", json::array()}, {"skills", json::array()}};
      for (const ModelView& v : views) out["models"].push_back(to_json(v));
      for (const SkillView& v : skills) out["skills"].push_back(skill_json(v));
      std::printf("%s\n", out.dump().c_str());
      return;
    }
    if (views.empty()) std::printf("no models announced\n");
    for (const ModelView& v : views) print_text(v);
    for (const SkillView& v : skills) print_skill_text(v);
  });
}

}  // namespace swarm::cli
