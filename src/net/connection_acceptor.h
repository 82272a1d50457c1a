// A plaintext gRPC server's listening socket, accepted by us instead of gRPC,
// so that a connection over ConnectionLimiter's limits is closed at once,
// before gRPC spends anything on it (net/connection_limiter.h says why).
// Admitted connections go to the server with grpc::AddInsecureChannelFromFd.
//
// gRPC 1.51 takes only plaintext connections this way, so a node with an
// identity (mutual TLS) keeps gRPC's own listener; doc/protocol.md says how to
// limit connections in front of one.
#pragma once

#include <grpcpp/server.h>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/clock.h"
#include "engine/status.h"
#include "net/connection_limiter.h"

namespace swarm::net {

class ConnectionAcceptor {
 public:
  // Listens on `listen` (HOST:PORT, "[V6]:PORT"; port 0 picks a free one, the
  // same for every address HOST names). A port another socket holds is an
  // error: no SO_REUSEPORT, so two nodes never share one by accident.
  static Result<std::unique_ptr<ConnectionAcceptor>> Listen(const std::string& listen,
                                                             ConnectionLimits limits,
                                                             Clock& clock);
  ~ConnectionAcceptor();
  ConnectionAcceptor(const ConnectionAcceptor&) = delete;
  ConnectionAcceptor& operator=(const ConnectionAcceptor&) = delete;

  int port() const { return port_; }

  // Starts accepting on a thread of its own, handing admitted connections to
  // `server`, which must be started and outlive stop().
  void start(grpc::Server* server);
  // Stops accepting and closes the listening sockets; connections already
  // handed over stay the server's. Idempotent.
  void stop();

  // The peer gRPC should have named: a connection handed over by fd is
  // "fd:N" to gRPC, so its calls' peer() is mapped back to the address it was
  // accepted from ("ipv4:H:P", "ipv6:[H]:P"). Any other string comes back as is.
  std::string peer_of(std::string_view grpc_peer) const;

 private:
  ConnectionAcceptor(std::vector<int> fds, int port, ConnectionLimits limits, Clock& clock);
  void accept_loop(grpc::Server* server);
  // Accepts what one listening socket has waiting.
  void accept_from(int listen_fd, grpc::Server* server);
  // Tells a refused caller why, as an HTTP/2 GOAWAY its gRPC library reports,
  // and closes the connection.
  void refuse(int fd, const std::string& why);

  std::vector<int> listen_fds_;
  int port_ = 0;
  int wake_fd_ = -1;  // an eventfd that stop() signals
  ConnectionLimiter limiter_;
  Clock& clock_;
  std::thread thread_;
  long refused_ = 0;  // for the log; only the accept thread touches it
  // Refusals logged per address, at most one line a minute each.
  std::unordered_map<std::string, Clock::time_point> last_logged_;
  mutable std::mutex peers_mu_;
  std::unordered_map<int, std::string> peer_by_fd_;
};

}  // namespace swarm::net
