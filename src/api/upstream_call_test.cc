// UpstreamCall against hand-made upstreams on 127.0.0.1: the status comes
// before the body, a slow reader still gets the whole body through a small
// buffer, cancel() ends a call the upstream holds, and failures (refused,
// too long, silent) are status 0 or a failed body naming the upstream.
#include "api/upstream_call.h"

#include <gtest/gtest.h>

#include <atomic>

#include "api/test_upstream.h"

namespace swarm {
namespace {

using swarm::testing::Gate;
using swarm::testing::RefusingPort;
using swarm::testing::TestUpstream;

UpstreamRequest get(int port, const std::string& path) {
  UpstreamRequest r;
  r.host = "127.0.0.1";
  r.port = port;
  r.method = "GET";
  r.path = path;
  return r;
}

// Sends `total` bytes (a known pattern) in pieces of `piece` bytes.
std::string pattern(size_t total) {
  std::string s(total, '\0');
  for (size_t i = 0; i < total; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

TEST(UpstreamCallTest, StatusAndHeadersArriveBeforeTheBody) {
  TestUpstream up([](httplib::Server& s, Gate& gate) {
    s.Get("/held", [&gate](const httplib::Request&, httplib::Response& res) {
      res.status = 201;
      res.set_header("X-Upstream", "yes");
      res.set_chunked_content_provider("text/plain", [&gate](size_t, httplib::DataSink& sink) {
        gate.wait();  // the body waits for the test
        sink.write("the body", 8);
        sink.done();
        return true;
      });
    });
  });
  auto call = UpstreamCall::Start(get(up.port(), "/held"));
  EXPECT_EQ(call->wait_for_status(), 201) << call->error();
  EXPECT_EQ(call->header("x-upstream"), "yes");
  EXPECT_EQ(call->header("X-Absent"), "");
  ASSERT_TRUE(up.gate().wait_arrived(1));  // the body is still held now
  up.gate().open();
  std::string body;
  EXPECT_TRUE(call->read_all(&body)) << call->error();
  EXPECT_EQ(body, "the body");
  EXPECT_TRUE(call->ok());
}

TEST(UpstreamCallTest, ASlowReaderGetsTheWholeBodyThroughASmallBuffer) {
  const std::string sent = pattern(256u << 10);
  TestUpstream up([&sent](httplib::Server& s, Gate&) {
    s.Get("/big", [&sent](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider(
          "application/octet-stream", [&sent](size_t offset, httplib::DataSink& sink) {
            const size_t n = std::min<size_t>(1024, sent.size() - offset);
            if (!sink.write(sent.data() + offset, n)) return false;
            if (offset + n == sent.size()) sink.done();
            return true;
          });
    });
  });
  UpstreamRequest r = get(up.port(), "/big");
  r.buffer_bytes = 2048;  // far less than the body: the upstream is made to wait
  auto call = UpstreamCall::Start(r);
  ASSERT_EQ(call->wait_for_status(), 200) << call->error();
  std::string got, piece;
  int pieces = 0;
  while (call->next(&piece)) {
    got += piece;
    if (++pieces % 16 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // slow
  }
  EXPECT_TRUE(call->ok()) << call->error();
  EXPECT_EQ(got.size(), sent.size());
  EXPECT_TRUE(got == sent);
}

TEST(UpstreamCallTest, CancelEndsACallTheUpstreamHolds) {
  TestUpstream up([](httplib::Server& s, Gate& gate) {
    s.Get("/never", [&gate](const httplib::Request&, httplib::Response& res) {
      gate.wait();  // no status until the test ends
      res.set_content("late", "text/plain");
    });
  });
  UpstreamRequest r = get(up.port(), "/never");
  r.timeouts.first_byte = std::chrono::minutes(10);
  const auto t0 = std::chrono::steady_clock::now();
  auto call = UpstreamCall::Start(r);
  std::atomic<int> status{-1};
  std::thread waiter([&] { status = call->wait_for_status(); });
  ASSERT_TRUE(up.gate().wait_arrived(1));  // the request is at the upstream
  call->cancel();
  waiter.join();
  EXPECT_EQ(status.load(), 0);
  EXPECT_NE(call->error().find("cancelled"), std::string::npos) << call->error();
  std::string piece;
  EXPECT_FALSE(call->next(&piece));
  EXPECT_FALSE(call->ok());
  call.reset();  // joins its thread, the upstream still holding the request
  // Not a timing threshold: a call that waited for its timeout would take 10 minutes.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::minutes(5));
}

TEST(UpstreamCallTest, ARefusedConnectionIsStatusZeroNamingTheUpstream) {
  RefusingPort closed;
  auto call = UpstreamCall::Start(get(closed.port(), "/v1/models"));
  EXPECT_EQ(call->wait_for_status(), 0);
  const std::string where = "127.0.0.1:" + std::to_string(closed.port());
  EXPECT_NE(call->error().find(where), std::string::npos) << call->error();
  std::string body;
  EXPECT_FALSE(call->read_all(&body));
  EXPECT_FALSE(call->ok());
}

TEST(UpstreamCallTest, ABodyOverTheLimitFailsNamingTheLimit) {
  const std::string sent = pattern(10000);
  TestUpstream up([&sent](httplib::Server& s, Gate&) {
    s.Get("/long", [&sent](const httplib::Request&, httplib::Response& res) {
      res.set_content(sent, "text/plain");
    });
  });
  UpstreamRequest r = get(up.port(), "/long");
  r.max_body_bytes = 1000;
  auto call = UpstreamCall::Start(r);
  EXPECT_EQ(call->wait_for_status(), 200);
  std::string body;
  EXPECT_FALSE(call->read_all(&body));
  EXPECT_LE(body.size(), 1000u);
  EXPECT_NE(call->error().find("1000"), std::string::npos) << call->error();
}

TEST(UpstreamCallTest, SilenceLongerThanTheIdleTimeoutFailsTheBody) {
  TestUpstream up([](httplib::Server& s, Gate& gate) {
    s.Get("/stalls", [&gate](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("text/plain",
                                       [&gate](size_t offset, httplib::DataSink& sink) {
                                         if (offset > 0)
                                           gate.wait();  // the first piece, then silence
                                         return sink.write("first", 5);
                                       });
    });
  });
  UpstreamRequest r = get(up.port(), "/stalls");
  r.timeouts.idle = std::chrono::milliseconds(200);
  auto call = UpstreamCall::Start(r);
  ASSERT_EQ(call->wait_for_status(), 200);
  std::string piece;
  ASSERT_TRUE(call->next(&piece));
  EXPECT_EQ(piece, "first");
  EXPECT_FALSE(call->next(&piece));
  EXPECT_FALSE(call->ok());
  EXPECT_NE(call->error().find("idle"), std::string::npos) << call->error();
}

}  // namespace
}  // namespace swarm
