// Speculative decoding across a chain (doc/speculation.md): drafts from a
// Drafter travel in runs of `width` tokens, several runs in flight at once
// (pipelined, in the spirit of PipeInfer); the last stage verifies each run
// (Step.n_drafts) and rolls its cache back on a rejection; the gateway then
// cancels the runs that built on the rejected draft (Cancel) and sends an
// anchor run from the corrected token, which rolls every other stage back
// (Step.rewind) and which stages serve before speculative continuations.
// The speculation controller (spec_controller.h) sets the width, the runs in
// flight and the drafts worth sending from measured stage times, link delays
// and acceptance, and falls back to plain one-token runs when speculation does
// not pay.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pipeline/chain_session.h"
#include "pipeline/drafter.h"
#include "pipeline/generation.h"
#include "pipeline/spec_controller.h"
#include "pipeline/speculation_options.h"
#include "pipeline/stage_time_model.h"

namespace swarm {

// What the controller has learned, shared by a backend's requests (the chain's
// stage times, acceptance and goodput outlive one request).
class SpeculationMemory {
 public:
  // `clock`: the one the sessions that share this memory wait on.
  explicit SpeculationMemory(Clock& clock = Clock::real()) : origin_(clock.now()) {}
  // The zero of the controller's clock (SpecState.probe_at_s and the goodput
  // windows' now_s): the memory's, not a request's, so a back-off set during
  // one request is counted in the same seconds by the next.
  Clock::time_point origin() const { return origin_; }
  struct Snapshot {
    SpecState state;
    StageTimeModel times;
    double link_delay_s = -1;  // one-way, per hop; < 0: not measured yet
  };
  Snapshot get() {
    std::lock_guard<std::mutex> lock(mu_);
    return snap_;
  }
  void put(Snapshot s) {
    std::lock_guard<std::mutex> lock(mu_);
    snap_ = std::move(s);
  }

 private:
  const Clock::time_point origin_;
  std::mutex mu_;
  Snapshot snap_;
};

// Decodes after the prompt step. `fed`: the tokens the chain's caches hold;
// `anchor`: the last generated token (already emitted, not yet fed).
// `emit(token)` returns false to stop (end of generation, a stop string, the
// budget); `remaining()` says how many tokens may still be emitted. Returns
// Ok when emit stopped it; on a failure, the failure, with `fed` and `anchor`
// left describing what a replay on a new chain must rebuild (fed + anchor).
Status decode_speculatively(ChainSession& session, Drafter& drafter,
                            const SpeculationOptions& options, SpeculationMemory& memory,
                            std::vector<int32_t>& fed, int32_t& anchor,
                            const std::function<bool(int32_t)>& emit,
                            const std::function<int()>& remaining, SpeculationReport& stats);

}  // namespace swarm
