// The StageTransport (pipeline/stage_transport.h) of one request's chain in
// the simulator: the gateway's ChainSession and speculation driver, unchanged,
// talk to simulated nodes through it. A Step goes to the first node's mailbox
// as a sim Step (its hidden states' bytes over the simulated links, hop by
// hop, batched and timed by the node actors); the last stage's answer comes
// back to the request's mailbox, and the request actor takes it in while it
// waits (ActorClock's pump calls `receive`). The last stage judges drafts
// against the request's script as it takes each step up (sim/last_stage.h).
// An OpenSession is confirmed after a round trip; a Cancel travels the chain
// hop by hop, and each stage drops the steps it covers once it arrives.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "pipeline/scripted_stage.h"
#include "pipeline/stage_transport.h"
#include "sim/actor_clock.h"
#include "sim/last_stage.h"
#include "sim/messages.h"

namespace swarm::sim {

struct World;

class SimTransport final : public StageTransport {
 public:
  // The next message for the request, waiting until `until` (simulated
  // seconds; kForever: no limit); nullptr when none came by then.
  using Receive = std::function<Step*(double until)>;
  static constexpr double kForever = 1e300;
  // `chain`: the attempt's hops, reply mailbox and session; `region`: the
  // gateway's. Sets `clock`'s pump; both must outlive the sessions on it.
  SimTransport(World& w, std::shared_ptr<const Chain> chain, int region, ActorClock& clock,
               Receive receive, ScriptedSession::Script script);
  ~SimTransport() override;

  std::unique_ptr<StageLink> open(const ChainStage& stage, size_t index, EventSink sink) override;
  int first_silent_stage(const std::vector<ChainStage>& stages,
                         std::chrono::milliseconds timeout) override;
  std::vector<PeerProbe> survey(const std::vector<net::PeerAddress>& peers,
                                const std::vector<int>& first_try,
                                std::chrono::milliseconds timeout) override;

 private:
  class Link;
  bool write(size_t index, const v1::StageRequest& req);
  // Receives what comes for this request until `deadline` or one delivery.
  void pump(Clock::time_point deadline);
  void deliver(StageEvent e);
  bool alive(size_t index) const;
  double rtt(size_t index) const;

  World& w_;
  std::shared_ptr<const Chain> chain_;
  const int region_;
  ActorClock& clock_;
  Receive receive_;
  std::map<size_t, EventSink> sinks_;
  // Confirmations and failures not carried by a message: (due, event).
  std::multimap<double, StageEvent> local_;
  std::shared_ptr<LastStage> last_stage_;
};

}  // namespace swarm::sim
