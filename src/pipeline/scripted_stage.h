// What a stage keeps for one session, and what its steps yield, when the
// model is a script: a greedy model whose token at position x is script(x).
// The cache length moves as a real stage's does (Step.rewind, the position
// check, the rollback after a rejected draft), and the last stage judges
// drafts as doc/protocol.md "Verifying drafts" says: in order, the first wrong
// one ends the judging, and a `continues_previous` step built on a rejected
// one is cancelled. Simulated stages (simulated_chain.h) and the simulator's
// last stages (src/sim) answer with it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "swarm/v1/stage.pb.h"

namespace swarm {

class ScriptedSession {
 public:
  using Script = std::function<int32_t(int64_t position)>;
  ScriptedSession(bool is_last, Script script) : is_last_(is_last), script_(std::move(script)) {}

  struct Outcome {
    enum class Kind { kRan, kCancelled, kBadPosition } kind = Kind::kRan;
    std::vector<int32_t> tokens;  // the last stage's: accepted drafts and the token after
    int accepted = 0;             // drafts accepted (a step with drafts)
    std::string error;            // kBadPosition: why
  };
  // Runs `step` (a Step's position, tokens, n_drafts, rewind,
  // continues_previous and sample_all are read).
  Outcome run(const v1::Step& step);
  int64_t length() const { return cache_; }

  // What the stage answers for `step` that ran with outcome `o`, as a real one
  // does: a StepResult (the last stage's tokens, accepted drafts, the cache's
  // length now; no timings), a CANCELLED error, or a FAILED_PRECONDITION naming
  // the position.
  v1::StageResponse response(const v1::Step& step, const Outcome& o) const;
  // The answer to a step dropped by a Cancel, or built on a rejected draft.
  static v1::StageResponse cancelled(const std::string& session_id, uint64_t step_id);

 private:
  const bool is_last_;
  Script script_;
  int64_t cache_ = 0;
  int64_t last_row_at_ = -1;  // last stage: the position its kept row predicts
};

}  // namespace swarm
