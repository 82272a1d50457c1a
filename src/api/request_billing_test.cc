// The HTTP API with a credits ledger, in process over 127.0.0.1, against a
// backend that reports a price and the work of two nodes: 401 and 402 bodies,
// what is held, charged and returned, and usage's cost and served_by.
#include "api/request_billing.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "api/openai_server.h"
#include "engine/test_data.h"
#include "engine/tokenizer.h"
#include "trust/credits.h"

namespace swarm {
namespace {

using nlohmann::json;
constexpr int64_t kMicro = trust::kMicroPerCredit;

// Emits `n` tokens and reports two nodes' work over prompt + completion.
class PricedBackend : public GenerationBackend {
 public:
  double price = 3;  // 1 + 2 on the two stages
  Status fail;
  Result<GenerationResult> generate(const GenerationRequest& req, const TokenCallback& on_token) override {
    if (!fail.ok()) return fail;
    GenerationResult g;
    g.prompt_tokens = static_cast<int>(req.prompt.size());
    for (int i = 0; i < req.sampling.max_tokens; ++i) {
      ++g.completion_tokens;
      if (!on_token(100 + i)) break;
    }
    g.finish_reason = "length";
    for (int s = 0; s < 2; ++s) {
      NodeWork w;
      w.node_id = s == 0 ? "aaaa" : "bbbb";
      w.address = "127.0.0.1:" + std::to_string(7000 + s);
      w.first_layer = 2 * s;
      w.last_layer = 2 * s + 2;
      w.tokens = w.steps = g.prompt_tokens + g.completion_tokens;
      w.price_per_1k = s + 1;
      w.receipts = std::string(64, s == 0 ? 'a' : 'b');
      g.work.push_back(w);
    }
    return g;
  }
  int context_length() const override { return 256; }
  Result<double> price_per_1k_tokens() override { return price; }
};

class RequestBillingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string model = testing::find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
    ASSERT_FALSE(model.empty());
    auto tok = Tokenizer::Load(model);
    ASSERT_TRUE(tok.ok());
    tok_ = std::move(*tok);
    dir_ = ::testing::TempDir() + "/billing_" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto l = trust::Ledger::Open(dir_ + "/gw.db");
    ASSERT_TRUE(l.ok());
    ledger_ = std::move(*l);
    ASSERT_TRUE(*ledger_->add_account("sk-rich-0123456789abcdef", "rich", 10 * kMicro));
    ASSERT_TRUE(*ledger_->add_account("sk-poor-0123456789abcdef", "poor", 10));
    ApiOptions o;
    o.model_names = {"m"};
    o.tokenizer = tok_.get();
    o.ledger = ledger_.get();
    auto s = OpenAiServer::Create(o, backend_);
    ASSERT_TRUE(s.ok());
    server_ = std::move(*s);
    auto port = server_->listen("127.0.0.1", 0);
    ASSERT_TRUE(port.ok());
    port_ = *port;
  }
  void TearDown() override {
    server_.reset();
    ledger_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::pair<int, json> post(const std::string& key, json body) {
    httplib::Client c("127.0.0.1", port_);
    httplib::Headers h;
    if (!key.empty()) h.emplace("Authorization", key);
    auto r = c.Post("/v1/completions", h, body.dump(), "application/json");
    if (!r) return {-1, nullptr};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  static json body(int max_tokens, bool stream = false) {
    json b = {{"prompt", {1, 2, 3, 4}}, {"max_tokens", max_tokens}};  // 4 prompt tokens
    if (stream) {
      b["stream"] = true;
      b["stream_options"] = {{"include_usage", true}};
    }
    return b;
  }
  int64_t balance(const std::string& key) { return ledger_->authorize(key)->balance; }

  std::unique_ptr<Tokenizer> tok_;
  std::string dir_;
  std::unique_ptr<trust::Ledger> ledger_;
  PricedBackend backend_;
  std::unique_ptr<OpenAiServer> server_;
  int port_ = 0;
};

TEST_F(RequestBillingTest, BearerKeyIsReadFromTheHeader) {
  httplib::Request r;
  EXPECT_FALSE(bearer_key(r));
  r.set_header("Authorization", "Basic abc");
  EXPECT_FALSE(bearer_key(r));
  httplib::Request b;
  b.set_header("Authorization", "bearer  sk-x ");
  EXPECT_EQ(bearer_key(b).value_or(""), "sk-x");
}

TEST_F(RequestBillingTest, NoValidKeyIs401) {
  for (const std::string& key : {std::string(), std::string("Bearer sk-nobody-0123456789"),
                                 std::string("Token sk-rich-0123456789abcdef")}) {
    auto [status, j] = post(key, body(4));
    EXPECT_EQ(status, 401) << key;
    EXPECT_EQ(j["error"]["type"], "invalid_request_error");
    EXPECT_EQ(j["error"]["code"], "invalid_api_key");
    EXPECT_TRUE(j["error"]["param"].is_null());
  }
}

TEST_F(RequestBillingTest, ChargesTheWorkAndReturnsTheRestOfTheHold) {
  auto [status, j] = post("Bearer sk-rich-0123456789abcdef", body(6));
  ASSERT_EQ(status, 200) << j.dump();
  // 10 token positions on each node, at 1 and 2 credits per 1,000: 0.03 credits.
  EXPECT_DOUBLE_EQ(j["usage"]["cost_credits"].get<double>(), 0.03);
  ASSERT_EQ(j["usage"]["served_by"].size(), 2u);
  const json& s1 = j["usage"]["served_by"][1];
  EXPECT_EQ(s1["node_id"], "bbbb");
  EXPECT_EQ(s1["address"], "127.0.0.1:7001");
  EXPECT_EQ(s1["layers"], "2:4");
  EXPECT_EQ(s1["tokens"], 10);
  EXPECT_EQ(s1["price_per_1k"], 2.0);
  EXPECT_DOUBLE_EQ(s1["credits"].get<double>(), 0.02);
  EXPECT_EQ(balance("sk-rich-0123456789abcdef"), 10 * kMicro - 30000);

  // Streamed: the usage chunk says the same.
  httplib::Client c("127.0.0.1", port_);
  auto r = c.Post("/v1/completions", {{"Authorization", "Bearer sk-rich-0123456789abcdef"}},
                  body(6, true).dump(), "application/json");
  ASSERT_TRUE(r && r->status == 200);
  const size_t at = r->body.find("\"cost_credits\"");
  ASSERT_NE(at, std::string::npos) << r->body;
  EXPECT_EQ(balance("sk-rich-0123456789abcdef"), 10 * kMicro - 60000);
  auto t = ledger_->totals();
  EXPECT_TRUE(t->conserved());
  EXPECT_EQ(t->open_holds, 0);
  EXPECT_EQ(t->entries, 4);
}

TEST_F(RequestBillingTest, MaximumCostAboveTheBalanceIs402AndChargesNothing) {
  // (4 + 1) tokens at 3 credits per 1,000 = 0.015 credits > 10 micro-credits.
  auto [status, j] = post("Bearer sk-poor-0123456789abcdef", body(1));
  EXPECT_EQ(status, 402) << j.dump();
  EXPECT_EQ(j["error"]["type"], "insufficient_quota");
  EXPECT_EQ(j["error"]["code"], "insufficient_quota");
  const std::string msg = j["error"]["message"];
  EXPECT_NE(msg.find("0.00001 credits"), std::string::npos) << msg;   // the balance
  EXPECT_NE(msg.find("0.015 credits"), std::string::npos) << msg;  // what it may cost
  EXPECT_EQ(balance("sk-poor-0123456789abcdef"), 10);
  EXPECT_EQ(ledger_->totals()->open_holds, 0);
}

TEST_F(RequestBillingTest, AFailedRequestReturnsItsHold) {
  backend_.fail = Status::Unavailable("no route");
  auto [status, j] = post("Bearer sk-rich-0123456789abcdef", body(6));
  EXPECT_EQ(status, 503) << j.dump();
  EXPECT_EQ(balance("sk-rich-0123456789abcdef"), 10 * kMicro);
  auto t = ledger_->totals();
  EXPECT_EQ(t->open_holds, 0);
  EXPECT_EQ(t->entries, 0);
  EXPECT_TRUE(t->conserved());
}

}  // namespace
}  // namespace swarm
