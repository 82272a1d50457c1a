#include "net/bound_channel.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/create_channel_posix.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/peer_address.h"

namespace swarm::net {

std::shared_ptr<grpc::Channel> channel_from(const std::string& local_host, const std::string& target,
                                            const grpc::ChannelArguments& args) {
  auto hp = parse_host_port(target);
  if (!hp.ok()) return nullptr;
  addrinfo hints{}, *to = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(hp->first.c_str(), std::to_string(hp->second).c_str(), &hints, &to) != 0)
    return nullptr;
  sockaddr_storage local{};
  socklen_t local_len = 0;
  bool parsed = false;
  if (to->ai_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&local);
    a->sin_family = AF_INET;
    parsed = inet_pton(AF_INET, local_host.c_str(), &a->sin_addr) == 1;
    local_len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&local);
    a->sin6_family = AF_INET6;
    parsed = inet_pton(AF_INET6, local_host.c_str(), &a->sin6_addr) == 1;
    local_len = sizeof *a;
  }
  const int fd = parsed ? socket(to->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;
  const bool connected = fd >= 0 &&
                         bind(fd, reinterpret_cast<sockaddr*>(&local), local_len) == 0 &&
                         connect(fd, to->ai_addr, to->ai_addrlen) == 0;
  freeaddrinfo(to);
  if (!connected) {
    if (fd >= 0) close(fd);
    return nullptr;
  }
  // What gRPC does to the sockets it connects itself.
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return grpc::CreateCustomInsecureChannelFromFd(target, fd, args);
}

}  // namespace swarm::net
