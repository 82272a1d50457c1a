// SkillProxy in front of a real upstream (what `swarm serve` runs: an
// OpenAiServer over the tiny test model) and of hand-made ones: answers pass
// through as the upstream gave them (text, errors, embeddings), an upstream
// that cannot be reached or fails part way is a 502 or an SSE error event, a
// full provider says so at once, and what it forwards is measured. Also the
// measurements' bookkeeping (SkillLoadStats) with times given by hand.
#include "api/skill_proxy.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "api/local_test_server.h"
#include "api/skill_load_stats.h"
#include "api/test_upstream.h"

namespace swarm {
namespace {

using nlohmann::json;
using swarm::testing::Gate;
using swarm::testing::RefusingPort;
using swarm::testing::TestUpstream;
using Clock = std::chrono::steady_clock;

constexpr const char* kModel = "tiny-llama/gguf/tiny-llama-Q8_0.gguf";

struct Reply {
  int status = -1;
  std::string body;
  std::string content_type;
  json j;  // the body as JSON (discarded when it is not)
};

Reply to_reply(const httplib::Result& r) {
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.body = r->body;
  out.content_type = r->get_header_value("Content-Type");
  out.j = json::parse(r->body, nullptr, false);
  return out;
}

Reply post(int port, const std::string& path, const std::string& body,
           const httplib::Headers& headers = {}) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120);
  return to_reply(c.Post(path.c_str(), headers, body, "application/json"));
}

Reply get(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60);
  return to_reply(c.Get(path.c_str()));
}

// The generated text of an answer, streamed or not; `done`: the stream ended
// with [DONE].
std::string answer_text(const Reply& r, bool* done = nullptr) {
  if (done) *done = false;
  auto text_of = [](const json& choice) -> std::string {
    if (choice.contains("message")) return choice["message"].value("content", "");
    if (choice.contains("delta")) return choice["delta"].value("content", "");
    return choice.value("text", "");
  };
  if (!r.content_type.starts_with("text/event-stream")) {
    if (!r.j.is_object() || !r.j.contains("choices")) return "";
    return text_of(r.j["choices"][0]);
  }
  std::string text;
  size_t at = 0;
  for (size_t nl; (nl = r.body.find('\n', at)) != std::string::npos; at = nl + 1) {
    const std::string line = r.body.substr(at, nl - at);
    if (!line.starts_with("data: ")) continue;
    if (line == "data: [DONE]") {
      if (done) *done = true;
      continue;
    }
    const json e = json::parse(line.substr(6), nullptr, false);
    if (e.is_object() && e.contains("choices") && !e["choices"].empty())
      text += text_of(e["choices"][0]);
  }
  return text;
}

// Polls `f` until it holds (false after a minute): for states another thread
// reaches, instead of a sleep that hopes it did.
template <class F>
bool eventually(F f) {
  const auto deadline = Clock::now() + std::chrono::minutes(1);
  while (Clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return f();
}

std::unique_ptr<SkillProxy> start_proxy(const std::string& upstream_url, int* port,
                                        SkillProxyOptions o = {}) {
  auto url = parse_upstream_url(upstream_url);
  EXPECT_TRUE(url.ok()) << url.status().ToString();
  if (!url.ok()) return nullptr;
  o.upstream = *url;
  auto proxy = SkillProxy::Create(o);
  EXPECT_TRUE(proxy.ok()) << proxy.status().ToString();
  if (!proxy.ok()) return nullptr;
  auto p = (*proxy)->listen("127.0.0.1", 0);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  if (!p.ok()) return nullptr;
  *port = *p;
  return std::move(proxy).value();
}

class SkillProxyTest : public testing::LocalServerSuite<SkillProxyTest> {
 public:
  static constexpr const char* kServerModel = kModel;
  static constexpr int kServerContext = 256;

 protected:
  void SetUp() override {
    LocalServerSuite::SetUp();
    if (HasFatalFailure()) return;
    proxy_ = start_proxy("http://127.0.0.1:" + std::to_string(port_), &proxy_port_);
    ASSERT_NE(proxy_, nullptr);
  }

  std::unique_ptr<SkillProxy> proxy_;
  int proxy_port_ = 0;
};

TEST_F(SkillProxyTest, ChatAndCompletionsGiveTheUpstreamsOwnText) {
  const json chat = {{"model", "tiny"},
                     {"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
                     {"max_tokens", 12},
                     {"temperature", 0}};
  const json completion = {
      {"model", "tiny"}, {"prompt", "Once upon a time"}, {"max_tokens", 12}, {"temperature", 0}};
  struct Case {
    std::string path;
    json body;
  };
  for (const Case& c : {Case{"/v1/chat/completions", chat}, Case{"/v1/completions", completion}}) {
    for (bool stream : {false, true}) {
      json body = c.body;
      body["stream"] = stream;
      const Reply direct = post(port_, c.path, body.dump());
      ASSERT_EQ(direct.status, 200) << direct.body;
      const std::string want = answer_text(direct);
      ASSERT_FALSE(want.empty()) << direct.body;
      // The proxy's routes, with /v1 and without.
      for (const std::string& path : {c.path, c.path.substr(3)}) {
        const Reply via = post(proxy_port_, path, body.dump());
        EXPECT_EQ(via.status, 200) << path << " " << via.body;
        EXPECT_EQ(via.content_type, direct.content_type) << path;
        bool done = false;
        EXPECT_EQ(answer_text(via, &done), want) << path << " stream " << stream;
        EXPECT_EQ(done, stream) << via.body;
      }
    }
  }
  const SkillLoad load = proxy_->load(Clock::now());
  EXPECT_EQ(load.completed, 8);
  EXPECT_EQ(load.failures_in_window, 0);
  EXPECT_TRUE(load.warm);
}

TEST_F(SkillProxyTest, EmbeddingsPassThrough) {
  const json body = {{"model", "tiny"}, {"input", {"hello world", "a second one"}}};
  const Reply direct = post(port_, "/v1/embeddings", body.dump());
  const Reply via = post(proxy_port_, "/v1/embeddings", body.dump());
  ASSERT_EQ(direct.status, 200) << direct.body;
  ASSERT_EQ(via.status, 200) << via.body;
  ASSERT_EQ(via.j["data"].size(), 2u);
  EXPECT_EQ(via.j["data"], direct.j["data"]);
  EXPECT_EQ(via.j["usage"], direct.j["usage"]);
}

TEST_F(SkillProxyTest, TheUpstreamsErrorsPassThroughUnchanged) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"/v1/chat/completions", "{not json"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":5})"},
      {"/v1/completions", R"({"model":"tiny","prompt":"Hi","max_tokens":-3})"},
  };
  for (const auto& [path, body] : bad) {
    const Reply direct = post(port_, path, body);
    const Reply via = post(proxy_port_, path, body);
    EXPECT_EQ(direct.status, 400) << direct.body;
    EXPECT_EQ(via.status, direct.status) << body;
    EXPECT_EQ(via.body, direct.body) << body;
    EXPECT_EQ(via.content_type, direct.content_type);
  }
  // A refusal is the upstream working: no failure counted, still warm.
  const SkillLoad load = proxy_->load(Clock::now());
  EXPECT_EQ(load.failures_in_window, 0);
  EXPECT_TRUE(load.warm);
}

TEST_F(SkillProxyTest, AStreamedCompletionIsMeasured) {
  SkillLoad before = proxy_->load(Clock::now());
  EXPECT_EQ(before.completed, 0);
  EXPECT_EQ(before.tokens_per_second, 0);
  EXPECT_FALSE(before.warm);
  const json body = {{"model", "tiny"},
                     {"prompt", "Once upon a time"},
                     {"max_tokens", 16},
                     {"temperature", 0},
                     {"stream", true}};
  const Reply via = post(proxy_port_, "/v1/completions", body.dump());
  ASSERT_EQ(via.status, 200) << via.body;
  const SkillLoad after = proxy_->load(Clock::now());
  EXPECT_EQ(after.completed, 1);
  EXPECT_GT(after.tokens_per_second, 0);
  EXPECT_GT(after.ttft_seconds, 0);
  EXPECT_TRUE(after.warm);
  EXPECT_EQ(after.capacity, 4);
  EXPECT_TRUE(eventually([&] { return proxy_->load(Clock::now()).active == 0; }));
}

TEST_F(SkillProxyTest, ProbeAndMeasureUseTheUpstream) {
  auto models = proxy_->probe_models();
  ASSERT_TRUE(models.ok()) << models.status().ToString();
  EXPECT_EQ(*models, std::vector<std::string>{"tiny"});
  EXPECT_TRUE(proxy_->load(Clock::now()).warm);
  EXPECT_EQ(proxy_->load(Clock::now()).completed, 0);  // a probe is not an answer
  ASSERT_TRUE(proxy_->measure("tiny").ok());
  const SkillLoad load = proxy_->load(Clock::now());
  EXPECT_EQ(load.completed, 1);
  EXPECT_GT(load.tokens_per_second, 0);
  EXPECT_GT(load.ttft_seconds, 0);
  // The proxy's own /health follows, and /v1/models forwards.
  EXPECT_EQ(get(proxy_port_, "/health").status, 200);
  const Reply listed = get(proxy_port_, "/v1/models");
  ASSERT_EQ(listed.status, 200) << listed.body;
  EXPECT_EQ(listed.j["data"][0]["id"], "tiny");
}

TEST_F(SkillProxyTest, AnUpstreamGivenWithItsV1RootIsReachedTheSameWay) {
  int port = 0;
  auto proxy = start_proxy("http://127.0.0.1:" + std::to_string(port_) + "/v1/", &port);
  ASSERT_NE(proxy, nullptr);
  auto models = proxy->probe_models();
  ASSERT_TRUE(models.ok()) << models.status().ToString();
  const Reply via = post(port, "/v1/completions",
                         R"({"model":"tiny","prompt":"Hi","max_tokens":3,"temperature":0})");
  EXPECT_EQ(via.status, 200) << via.body;
}

TEST(SkillProxyUnreachable, AnUpstreamThatIsNotListeningGives502WithAnOpenAiBody) {
  RefusingPort closed;
  int port = 0;
  auto proxy = start_proxy("http://127.0.0.1:" + std::to_string(closed.port()), &port);
  ASSERT_NE(proxy, nullptr);
  const Reply r = post(port, "/v1/chat/completions",
                       R"({"model":"tiny","messages":[{"role":"user","content":"Hi"}]})");
  EXPECT_EQ(r.status, 502) << r.body;
  ASSERT_TRUE(r.j.is_object()) << r.body;
  EXPECT_EQ(r.j["error"]["type"], "server_error");
  EXPECT_EQ(r.j["error"]["code"], "backend_unreachable");
  EXPECT_TRUE(r.j["error"]["param"].is_null());
  const std::string message = r.j["error"]["message"];
  EXPECT_NE(message.find("the backend at 127.0.0.1:" + std::to_string(closed.port()) +
                         " could not be reached"),
            std::string::npos)
      << message;
  const SkillLoad load = proxy->load(Clock::now());
  EXPECT_EQ(load.failures_in_window, 1);
  EXPECT_FALSE(load.warm);
  EXPECT_EQ(load.completed, 0);
  EXPECT_EQ(get(port, "/health").status, 503);
  EXPECT_FALSE(proxy->probe_models().ok());
  EXPECT_FALSE(proxy->measure("tiny").ok());
}

TEST(SkillProxyAdmission, AFullProviderAnswers503AtOnce) {
  TestUpstream up([](httplib::Server& s, Gate& gate) {
    s.Post("/v1/chat/completions", [&gate](const httplib::Request&, httplib::Response& res) {
      gate.wait();  // in flight until the test lets it go
      res.set_content(R"({"held":true})", "application/json");
    });
  });
  SkillProxyOptions o;
  o.capacity = 1;
  o.max_queue = 0;
  int port = 0;
  auto proxy = start_proxy("http://127.0.0.1:" + std::to_string(up.port()), &port, o);
  ASSERT_NE(proxy, nullptr);
  Reply first;
  std::thread slow([&] { first = post(port, "/v1/chat/completions", "{}"); });
  ASSERT_TRUE(eventually([&] { return proxy->load(Clock::now()).active == 1; }));
  const Reply second = post(port, "/v1/chat/completions", "{}");
  up.gate().open();
  slow.join();
  EXPECT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.body, R"({"held":true})");
  EXPECT_EQ(second.status, 503) << second.body;
  ASSERT_TRUE(second.j.is_object()) << second.body;
  EXPECT_EQ(second.j["error"]["code"], "provider_busy");
  const std::string message = second.j["error"]["message"];
  EXPECT_NE(message.find("1 requests at once (capacity)"), std::string::npos) << message;
  EXPECT_NE(message.find("0 more (max_queue)"), std::string::npos) << message;
  EXPECT_TRUE(eventually([&] { return proxy->load(Clock::now()).active == 0; }));
}

TEST(SkillProxyAdmission, AQueuedRequestWaitsForTheSlotAndIsCounted) {
  TestUpstream up([](httplib::Server& s, Gate& gate) {
    s.Post("/v1/embeddings", [&gate](const httplib::Request&, httplib::Response& res) {
      gate.wait();
      res.set_content(R"({"data":[]})", "application/json");
    });
  });
  SkillProxyOptions o;
  o.capacity = 1;
  o.max_queue = 1;
  o.queue_timeout = std::chrono::minutes(5);
  int port = 0;
  auto proxy = start_proxy("http://127.0.0.1:" + std::to_string(up.port()), &port, o);
  ASSERT_NE(proxy, nullptr);
  Reply a, b;
  std::thread ta([&] { a = post(port, "/v1/embeddings", "{}"); });
  ASSERT_TRUE(eventually([&] { return proxy->load(Clock::now()).active == 1; }));
  std::thread tb([&] { b = post(port, "/v1/embeddings", "{}"); });
  ASSERT_TRUE(eventually([&] { return proxy->load(Clock::now()).queued == 1; }));
  const Reply c = post(port, "/v1/embeddings", "{}");  // neither a slot nor a place in line
  EXPECT_EQ(c.status, 503) << c.body;
  up.gate().open();
  ta.join();
  tb.join();
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(proxy->load(Clock::now()).completed, 2);
}

TEST(SkillProxyAdmission, AQueuedRequestGivesUpAfterTheQueueTimeout) {
  TestUpstream up([](httplib::Server& s, Gate& gate) {
    s.Post("/v1/completions", [&gate](const httplib::Request&, httplib::Response& res) {
      gate.wait();
      res.set_content("{}", "application/json");
    });
  });
  SkillProxyOptions o;
  o.capacity = 1;
  o.max_queue = 4;
  o.queue_timeout = std::chrono::milliseconds(50);
  int port = 0;
  auto proxy = start_proxy("http://127.0.0.1:" + std::to_string(up.port()), &port, o);
  ASSERT_NE(proxy, nullptr);
  Reply first;
  std::thread slow([&] { first = post(port, "/v1/completions", "{}"); });
  ASSERT_TRUE(eventually([&] { return proxy->load(Clock::now()).active == 1; }));
  const Reply late = post(port, "/v1/completions", "{}");  // the slot stays taken
  up.gate().open();
  slow.join();
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(late.status, 503) << late.body;
  ASSERT_TRUE(late.j.is_object()) << late.body;
  EXPECT_EQ(late.j["error"]["code"], "provider_busy");
  const std::string message = late.j["error"]["message"];
  EXPECT_NE(message.find("queue_timeout"), std::string::npos) << message;
}

TEST(SkillProxyForwarding, StopEndsAStreamTheUpstreamHolds) {
  TestUpstream up([](httplib::Server& s, Gate& gate) {
    s.Post("/v1/chat/completions", [&gate](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider(
          "text/event-stream", [&gate](size_t offset, httplib::DataSink& sink) {
            if (offset > 0) gate.wait();  // one event, then the upstream holds the stream
            const std::string e = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n";
            return sink.write(e.data(), e.size());
          });
    });
  });
  int port = 0;
  auto proxy = start_proxy("http://127.0.0.1:" + std::to_string(up.port()), &port);
  ASSERT_NE(proxy, nullptr);
  // The caller reads the stream piece by piece (an UpstreamCall is such a
  // reader): the first event has come through when it stops.
  UpstreamRequest req;
  req.host = "127.0.0.1";
  req.port = port;
  req.path = "/v1/chat/completions";
  req.body = R"({"stream":true})";
  auto caller = UpstreamCall::Start(req);
  ASSERT_EQ(caller->wait_for_status(), 200) << caller->error();
  std::string body, piece;
  while (body.find("\n\n") == std::string::npos && caller->next(&piece)) body += piece;
  ASSERT_EQ(body, "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n");
  proxy->stop();  // must not wait for the upstream
  std::string rest;
  EXPECT_TRUE(caller->read_all(&rest)) << caller->error();
  EXPECT_TRUE(rest.starts_with("data: {\"error\":")) << rest;
  EXPECT_EQ(rest.find("[DONE]"), std::string::npos) << rest;
}

TEST(SkillProxyForwarding, PathsAndAuthorizationReachTheUpstream) {
  TestUpstream up([](httplib::Server& s, Gate&) {
    s.Post(R"(/.*)", [](const httplib::Request& req, httplib::Response& res) {
      res.set_content(json{{"path", req.path},
                           {"auth", req.get_header_value("Authorization")},
                           {"body", req.body}}
                          .dump(),
                      "application/json");
    });
  });
  const std::string base = "http://127.0.0.1:" + std::to_string(up.port());
  struct Case {
    std::string url, route, want;
  };
  for (const Case& c : {Case{base, "/v1/images/generations", "/v1/images/generations"},
                        Case{base + "/v1", "/embeddings", "/v1/embeddings"},
                        Case{base + "/openai/", "/v1/completions", "/openai/v1/completions"}}) {
    int port = 0;
    auto proxy = start_proxy(c.url, &port);
    ASSERT_NE(proxy, nullptr);
    const Reply r = post(port, c.route, R"({"x":1})", {{"Authorization", "Bearer sk-test"}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j["path"], c.want) << c.url;
    EXPECT_EQ(r.j["auth"], "Bearer sk-test");
    EXPECT_EQ(r.j["body"], R"({"x":1})");
  }
}

TEST(SkillProxyForwarding, AStreamCutOffPartWayEndsWithAnErrorEvent) {
  TestUpstream up([](httplib::Server& s, Gate&) {
    s.Post("/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("text/event-stream", [](size_t, httplib::DataSink& sink) {
        const std::string sent =
            "data: {\"choices\":[{\"index\":0,\"text\":\"Once\"}]}\n\n"
            "data: {\"choices\":[{\"index\":0,\"te";  // half an event, then the connection drops
        sink.write(sent.data(), sent.size());
        return false;
      });
    });
  });
  int port = 0;
  auto proxy = start_proxy("http://127.0.0.1:" + std::to_string(up.port()), &port);
  ASSERT_NE(proxy, nullptr);
  const Reply r = post(port, "/v1/completions", R"({"prompt":"Hi","stream":true})");
  EXPECT_EQ(r.status, 200);
  bool done = true;
  EXPECT_EQ(answer_text(r, &done), "Once");
  EXPECT_FALSE(done) << r.body;
  const std::string tail = "data: {\"error\":";
  const size_t at = r.body.find(tail);
  ASSERT_NE(at, std::string::npos) << r.body;
  const json e = json::parse(r.body.substr(at + 6), nullptr, false);
  ASSERT_TRUE(e.is_object()) << r.body;
  EXPECT_EQ(e["error"]["type"], "server_error");
  // The half event is held back: the error event follows the whole one.
  EXPECT_EQ(r.body.substr(0, at), "data: {\"choices\":[{\"index\":0,\"text\":\"Once\"}]}\n\n");
  EXPECT_EQ(proxy->load(Clock::now()).failures_in_window, 1);
}

TEST(SkillProxyUrl, ParsesWhatBackendAccepts) {
  auto u = parse_upstream_url("http://127.0.0.1:8080");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 8080);
  EXPECT_EQ(u->prefix, "");
  u = parse_upstream_url("http://localhost:11434/v1/");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "localhost");
  EXPECT_EQ(u->prefix, "/v1");
  u = parse_upstream_url("http://[::1]:9000/api/v1");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "[::1]");
  EXPECT_EQ(u->port, 9000);
  EXPECT_EQ(u->prefix, "/api/v1");
  for (const char* bad :
       {"https://h:1", "h:1", "http://h", "http://h:0", "http://h:70000", "http://:80",
        "http://h:8x", "http://::1:80", "http://h:1/a?b=c", "http://u@h:1", "ftp://h:1"}) {
    auto r = parse_upstream_url(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << bad;
      EXPECT_NE(r.status().message().find(bad), std::string::npos) << r.status().ToString();
    }
  }
  EXPECT_NE(parse_upstream_url("https://h:1").status().message().find("https"), std::string::npos);
}

TEST(SkillProxyStats, MeansAndFailureWindowFollowTheTimesGiven) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  SkillLoadStats s(seconds(60));
  const Clock::time_point t0{};  // any origin: the class reads no clock
  EXPECT_FALSE(s.warm());
  EXPECT_EQ(s.completed(), 0);

  // 11 tokens, the last 10 in 2 s: 5 tokens/s; first token after 500 ms.
  s.answered(t0 + seconds(1), SkillLoadStats::Generation{milliseconds(500), 11, seconds(2)});
  EXPECT_DOUBLE_EQ(s.tokens_per_second(), 5.0);
  EXPECT_DOUBLE_EQ(s.ttft_seconds(), 0.5);
  EXPECT_TRUE(s.warm());
  // 21 tokens in 1 s after the first: 20 tokens/s; the mean moves a fifth of the way.
  s.answered(t0 + seconds(2), SkillLoadStats::Generation{milliseconds(1500), 21, seconds(1)});
  EXPECT_DOUBLE_EQ(s.tokens_per_second(), 0.8 * 5 + 0.2 * 20);
  EXPECT_DOUBLE_EQ(s.ttft_seconds(), 0.8 * 0.5 + 0.2 * 1.5);
  // One token (no rate), a non-streamed answer (no decode), a non-generation:
  // counted, the rate untouched.
  s.answered(t0 + seconds(3), SkillLoadStats::Generation{milliseconds(500), 1, seconds(0)});
  s.answered(t0 + seconds(3), SkillLoadStats::Generation{milliseconds(500), 40, std::nullopt});
  s.answered(t0 + seconds(3), std::nullopt);
  EXPECT_DOUBLE_EQ(s.tokens_per_second(), 8.0);
  EXPECT_EQ(s.completed(), 5);

  s.failed(t0 + seconds(10));
  EXPECT_FALSE(s.warm());
  s.failed(t0 + seconds(40));
  EXPECT_EQ(s.failures_in_window(t0 + seconds(41)), 2);
  EXPECT_EQ(s.failures_in_window(t0 + seconds(69)), 2);
  EXPECT_EQ(s.failures_in_window(t0 + seconds(71)), 1);  // the first left the window at 70
  EXPECT_EQ(s.failures_in_window(t0 + seconds(100)), 0);
  s.probed(true);
  EXPECT_TRUE(s.warm());
  s.probed(false);
  EXPECT_FALSE(s.warm());
}

}  // namespace
}  // namespace swarm
