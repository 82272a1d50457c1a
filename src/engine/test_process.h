// Test-only: a `swarm` subcommand run as a real child process (a node, a
// gateway, a server) that prints "listening on HOST:PORT" once it serves. Tests
// wait on that line and on conditions, never on sleeps; the child is killed when
// the object goes away.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace swarm::testing {

// Polls `cond` until it holds or `limit` passes; the final answer is cond()'s.
inline bool eventually(const std::function<bool()>& cond,
                       std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

struct CmdResult {
  int code;
  std::string out;  // stdout and stderr together
};

// Runs `SWARM_BINARY_DIR/swarm ARGS` through the shell and waits for it.
inline CmdResult run_swarm(const std::string& args) {
  const std::string cmd = std::string(SWARM_BINARY_DIR) + "/swarm " + args + " 2>&1";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  CmdResult r{-1, ""};
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// `s` as one shell word.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

class ChildProcess {
 public:
  // Runs SWARM_BINARY_DIR/swarm with `args` (stdout to a pipe we read, stderr
  // inherited or to `stderr_path`) and waits up to `limit` for "listening on".
  explicit ChildProcess(std::vector<std::string> args, const std::string& stderr_path = "",
                        std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    args.insert(args.begin(), std::string(SWARM_BINARY_DIR) + "/swarm");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    if (pipe(fds) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    if (!stderr_path.empty())
      posix_spawn_file_actions_addopen(&fa, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    out_fd_ = fds[0];
    const std::string prefix = "listening on ";
    std::string out;
    const auto end = std::chrono::steady_clock::now() + limit;
    auto found = [&] {
      const size_t at = out.find(prefix);
      return at != std::string::npos && out.find('\n', at) != std::string::npos;
    };
    while (pid_ > 0 && !found() && std::chrono::steady_clock::now() < end) {
      pollfd p{out_fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[256];
      const ssize_t n = read(out_fd_, buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    if (found()) {
      const size_t at = out.find(prefix) + prefix.size();
      address_ = out.substr(at, out.find('\n', at) - at);
    }
  }
  ~ChildProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_fd_ >= 0) close(out_fd_);
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool ok() const { return !address_.empty(); }
  const std::string& address() const { return address_; }  // "HOST:PORT" as it printed it
  int port() const { return ok() ? std::stoi(address_.substr(address_.rfind(':') + 1)) : -1; }
  pid_t pid() const { return pid_; }
  void signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
  // The exit status once the process ended within `limit`; nullopt otherwise.
  std::optional<int> wait_exit(std::chrono::milliseconds limit) {
    std::optional<int> code;
    eventually(
        [&] {
          int st = 0;
          if (pid_ > 0 && waitpid(pid_, &st, WNOHANG) == pid_) {
            code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            pid_ = -1;
            return true;
          }
          return false;
        },
        limit);
    return code;
  }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string address_;
};

}  // namespace swarm::testing
