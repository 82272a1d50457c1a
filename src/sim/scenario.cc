#include "sim/scenario.h"

#include <toml++/toml.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

namespace swarm::sim {
namespace {

// Reads fields of one TOML table, remembering the first error with the
// field's full name, so a scenario with a mistake says exactly where it is.
class Fields {
 public:
  Fields(const toml::table* t, std::string path, Status* err)
      : t_(t), path_(std::move(path)), err_(err) {}

  std::string name(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  bool has(const std::string& key) const { return t_ && t_->contains(key); }
  const toml::node* node(const std::string& key) const { return t_ ? t_->get(key) : nullptr; }

  double num(const std::string& key, double def, double lo, double hi, bool required = false) {
    const toml::node* n = node(key);
    if (!n) {
      if (required) fail(name(key) + " is required");
      return def;
    }
    std::optional<double> v = n->value<double>();
    if (!v || !std::isfinite(*v)) return fail(name(key) + " must be a number"), def;
    if (*v < lo || *v > hi) {
      std::ostringstream m;
      m << name(key) << " = " << *v << " is outside [" << lo << ", " << hi << "]";
      return fail(m.str()), def;
    }
    return *v;
  }
  int integer(const std::string& key, int def, int lo, int hi, bool required = false) {
    const double v = num(key, def, lo, hi, required);
    if (v != std::floor(v)) fail(name(key) + " must be a whole number");
    return static_cast<int>(v);
  }
  std::string str(const std::string& key, const std::string& def, bool required = false) {
    const toml::node* n = node(key);
    if (!n) {
      if (required) fail(name(key) + " is required");
      return def;
    }
    std::optional<std::string> v = n->value<std::string>();
    if (!v) return fail(name(key) + " must be a string"), def;
    return *v;
  }
  bool boolean(const std::string& key, bool def) {
    const toml::node* n = node(key);
    if (!n) return def;
    std::optional<bool> v = n->value<bool>();
    if (!v) return fail(name(key) + " must be true or false"), def;
    return *v;
  }
  void fail(const std::string& m) {
    if (err_->ok()) *err_ = Status::InvalidArgument("scenario: " + m);
  }
  Fields child(const std::string& key) {
    const toml::node* n = node(key);
    if (n && !n->as_table()) fail(name(key) + " must be a table");
    return Fields(n ? n->as_table() : nullptr, name(key), err_);
  }
  void check_known(std::initializer_list<const char*> known) {
    if (!t_) return;
    for (const auto& [k, v] : *t_) {
      bool ok = false;
      for (const char* s : known) ok = ok || k.str() == s;
      if (!ok) fail(name(std::string(k.str())) + " is not a known field");
    }
  }

 private:
  const toml::table* t_;
  std::string path_;
  Status* err_;
};

LengthDist read_length(Fields& parent, const std::string& key) {
  LengthDist d;
  const toml::node* n = parent.node(key);
  if (!n) {
    parent.fail(parent.name(key) + " is required");
    return d;
  }
  if (n->is_number()) {
    d.value = parent.num(key, 1, 1, 1e7);
    return d;
  }
  Fields f = parent.child(key);
  if (!n->as_table()) {
    parent.fail(parent.name(key) + " must be a number or a table {kind = ...}");
    return d;
  }
  d.kind = f.str("kind", "fixed");
  if (d.kind == "fixed") {
    d.value = f.num("value", 1, 1, 1e7, true);
  } else if (d.kind == "uniform") {
    d.min = f.num("min", 1, 1, 1e7, true);
    d.max = f.num("max", 1, 1, 1e7, true);
    if (d.max < d.min) f.fail(f.name("max") + " must be at least min");
  } else if (d.kind == "exponential") {
    d.mean = f.num("mean", 1, 1, 1e7, true);
  } else {
    f.fail(f.name("kind") + " = '" + d.kind + "' is not fixed, uniform or exponential");
  }
  return d;
}

// [[b, seconds], ...]: whole batch sizes >= 1, times > 0; empty when absent.
std::vector<std::pair<int, double>> read_time_points(Fields& f, const std::string& key) {
  std::vector<std::pair<int, double>> out;
  const toml::node* n = f.node(key);
  if (!n) return out;
  const toml::array* pts = n->as_array();
  if (!pts) {
    f.fail(f.name(key) + " must be an array of [b, seconds]");
    return out;
  }
  for (size_t i = 0; i < pts->size(); ++i) {
    const toml::array* p = (*pts)[i].as_array();
    const std::string nm = f.name(key) + "[" + std::to_string(i) + "]";
    if (!p || p->size() != 2 || !(*p)[0].is_number() || !(*p)[1].is_number()) {
      f.fail(nm + " must be [batch_tokens, seconds]");
      continue;
    }
    const double b = *(*p)[0].value<double>(), s = *(*p)[1].value<double>();
    if (b < 1 || b != std::floor(b) || !(s > 0) || !std::isfinite(s))
      f.fail(nm + " needs a whole batch size >= 1 and a time > 0");
    out.emplace_back(static_cast<int>(b), s);
  }
  return out;
}

NodeClass read_class(Fields f, const ModelShape& m, const std::vector<Region>& regions) {
  f.check_known({"name", "count", "memory_gb", "usable_memory_fraction", "max_layers",
                 "layer_time_points", "memory_bandwidth_gbs", "peak_tflops", "memory_efficiency",
                 "compute_efficiency", "overhead_us", "uplink_mbps", "downlink_mbps", "regions",
                 "max_batch_tokens", "head_time_points", "slowdown", "step_overhead_us",
                 "message_overhead_us",
                 "source"});
  NodeClass c;
  c.name = f.str("name", "", true);
  c.count = f.integer("count", 0, 0, 1000000, true);
  c.memory_bytes = f.num("memory_gb", 0, 0.001, 1e6, true) * 1e9;
  c.usable_memory_fraction = f.num("usable_memory_fraction", 0.8, 0.01, 1);
  c.max_layers = f.integer("max_layers", 0, 0, 100000);
  c.memory_efficiency = f.num("memory_efficiency", 0.7, 0.01, 1);
  c.compute_efficiency = f.num("compute_efficiency", 0.5, 0.01, 1);
  c.overhead_s = f.num("overhead_us", 0, 0, 1e7) * 1e-6;
  c.uplink_bps = f.num("uplink_mbps", 0, 0.001, 1e7, true) * 1e6;
  c.downlink_bps = f.num("downlink_mbps", 0, 0.001, 1e7, true) * 1e6;
  c.max_batch_tokens = f.integer("max_batch_tokens", 64, 1, 65536);
  c.slowdown = f.num("slowdown", 1, 1, 1e6);
  c.step_overhead_s = f.num("step_overhead_us", 0, 0, 1e7) * 1e-6;
  c.message_overhead_s = f.num("message_overhead_us", 20, 0, 1e6) * 1e-6;
  c.layer_time_points = read_time_points(f, "layer_time_points");
  c.head_time_points = read_time_points(f, "head_time_points");
  if (c.layer_time_points.empty()) {
    c.memory_bandwidth = f.num("memory_bandwidth_gbs", 0, 0.001, 1e6, true) * 1e9;
    c.peak_flops = f.num("peak_tflops", 0, 1e-6, 1e6, true) * 1e12;
    if (m.flops_per_token_layer <= 0)
      f.fail(f.name("layer_time_points") +
             " or model.params_per_layer (or model.flops_per_token_layer) is "
             "needed to time " +
             c.name);
  }
  if (const toml::node* r = f.node("regions")) {
    const toml::table* t = r->as_table();
    if (!t) f.fail(f.name("regions") + " must be a table {region = weight}");
    for (const auto& [k, v] : t ? *t : toml::table{}) {
      const std::string key(k.str());
      bool known = false;
      for (const Region& reg : regions) known = known || reg.name == key;
      if (!known) f.fail(f.name("regions") + "." + key + " is not a region of network.regions");
      std::optional<double> w = v.value<double>();
      if (!w || *w < 0) f.fail(f.name("regions") + "." + key + " must be a weight >= 0");
      c.region_weights.emplace_back(key, w.value_or(0));
    }
  }
  const double usable = c.memory_bytes * c.usable_memory_fraction;
  if (m.bytes_per_layer > 0 && usable < m.bytes_per_layer && c.count > 0)
    f.fail(f.name("memory_gb") + ": " + c.name + " holds no layer of " +
           std::to_string(m.bytes_per_layer / 1e9) + " GB (memory x usable_memory_fraction)");
  return c;
}

}  // namespace

Result<Scenario> parse_scenario(const std::string& toml_text) {
  toml::table root;
  try {
    root = toml::parse(toml_text);
  } catch (const toml::parse_error& e) {
    std::ostringstream m;
    m << "scenario: TOML syntax at line " << e.source().begin.line << ": " << e.description();
    return Status::InvalidArgument(m.str());
  }
  Status err;
  Scenario s;
  Fields top(&root, "", &err);
  top.check_known({"name", "seed", "duration_s", "window_s", "warmup_s", "survey_interval_s",
                   "model", "network", "classes", "churn", "rebalance", "requests", "speculation",
                   "fixed_ranges", "kills", "machine"});
  s.name = top.str("name", "scenario");
  s.seed = static_cast<uint64_t>(top.num("seed", 1, 0, 9e15));
  s.duration_s = top.num("duration_s", 60, 0.001, 1e7);
  s.window_s = top.num("window_s", 10, 0.001, 1e7);
  s.warmup_s = top.num("warmup_s", 0, 0, 1e7);
  s.survey_interval_s = top.num("survey_interval_s", 5, 0.001, 1e6);

  Fields model = top.child("model");
  if (!top.has("model")) top.fail("model is required");
  model.check_known({"name", "layers", "d_model", "params_per_layer", "weight_type",
                     "bytes_per_param", "bytes_per_layer", "flops_per_token_layer", "source"});
  s.model.name = model.str("name", "model");
  s.model.n_layer = model.integer("layers", 1, 1, 100000, true);
  s.model.d_model = model.integer("d_model", 1, 1, 1 << 20, true);
  const double params = model.num("params_per_layer", 0, 0, 1e13);
  if (model.has("bytes_per_layer")) {
    s.model.bytes_per_layer = model.num("bytes_per_layer", 0, 1, 1e13);
  } else {
    // Bytes per parameter per weight type; the scenario picks one.
    const std::string type = model.str("weight_type", "", true);
    Fields bpp = model.child("bytes_per_param");
    const double b = bpp.num(type, 0, 0.01, 16, true);
    if (params <= 0)
      model.fail(model.name("params_per_layer") + " is required without bytes_per_layer");
    s.model.bytes_per_layer = params * b;
  }
  s.model.flops_per_token_layer = model.num("flops_per_token_layer", 2 * params, 0, 1e15);

  Fields net = top.child("network");
  net.check_known({"regions", "gateway_weights", "rtt_ms", "jitter", "jitter_period_s",
                   "gateway_gbps", "backbone_gbps", "source"});
  const toml::array* regions = net.node("regions") ? net.node("regions")->as_array() : nullptr;
  if (!regions || regions->empty())
    net.fail(net.name("regions") + " must be a non-empty array of names");
  for (size_t i = 0; regions && i < regions->size(); ++i) {
    std::optional<std::string> nm = (*regions)[i].value<std::string>();
    if (!nm) net.fail(net.name("regions") + "[" + std::to_string(i) + "] must be a string");
    s.network.regions.push_back({nm.value_or("?"), 1});
  }
  const size_t R = s.network.regions.size();
  if (const toml::array* w =
          net.node("gateway_weights") ? net.node("gateway_weights")->as_array() : nullptr) {
    if (w->size() != R) net.fail(net.name("gateway_weights") + " needs one weight per region");
    for (size_t i = 0; i < std::min(R, w->size()); ++i) {
      std::optional<double> v = (*w)[i].value<double>();
      if (!v || *v < 0)
        net.fail(net.name("gateway_weights") + "[" + std::to_string(i) + "] must be >= 0");
      s.network.regions[i].gateway_weight = v.value_or(0);
    }
  }
  const toml::array* rtt = net.node("rtt_ms") ? net.node("rtt_ms")->as_array() : nullptr;
  if (!rtt || rtt->size() != R)
    net.fail(net.name("rtt_ms") + " must be a regions x regions matrix");
  s.network.rtt_s.assign(R, std::vector<double>(R, 0));
  for (size_t i = 0; rtt && i < std::min(R, rtt->size()); ++i) {
    const toml::array* row = (*rtt)[i].as_array();
    if (!row || row->size() != R) {
      net.fail(net.name("rtt_ms") + "[" + std::to_string(i) + "] must have one entry per region");
      continue;
    }
    for (size_t j = 0; j < R; ++j) {
      std::optional<double> v = (*row)[j].value<double>();
      if (!v || *v < 0)
        net.fail(net.name("rtt_ms") + "[" + std::to_string(i) + "][" + std::to_string(j) +
                 "] must be >= 0");
      s.network.rtt_s[i][j] = v.value_or(0) / 1000;
    }
  }
  s.network.jitter = net.num("jitter", 0, 0, 0.99);
  s.network.jitter_period_s = net.num("jitter_period_s", 1, 0.001, 1e6);
  s.network.gateway_bps = net.num("gateway_gbps", 10, 0.001, 1e6) * 1e9;
  s.network.backbone_bps = net.num("backbone_gbps", 100, 0.001, 1e6) * 1e9;

  const toml::array* classes = root.get("classes") ? root.get("classes")->as_array() : nullptr;
  if (!classes || classes->empty())
    top.fail("classes must be a non-empty array of tables ([[classes]])");
  for (size_t i = 0; classes && i < classes->size(); ++i) {
    const std::string nm = "classes[" + std::to_string(i) + "]";
    if (!(*classes)[i].as_table()) {
      top.fail(nm + " must be a table");
      continue;
    }
    s.classes.push_back(
        read_class(Fields((*classes)[i].as_table(), nm, &err), s.model, s.network.regions));
  }
  int total = 0;
  for (const NodeClass& c : s.classes) total += c.count;
  if (total < 1 && err.ok()) top.fail("classes: the swarm has no node (every count is 0)");

  Fields churn = top.child("churn");
  churn.check_known({"enabled", "mean_session_s", "mean_downtime_s", "record_ttl_s"});
  s.churn.enabled = churn.boolean("enabled", top.has("churn"));
  s.churn.mean_session_s = churn.num("mean_session_s", 0, 0.001, 1e9, s.churn.enabled);
  s.churn.mean_downtime_s = churn.num("mean_downtime_s", 0, 0, 1e9);
  s.churn.record_ttl_s = churn.num("record_ttl_s", 30, 0, 1e6);
  Fields rebalance = top.child("rebalance");
  rebalance.check_known({"interval_s", "load_gbps"});
  s.rebalance.interval_s = rebalance.num("interval_s", 0, 0, 1e9);
  s.rebalance.load_gbps = rebalance.num("load_gbps", 2, 0.001, 1e6);

  Fields req = top.child("requests");
  if (!top.has("requests")) top.fail("requests is required");
  req.check_known({"arrival_rate", "streams", "total", "prompt", "output", "warmup_output"});
  s.requests.arrival_rate = req.num("arrival_rate", 0, 0, 1e6);
  s.requests.streams = req.integer("streams", 0, 0, 1000000);
  s.requests.total = req.integer("total", 0, 0, 100000000);
  s.requests.warmup_output = req.integer("warmup_output", 0, 0, 1000000);
  if (s.requests.total > 0 && s.requests.streams == 0)
    req.fail(req.name("total") + " needs " + req.name("streams") + " (closed-loop requests)");

  Fields machine = top.child("machine");
  machine.check_known({"cores", "gateway_step_us"});
  s.machine_cores = machine.integer("cores", 0, 1, 4096, top.has("machine"));
  s.machine_gateway_step_s = machine.num("gateway_step_us", 0, 0, 1e7) * 1e-6;
  if (s.requests.arrival_rate == 0 && s.requests.streams == 0 && err.ok())
    req.fail(req.name("arrival_rate") + " or " + req.name("streams") + " must be > 0");
  if (top.has("requests")) {
    s.requests.prompt = read_length(req, "prompt");
    s.requests.output = read_length(req, "output");
  }

  Fields spec = top.child("speculation");
  spec.check_known({"enabled", "mode", "acceptance", "acceptance_after_hit", "proposal_rate",
                    "guess_after_guess", "trace", "max_drafts"});
  s.speculation.enabled = spec.boolean("enabled", false);
  const std::string mode = spec.str("mode", "auto");
  if (mode != "auto" && mode != "always")
    spec.fail(spec.name("mode") + " = '" + mode + "' is not auto or always");
  s.speculation.always = mode == "always";
  s.speculation.acceptance = spec.num("acceptance", 0.7, 0, 0.999);
  if (spec.has("acceptance_after_hit"))
    s.speculation.acceptance_after_hit = spec.num("acceptance_after_hit", 0.7, 0, 0.999);
  s.speculation.proposal_rate = spec.num("proposal_rate", 1, 0, 1);
  if (spec.has("guess_after_guess"))
    s.speculation.guess_after_guess = spec.num("guess_after_guess", 0.5, 0, 1);
  s.speculation.max_drafts = spec.integer("max_drafts", 8, 1, 64);
  if (const toml::node* tr = spec.node("trace")) {
    const toml::array* a = tr->as_array();
    if (!a || a->size() > 1000000) {
      spec.fail(spec.name("trace") + " must be an array of at most 1000000 whole numbers");
    } else {
      for (const toml::node& e : *a) {
        const std::optional<int64_t> v = e.value<int64_t>();
        if (!v || *v < -1 || *v > 1 << 20) {
          spec.fail(spec.name("trace") + "[" + std::to_string(s.speculation.trace.size()) +
                    "] must be -1 (no guess) or the drafts that hold (0 or more)");
          break;
        }
        s.speculation.trace.push_back(static_cast<int>(*v));
      }
    }
  }

  if (const toml::node* fr = root.get("fixed_ranges")) {
    const toml::array* a = fr->as_array();
    if (!a) top.fail("fixed_ranges must be an array of [first, last]");
    for (size_t i = 0; a && i < a->size(); ++i) {
      const toml::array* p = (*a)[i].as_array();
      const std::string nm = "fixed_ranges[" + std::to_string(i) + "]";
      const int64_t f0 = p && p->size() == 2 ? (*p)[0].value<int64_t>().value_or(-1) : -1;
      const int64_t f1 = p && p->size() == 2 ? (*p)[1].value<int64_t>().value_or(-1) : -1;
      if (f0 < 0 || f1 <= f0 || f1 > s.model.n_layer) {
        top.fail(nm + " must be [first, last] with 0 <= first < last <= model.layers");
        continue;
      }
      s.fixed_ranges.emplace_back(static_cast<int>(f0), static_cast<int>(f1));
    }
    if (err.ok() && static_cast<int>(s.fixed_ranges.size()) != total)
      top.fail("fixed_ranges needs one range per node (" + std::to_string(total) + ")");
  }
  if (const toml::node* kn = root.get("kills")) {
    const toml::array* a = kn->as_array();
    if (!a) top.fail("kills must be an array of {node, at_s}");
    for (size_t i = 0; a && i < a->size(); ++i) {
      Fields k((*a)[i].as_table(), "kills[" + std::to_string(i) + "]", &err);
      if (!(*a)[i].as_table()) {
        top.fail("kills[" + std::to_string(i) + "] must be a table {node, at_s}");
        continue;
      }
      k.check_known({"node", "at_s", "reset"});
      s.kills.push_back({k.integer("node", 0, 0, std::max(0, total - 1), true),
                         k.num("at_s", 0, 0, 1e9, true), k.boolean("reset", false)});
    }
  }
  if (!err.ok()) return err;
  return s;
}

void scale_nodes(Scenario& s, int nodes) {
  int total = 0;
  for (const NodeClass& c : s.classes) total += c.count;
  if (total <= 0) return;
  for (NodeClass& c : s.classes)
    if (c.count > 0)
      c.count = std::max(1, static_cast<int>(std::lround(double(c.count) * nodes / total)));
}

Result<Scenario> load_scenario(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("scenario: cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  Result<Scenario> s = parse_scenario(ss.str());
  if (!s.ok()) return Status::InvalidArgument(path + ": " + s.status().message());
  return s;
}

}  // namespace swarm::sim
