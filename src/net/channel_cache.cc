#include "net/channel_cache.h"

#include "net/tls.h"
#include "net/wire_format.h"

namespace swarm::net {

grpc::ChannelArguments channel_arguments() {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Reconnect soon after a peer restarts instead of backing off for minutes.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5'000);
  return args;
}

namespace {

std::shared_ptr<grpc::Channel> make_channel_with(const std::string& address,
                                                 const std::string& pin,
                                                 grpc::ChannelArguments args,
                                                 std::shared_ptr<const ClientCertificate> client) {
  if (pin.empty())
    return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  auto parsed = KeyPin::Parse(pin);
  // Fail closed: an all-zero node id matches no key anybody can present.
  const KeyPin checked = parsed.ok() ? *parsed : *KeyPin::Parse(std::string(2 * kNodeIdBytes, '0'));
  args.SetSslTargetNameOverride(pinned_node_id(checked));
  if (!client) client = default_client_certificate();
  return grpc::CreateCustomChannel(address, pinned_channel_credentials(checked, address, client),
                                   args);
}

}  // namespace

std::shared_ptr<grpc::Channel> make_channel(const std::string& address, const std::string& pin,
                                            std::shared_ptr<const ClientCertificate> client) {
  return make_channel_with(address, pin, channel_arguments(), std::move(client));
}

void configure_server(grpc::ServerBuilder& builder) {
  // gRPC sets SO_REUSEPORT by default: a second server on a busy port would
  // bind it too and silently share its connections. A busy port is an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Clients ping every kKeepaliveTimeMs; accept pings that often.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             kKeepaliveTimeMs / 2);
}

std::shared_ptr<grpc::Channel> ChannelCache::get(const std::string& address,
                                                 const std::string& pin) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& ch = channels_[{address, pin}];
  if (!ch) ch = make_channel(address, pin, client_);
  return ch;
}

std::shared_ptr<grpc::Channel> ChannelCache::renew(const std::string& address,
                                                   const std::string& pin) {
  grpc::ChannelArguments args = channel_arguments();
  // Channels with equal arguments share connections process-wide (gRPC's
  // global subchannel pool), and with them the old one's backoff: this one
  // gets its own.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::shared_ptr<const ClientCertificate> client;
  {
    std::lock_guard<std::mutex> lock(mu_);
    client = client_;
  }
  std::shared_ptr<grpc::Channel> fresh =
      make_channel_with(address, pin, std::move(args), std::move(client));
  std::lock_guard<std::mutex> lock(mu_);
  channels_[{address, pin}] = fresh;
  return fresh;
}

void ChannelCache::set_client_certificate(std::shared_ptr<const ClientCertificate> client) {
  std::lock_guard<std::mutex> lock(mu_);
  client_ = std::move(client);
}

}  // namespace swarm::net
