#include "api/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <system_error>

namespace swarm {
namespace {

using Clock = std::chrono::steady_clock;

// Chunked bodies carry framing (sizes, CRLFs) on top of the payload.
constexpr size_t kChunkFramingSlack = 64u << 10;

int poll_ms(Clock::duration d) {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 1 << 30));
}

// Waits up to `timeout` for `events` on `fd`: > 0 ready, 0 timed out, < 0 error.
int wait_fd(int fd, short events, Clock::duration timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, poll_ms(deadline - Clock::now()));
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

std::string seconds_text(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

// "1.2.3.4" for IPv4 and IPv4-mapped IPv6 peers, "::1" for IPv6.
void peer_of(const sockaddr_storage& ss, std::string* ip, int* port) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
    ::inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
    *port = ntohs(a.sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
    if (IN6_IS_ADDR_V4MAPPED(&a.sin6_addr))
      ::inet_ntop(AF_INET, &a.sin6_addr.s6_addr[12], buf, sizeof buf);
    else
      ::inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof buf);
    *port = ntohs(a.sin6_port);
  }
  *ip = buf;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

}  // namespace

// Workers that start as connections need them (up to a maximum) and end after
// a while idle (down to `warm`). Every task runs; shutdown() waits for them.
class HttpServer::Pool {
 public:
  Pool(int warm, int max, std::chrono::seconds idle)
      : warm_(std::max(0, warm)), max_(std::max(1, max)), idle_timeout_(idle) {}
  ~Pool() { shutdown(); }

  void submit(std::function<void()> task) {
    std::list<std::thread> done;
    {
      std::lock_guard<std::mutex> lk(mu_);
      done.swap(finished_);
      tasks_.push_back(std::move(task));
      if (static_cast<int>(tasks_.size()) > idle_ && threads_ < max_) {
        auto it = workers_.emplace(workers_.end());
        try {
          *it = std::thread([this, it] { work(it); });  // it waits for mu_ before touching `it`
          ++threads_;
        } catch (const std::system_error&) {  // out of threads: a running worker takes it later
          workers_.erase(it);
          cv_.notify_one();
        }
      } else {
        cv_.notify_one();
      }
    }
    for (std::thread& t : done) t.join();
  }

  void shutdown() {
    std::list<std::thread> all;
    {
      std::unique_lock<std::mutex> lk(mu_);
      stop_ = true;
      cv_.notify_all();
      ended_.wait(lk, [&] { return threads_ == 0; });
      all.swap(finished_);
      all.splice(all.end(), workers_);
    }
    for (std::thread& t : all)
      if (t.joinable()) t.join();
  }

  int threads() const {
    std::lock_guard<std::mutex> lk(mu_);
    return threads_;
  }

 private:
  void work(std::list<std::thread>::iterator self) {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      if (!tasks_.empty()) {
        std::function<void()> task = std::move(tasks_.front());
        tasks_.pop_front();
        lk.unlock();
        task();  // tasks catch their own errors
        lk.lock();
        continue;
      }
      if (stop_) break;
      ++idle_;
      const bool woken = cv_.wait_for(lk, idle_timeout_, [&] { return stop_ || !tasks_.empty(); });
      --idle_;
      if (!woken && threads_ > warm_) break;
    }
    --threads_;
    finished_.splice(finished_.end(), workers_, self);  // joined by a later submit or shutdown
    ended_.notify_all();
  }

  const int warm_, max_;
  const std::chrono::seconds idle_timeout_;
  mutable std::mutex mu_;
  std::condition_variable cv_, ended_;
  std::deque<std::function<void()>> tasks_;
  std::list<std::thread> workers_, finished_;
  int threads_ = 0, idle_ = 0;
  bool stop_ = false;
};

// One accepted connection, owned by the worker serving it.
struct HttpServer::Connection {
  int fd = -1;
  std::string ip;
  int port = 0;
  // The request being read: its phase and that phase's deadline.
  bool in_body = false;
  Clock::time_point deadline{};
  size_t head_bytes = 0, head_lines = 0, body_bytes = 0;
  std::optional<HttpRefusal> refusal;  // the front door failed the request
  bool must_close = false;             // unread request bytes remain, or a refusal
  SSL* ssl = nullptr;                  // with TLS: the session over fd

  void begin_request(Clock::time_point d) {
    in_body = false;
    deadline = d;
    head_bytes = head_lines = body_bytes = 0;
    refusal.reset();
    must_close = false;
  }
  void fail(int status, std::string message) {
    if (!refusal) refusal = HttpRefusal{status, std::move(message)};
    must_close = true;
  }
};

namespace {
thread_local HttpServer::Connection* t_connection = nullptr;
}  // namespace

// httplib's Stream over a connection, enforcing the request's deadlines and
// size limits on every byte it hands to the parser. httplib reads the request
// line and headers a byte at a time, so the header counts are exact.
class HttpServer::DeadlineStream : public httplib::Stream {
 public:
  DeadlineStream(Connection& c, const HttpLimits& limits) : c_(c), limits_(limits) {}

  // Waits up to `timeout` for the first byte of the next request.
  bool wait_for_request(std::chrono::milliseconds timeout) {
    if (pos_ < len_ || (c_.ssl && SSL_pending(c_.ssl) > 0)) return true;
    return wait_fd(c_.fd, POLLIN, timeout) > 0;
  }

  bool is_readable() const override {
    return pos_ < len_ || (c_.ssl && SSL_pending(c_.ssl) > 0) ||
           wait_fd(c_.fd, POLLIN, std::chrono::milliseconds(0)) > 0;
  }
  bool is_writable() const override { return wait_fd(c_.fd, POLLOUT, limits_.write_timeout) > 0; }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == len_) {
      const ssize_t n = fill();
      if (n <= 0) return n;
    }
    const size_t n = std::min(size, len_ - pos_);
    const char* p = buf_ + pos_;
    if (!c_.in_body) {
      c_.head_bytes += n;
      c_.head_lines += static_cast<size_t>(std::count(p, p + n, '\n'));
      if (c_.head_bytes > limits_.max_header_bytes) {
        c_.fail(431, "The request line and headers are larger than " +
                         std::to_string(limits_.max_header_bytes) + " bytes.");
        return -1;
      }
      // The request line, the headers and the blank line after them.
      if (c_.head_lines > static_cast<size_t>(limits_.max_header_count) + 2) {
        c_.fail(431, "The request has more than " + std::to_string(limits_.max_header_count) +
                         " headers.");
        return -1;
      }
    } else {
      c_.body_bytes += n;
      if (c_.body_bytes > limits_.max_body_bytes + kChunkFramingSlack) {
        c_.fail(413, "The request body is too large: the limit is " +
                         std::to_string(limits_.max_body_bytes) + " bytes.");
        return -1;
      }
    }
    std::memcpy(ptr, p, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    const auto deadline = Clock::now() + limits_.write_timeout;
    if (c_.ssl) return tls_write(ptr, size, deadline);
    for (;;) {
      const ssize_t n = ::send(c_.fd, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero() || wait_fd(c_.fd, POLLOUT, left) <= 0) return -1;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.ip;
    port = c_.port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ip.clear();
    port = 0;
    if (::getsockname(c_.fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) peer_of(ss, &ip, &port);
  }
  socket_t socket() const override { return c_.fd; }

 private:
  // Reads what has arrived, waiting no later than the phase's deadline.
  ssize_t fill() {
    pos_ = len_ = 0;
    for (;;) {
      const auto left = c_.deadline - Clock::now();
      if (left <= Clock::duration::zero()) {
        c_.fail(408, c_.in_body ? "The request body did not arrive within " +
                                      seconds_text(limits_.body_timeout) + "."
                                : "The request line and headers did not arrive within " +
                                      seconds_text(limits_.header_timeout) + ".");
        return -1;
      }
      if (c_.ssl) {
        const ssize_t n = tls_read(left);
        if (n == -2) continue;  // nothing yet: the deadline check above ends it
        if (n > 0) len_ = static_cast<size_t>(n);
        return n;
      }
      const int r = wait_fd(c_.fd, POLLIN, left);
      if (r < 0) return -1;
      if (r == 0) continue;  // the deadline check above ends it
      const ssize_t n = ::recv(c_.fd, buf_, sizeof buf_, MSG_DONTWAIT);
      if (n > 0) {
        len_ = static_cast<size_t>(n);
        return n;
      }
      if (n == 0) return 0;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
    }
  }

  // One SSL_read within `left`: bytes into buf_, 0 at a clean close, -1 on
  // an error, -2 when nothing came in time.
  ssize_t tls_read(Clock::duration left) {
    if (SSL_pending(c_.ssl) == 0) {
      const int r = wait_fd(c_.fd, POLLIN, left);
      if (r < 0) return -1;
      if (r == 0) return -2;
    }
    const int n = SSL_read(c_.ssl, buf_, sizeof buf_);
    if (n > 0) return n;
    switch (SSL_get_error(c_.ssl, n)) {
      case SSL_ERROR_WANT_READ:
        return -2;
      case SSL_ERROR_WANT_WRITE:  // a renegotiation or key update wants to send
        return wait_fd(c_.fd, POLLOUT, left) > 0 ? -2 : -1;
      case SSL_ERROR_ZERO_RETURN:
        return 0;
      default:
        return -1;
    }
  }

  // The whole of `ptr` through TLS by `deadline` (SSL_write takes it all or
  // nothing), or -1.
  ssize_t tls_write(const char* ptr, size_t size, Clock::time_point deadline) {
    if (size == 0) return 0;
    for (;;) {
      const int n = SSL_write(c_.ssl, ptr, static_cast<int>(std::min<size_t>(size, 1 << 30)));
      if (n > 0) return n;
      const int e = SSL_get_error(c_.ssl, n);
      if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) return -1;
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero() ||
          wait_fd(c_.fd, e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, left) <= 0)
        return -1;
    }
  }

  Connection& c_;
  const HttpLimits& limits_;
  char buf_[16384];
  size_t pos_ = 0, len_ = 0;
};

HttpServer::HttpServer(HttpLimits limits,
                       std::function<std::string(int, const std::string&)> error_body,
                       std::function<void(const std::string&)> log)
    : limits_(limits),
      error_body_(std::move(error_body)),
      log_(std::move(log)),
      pool_(std::make_unique<Pool>(limits.warm_threads, limits.max_connections + 64,
                                   std::chrono::seconds(30))) {
  set_payload_max_length(limits_.max_body_bytes);
  set_keep_alive_max_count(static_cast<size_t>(std::max(1, limits_.max_requests_per_connection)));
  set_keep_alive_timeout(std::max<time_t>(1, limits_.idle_timeout.count() / 1000));
  // httplib's default adds SO_REUSEPORT, which lets a second server bind a port
  // in use and silently share its connections; a busy port must be an error.
  set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    return check_framing(req, res);
  });
}

HttpServer::~HttpServer() { stop(); }

std::optional<HttpRefusal> HttpServer::current_refusal() {
  if (t_connection == nullptr) return std::nullopt;
  return t_connection->refusal;
}

HttpServer::Stats HttpServer::stats() const {
  Stats s;
  s.threads = pool_->threads();
  std::lock_guard<std::mutex> lk(mu_);
  s.open_connections = static_cast<int>(open_fds_.size());
  s.refused = refused_;
  s.timed_out = timed_out_;
  return s;
}

Result<int> HttpServer::start(const std::string& host, int port) {
  if (acceptor_.joinable() || stopping_) return Status::InvalidArgument("the server was started");
  int bound = port;
  if (port == 0) {
    bound = bind_to_any_port(host);
    if (bound < 0) return Status::IOError("cannot listen on " + host + ": no free port");
  } else if (port < 0 || port > 65535 || !bind_to_port(host, port)) {
    return Status::IOError("cannot listen on " + host + ":" + std::to_string(port) + ": " +
                           std::strerror(errno));
  }
  listen_fd_ = svr_sock_;
  // httplib listened with a backlog of 5; Linux lets a listening socket raise it.
  if (::listen(listen_fd_, std::max(1, limits_.listen_backlog)) != 0) {
    const std::string why = std::strerror(errno);
    ::close(listen_fd_);
    listen_fd_ = -1;
    svr_sock_ = INVALID_SOCKET;
    return Status::IOError("cannot listen on " + host + ":" + std::to_string(bound) + ": " + why);
  }
  acceptor_ = std::thread([this, fd = listen_fd_] { accept_loop(fd); });
  return bound;
}

void HttpServer::stop() {
  stopping_ = true;
  // Streams in progress see the server stopping through svr_sock_ (httplib).
  svr_sock_ = INVALID_SOCKET;
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
  {
    // Connections waiting for or reading a request end at once; responses
    // being written finish.
    std::lock_guard<std::mutex> lk(mu_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RD);
  }
  pool_->shutdown();
}

void HttpServer::log_event(const std::string& kind, const std::string& line) {
  if (!log_) return;
  std::string out;
  {
    std::lock_guard<std::mutex> lk(mu_);
    LogState& s = log_state_[kind];
    const auto now = Clock::now();
    if (s.last != Clock::time_point{} && now - s.last < std::chrono::seconds(1)) {
      ++s.suppressed;
      return;
    }
    out = "HTTP: " + line;
    if (s.suppressed > 0) out += " (and " + std::to_string(s.suppressed) + " more like it)";
    s.last = now;
    s.suppressed = 0;
  }
  log_(out);
}

void HttpServer::accept_loop(int listen_fd) {
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) return;
      const int err = errno;
      if (err == EINTR || err == EAGAIN || err == ECONNABORTED || err == EPROTO) continue;
      log_event("accept", std::string("accept failed: ") + std::strerror(err));
      if (err == EBADF || err == EINVAL || err == ENOTSOCK) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // out of fds or memory
      continue;
    }
    int yes = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);  // tokens leave at once
    auto c = std::make_shared<Connection>();
    c->fd = fd;
    peer_of(ss, &c->ip, &c->port);
    int status = 0;
    std::string why;
    {
      std::lock_guard<std::mutex> lk(mu_);
      int& from_client = per_client_[c->ip];
      if (static_cast<int>(open_fds_.size()) >= limits_.max_connections) {
        status = 503;
        why = "The server has " + std::to_string(open_fds_.size()) +
              " connections open, its limit (--max-connections " +
              std::to_string(limits_.max_connections) + "). Retry later.";
      } else if (from_client >= limits_.max_connections_per_client) {
        status = 429;
        why = "Too many connections from " + c->ip + ": " + std::to_string(from_client) +
              " are open, the limit per client address (--max-connections-per-client " +
              std::to_string(limits_.max_connections_per_client) + ").";
      }
      if (status != 0) {
        if (from_client == 0) per_client_.erase(c->ip);
        ++refused_;
      } else {
        ++from_client;
        open_fds_.insert(fd);
      }
    }
    if (status != 0) {
      log_event("refused",
                "refused a connection from " + c->ip + " (" + std::to_string(status) + "): " + why);
      pool_->submit([this, fd, status, why] { refuse(fd, status, why); });
    } else {
      pool_->submit([this, c] { serve(*c); });
    }
  }
}

void HttpServer::refuse(int fd, int status, const std::string& message) {
  const std::string body = error_body_ ? error_body_(status, message) : message;
  const std::string response =
      "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body;
  char sink[4096];
  // Take in what the client has sent so far: closing a socket with unread
  // bytes resets the connection, and the client could lose the answer.
  if (wait_fd(fd, POLLIN, std::chrono::milliseconds(100)) > 0)
    while (::recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
  size_t sent = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(1);
  while (sent < response.size() && Clock::now() < deadline) {
    const ssize_t n =
        ::send(fd, response.data() + sent, response.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      wait_fd(fd, POLLOUT, std::chrono::milliseconds(50));
    } else {
      break;
    }
  }
  ::shutdown(fd, SHUT_WR);
  const auto linger = Clock::now() + std::chrono::milliseconds(200);
  while (Clock::now() < linger && wait_fd(fd, POLLIN, linger - Clock::now()) > 0)
    if (::recv(fd, sink, sizeof sink, MSG_DONTWAIT) <= 0) break;
  ::close(fd);
}

httplib::Server::HandlerResponse HttpServer::check_framing(const httplib::Request& req,
                                                           httplib::Response& res) {
  auto answer = [&](int status, const std::string& message) {
    if (t_connection != nullptr) t_connection->must_close = true;  // the body stays unread
    res.status = status;
    res.set_header("Connection", "close");
    res.set_content(error_body_ ? error_body_(status, message) : message, "application/json");
    return HandlerResponse::Handled;
  };
  const size_t lengths = req.get_header_value_count("Content-Length");
  const bool chunked = req.has_header("Transfer-Encoding");
  if (chunked && ::strcasecmp(req.get_header_value("Transfer-Encoding").c_str(), "chunked") != 0)
    return answer(400, "Transfer-Encoding: only `chunked` is supported, got `" +
                           req.get_header_value("Transfer-Encoding") + "`.");
  if (lengths > 0) {
    const std::string v = req.get_header_value("Content-Length");
    for (size_t i = 1; i < lengths; ++i)
      if (req.get_header_value("Content-Length", i) != v)
        return answer(400,
                      "Content-Length: the request gives it more than once, with different "
                      "values.");
    const bool digits = !v.empty() && std::all_of(v.begin(), v.end(),
                                                  [](char ch) { return ch >= '0' && ch <= '9'; });
    if (!digits)
      return answer(
          400, "Content-Length: must be a non-negative integer, got `" + v.substr(0, 64) + "`.");
    const size_t first = std::min(v.find_first_not_of('0'), v.size());
    if (v.size() - first > 19 || std::strtoull(v.c_str(), nullptr, 10) > limits_.max_body_bytes)
      return answer(413, "The request body is too large: Content-Length " + v.substr(0, 64) +
                             ", the limit is " + std::to_string(limits_.max_body_bytes) +
                             " bytes.");
  } else if (!chunked && (req.method == "POST" || req.method == "PUT" || req.method == "PATCH")) {
    return answer(411, "A " + req.method + " request needs a Content-Length header.");
  }
  return HandlerResponse::Unhandled;
}

bool HttpServer::tls_handshake(Connection& c) {
  c.ssl = SSL_new(tls_->get());
  if (c.ssl == nullptr) return false;
  // Non-blocking, so that the handshake (and every read) keeps the deadlines.
  const int flags = fcntl(c.fd, F_GETFL, 0);
  if (flags < 0 || fcntl(c.fd, F_SETFL, flags | O_NONBLOCK) < 0) return false;
  SSL_set_fd(c.ssl, c.fd);
  const auto deadline = Clock::now() + limits_.header_timeout;
  for (;;) {
    const int r = SSL_accept(c.ssl);
    if (r == 1) return true;
    const int e = SSL_get_error(c.ssl, r);
    const auto left = deadline - Clock::now();
    if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || left <= Clock::duration::zero() ||
        wait_fd(c.fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, left) <= 0) {
      log_event("tls", "TLS handshake with " + c.ip + ":" + std::to_string(c.port) + " failed");
      return false;
    }
  }
}

void HttpServer::serve(Connection& c) {
  t_connection = &c;
  if (tls_ && !tls_handshake(c)) {
    t_connection = nullptr;
    return finish(c);
  }
  DeadlineStream stream(c, limits_);
  try {
    for (int served = 0; !stopping_;) {
      if (!stream.wait_for_request(limits_.idle_timeout)) break;
      c.begin_request(Clock::now() + limits_.header_timeout);
      const bool last = ++served >= limits_.max_requests_per_connection;
      bool closed = false;
      const bool ok = process_request(stream, last, closed, [&](httplib::Request&) {
        c.in_body = true;
        c.deadline = Clock::now() + limits_.body_timeout;
      });
      if (c.refusal && c.refusal->status == 408) {
        {
          std::lock_guard<std::mutex> lk(mu_);
          ++timed_out_;
        }
        log_event("timeout", "closed a connection from " + c.ip + ":" + std::to_string(c.port) +
                                 " (408): " + c.refusal->message);
      } else if (c.refusal) {
        log_event("refused-request",
                  "refused a request from " + c.ip + ":" + std::to_string(c.port) + " (" +
                      std::to_string(c.refusal->status) + "): " + c.refusal->message);
      }
      if (!ok || closed || last || c.must_close) break;
    }
  } catch (...) {
    // httplib's parser and our handlers report errors as responses; nothing
    // may end the process from a worker.
  }
  t_connection = nullptr;
  finish(c);
}

void HttpServer::finish(Connection& c) {
  if (c.ssl) {
    SSL_shutdown(c.ssl);  // best effort, non-blocking: a close_notify if it fits
    SSL_free(c.ssl);
    c.ssl = nullptr;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    open_fds_.erase(c.fd);
    auto it = per_client_.find(c.ip);
    if (it != per_client_.end() && --it->second <= 0) per_client_.erase(it);
  }
  if (c.must_close) {
    // Unread request bytes would turn the close into a reset that can destroy
    // the answer before the client reads it: stop sending, drain a little.
    ::shutdown(c.fd, SHUT_WR);
    char sink[4096];
    const auto linger = Clock::now() + std::chrono::milliseconds(200);
    size_t drained = 0;
    while (drained < (256u << 10) && Clock::now() < linger &&
           wait_fd(c.fd, POLLIN, linger - Clock::now()) > 0) {
      const ssize_t n = ::recv(c.fd, sink, sizeof sink, MSG_DONTWAIT);
      if (n <= 0) break;
      drained += static_cast<size_t>(n);
    }
  }
  ::close(c.fd);
}

}  // namespace swarm
