// The production StageTransport (stage_transport.h): gRPC owner streams, one
// reader thread per stream, Info calls for probes and surveys, over cached
// channels (TLS pinned to a stage's key where it has one).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "pipeline/stage_transport.h"

namespace swarm {

// A cached channel to a stage; `pin`: empty (plaintext) or the hex key or
// node id the peer must present.
std::shared_ptr<grpc::Channel> stage_channel(const std::string& address, const std::string& pin);
// Replaces the cached channel with one that connects afresh (see
// net::ChannelCache::renew) and returns it.
std::shared_ptr<grpc::Channel> renew_stage_channel(const std::string& address,
                                                   const std::string& pin);

class GrpcStageTransport final : public StageTransport {
 public:
  // `link_delay` > 0 emulates a WAN link (benchmarks): every message but a
  // Close leaves that long after it was written, in order, so runs in flight
  // overlap on the link as they would on a real one.
  explicit GrpcStageTransport(std::chrono::milliseconds link_delay = {})
      : link_delay_(link_delay) {}

  std::unique_ptr<StageLink> open(const ChainStage& stage, size_t index, EventSink sink) override;
  int first_silent_stage(const std::vector<ChainStage>& stages,
                         std::chrono::milliseconds timeout) override;
  std::vector<PeerProbe> survey(const std::vector<net::PeerAddress>& peers,
                                const std::vector<int>& first_try,
                                std::chrono::milliseconds timeout) override;

 private:
  const std::chrono::milliseconds link_delay_;
};

}  // namespace swarm
