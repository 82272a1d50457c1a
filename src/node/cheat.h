// A node that misbehaves on purpose, so tests and benchmarks can show that
// audits catch it (doc/trust.md, "Cheating nodes"). Set only by hidden
// `swarm node --cheat...` flags; an honest node never builds a Cheater.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/status.h"

namespace swarm::node {

struct CheatOptions {
  // "": honest. "noise": small noise on its output; "skip-layer": runs its
  // range without the last layer; "replay": answers a step with the session's
  // previous output; "token" (a last stage): computes honestly but answers
  // another token than it sampled; "none": computes honestly (with
  // claim_model or speed_factor, the only lie).
  std::string mode;
  double rate = 1;             // share of batches cheated on, in (0, 1]
  bool unaudited_only = false; // honest on steps that look like audits (Step.row_hashes)
  double speed_factor = 1;     // announces this many times its measured speed
  // Serves the weights of --model but claims the model id of this file (other
  // weights under an honest model's name).
  std::string claim_model;
  uint64_t seed = 1;
};

// What CheatOptions allow; an error names the flag.
Status validate(const CheatOptions& o, int layers_served);

class Cheater {
 public:
  explicit Cheater(CheatOptions o);
  bool lies_about_compute() const { return !o_.mode.empty() && o_.mode != "none"; }
  double speed_factor() const { return o_.speed_factor; }
  bool skips_layer() const { return o_.mode == "skip-layer"; }
  bool lies_about_tokens() const { return o_.mode == "token"; }
  // Whether to cheat on a batch; `audit_like`: some step of it asks for row
  // hashes. Called once per batch, by the scheduler thread only.
  bool cheat_on_batch(bool audit_like);
  // Alters a step's output rows in place ("noise", "replay"); `previous` is
  // the session's last honest output, replaced by this one's.
  void alter(float* rows, int64_t n, int d, std::vector<float>* previous);

 private:
  CheatOptions o_;
  std::mt19937_64 rng_;
};

}  // namespace swarm::node
