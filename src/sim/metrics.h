// What a simulation measures, per time window and over the whole run: tokens
// delivered, per-token latency, time to first token, compute utilisation and
// recovery events. Windows become JSON lines (doc/simulation.md, "Output").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace swarm::sim {

struct WindowStats {
  double start_s = 0, end_s = 0;
  int64_t tokens = 0;
  std::vector<float> token_latency_s;  // per token: its step's time / tokens the step yielded
  std::vector<float> ttft_s;
  double busy_s = 0;        // compute seconds over all nodes
  // Of which on steps a Cancel covered once they had run (a node's
  // Info.cancelled_compute_us counts the same).
  double cancelled_compute_s = 0;
  double node_seconds = 0;  // online nodes x window length (utilisation's denominator)
  int recoveries = 0;
  std::vector<float> recovery_s;  // from the failed step's send to its replay's answer
  // Steps waited on past the step timeout (every stage answered, no other
  // chain could take the session) instead of failed over.
  int ceiling_waits = 0;
  int rebalance_moves = 0;        // nodes that moved to another block (node/rebalancer.h)
  int requests_started = 0, requests_done = 0, requests_failed = 0;
  int in_flight = 0, nodes_online = 0;
  int nodes_busy = 0;  // nodes that computed anything in the window
  int64_t spec_steps = 0, plain_steps = 0;
  // Batches the nodes ran, the token positions in them, and how many held one
  // (as a node's swarm_node_batch_tokens histogram counts them).
  int64_t batches = 0, batch_tokens = 0, single_token_batches = 0;
};

// One completed request, as `swarm loadgen` sees it.
struct RequestRecord {
  double arrival_s = 0, first_token_s = 0, done_s = 0;
  int tokens = 0;
};

class Metrics {
 public:
  void request_record(const RequestRecord& r) { records_.push_back(r); }
  const std::vector<RequestRecord>& records() const { return records_; }
  explicit Metrics(double window_s) : window_s_(window_s) {}
  void token(double now, double latency_s, int n);
  void first_token(double now, double ttft_s);
  void busy(double now, double seconds, int node);
  void cancelled_compute(double now, double seconds) { open(now).cancelled_compute_s += seconds; }
  void batch(double now, int tokens);
  void recovery(double now, double seconds);
  void ceiling_wait(double now) { open(now).ceiling_waits++; }
  void rebalance_move(double now);
  void request_started(double now);
  void request_done(double now, bool completed);
  void step(double now, bool speculative);
  // Closes the window ending at `now` with `online` nodes online throughout.
  const WindowStats& close_window(double now, int online);
  const std::vector<WindowStats>& windows() const { return closed_; }
  int in_flight() const { return in_flight_; }

 private:
  WindowStats& open(double now);
  double window_s_;
  std::vector<WindowStats> closed_;
  WindowStats open_;
  std::vector<bool> busy_nodes_;
  int in_flight_ = 0;
  std::vector<RequestRecord> records_;
};

// Over completed requests, as `swarm loadgen` reports a run: tokens over the
// span from the first arrival to the last completion, the mean per-request
// decode rate after the first token, the mean time to first token.
std::string run_json(const std::vector<RequestRecord>& records, const std::string& scenario);

// The q-quantile (0..1) of `v` (sorted copy; 0 for an empty one).
double quantile(std::vector<float> v, double q);

// One JSON line for a window; the summary over windows after `warmup_s`.
std::string window_json(const WindowStats& w);
std::string summary_json(const std::vector<WindowStats>& windows, double warmup_s,
                         const std::string& scenario, int nodes, double wall_s);

}  // namespace swarm::sim
