// A plaintext channel whose connection comes from a chosen local address:
// tests and the soak's attackers stand in for a remote caller by connecting
// from 127.0.0.2 (gRPC 1.51 has no option for a client's local address, so
// the socket is made, bound and connected here and handed to gRPC).
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

namespace swarm::net {

// A channel over one new connection from `local_host` (an IP address) to
// `target` (HOST:PORT); null when binding or connecting fails. Such a channel
// does not reconnect: once its connection ends, its calls fail.
std::shared_ptr<grpc::Channel> channel_from(const std::string& local_host, const std::string& target,
                                            const grpc::ChannelArguments& args = {});

}  // namespace swarm::net
