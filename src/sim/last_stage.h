// The last stage of one simulated request's chain, as far as its answers go:
// it judges the request's drafts against the request's script
// (pipeline/scripted_stage.h) when it takes each step up, in the order steps
// reach it, as a real last stage does in its batch runner, so a step built on
// a rejected draft is answered CANCELLED without being computed. Shared by
// the request's transport (which tells it what was sent and cancelled, and
// turns its verdicts into answers) and the steps in flight, which may
// outlive the transport.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>

#include "pipeline/scripted_stage.h"
#include "swarm/v1/stage.pb.h"

namespace swarm::sim {

class LastStage {
 public:
  explicit LastStage(ScriptedSession::Script script) : session_(true, std::move(script)) {}

  // The gateway sent `step`, or cancelled steps from..to (their answers are
  // dropped when they come).
  void sent(const v1::Step& step) { steps_[step.step_id()].step = step; }
  void cancelled(uint64_t from, uint64_t to);

  // The last stage takes step `id` up: false when it continues a step whose
  // draft was rejected (then it is not run). Judged whether or not the
  // gateway has cancelled it meanwhile: the stage does not know yet. Judged
  // once: taking a step up again (its next chunk) gives the same answer.
  bool take_up(uint64_t id);

  // The answer to step `id` as it reaches the gateway (judged now if it was
  // never taken up); nothing for a step the gateway cancelled.
  std::optional<v1::StageResponse> answer(uint64_t id);

  // Steps sent and neither answered nor forgotten.
  size_t in_flight() const { return steps_.size(); }

 private:
  struct Sent {
    v1::Step step;
    bool cancelled = false;
    std::optional<ScriptedSession::Outcome> outcome;  // once taken up
  };
  // Steps reach the last stage in order: a cancelled one before `id` that has
  // not come by now was dropped on the way, and its answer is not wanted.
  void forget_cancelled_before(uint64_t id);

  ScriptedSession session_;
  std::map<uint64_t, Sent> steps_;  // sent and not answered, by id
};

}  // namespace swarm::sim
