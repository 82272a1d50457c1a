// How the gateway reaches stages, as a seam (LevelDB's Env, FoundationDB's
// simulated network): a chain session opens one owner stream per stage, writes
// requests on it and hears back responses and the stream's end; a stalled step
// probes the chain for a silent stage; the survey asks peers what they serve.
// Production uses gRPC (grpc_stage_transport.h); tests and simulations use a
// simulated chain on a simulated clock (simulated_chain.h), so the session,
// its deadlines and failover, and the speculation controller run unchanged on
// both.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/status.h"
#include "net/peer_address.h"
#include "pipeline/peer_probe.h"
#include "routing/chain.h"
#include "swarm/v1/stage.pb.h"

namespace swarm {

// What one stage's stream said, in arrival order: a response, or its end.
struct StageEvent {
  size_t stage = 0;    // the index the link was opened with
  bool ended = false;  // the stream closed; `status` says why
  Status status;
  v1::StageResponse response;
};

// One owner stream to a stage (doc/protocol.md). Not thread-safe: one session
// writes it.
class StageLink {
 public:
  virtual ~StageLink() = default;
  // Queues `req` for the stage; false when the stream is known broken (an
  // emulated link delay may report a later failure as an ended event instead).
  virtual bool write(const v1::StageRequest& req) = 0;
  // No more writes: what is queued goes out, then the half-close.
  virtual void writes_done() = 0;
  // Drops the stream at once (a dead or stalled peer must not hold us up).
  virtual void cancel() = 0;
  // Waits until the stream has ended; no event follows. After writes_done or cancel.
  virtual void finish() = 0;
};

class StageTransport {
 public:
  using EventSink = std::function<void(StageEvent)>;
  virtual ~StageTransport() = default;

  // Opens an owner stream to `stage`: its responses, and last its end, go to
  // `sink` (from any thread, in order), tagged with `index`.
  virtual std::unique_ptr<StageLink> open(const ChainStage& stage, size_t index,
                                          EventSink sink) = 0;
  // Asks every stage for Info at once, each with `timeout`: the index of the
  // first stage (in order) that did not answer in time, or -1 when all did. A
  // hung, stopped or unreachable node answers no Info; a busy one does.
  virtual int first_silent_stage(const std::vector<ChainStage>& stages,
                                 std::chrono::milliseconds timeout) = 0;
  // What each peer serves (see probe_peers in peer_probe.h).
  virtual std::vector<PeerProbe> survey(const std::vector<net::PeerAddress>& peers,
                                        const std::vector<int>& first_try,
                                        std::chrono::milliseconds timeout) = 0;
};

}  // namespace swarm
