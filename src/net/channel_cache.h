// gRPC channels to peers, one per address, shared by every stub that talks to
// it (a channel multiplexes all streams over one HTTP/2 connection).
//
// Every channel gets the same explicit options: message size limits
// (wire_format.h), keepalive, and for now insecure credentials (TLS pinned to
// node identities comes with the identity issue).
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace swarm::net {

// The options every channel of ours is created with.
grpc::ChannelArguments channel_arguments();

// A new channel to `address` ("host:port") with channel_arguments().
std::shared_ptr<grpc::Channel> make_channel(const std::string& address);

// Applies the same limits to a server: maximum message sizes and keepalive.
void configure_server(grpc::ServerBuilder& builder);

// Thread-safe map address -> channel. Channels reconnect by themselves after a
// failure, so an entry is never replaced.
class ChannelCache {
 public:
  ChannelCache() = default;
  ChannelCache(const ChannelCache&) = delete;
  ChannelCache& operator=(const ChannelCache&) = delete;

  std::shared_ptr<grpc::Channel> get(const std::string& address);

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;
};

}  // namespace swarm::net
