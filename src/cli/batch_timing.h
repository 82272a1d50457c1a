// Stage compute time as a function of batch size, t(b), measured on this
// machine: what a node's batch runner spends on one step of b sequences (each
// one new token over a context of `context` positions), and on one prompt
// chunk of p tokens. The simulator (doc/simulation.md) takes these points for
// the machine's node class, so its runs can be checked against real ones.
#pragma once

#include <vector>

#include "engine/model.h"
#include "engine/thread_pool.h"

namespace swarm::cli {

struct BatchTiming {
  enum class Kind { kDecode, kPrefill };
  Kind kind = Kind::kDecode;
  int tokens = 0;              // b sequences of one token, or one chunk of p tokens
  double layer_seconds = 0;    // median time of one layer over the batch
  double head_seconds = 0;     // median time of the head (norm + output) over its rows
  double embed_seconds = 0;    // median time of the embedding look-up
};

// Decode batches of each size in `decode_batches` and prompt chunks of each
// size in `prefill_chunks`, `rounds` times each; medians. Needs a model that
// holds every layer, the embedding and the head.
std::vector<BatchTiming> measure_batch_timings(const Model& model, ThreadPool& pool,
                                               const std::vector<int>& decode_batches,
                                               const std::vector<int>& prefill_chunks, int context,
                                               int rounds);

}  // namespace swarm::cli
