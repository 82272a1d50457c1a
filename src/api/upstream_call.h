// One HTTP request to an upstream OpenAI-compatible server (a skill provider,
// or the server a provider wraps), run on its own thread so that the caller
// sees the status and headers first, decides what to answer, and then streams
// the body on. The body arrives in pieces through a bounded buffer: an upstream
// faster than its reader waits (back-pressure), it is never read into memory
// whole unless the caller asks for it.
//
// Used by the skill provider's proxy (api/skill_proxy.h) and the gateway's
// skill routing, which both must tell "the upstream refused" (a status to pass
// on) from "the upstream failed" (status 0: try elsewhere or answer 502).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/status.h"
#include "net/identity.h"

namespace httplib {
class Client;
}  // namespace httplib

namespace swarm {

struct UpstreamTimeouts {
  std::chrono::milliseconds connect{3000};
  // The status line must come within this of the request being sent (a
  // provider queues before it answers, so this is generous).
  std::chrono::milliseconds first_byte{120000};
  // Silence between two pieces of the body longer than this fails the call.
  std::chrono::milliseconds idle{60000};
};

struct UpstreamRequest {
  std::string host;  // IPv4, [v6] or a name
  int port = 0;
  std::string method = "POST";  // POST or GET
  std::string path;             // "/v1/chat/completions"
  std::string body;             // POST only
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Authorization
  UpstreamTimeouts timeouts;
  // Body bytes buffered ahead of the reader before the upstream is made to wait.
  size_t buffer_bytes = 1 << 20;
  // A body larger than this fails the call (an upstream is not trusted to end).
  size_t max_body_bytes = 64u << 20;
  // HTTPS to a server whose certificate must hold this Ed25519 key (a skill
  // provider's, from its signed record: api/http_tls.h); none: plain HTTP.
  std::optional<net::PublicKey> pin;
};

class UpstreamCall {
 public:
  // Starts the call on its own thread; never fails here (failures show in status()).
  static std::unique_ptr<UpstreamCall> Start(UpstreamRequest request);
  ~UpstreamCall();  // cancel()s and joins
  UpstreamCall(const UpstreamCall&) = delete;
  UpstreamCall& operator=(const UpstreamCall&) = delete;

  // Waits until the status line and headers have arrived or the call failed.
  // Returns the HTTP status, or 0 when there is none (connection refused or
  // reset, timeout): error() then says why.
  int wait_for_status();
  // A response header (after wait_for_status), "" when absent.
  std::string header(const std::string& name) const;
  // The next piece of the body, waiting for it. False at the end of the body;
  // then ok() says whether it ended cleanly or failed part way (error()).
  bool next(std::string* piece);
  // The rest of the body at once (after wait_for_status); false if it failed.
  bool read_all(std::string* body);
  bool ok() const;
  std::string error() const;
  // Stops the call: the upstream's connection is closed and next() returns false.
  void cancel();

 private:
  using Clock = std::chrono::steady_clock;
  explicit UpstreamCall(UpstreamRequest request);
  void run();
  // The call failed (or was cancelled) with `why`, unless it had ended already.
  void fail_locked(std::string why);
  std::string where() const;  // "upstream HOST:PORT"

  const UpstreamRequest request_;
  const Clock::time_point started_;
  std::unique_ptr<httplib::Client> client_;  // built before the thread, used by it and cancel()
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int status_ = -1;  // -1: not yet; 0: failed before a status
  std::vector<std::pair<std::string, std::string>> response_headers_;
  std::deque<std::string> pieces_;
  size_t buffered_ = 0, received_ = 0;
  // When the body last arrived or the receiver was last ready for more: the
  // idle timeout counts silence from the upstream, not time the reader took.
  Clock::time_point last_progress_{};
  bool ended_ = false, cancelled_ = false, thread_done_ = false;
  std::string error_;
  std::thread thread_;
};

}  // namespace swarm
