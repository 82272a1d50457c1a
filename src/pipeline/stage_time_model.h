// Accumulates the StageTiming measurements that come back with every step
// (doc/protocol.md) into the per-stage t_s(b) tables the speculation controller
// takes (pipeline/spec_controller.h): per stage address and per batch size b
// (tokens in the batch the step ran in), an exponential moving average of the
// batch's compute time. Pure: values in, values out; no clock.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "pipeline/spec_controller.h"

namespace swarm {

class StageTimeModel {
 public:
  // `weight_new`: the EWMA weight of a new measurement, in (0, 1]. Batch sizes
  // above `max_batch_tokens` are not recorded (a prompt is not a decode run).
  explicit StageTimeModel(double weight_new = 0.25, int max_batch_tokens = 64);

  // One StageTiming: the stage at `address` ran a batch of `batch_tokens`
  // tokens in `compute_us` microseconds. Non-positive values are ignored.
  void observe(const std::string& address, int batch_tokens, int64_t compute_us);

  // The stage's measured points, one per batch size seen (seconds); empty
  // points when the address was never observed.
  StageTimes times(const std::string& address) const;
  // times() of each address, in the chain's order.
  std::vector<StageTimes> chain_times(const std::vector<std::string>& addresses) const;

 private:
  double weight_new_;
  int max_batch_tokens_;
  std::map<std::string, std::map<int, double>> seconds_;  // address -> b -> EWMA seconds
};

}  // namespace swarm
