// A simulation scenario: the model, the swarm's machines and networks, churn,
// the request load and speculation, as read from a TOML file (doc/simulation.md
// lists every field). Plain values: the simulator reads them, nothing else.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/status.h"

namespace swarm::sim {

struct ModelShape {
  std::string name;
  int n_layer = 0;
  int d_model = 0;
  double bytes_per_layer = 0;        // weights of one layer, in the chosen type
  double flops_per_token_layer = 0;  // 2 x parameters per layer unless given
};

// Per-layer compute time of a batch of b tokens, t(b): measured points, or
// derived from the hardware's figures (doc/simulation.md, "Compute time").
struct NodeClass {
  std::string name;
  int count = 0;
  double memory_bytes = 0;
  double usable_memory_fraction = 0.8;  // the rest holds KV caches and activations
  int max_layers = 0;                   // > 0: caps the layers it holds (0: memory decides)
  std::vector<std::pair<int, double>> layer_time_points;  // (b, seconds per layer)
  // The last stage's head (final norm, output matrix) over b rows: (b, seconds).
  // Empty: the head costs nothing (on a GPU it is one more layer's worth).
  std::vector<std::pair<int, double>> head_time_points;
  double slowdown = 1;     // >= 1: after each batch it waits (slowdown - 1) x its compute
  double step_overhead_s = 0;  // per batch, whatever its size: messages decoded, sent
  // Per answer a batch sends, one after another (encoded and written): answers
  // of one batch reach the next stage spread out, not at one instant, so that
  // stage starts on the first while the rest arrive, as real ones do. On a
  // shared machine (Scenario::machine_cores) it is work on its cores.
  double message_overhead_s = 20e-6;
  double memory_bandwidth = 0;                            // bytes/s, when no points are given
  double peak_flops = 0;                                  // FLOP/s
  double memory_efficiency = 0.7;
  double compute_efficiency = 0.5;
  double overhead_s = 0;                    // per layer and batch (kernel launches)
  double uplink_bps = 0, downlink_bps = 0;  // bits per second
  std::vector<std::pair<std::string, double>> region_weights;  // empty: spread evenly
  int max_batch_tokens = 64;
};

struct Region {
  std::string name;
  double gateway_weight = 1;  // share of the requests that arrive at this region's gateway
};

// A distribution of token counts.
struct LengthDist {
  std::string kind = "fixed";  // fixed | uniform | exponential
  double value = 0, min = 0, max = 0, mean = 0;
};

struct Churn {
  bool enabled = false;
  double mean_session_s = 0;   // a node's time online: exponential with this mean
  double mean_downtime_s = 0;  // time offline before it rejoins (0: never rejoins)
  double record_ttl_s = 30;    // how long a gone node's record stays in the directory
};

// Nodes that chose their layers re-check the choice now and then, as `swarm
// node --rebalance-interval` does (node/rebalancer.h): a move ends the
// sessions on the old block and reloads the new one.
struct Rebalance {
  double interval_s = 0;  // mean time between checks (0: nodes never move)
  double load_gbps = 2;   // GB/s a node reads a new block's weights at
};

struct Requests {
  double arrival_rate = 0;  // Poisson, requests per second (0: `streams` closed-loop only)
  int streams = 0;          // closed-loop streams: each starts a new request when one ends
  // > 0: the streams start this many requests in all, and the run ends when
  // the last one completes (as `swarm loadgen -r` does), not at duration_s.
  int total = 0;
  LengthDist prompt, output;
  // > 0: before the streams start, one request of this many tokens runs
  // alone, as a benchmark's warm-up (bench/sim_validate.sh's real runs have
  // one): the gateway keeps what it measured, and the run's figures leave it out.
  int warmup_output = 0;
};

struct Speculation {
  bool enabled = false;
  // Whether the controller decides to speculate at all (`--speculate auto`,
  // the gateway's default) or speculation always runs and the controller
  // sets only width and depth (`--speculate ngram` or `draft:MODEL`).
  bool always = false;
  double acceptance = 0.7;  // per-token probability that a draft is accepted
  // Drafts hold in runs: the probability that a draft is right after one
  // that was right (then `acceptance` is the probability after a wrong one,
  // or at the text's start). < 0 (the default): `acceptance`, every draft
  // independent.
  double acceptance_after_hit = -1;
  // The probability that the drafter has a guess at all when asked at a
  // position (the n-gram drafter has one only where the text so far repeats;
  // the gateway's metrics count it: 1 - empty_proposals / proposals).
  double proposal_rate = 1;
  // Guesses come in runs: the probability that the drafter has a guess when
  // asked at a later position after a question it had one for, with the rate
  // after one without set so that `proposal_rate` stays the share of
  // questions with a guess. The gateway counts it (doc/metrics.md,
  // swarm_speculation_guesses_after_guess_total). < 0 (the default): each
  // question's guess independent, at `proposal_rate`.
  double guess_after_guess = -1;
  // Drafts as a real drafter made them on a real request's text (`swarm
  // spec-eval --trace`, pipeline/draft_trace.h): entry i for a question after
  // prompt + 1 + i tokens, -1 for no guess, else how many of its drafts hold.
  // Given, it replaces the rates above for every request (with greedy
  // decoding every request of one prompt writes the same text).
  std::vector<int> trace;
  int max_drafts = 8;
};

struct Network {
  std::vector<Region> regions;
  std::vector<std::vector<double>> rtt_s;  // regions x regions, round trip
  double jitter = 0;                       // relative: latency x (1 + U(-jitter, jitter))
  double jitter_period_s = 1;              // how often a region pair's latency is redrawn
  double gateway_bps = 10e9;               // the gateway hosts' links
  double backbone_bps = 100e9;             // between regions
};

struct Scenario {
  std::string name;
  uint64_t seed = 1;
  double duration_s = 60;
  double window_s = 10;
  double warmup_s = 0;  // excluded from the summary
  ModelShape model;
  std::vector<NodeClass> classes;
  Network network;
  Churn churn;
  Rebalance rebalance;
  Requests requests;
  Speculation speculation;
  // Fixed chains for hand-checked tests: when set, nodes take these layer
  // ranges in order (class by class) instead of choosing their own.
  std::vector<std::pair<int, int>> fixed_ranges;
  // Scheduled failures, on top of churn. `reset`: the process dies but its
  // machine's kernel resets its connections (kill -9), so its callers learn
  // at once; otherwise it goes silent (power loss) and only deadlines tell.
  struct Kill {
    int node = 0;
    double at_s = 0;
    bool reset = false;
  };
  std::vector<Kill> kills;
  // > 0: every node computes on one shared machine with this many cores (a
  // swarm of processes on one computer, as the real runs that validate the
  // simulator are): batches that overlap share its cores.
  int machine_cores = 0;
  // With machine_cores: what the gateway and its clients compute per step
  // answer they receive, on the same cores (in the validating runs they are
  // processes on that computer too).
  double machine_gateway_step_s = 0;
  double survey_interval_s = 5;  // how stale the gateways' load figures are
};

// Parses and validates; an error names the field (e.g. "classes[2].memory_gb").
Result<Scenario> parse_scenario(const std::string& toml_text);
Result<Scenario> load_scenario(const std::string& path);

// Scales every class's count by the same factor so they add up to about
// `nodes` (each class keeps at least one node if it had any).
void scale_nodes(Scenario& s, int nodes);

}  // namespace swarm::sim
