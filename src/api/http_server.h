// The HTTP front door the OpenAI API stands behind: cpp-httplib parses requests
// and routes them, this class owns everything a hostile or bursty client could
// use against the process (doc/http-api.md, "Connections and limits"):
//
// - its own accept loop on a socket listening with a backlog sized for bursts
//   (httplib's listen() uses 5, which a 64-client burst overflows);
// - connection caps: in all and per client address. A connection over a cap is
//   answered at once (503 in all, 429 per address, the body from the error
//   formatter) and closed, and the refusal is logged;
// - deadlines on the whole request line and headers (from their first byte) and
//   on the whole body (from the end of the headers), not per recv(): a client
//   trickling a byte a second is cut off at the deadline with a 408;
// - header limits (count and bytes: 431), body limits (Content-Length checked
//   before anything is read: a malformed or negative one is a 400, one over the
//   limit a 413; a chunked body is counted as it arrives);
// - a worker pool that grows with the connections (up to the total cap) and
//   shrinks when idle, so connections stuck in their deadlines cannot starve
//   the others.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "api/http_tls.h"
#include "engine/status.h"

namespace swarm {

struct HttpLimits {
  // The request line and headers must arrive within this of their first byte.
  std::chrono::milliseconds header_timeout{10000};
  // The body must arrive within this of the end of the headers.
  std::chrono::milliseconds body_timeout{60000};
  // A kept-alive (or new) connection with no request within this is closed.
  std::chrono::milliseconds idle_timeout{5000};
  // One write blocked (the client does not read) this long fails the response.
  std::chrono::milliseconds write_timeout{10000};
  int max_connections = 1024;            // open at once, in all
  int max_connections_per_client = 128;  // open at once from one IP address
  int max_header_count = 100;            // header lines per request
  size_t max_header_bytes = 64u << 10;   // request line and headers
  size_t max_body_bytes = 16u << 20;
  int listen_backlog = 1024;
  int warm_threads = 32;  // workers kept when idle; more start as connections need them
  int max_requests_per_connection = 1000;
};

// What the front door refused a request for before any route saw it; error
// handlers use it to answer with the right status and message.
struct HttpRefusal {
  int status = 0;
  std::string message;
};

class HttpServer : public httplib::Server {
 public:
  // `error_body(status, message)`: the body (JSON) for the front door's own
  // answers. `log`: one line per refusal or cut-off connection, at most one a
  // second per kind (the others are counted in the next line); may be empty.
  HttpServer(HttpLimits limits, std::function<std::string(int, const std::string&)> error_body,
             std::function<void(const std::string&)> log);
  ~HttpServer() override;  // stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Serve HTTPS with this context (api/http_tls.h); before start(). Each
  // connection's handshake must end within the header deadline.
  void set_tls(std::shared_ptr<TlsServerContext> tls) { tls_ = std::move(tls); }

  // Binds host:port (port 0: a free one), listens and accepts on a background
  // thread. Returns the bound port, or IOError.
  Result<int> start(const std::string& host, int port);
  // Stops accepting, ends idle and reading connections at once, lets responses
  // in progress end (their handlers see the server stopping) and joins every
  // thread.
  void stop();
  bool stopping() const { return stopping_.load(); }

  // During an error handler: why the front door failed the request being
  // answered on this thread (a deadline, a header limit, a body limit), if it
  // did.
  static std::optional<HttpRefusal> current_refusal();

  struct Stats {
    int open_connections = 0;
    int threads = 0;
    int64_t refused = 0;    // over a connection cap
    int64_t timed_out = 0;  // cut off by a header or body deadline
  };
  Stats stats() const;

  struct Connection;  // one accepted connection; defined in the .cc

 private:
  class Pool;
  class DeadlineStream;

  void accept_loop(int listen_fd);
  void serve(Connection& c);
  bool tls_handshake(Connection& c);
  void refuse(int fd, int status, const std::string& message);
  void finish(Connection& c);
  // At most one line a second per `kind`.
  void log_event(const std::string& kind, const std::string& line);
  httplib::Server::HandlerResponse check_framing(const httplib::Request& req,
                                                 httplib::Response& res);

  const HttpLimits limits_;
  std::shared_ptr<TlsServerContext> tls_;
  const std::function<std::string(int, const std::string&)> error_body_;
  const std::function<void(const std::string&)> log_;
  std::unique_ptr<Pool> pool_;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  int listen_fd_ = -1;

  mutable std::mutex mu_;  // guards what follows
  std::set<int> open_fds_;
  std::map<std::string, int> per_client_;
  int64_t refused_ = 0, timed_out_ = 0;
  struct LogState {
    std::chrono::steady_clock::time_point last{};
    int64_t suppressed = 0;
  };
  std::map<std::string, LogState> log_state_;
};

}  // namespace swarm
