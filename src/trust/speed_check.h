// Lies about speed (doc/trust.md, "Reputation"): a node announces how fast it
// runs one layer for one token (InfoResponse.layer_tokens_per_second), and
// routing believes it. Every step's StageTiming says what the node's batch
// really took; a node that announces far more than its steps show is lying,
// to draw traffic (and credits) it cannot serve.
// check_speed is the pure rule; SpeedWatch keeps the recent samples per node.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace swarm::trust {

// One StageTiming of a node's answer: a batch of `batch_tokens` tokens ran
// through `layers` layers in `compute_us` microseconds.
struct SpeedSample {
  int64_t compute_us = 0;
  int batch_tokens = 0;
  int layers = 0;
};

// batch_tokens x layers per second of compute; 0 for a sample that says
// nothing (non-positive fields).
double measured_layer_tokens_per_second(const SpeedSample& s);

struct SpeedCheckParams {
  // So few samples prove nothing (a cold first step pages weights in).
  size_t min_samples = 16;
  // A lie is an announced speed above factor x the measured median. Honest
  // nodes announce the same quantity (an average over their batches), but
  // their batches vary (prefill against decode, other callers' load, a busy
  // machine) and the announced figure is as old as the last survey: two
  // honest CPU nodes on one loaded machine were seen at up to 2.1x. A liar
  // worth catching claims far more.
  double factor = 4.0;
  // SpeedWatch keeps this many recent samples per node.
  size_t window = 32;
};

struct SpeedVerdict {
  bool lie = false;
  double announced = 0;
  double measured = 0;  // median of the samples' layer-tokens/s; 0 without samples
  size_t samples = 0;   // the samples that said something
};

// Whether `announced` (layer-tokens/s; 0: announced nothing, never a lie) is a
// lie given `samples`: at least min_samples of them with a positive rate, and
// announced > factor x their median.
SpeedVerdict check_speed(double announced, const std::vector<SpeedSample>& samples,
                         const SpeedCheckParams& params = {});

// The recent samples of every node (by node id), checked as they come.
// Thread-safe; no clock.
class SpeedWatch {
 public:
  explicit SpeedWatch(SpeedCheckParams params = {}) : params_(params) {}

  // Adds `sample` for `node_id` and checks the window against `announced`. On
  // a lie, returns the verdict and forgets the node's samples, so one lie is
  // one event, and another needs a fresh window of evidence.
  std::optional<SpeedVerdict> observe(const std::string& node_id, double announced,
                                      const SpeedSample& sample);
  // Forgets nodes not in `keep` (those no longer peers).
  void retain(const std::vector<std::string>& keep);

 private:
  const SpeedCheckParams params_;
  std::mutex mu_;
  std::map<std::string, std::deque<SpeedSample>> samples_;
};

}  // namespace swarm::trust
