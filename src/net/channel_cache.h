// gRPC channels to peers, one per (address, pin), shared by every stub that
// talks to it (a channel multiplexes all streams over one HTTP/2 connection).
//
// Every channel gets the same explicit options: message size limits
// (wire_format.h) and keepalive. A channel with a pin speaks TLS and accepts the
// server only if its certificate's key satisfies the pin (net/tls.h), and
// presents a client certificate (the caller's identity) so the node knows who
// calls; one without speaks plaintext, as to a node started without --identity.
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace swarm::net {

struct ClientCertificate;  // net/tls.h

// The options every channel of ours is created with.
grpc::ChannelArguments channel_arguments();

// A new channel to `address` ("host:port") with channel_arguments(). `pin` is
// empty (plaintext) or a KeyPin's hex (TLS pinned to that key or node id); a
// pin that does not parse gives a channel that refuses every server, never a
// plaintext one. A TLS channel presents `client`, or without one the process's
// default_client_certificate() (net/tls.h).
std::shared_ptr<grpc::Channel> make_channel(
    const std::string& address, const std::string& pin = "",
    std::shared_ptr<const ClientCertificate> client = nullptr);

// Applies the same limits to a server: maximum message sizes and keepalive; and
// refuses a port another process already listens on (no SO_REUSEPORT sharing).
void configure_server(grpc::ServerBuilder& builder);

// Thread-safe map (address, pin) -> channel. Channels reconnect by themselves
// after a failure, so an entry is replaced only on request (renew). The pin is part of the key:
// a peer reached both pinned and unpinned, or pinned to two keys (one of them
// stale), gets a connection per pin and no answer crosses over.
class ChannelCache {
 public:
  ChannelCache() = default;
  ChannelCache(const ChannelCache&) = delete;
  ChannelCache& operator=(const ChannelCache&) = delete;

  // The certificate TLS channels made from now on present (a node's own
  // identity, for its pushes); until set, the process default. Call it before
  // the first get(): channels already made keep what they were made with.
  void set_client_certificate(std::shared_ptr<const ClientCertificate> client);

  std::shared_ptr<grpc::Channel> get(const std::string& address, const std::string& pin = "");
  // Replaces the entry with a new channel that connects afresh, on a connection
  // of its own: no reconnect backoff carries over from the old one, which
  // callers holding it keep. For a peer that failed to connect and may be up
  // now (a gateway asking a node that has just started).
  std::shared_ptr<grpc::Channel> renew(const std::string& address, const std::string& pin = "");

 private:
  std::mutex mu_;
  std::shared_ptr<const ClientCertificate> client_;  // null: the process default
  std::map<std::pair<std::string, std::string>, std::shared_ptr<grpc::Channel>> channels_;
};

}  // namespace swarm::net
