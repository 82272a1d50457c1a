// Simulated stages behind the StageTransport seam (stage_transport.h), on a
// SimulatedClock: what the gateway's chain session, its deadlines and
// failover, and the speculation controller are tested on, with no process,
// socket or wall-clock wait, and the same run every time.
//
// Each stage serves its layer range for any number of sessions, one step at a
// time, steps without `continues_previous` first (doc/protocol.md); a step
// takes base + per_token x tokens of simulated time, and every message between
// the gateway and a stage, or from stage to stage, takes `link`. The stages
// keep each session as scripted_stage.h does: the last stage is a greedy model
// whose token at position x is script[x] (past the end: the script's last
// token), and judges drafts as doc/protocol.md "Verifying drafts" says, so
// accepted counts, cancellations and rollbacks follow the protocol exactly.
//
// Faults: stop() freezes a stage as SIGSTOP does (nothing it holds moves, Info
// goes unanswered) until resume(); kill() ends its streams (kill -9); cut()
// parts two stages; set_step_time() slows one.
//
// Driven by the clock's one thread (surveys may come from others); the chain
// must outlive its links and the work it scheduled on the clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "engine/clock.h"
#include "pipeline/scripted_stage.h"
#include "pipeline/stage_transport.h"

namespace swarm {

struct SimulatedStageSpec {
  // A stage at `address` serving layers [first, last).
  static ChainStage at(const std::string& address, int first, int last) {
    ChainStage c;
    c.address = address;
    c.first_layer = first;
    c.last_layer = last;
    return c;
  }
  ChainStage stage;  // address and layers
  std::chrono::microseconds base{1000};
  std::chrono::microseconds per_token{0};
};

class SimulatedChain final : public StageTransport {
 public:
  // `n_layer`: the model's (0: the largest last_layer of `stages`).
  SimulatedChain(SimulatedClock& clock, std::vector<SimulatedStageSpec> stages,
                 std::chrono::microseconds link, std::vector<int32_t> script,
                 std::string model_id = "simulated-model", int n_layer = 0);
  ~SimulatedChain() override;
  SimulatedChain(const SimulatedChain&) = delete;
  SimulatedChain& operator=(const SimulatedChain&) = delete;

  std::unique_ptr<StageLink> open(const ChainStage& stage, size_t index, EventSink sink) override;
  // Time passes as it would: a round trip where every stage answers, the
  // whole timeout where one does not. Only from the clock's thread.
  int first_silent_stage(const std::vector<ChainStage>& stages,
                         std::chrono::milliseconds timeout) override;
  // Takes no simulated time (a survey runs beside the requests), so any
  // thread may call it.
  std::vector<PeerProbe> survey(const std::vector<net::PeerAddress>& peers,
                                const std::vector<int>& first_try,
                                std::chrono::milliseconds timeout) override;

  // A stage's step time from now on (a node slowed by other work).
  void set_step_time(const std::string& address, std::chrono::microseconds base,
                     std::chrono::microseconds per_token);
  // Stage `from` can no longer push to stage `to` (a partition between two
  // nodes that both still reach the gateway).
  void cut(const std::string& from, const std::string& to);
  void stop(const std::string& address);
  void resume(const std::string& address);
  void kill(const std::string& address);

  // Counts, per stage: steps run, and steps dropped by a Cancel.
  int64_t steps_run(const std::string& address) const;
  int64_t steps_cancelled(const std::string& address) const;

  struct Stage;  // simulated_chain.cc
  class Link;

 private:
  friend class Link;
  struct Work;
  Stage* find(const std::string& address) const;
  // Messages from the gateway, from an upstream stage, and to the gateway.
  void arrive(Stage& s, int from_link, const v1::StageRequest& req);
  void arrive_step(Stage& s, Work w);
  void arrive_cancel(Stage& s, const v1::Cancel& c);
  void try_start(Stage& s);
  void finish(Stage& s, Work w);
  void answer(int link, v1::StageResponse r);
  void answer_error(int link, const std::string& session, uint64_t step, int code,
                    const std::string& message);
  int32_t script_at(int64_t position) const;

  mutable std::recursive_mutex mu_;  // the work the clock runs, and other threads' surveys
  SimulatedClock& clock_;
  const std::chrono::microseconds link_;
  const std::vector<int32_t> script_;
  const std::string model_id_;
  int n_layer_ = 0;
  std::vector<std::unique_ptr<Stage>> stages_;
  std::set<std::pair<std::string, std::string>> cut_;
  struct LinkState {
    Stage* stage = nullptr;
    size_t index = 0;
    EventSink sink;
    bool open = true;
  };
  std::map<int, LinkState> links_;
  int next_link_ = 0;
};

}  // namespace swarm
