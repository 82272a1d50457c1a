#include "sim/metrics.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace swarm::sim {

WindowStats& Metrics::open(double) { return open_; }
void Metrics::token(double now, double latency_s, int n) {
  open(now).tokens += n;
  for (int i = 0; i < n; ++i) open_.token_latency_s.push_back(static_cast<float>(latency_s));
}
void Metrics::first_token(double now, double ttft_s) {
  open(now).ttft_s.push_back(static_cast<float>(ttft_s));
}
void Metrics::batch(double now, int tokens) {
  WindowStats& w = open(now);
  ++w.batches;
  w.batch_tokens += tokens;
  if (tokens == 1) ++w.single_token_batches;
}

void Metrics::busy(double now, double seconds, int node) {
  open(now).busy_s += seconds;
  if (node >= static_cast<int>(busy_nodes_.size())) busy_nodes_.resize(node + 1, false);
  if (!busy_nodes_[node]) {
    busy_nodes_[node] = true;
    open_.nodes_busy++;
  }
}
void Metrics::rebalance_move(double now) { open(now).rebalance_moves++; }

void Metrics::recovery(double now, double seconds) {
  open(now).recoveries++;
  open_.recovery_s.push_back(static_cast<float>(seconds));
}
void Metrics::request_started(double now) {
  open(now).requests_started++;
  in_flight_++;
}
void Metrics::request_done(double now, bool completed) {
  (completed ? open(now).requests_done : open(now).requests_failed)++;
  in_flight_--;
}
void Metrics::step(double now, bool speculative) {
  (speculative ? open(now).spec_steps : open(now).plain_steps)++;
}

const WindowStats& Metrics::close_window(double now, int online) {
  open_.start_s = closed_.empty() ? 0 : closed_.back().end_s;
  open_.end_s = now;
  open_.node_seconds = online * (now - open_.start_s);
  open_.nodes_online = online;
  open_.in_flight = in_flight_;
  closed_.push_back(std::move(open_));
  open_ = WindowStats();
  busy_nodes_.assign(busy_nodes_.size(), false);
  return closed_.back();
}

double quantile(std::vector<float> v, double q) {
  if (v.empty()) return 0;
  const size_t k =
      std::min(v.size() - 1, static_cast<size_t>(std::floor(q * (v.size() - 1) + 0.5)));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

namespace {

double round3(double x) { return std::round(x * 1000) / 1000; }

nlohmann::ordered_json stats(const WindowStats& w) {
  const double len = std::max(1e-9, w.end_s - w.start_s);
  nlohmann::ordered_json j;
  j["tok_s"] = round3(w.tokens / len);
  j["tokens"] = w.tokens;
  j["latency_ms_p50"] = round3(1000 * quantile(w.token_latency_s, 0.5));
  j["latency_ms_p95"] = round3(1000 * quantile(w.token_latency_s, 0.95));
  j["latency_ms_p99"] = round3(1000 * quantile(w.token_latency_s, 0.99));
  j["ttft_ms_p50"] = round3(1000 * quantile(w.ttft_s, 0.5));
  j["ttft_ms_p95"] = round3(1000 * quantile(w.ttft_s, 0.95));
  j["utilisation"] = w.node_seconds > 0 ? round3(w.busy_s / w.node_seconds) : 0.0;
  j["cancelled_compute_share"] = w.busy_s > 0 ? round3(w.cancelled_compute_s / w.busy_s) : 0.0;
  j["recoveries"] = w.recoveries;
  j["rebalance_moves"] = w.rebalance_moves;
  j["recovery_ms_p50"] = round3(1000 * quantile(w.recovery_s, 0.5));
  j["ceiling_waits"] = w.ceiling_waits;
  j["requests_started"] = w.requests_started;
  j["requests_done"] = w.requests_done;
  j["requests_failed"] = w.requests_failed;
  j["speculative_step_share"] = w.spec_steps + w.plain_steps > 0
                                    ? round3(double(w.spec_steps) / (w.spec_steps + w.plain_steps))
                                    : 0.0;
  j["batch_tokens_mean"] = w.batches > 0 ? round3(double(w.batch_tokens) / w.batches) : 0.0;
  j["single_token_batch_share"] =
      w.batches > 0 ? round3(double(w.single_token_batches) / w.batches) : 0.0;
  return j;
}

}  // namespace

std::string window_json(const WindowStats& w) {
  nlohmann::ordered_json j;
  j["t_s"] = round3(w.end_s);
  j.update(stats(w));
  j["in_flight"] = w.in_flight;
  j["nodes_online"] = w.nodes_online;
  j["nodes_busy"] = w.nodes_busy;
  return j.dump();
}

std::string summary_json(const std::vector<WindowStats>& windows, double warmup_s,
                         const std::string& scenario, int nodes, double wall_s) {
  WindowStats all;
  bool first = true;
  for (const WindowStats& w : windows) {
    if (w.start_s + 1e-9 < warmup_s) continue;
    if (first) all.start_s = w.start_s, first = false;
    all.end_s = w.end_s;
    all.tokens += w.tokens;
    all.token_latency_s.insert(all.token_latency_s.end(), w.token_latency_s.begin(),
                               w.token_latency_s.end());
    all.ttft_s.insert(all.ttft_s.end(), w.ttft_s.begin(), w.ttft_s.end());
    all.recovery_s.insert(all.recovery_s.end(), w.recovery_s.begin(), w.recovery_s.end());
    all.busy_s += w.busy_s;
    all.cancelled_compute_s += w.cancelled_compute_s;
    all.nodes_busy = std::max(all.nodes_busy, w.nodes_busy);
    all.node_seconds += w.node_seconds;
    all.recoveries += w.recoveries;
    all.ceiling_waits += w.ceiling_waits;
    all.rebalance_moves += w.rebalance_moves;
    all.requests_started += w.requests_started;
    all.requests_done += w.requests_done;
    all.requests_failed += w.requests_failed;
    all.spec_steps += w.spec_steps;
    all.plain_steps += w.plain_steps;
    all.batches += w.batches;
    all.batch_tokens += w.batch_tokens;
    all.single_token_batches += w.single_token_batches;
  }
  nlohmann::ordered_json j;
  j["summary"] = true;
  j["scenario"] = scenario;
  j["nodes"] = nodes;
  j["from_s"] = round3(all.start_s);
  j["to_s"] = round3(all.end_s);
  j.update(stats(all));
  j["nodes_busy_max"] = all.nodes_busy;  // the most nodes that computed in one window
  j["wall_s"] = round3(wall_s);
  return j.dump();
}

}  // namespace swarm::sim

namespace swarm::sim {

std::string run_json(const std::vector<RequestRecord>& records, const std::string& scenario) {
  double first = 1e300, last = 0, tokens = 0, rate = 0, ttft = 0;
  for (const RequestRecord& r : records) {
    first = std::min(first, r.arrival_s);
    last = std::max(last, r.done_s);
    tokens += r.tokens;
    const double decode = r.done_s - r.first_token_s;
    rate += r.tokens > 1 && decode > 0 ? (r.tokens - 1) / decode : 0;
    ttft += r.first_token_s - r.arrival_s;
  }
  const double n = std::max<double>(1, static_cast<double>(records.size()));
  nlohmann::ordered_json j;
  j["run"] = true;
  j["scenario"] = scenario;
  j["requests"] = records.size();
  j["aggregate_tok_s"] = round3(records.empty() ? 0 : tokens / std::max(1e-9, last - first));
  j["stream_tok_s"] = round3(rate / n);
  j["ttft_ms"] = round3(1000 * ttft / n);
  j["span_s"] = round3(records.empty() ? 0 : last - first);
  return j.dump();
}

}  // namespace swarm::sim
