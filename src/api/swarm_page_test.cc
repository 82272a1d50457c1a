// The swarm page over HTTP: GET /swarm shows what the gateway's callback says
// of its swarm plus the server's own requests (live ones with their chain and
// tokens so far, then ended ones) and tokens/s; the page's files are served
// from the binary; a server with no swarm (swarm serve) serves neither.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "api/openai_server.h"
#include "api/web_assets.h"
#include "engine/test_data.h"

namespace swarm {
namespace {

using nlohmann::json;

// Routes each request onto a fixed chain, emits `first` tokens, then waits
// until released before emitting the rest.
class HeldBackend : public GenerationBackend {
 public:
  std::vector<ChainStage> chain = {{"127.0.0.1:7001", 0, 2, ""}, {"127.0.0.1:7002", 2, 4, ""}};
  int first = 3, rest = 2;
  int32_t token = 0;

  Result<GenerationResult> generate(const GenerationRequest& req,
                                    const TokenCallback& on_token) override {
    if (req.on_chain) req.on_chain(chain);
    for (int i = 0; i < first; ++i) on_token(token);
    {
      std::unique_lock<std::mutex> lock(mu_);
      held_ = true;
      cv_.notify_all();
      cv_.wait(lock, [&] { return released_; });
    }
    for (int i = 0; i < rest; ++i) on_token(token);
    GenerationResult g;
    g.prompt_tokens = static_cast<int>(req.prompt.size());
    g.completion_tokens = first + rest;
    g.finish_reason = "length";
    return g;
  }
  int context_length() const override { return 64; }
  void wait_held() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return held_; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false, released_ = false;
};

json get_json(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get(path.c_str());
  if (!r || r->status != 200) return json();
  return json::parse(r->body, nullptr, false);
}

class SwarmPageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = testing::find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
    ASSERT_FALSE(path.empty()) << "the tiny test model is missing from tests/data";
    auto tok = Tokenizer::Load(path);
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    tok_ = std::move(tok).value();
    backend_.token = tok_->find_token("▁the");
  }
  std::unique_ptr<OpenAiServer> start(bool with_swarm) {
    ApiOptions o;
    o.model_names = {"tiny"};
    o.tokenizer = tok_.get();
    if (with_swarm)
      o.swarm = [] {
        PeerStanding a;
        a.address = "127.0.0.1:7001";
        a.reachable = a.seen = true;
        a.last.address = a.address;
        a.last.model_id = "M";
        a.last.n_layer = 4;
        a.last.first_layer = 0;
        a.last.last_layer = 2;
        PeerStanding b;
        b.address = "127.0.0.1:7002";
        b.error = "connection refused";
        // A ledger: node a earned 2.5 credits, 1 of them paid.
        SwarmCredits credits;
        credits.totals.granted = 10'000'000;
        credits.totals.balances = 7'500'000;
        credits.totals.pending = 1'500'000;
        credits.totals.paid = 1'000'000;
        credits.nodes[a.address] = {a.address, 1'500'000, 1'000'000, 0, 40, 2};
        return SwarmState{{{{"tiny"}, "M", 4}}, {a, b}, credits};
      };
    auto server = OpenAiServer::Create(o, backend_);
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    if (!server.ok()) return nullptr;
    auto port = (*server)->listen("127.0.0.1", 0);
    EXPECT_TRUE(port.ok());
    port_ = port.ok() ? *port : 0;
    return std::move(server).value();
  }

  std::unique_ptr<Tokenizer> tok_;
  HeldBackend backend_;
  int port_ = 0;
};

TEST_F(SwarmPageTest, ShowsTheSwarmAndEachRequestOnItsChain) {
  auto server = start(true);
  ASSERT_TRUE(server);
  struct Release {  // before the server stops, even when an assertion fails
    HeldBackend& b;
    ~Release() { b.release(); }
  } release{backend_};
  json s = get_json(port_, "/swarm");
  ASSERT_TRUE(s.is_object());
  ASSERT_EQ(s["models"].size(), 1u);
  EXPECT_EQ(s["models"][0]["gaps"], json::parse(R"([{"first_layer":2,"last_layer":4}])"));
  ASSERT_EQ(s["nodes"].size(), 2u);
  EXPECT_EQ(s["nodes"][1]["reachable"], false);
  EXPECT_EQ(s["nodes"][1]["error"], "connection refused");
  EXPECT_EQ(s["nodes"][0]["credits_pending"], 1.5);
  EXPECT_EQ(s["nodes"][0]["credits_paid"], 1.0);
  EXPECT_EQ(s["nodes"][1]["credits_pending"], 0.0);  // a node the ledger has not paid yet
  EXPECT_EQ(s["credits"]["granted"], 10.0);
  EXPECT_EQ(s["credits"]["conserved"], true);
  EXPECT_TRUE(s["requests"].empty());

  // A streamed request held after 3 tokens is live, on its chain, with 3 tokens.
  auto done = std::async(std::launch::async, [&] {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60);
    const json body = {
        {"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 8}, {"stream", true}};
    auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
    return r ? r->status : -1;
  });
  backend_.wait_held();
  s = get_json(port_, "/swarm");
  ASSERT_EQ(s["requests"].size(), 1u) << s.dump();
  json r = s["requests"][0];
  EXPECT_TRUE(r["id"].get<std::string>().starts_with("chatcmpl-"));
  EXPECT_EQ(r["model"], "tiny");
  EXPECT_EQ(r["live"], true);
  EXPECT_EQ(r["completion_tokens"], 3);
  EXPECT_GT(r["prompt_tokens"].get<int>(), 0);
  EXPECT_EQ(r["chain"].size(), 2u);
  EXPECT_EQ(r["chain"][1]["address"], "127.0.0.1:7002");
  EXPECT_EQ(s["live_requests"], 1);

  backend_.release();
  EXPECT_EQ(done.get(), 200);
  // Ended: no longer live, with its outcome and every token. The chart counts
  // the 5 tokens once their second has passed.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  double counted = 0;
  do {
    s = get_json(port_, "/swarm");
    counted = 0;
    for (const json& v : s["tokens_per_second"]["samples"]) counted += v.get<double>();
    counted *= s["tokens_per_second"]["bucket_seconds"].get<double>();
    if (counted >= 5) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_DOUBLE_EQ(counted, 5);
  ASSERT_EQ(s["requests"].size(), 1u);
  r = s["requests"][0];
  EXPECT_EQ(r["live"], false);
  EXPECT_EQ(r["outcome"], "length");
  EXPECT_EQ(r["completion_tokens"], 5);
  EXPECT_EQ(s["live_requests"], 0);
  EXPECT_EQ(s["tokens_per_second"]["samples"].size(), 300u);  // five minutes of seconds
}

TEST_F(SwarmPageTest, ServesThePageFromTheBinary) {
  auto server = start(true);
  ASSERT_TRUE(server);
  ASSERT_FALSE(web_assets().empty());
  httplib::Client c("127.0.0.1", port_);
  auto index = c.Get("/");
  ASSERT_TRUE(index);
  EXPECT_EQ(index->status, 200);
  EXPECT_TRUE(index->get_header_value("Content-Type").starts_with("text/html"));
  EXPECT_NE(index->body.find("swarm.js"), std::string::npos);
  for (const WebAsset& a : web_assets()) {
    SCOPED_TRACE(std::string(a.path));
    auto r = c.Get("/" + std::string(a.path));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, a.body);
    EXPECT_EQ(r->get_header_value("Content-Type"), a.content_type);
  }
  // Only the page's own files: a regex character in a path matches nothing else.
  auto other = c.Get("/swarmXjs");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);
}

TEST_F(SwarmPageTest, NoSwarmNoPage) {
  auto server = start(false);
  ASSERT_TRUE(server);
  httplib::Client c("127.0.0.1", port_);
  for (const char* path : {"/", "/swarm", "/index.html"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << path;
  }
}

}  // namespace
}  // namespace swarm
