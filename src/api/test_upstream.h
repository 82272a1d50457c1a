// For the HTTP tests of what calls an upstream (api/upstream_call.h,
// api/skill_proxy.h): a hand-made upstream on 127.0.0.1 whose handlers can
// hold an answer at a Gate until the test opens it, so that "in flight" is a
// state the test waits for instead of a timing it hopes for.
#pragma once

#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace swarm::testing {

// Handlers wait() here until the test open()s it; the test can wait for them
// to have arrived.
class Gate {
 public:
  void wait() {
    std::unique_lock<std::mutex> lk(mu_);
    ++arrived_;
    cv_.notify_all();
    cv_.wait(lk, [&] { return opened_; });
  }
  void open() {
    std::lock_guard<std::mutex> lk(mu_);
    opened_ = true;
    cv_.notify_all();
  }
  // True once `n` handlers have reached wait() (false after a minute).
  bool wait_arrived(int n) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_for(lk, std::chrono::minutes(1), [&] { return arrived_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  bool opened_ = false;
};

class TestUpstream {
 public:
  // `routes` installs the handlers; they may use gate().
  explicit TestUpstream(const std::function<void(httplib::Server&, Gate&)>& routes) {
    routes(server_, gate_);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::yield();
  }
  ~TestUpstream() {
    gate_.open();  // handlers still held must end for the server to stop
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  Gate& gate() { return gate_; }

 private:
  httplib::Server server_;
  Gate gate_;
  int port_ = 0;
  std::thread thread_;
};

// A port on 127.0.0.1 that refuses connections while this lives: bound, never
// listened on.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~RefusingPort() { ::close(fd_); }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace swarm::testing
