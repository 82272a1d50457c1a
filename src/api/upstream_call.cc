#include "api/upstream_call.h"

#include "api/http_tls.h"

#include <httplib.h>
#include <strings.h>

#include <algorithm>
#include <cstdio>
#include <exception>

namespace swarm {
namespace {

std::string seconds_text(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

// httplib wants an IPv6 literal without its brackets.
std::string bare_host(const std::string& host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    return host.substr(1, host.size() - 2);
  return host;
}

}  // namespace

std::unique_ptr<UpstreamCall> UpstreamCall::Start(UpstreamRequest request) {
  std::unique_ptr<UpstreamCall> call(new UpstreamCall(std::move(request)));
  try {
    call->thread_ = std::thread([c = call.get()] { c->run(); });
  } catch (const std::exception& e) {  // out of threads: the call fails, not the caller
    std::lock_guard<std::mutex> lk(call->mu_);
    call->fail_locked(call->where() + ": could not start a thread for the call (" + e.what() + ")");
    call->thread_done_ = true;
  }
  return call;
}

namespace {

std::unique_ptr<httplib::Client> make_client(const UpstreamRequest& r) {
  if (!r.pin) return std::make_unique<httplib::Client>(bare_host(r.host), r.port);
  const std::string host = r.host.find(':') != std::string::npos && r.host.front() != '['
                               ? "[" + r.host + "]"
                               : r.host;
  return std::make_unique<httplib::Client>("https://" + host + ":" + std::to_string(r.port));
}

}  // namespace

UpstreamCall::UpstreamCall(UpstreamRequest request)
    : request_(std::move(request)),
      started_(Clock::now()),
      client_(make_client(request_)) {
  if (request_.pin) {
    // HTTPS that accepts exactly the pinned key, whoever signed the
    // certificate (api/http_tls.h); no host name or CA is checked.
    client_->enable_server_certificate_verification(false);
    if (SSL_CTX* ctx = client_->ssl_context()) pin_server_key(ctx, &*request_.pin);
  }
  const UpstreamTimeouts& t = request_.timeouts;
  client_->set_connection_timeout(t.connect);
  // httplib's timeout is per recv(): the longer of the two phases' limits is a
  // backstop, the exact ones are kept by the reader (wait_for_status, next).
  client_->set_read_timeout(std::max(t.first_byte, t.idle));
  client_->set_write_timeout(std::max(t.connect, t.idle));
  client_->set_keep_alive(false);
  // No Accept-Encoding: the body arrives as the upstream produced it, and
  // max_body_bytes counts what the reader gets.
  client_->set_decompress(false);
  last_progress_ = started_;
}

UpstreamCall::~UpstreamCall() {
  cancel();
  {
    // cancel() may have come before the request had a socket to shut down (a
    // connect in progress): stop again until the thread has seen it.
    std::unique_lock<std::mutex> lk(mu_);
    while (!thread_done_) {
      if (cv_.wait_for(lk, std::chrono::milliseconds(20), [&] { return thread_done_; })) break;
      lk.unlock();
      client_->stop();
      lk.lock();
    }
  }
  if (thread_.joinable()) thread_.join();
}

std::string UpstreamCall::where() const {
  return "upstream " + request_.host + ":" + std::to_string(request_.port);
}

void UpstreamCall::fail_locked(std::string why) {
  if (!ended_) {
    error_ = std::move(why);
    ended_ = true;
    if (status_ == -1) status_ = 0;
  }
  cv_.notify_all();
}

void UpstreamCall::run() {
  try {
    httplib::Request req;
    req.method = request_.method;
    req.path = request_.path;
    for (const auto& [name, value] : request_.headers) req.headers.emplace(name, value);
    if (request_.method == "POST") {
      req.body = request_.body;
      req.headers.emplace("Content-Type", request_.content_type);
    }
    req.response_handler = [this](const httplib::Response& res) {
      std::lock_guard<std::mutex> lk(mu_);
      if (ended_) return false;  // cancelled or timed out while the status was on its way
      status_ = res.status;
      response_headers_.assign(res.headers.begin(), res.headers.end());
      last_progress_ = Clock::now();
      cv_.notify_all();
      return true;
    };
    req.content_receiver = [this](const char* data, size_t n, uint64_t, uint64_t) {
      std::unique_lock<std::mutex> lk(mu_);
      if (ended_) return false;
      received_ += n;
      if (received_ > request_.max_body_bytes) {
        fail_locked(where() + ": the answer is longer than the limit of " +
                    std::to_string(request_.max_body_bytes) + " bytes (max_body_bytes)");
        return false;
      }
      pieces_.emplace_back(data, n);
      buffered_ += n;
      last_progress_ = Clock::now();
      cv_.notify_all();
      // Back-pressure: the upstream waits (in its TCP window) while the reader
      // has enough to read.
      cv_.wait(lk, [&] { return ended_ || buffered_ < request_.buffer_bytes; });
      last_progress_ = Clock::now();
      return !ended_;
    };
    httplib::Result r = client_->send(req);
    std::lock_guard<std::mutex> lk(mu_);
    if (r) {
      if (status_ == -1) {  // no handler call (cannot happen, but never leave it unset)
        status_ = r->status;
        response_headers_.assign(r->headers.begin(), r->headers.end());
      }
      ended_ = true;
    } else if (!ended_) {
      const httplib::Error e = r.error();
      std::string what;
      if (e == httplib::Error::Connection)
        what = "could not connect";
      else if (e == httplib::Error::ConnectionTimeout)
        what = "no connection within " + seconds_text(request_.timeouts.connect);
      else if (e == httplib::Error::SSLConnection || e == httplib::Error::SSLServerVerification)
        what = request_.pin ? "the TLS handshake failed: the server's certificate does not hold "
                              "the pinned key, or it speaks no TLS"
                            : "the TLS handshake failed";
      else if (e == httplib::Error::Write)
        what = "sending the request failed";
      else if (e == httplib::Error::Read)
        what = status_ == -1 ? "the connection closed or timed out before a status"
                             : "the answer was cut off";
      else
        what = "the call failed";
      fail_locked(where() + ": " + what + " (" + httplib::to_string(e) + ")");
    }
    thread_done_ = true;
    cv_.notify_all();
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lk(mu_);
    fail_locked(where() + ": " + e.what());
    thread_done_ = true;
  } catch (...) {
    std::lock_guard<std::mutex> lk(mu_);
    fail_locked(where() + ": unknown exception");
    thread_done_ = true;
  }
}

int UpstreamCall::wait_for_status() {
  std::unique_lock<std::mutex> lk(mu_);
  const UpstreamTimeouts& t = request_.timeouts;
  const auto deadline = started_ + t.connect + t.first_byte;
  if (!cv_.wait_until(lk, deadline, [&] { return status_ != -1 || ended_; })) {
    fail_locked(where() + ": no status within " + seconds_text(t.first_byte) +
                " of the request (first_byte timeout)");
    lk.unlock();
    client_->stop();
    lk.lock();
  }
  return status_ == -1 ? 0 : status_;
}

std::string UpstreamCall::header(const std::string& name) const {
  std::lock_guard<std::mutex> lk(mu_);
  for (const auto& [k, v] : response_headers_)
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  return "";
}

bool UpstreamCall::next(std::string* piece) {
  if (wait_for_status() == 0) return false;
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (cancelled_) return false;
    if (!pieces_.empty()) {
      *piece = std::move(pieces_.front());
      pieces_.pop_front();
      buffered_ -= piece->size();
      cv_.notify_all();  // the receiver may be waiting for room
      return true;
    }
    if (ended_) return false;
    const auto deadline = last_progress_ + request_.timeouts.idle;
    if (Clock::now() >= deadline) {
      fail_locked(where() + ": no data for " + seconds_text(request_.timeouts.idle) +
                  " (idle timeout)");
      lk.unlock();
      client_->stop();
      return false;
    }
    cv_.wait_until(lk, deadline);
  }
}

bool UpstreamCall::read_all(std::string* body) {
  body->clear();
  std::string piece;
  while (next(&piece)) body->append(piece);
  return ok();
}

bool UpstreamCall::ok() const {
  std::lock_guard<std::mutex> lk(mu_);
  return error_.empty() && !cancelled_;
}

std::string UpstreamCall::error() const {
  std::lock_guard<std::mutex> lk(mu_);
  return error_;
}

void UpstreamCall::cancel() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (cancelled_) return;
    cancelled_ = true;
    fail_locked(where() + ": cancelled");
  }
  client_->stop();
}

}  // namespace swarm
