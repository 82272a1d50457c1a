// The HTTP front door against hostile and bursty clients, over real sockets on
// 127.0.0.1 with the real model behind it: connections trickling a byte at a
// time are cut off at the header deadline while others are served, connection
// caps answer 429/503, malformed framing gets 400/411/413/431 with OpenAI error
// bodies, and a burst of 64 connections is served in full.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "api/openai_server.h"
#include "engine/test_data.h"
#include "pipeline/local_backend.h"

namespace swarm {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kModel = "tiny-llama/gguf/tiny-llama-Q8_0.gguf";

// A TCP connection to 127.0.0.1:port from the address `source` (every
// 127.0.0.0/8 address is this machine, so tests can be several clients).
int dial(int port, const char* source = "127.0.0.1") {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in from{};
  from.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &from.sin_addr);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string& s) {
  size_t sent = 0;
  while (sent < s.size()) {
    const ssize_t n = ::send(fd, s.data() + sent, s.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Everything the server sends until it closes the connection (or `limit` passes).
std::string read_until_closed(int fd, Clock::duration limit = seconds(30)) {
  std::string out;
  const auto end = Clock::now() + limit;
  char buf[4096];
  while (Clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

struct RawReply {
  int status = -1;
  json body;  // discarded if not JSON
  std::string raw;
};

RawReply parse_reply(const std::string& raw) {
  RawReply r;
  r.raw = raw;
  if (raw.rfind("HTTP/1.1 ", 0) == 0) r.status = std::atoi(raw.c_str() + 9);
  const size_t at = raw.find("\r\n\r\n");
  if (at != std::string::npos) r.body = json::parse(raw.substr(at + 4), nullptr, false);
  return r;
}

// Sends `request` on a new connection and reads the answer until the server closes.
RawReply round_trip(int port, const std::string& request, const char* source = "127.0.0.1") {
  const int fd = dial(port, source);
  if (fd < 0) return {};
  send_all(fd, request);
  RawReply r = parse_reply(read_until_closed(fd));
  ::close(fd);
  return r;
}

std::string error_message(const RawReply& r) {
  if (!r.body.is_object() || !r.body.contains("error") || !r.body["error"].is_object()) return "";
  return r.body["error"].value("message", "");
}

const std::string kHealth = "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

template <typename F>
bool eventually(F done, Clock::duration limit = seconds(30)) {
  const auto end = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return true;
}

class HttpFrontDoorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = testing::find_testdata(kModel);
    if (path.empty()) return;
    auto tok = Tokenizer::Load(path);
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    tok_ = std::move(tok).value().release();
    auto model = Model::Load(path);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    backend_ = new LocalBackend(std::move(model).value(),
                                LocalBackendOptions{.threads = 1, .context_length = 128});
  }
  static void TearDownTestSuite() {
    delete backend_;
    delete tok_;
    backend_ = nullptr;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (backend_ == nullptr) GTEST_SKIP() << kModel << " not found";
  }
  void TearDown() override { server_.reset(); }

  // Starts a server with `limits` on a free port.
  void start(HttpLimits limits) {
    ApiOptions o;
    o.model_names = {"tiny"};
    o.tokenizer = tok_;
    o.http = limits;
    o.log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lk(log_mu_);
      log_ += line + "\n";
    };
    auto s = OpenAiServer::Create(o, *backend_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
    auto port = server_->listen("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    port_ = *port;
  }
  std::string log() {
    std::lock_guard<std::mutex> lk(log_mu_);
    return log_;
  }
  int completion_status(const char* source = "127.0.0.1") {
    const std::string body =
        json{{"prompt", "Once upon a time"}, {"max_tokens", 3}, {"temperature", 0}}.dump();
    RawReply r = round_trip(port_,
                            "POST /v1/completions HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                            "Content-Type: application/json\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\n\r\n" + body,
                            source);
    return r.status;
  }

  static Tokenizer* tok_;
  static LocalBackend* backend_;
  std::unique_ptr<OpenAiServer> server_;
  int port_ = 0;
  std::mutex log_mu_;
  std::string log_;
};

Tokenizer* HttpFrontDoorTest::tok_ = nullptr;
LocalBackend* HttpFrontDoorTest::backend_ = nullptr;

// 32 connections send a request line, then a header a byte at a time. Others
// are served while they trickle (the trickling connections are all still open
// when /health and a completion have answered), and each trickling connection
// is answered 408 and closed at the header deadline, though it keeps sending.
TEST_F(HttpFrontDoorTest, TricklingConnectionsAreCutOffAndBlockNobody) {
  HttpLimits h;
  h.header_timeout = seconds(4);
  h.warm_threads = 2;  // the workers must grow past the slow connections
  start(h);
  constexpr int kSlow = 32;
  std::vector<int> fds;
  for (int i = 0; i < kSlow; ++i) {
    const int fd = dial(port_);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, "POST /v1/completions HTTP/1.1\r\nHost: t\r\nX-Slow: "));
    fds.push_back(fd);
  }
  std::vector<std::string> answers(kSlow);
  std::vector<bool> closed(kSlow, false);
  std::atomic<int> n_closed{0};
  std::atomic<bool> stop{false};
  std::thread trickler([&] {
    char buf[4096];
    while (!stop && n_closed < kSlow) {
      for (int i = 0; i < kSlow; ++i) {
        if (closed[i]) continue;
        ::send(fds[i], "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        for (;;) {
          const ssize_t n = ::recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
          if (n > 0) {
            answers[i].append(buf, static_cast<size_t>(n));
            continue;
          }
          if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            closed[i] = true;
            ++n_closed;
          }
          break;
        }
      }
      std::this_thread::sleep_for(milliseconds(250));
    }
  });
  ASSERT_TRUE(eventually([&] { return server_->http_stats().open_connections >= kSlow; }));

  EXPECT_EQ(round_trip(port_, kHealth).status, 200);
  EXPECT_EQ(completion_status(), 200);
  // None has been cut off yet: the others did not wait for them.
  EXPECT_EQ(server_->http_stats().timed_out, 0);
  EXPECT_GE(server_->http_stats().threads, kSlow);

  EXPECT_TRUE(eventually([&] { return n_closed.load() == kSlow; }))
      << n_closed.load() << " of " << kSlow << " trickling connections closed";
  stop = true;
  trickler.join();
  for (int i = 0; i < kSlow; ++i) {
    const RawReply r = parse_reply(answers[i]);
    EXPECT_EQ(r.status, 408) << answers[i];
    EXPECT_NE(error_message(r).find("did not arrive within 4.0 s"), std::string::npos)
        << answers[i];
    ::close(fds[i]);
  }
  EXPECT_EQ(server_->http_stats().timed_out, kSlow);
  EXPECT_NE(log().find("(408)"), std::string::npos) << log();
}

// Over the per-address cap: 429 with an OpenAI error body, while another
// address is served; over the total cap: 503. Closed connections free their
// places.
TEST_F(HttpFrontDoorTest, ConnectionCapsAnswer429PerAddressAnd503InAll) {
  HttpLimits h;
  h.max_connections_per_client = 4;
  h.max_connections = 6;
  h.idle_timeout = seconds(60);  // the held connections stay
  start(h);
  std::vector<int> held;
  for (int i = 0; i < 4; ++i) held.push_back(dial(port_));
  ASSERT_TRUE(eventually([&] { return server_->http_stats().open_connections == 4; }));

  const RawReply over = round_trip(port_, kHealth);
  EXPECT_EQ(over.status, 429) << over.raw;
  ASSERT_TRUE(over.body.is_object()) << over.raw;
  EXPECT_EQ(over.body["error"]["code"], "rate_limit_exceeded");
  EXPECT_NE(error_message(over).find("--max-connections-per-client 4"), std::string::npos)
      << over.raw;
  EXPECT_EQ(round_trip(port_, kHealth, "127.0.0.2").status, 200);
  EXPECT_EQ(completion_status("127.0.0.3"), 200);

  held.push_back(dial(port_, "127.0.0.4"));
  held.push_back(dial(port_, "127.0.0.4"));
  ASSERT_TRUE(eventually([&] { return server_->http_stats().open_connections == 6; }));
  const RawReply full = round_trip(port_, kHealth, "127.0.0.5");
  EXPECT_EQ(full.status, 503) << full.raw;
  EXPECT_NE(error_message(full).find("--max-connections 6"), std::string::npos) << full.raw;
  EXPECT_NE(log().find("refused a connection from 127.0.0.1 (429)"), std::string::npos) << log();

  for (int fd : held) ::close(fd);
  ASSERT_TRUE(eventually([&] { return server_->http_stats().open_connections == 0; }));
  EXPECT_EQ(round_trip(port_, kHealth).status, 200);
  EXPECT_EQ(server_->http_stats().refused, 2);
}

TEST_F(HttpFrontDoorTest, MalformedFramingGetsClearErrors) {
  HttpLimits h;
  h.max_body_bytes = 4096;
  start(h);
  const std::string post = "POST /v1/completions HTTP/1.1\r\nHost: t\r\n";
  auto expect = [&](const std::string& request, int status, const std::string& says) {
    const RawReply r = round_trip(port_, request);
    EXPECT_EQ(r.status, status) << request.substr(0, 120) << "\n" << r.raw.substr(0, 400);
    EXPECT_NE(error_message(r).find(says), std::string::npos) << request.substr(0, 120) << "\n"
                                                              << r.raw.substr(0, 400);
  };
  expect(post + "Content-Length: -1\r\n\r\n", 400, "Content-Length: must be a non-negative");
  expect(post + "Content-Length: abc\r\n\r\n{}", 400, "got `abc`");
  expect(post + "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "different values");
  expect(post + "Content-Length: 99999999999999999999999\r\n\r\n", 413, "too large");
  expect(post + "Content-Length: 5000\r\n\r\n", 413, "the limit is 4096 bytes");  // body never sent
  expect(post + "\r\n", 411, "Content-Length");
  expect(post + "Transfer-Encoding: gzip\r\n\r\n", 400, "Transfer-Encoding");

  std::string many = "GET /health HTTP/1.1\r\nHost: t\r\n";
  for (int i = 0; i < 200; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  expect(many + "\r\n", 431, "more than 100 headers");
  expect("GET /health HTTP/1.1\r\nX-Big: " + std::string(100000, 'b') + "\r\n\r\n", 431,
         "larger than 65536 bytes");
  std::string hundred = "GET /health HTTP/1.1\r\nConnection: close\r\n";
  for (int i = 0; i < 99; ++i) hundred += "X-H" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(round_trip(port_, hundred + "\r\n").status, 200);  // 100 headers are fine

  // A chunked body is counted as it arrives.
  std::string chunked = post + "Transfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 40; ++i) chunked += "1000\r\n" + std::string(4096, 'x') + "\r\n";
  expect(chunked + "0\r\n\r\n", 413, "too large");
  // The server is still fine.
  EXPECT_EQ(completion_status(), 200);
}

// 64 clients connect at the same moment, each asking for a completion: all are
// served (the listen backlog holds the burst, the workers grow to meet it).
TEST_F(HttpFrontDoorTest, ABurstOfSixtyFourConnectionsIsServedInFull) {
  HttpLimits h;
  h.warm_threads = 2;
  start(h);
  constexpr int kClients = 64;
  std::latch go(kClients);
  std::vector<int> status(kClients, -1);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i)
    clients.emplace_back([&, i] {
      go.arrive_and_wait();
      status[i] = completion_status();
    });
  for (auto& t : clients) t.join();
  for (int i = 0; i < kClients; ++i) EXPECT_EQ(status[i], 200) << "client " << i;
}

// Idle and reading connections do not hold up stop().
TEST_F(HttpFrontDoorTest, StopEndsIdleAndReadingConnectionsAtOnce) {
  HttpLimits h;
  h.idle_timeout = seconds(600);
  h.header_timeout = seconds(600);
  start(h);
  const int idle = dial(port_);
  const int reading = dial(port_);
  ASSERT_TRUE(send_all(reading, "GET /health HTTP/1.1\r\nX-Partial: "));
  ASSERT_TRUE(eventually([&] { return server_->http_stats().open_connections == 2; }));
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    server_->stop();
    stopped = true;
  });
  // Well before either 600 s deadline.
  EXPECT_TRUE(eventually([&] { return stopped.load(); }, seconds(30)));
  stopper.join();
  ::close(idle);
  ::close(reading);
}

}  // namespace
}  // namespace swarm
