#include "net/connection_acceptor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/server_posix.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>

#include "net/caller.h"

namespace swarm::net {
namespace {

// Room for a burst of connections arriving together (gRPC's own listener asks
// for the system's maximum too): a short backlog drops them in the kernel.
constexpr int kBacklog = SOMAXCONN;

std::string errno_text(int e) { return std::strerror(e); }

// "ipv4:1.2.3.4:5" or "ipv6:[::1]:5", as gRPC names peers.
std::string grpc_peer_name(const sockaddr_storage& a) {
  char host[INET6_ADDRSTRLEN] = "";
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
    return "ipv4:" + std::string(host) + ":" + std::to_string(ntohs(v4->sin_port));
  }
  const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
  inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
  return "ipv6:[" + std::string(host) + "]:" + std::to_string(ntohs(v6->sin6_port));
}

// One HTTP/2 frame (RFC 9113, section 4.1) on stream 0.
std::string frame(uint8_t type, const std::string& payload) {
  std::string f(9, '\0');
  const uint32_t n = static_cast<uint32_t>(payload.size());
  f[0] = static_cast<char>(n >> 16), f[1] = static_cast<char>(n >> 8), f[2] = static_cast<char>(n);
  f[3] = static_cast<char>(type);
  return f + payload;
}

}  // namespace

Result<std::unique_ptr<ConnectionAcceptor>> ConnectionAcceptor::Listen(const std::string& listen,
                                                                        ConnectionLimits limits,
                                                                        Clock& clock) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size())
    return Status::InvalidArgument("listen address " + listen + " is not HOST:PORT");
  std::string host = listen.substr(0, colon), port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found))
    return Status::InvalidArgument("listen address " + listen + ": " + gai_strerror(rc));
  std::vector<int> fds;
  int bound_port = 0;
  Status failed = Status::Ok();
  for (addrinfo* ai = found; ai; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) continue;
    const int one = 1, zero = 0;
    // SO_REUSEADDR only lets a restarted node bind while old connections
    // linger in TIME_WAIT; a port a live socket listens on stays refused.
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    sockaddr_storage addr{};
    std::memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    if (bound_port != 0) {  // port 0: every address gets the port the first one got
      if (addr.ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(bound_port);
      else reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(bound_port);
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), ai->ai_addrlen) != 0 || ::listen(fd, kBacklog) != 0) {
      const int e = errno;
      close(fd);
      if (e == EADDRINUSE) {
        for (int f : fds) close(f);
        freeaddrinfo(found);
        return Status::IOError("cannot listen on " + listen + ": " + errno_text(e) +
                               " (is another process listening there?)");
      }
      failed = Status::IOError("cannot listen on " + listen + ": " + errno_text(e));
      continue;
    }
    sockaddr_storage got{};
    socklen_t len = sizeof got;
    getsockname(fd, reinterpret_cast<sockaddr*>(&got), &len);
    bound_port = ntohs(got.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&got)->sin_port
                                                : reinterpret_cast<sockaddr_in6*>(&got)->sin6_port);
    fds.push_back(fd);
  }
  freeaddrinfo(found);
  if (fds.empty())
    return failed.ok() ? Status::IOError("cannot listen on " + listen + ": no usable address") : failed;
  return std::unique_ptr<ConnectionAcceptor>(new ConnectionAcceptor(std::move(fds), bound_port, limits, clock));
}

ConnectionAcceptor::ConnectionAcceptor(std::vector<int> fds, int port, ConnectionLimits limits,
                                       Clock& clock)
    : listen_fds_(std::move(fds)),
      port_(port),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      limiter_(limits),
      clock_(clock) {}

ConnectionAcceptor::~ConnectionAcceptor() {
  stop();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void ConnectionAcceptor::start(grpc::Server* server) {
  thread_ = std::thread([this, server] { accept_loop(server); });
}

void ConnectionAcceptor::stop() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = write(wake_fd_, &one, sizeof one);
    thread_.join();
  }
  for (int fd : listen_fds_) close(fd);
  listen_fds_.clear();
}

void ConnectionAcceptor::accept_loop(grpc::Server* server) {
  std::vector<pollfd> polled;
  for (int fd : listen_fds_) polled.push_back({fd, POLLIN, 0});
  polled.push_back({wake_fd_, POLLIN, 0});
  for (;;) {
    for (auto& p : polled) p.revents = 0;
    if (poll(polled.data(), polled.size(), -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("accepting connections stopped: poll: {}", errno_text(errno));
      return;
    }
    if (polled.back().revents) return;
    // No exception leaves this thread: a failure (out of memory, say) costs
    // the connection being accepted, not the node's listener.
    try {
      for (size_t i = 0; i + 1 < polled.size(); ++i)
        if (polled[i].revents) accept_from(polled[i].fd, server);
    } catch (const std::exception& e) {
      spdlog::error("accepting a connection: {}", e.what());
    }
  }
}

void ConnectionAcceptor::accept_from(int listen_fd, grpc::Server* server) {
  for (;;) {
    sockaddr_storage from{};
    socklen_t len = sizeof from;
    const int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&from), &len,
                           SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      const int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED) return;
      // Out of descriptors: the connection waits in the backlog; try again
      // after a breath instead of spinning on it.
      spdlog::warn("accept: {}", errno_text(e));
      poll(nullptr, 0, 100);
      return;
    }
    const std::string peer = grpc_peer_name(from);
    const std::string host = peer_host(peer);
    const Clock::time_point now = clock_.now();
    if (!limiter_.admit(host, now)) {
      ++refused_;
      const std::string why = limiter_.refusal(host);
      auto& logged = last_logged_[ConnectionLimiter::bucket_of(host)];
      if (last_logged_.size() > limiter_.limits().max_addresses) last_logged_.clear();
      if (logged == Clock::time_point{} || now - logged >= std::chrono::minutes(1)) {
        spdlog::warn("refusing connections: {} ({} refused so far)", why, refused_);
        logged = now;
      }
      refuse(fd, why);
      continue;
    }
    // What gRPC's own listener does to every connection it accepts.
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    {
      std::lock_guard<std::mutex> lock(peers_mu_);
      peer_by_fd_[fd] = peer;
    }
    grpc::AddInsecureChannelFromFd(server, fd);
  }
}

void ConnectionAcceptor::refuse(int fd, const std::string& why) {
  // The server's preface (an empty SETTINGS frame), then GOAWAY with
  // ENHANCE_YOUR_CALM and the reason as debug data; both fit a fresh
  // socket's buffer, so the non-blocking send does not come up short.
  std::string payload(8, '\0');
  payload[7] = 0x0b;  // last stream 0; error ENHANCE_YOUR_CALM
  const std::string bytes = frame(0x4, "") + frame(0x7, payload + why);
  [[maybe_unused]] const ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  // Read what the caller already sent: closing with unread bytes resets the
  // connection, and the caller would see a reset instead of the reason.
  char sink[1024];
  while (recv(fd, sink, sizeof sink, 0) > 0) {
  }
  shutdown(fd, SHUT_WR);
  close(fd);
}

std::string ConnectionAcceptor::peer_of(std::string_view grpc_peer) const {
  if (!grpc_peer.starts_with("fd:")) return std::string(grpc_peer);
  const int fd = std::atoi(std::string(grpc_peer.substr(3)).c_str());
  std::lock_guard<std::mutex> lock(peers_mu_);
  auto it = peer_by_fd_.find(fd);
  return it == peer_by_fd_.end() ? std::string(grpc_peer) : it->second;
}

}  // namespace swarm::net
