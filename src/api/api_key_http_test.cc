// API keys over HTTP on 127.0.0.1 (doc/http-api.md, "API keys"): with
// --api-key keys, every route that reads or generates needs one (401 with
// OpenAI's body without it or with a wrong one), given as a Bearer token or as
// llama-server's X-Api-Key; /health, /metrics and CORS preflights stay open;
// an --api-key key beside a ledger is never charged.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "api/api_key_check.h"
#include "api/openai_server.h"
#include "engine/test_data.h"
#include "trust/api_keys.h"
#include "trust/ledger.h"

namespace swarm {
namespace {

using nlohmann::json;

constexpr const char* kModel = "tiny-llama/gguf/tiny-llama-Q8_0.gguf";
constexpr const char* kKey = "sk-operator-key-0001";

// Emits three tokens of the prompt back.
class EchoBackend : public GenerationBackend {
 public:
  Result<GenerationResult> generate(const GenerationRequest& req,
                                    const TokenCallback& on_token) override {
    GenerationResult g;
    for (int i = 0; i < 3 && i < static_cast<int>(req.prompt.size()); ++i) {
      ++g.completion_tokens;
      if (!on_token(req.prompt[i])) break;
    }
    g.prompt_tokens = static_cast<int>(req.prompt.size());
    g.finish_reason = "length";
    g.route = "echo";
    return g;
  }
  int context_length() const override { return 64; }
  Result<double> price_per_1k_tokens() override { return 1.0; }
};

struct Reply {
  int status = -1;
  json j;
};

Reply ask(int port, const std::string& method, const std::string& path,
          const httplib::Headers& headers, const std::string& body = "") {
  httplib::Client c("127.0.0.1", port);
  httplib::Result r = method == "GET"      ? c.Get(path.c_str(), headers)
                      : method == "OPTIONS" ? c.Options(path.c_str(), headers)
                                            : c.Post(path.c_str(), headers, body, "application/json");
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.j = json::parse(r->body, nullptr, false);
  return out;
}

class ApiKeyHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = testing::find_testdata(kModel);
    ASSERT_FALSE(path.empty()) << kModel << " is missing from tests/data";
    auto tok = Tokenizer::Load(path);
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    tok_ = std::move(tok).value();
  }

  int start(ApiOptions o) {
    o.model_names = {"echo"};
    o.tokenizer = tok_.get();
    auto server = OpenAiServer::Create(o, backend_);
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    if (!server.ok()) return -1;
    server_ = std::move(server).value();
    auto port = server_->listen("127.0.0.1", 0);
    EXPECT_TRUE(port.ok());
    return port.ok() ? *port : -1;
  }

  std::unique_ptr<Tokenizer> tok_;
  EchoBackend backend_;
  std::unique_ptr<OpenAiServer> server_;
};

const std::string kChat = R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":3})";

void expect_401(const Reply& r) {
  EXPECT_EQ(r.status, 401) << r.j.dump();
  ASSERT_TRUE(r.j.contains("error")) << r.j.dump();
  EXPECT_EQ(r.j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(r.j["error"]["code"], "invalid_api_key");
  EXPECT_TRUE(r.j["error"]["param"].is_null());
  EXPECT_FALSE(r.j["error"]["message"].get<std::string>().empty());
}

TEST_F(ApiKeyHttpTest, KeysAreCheckedOnEveryRouteButHealthMetricsAndPreflights) {
  ApiOptions o;
  o.api_keys = {kKey, "second-key"};
  const int port = start(o);
  ASSERT_GT(port, 0);
  const httplib::Headers none;
  const httplib::Headers bearer = {{"Authorization", std::string("Bearer ") + kKey}};
  const httplib::Headers x_api_key = {{"X-Api-Key", "second-key"}};
  const httplib::Headers wrong = {{"Authorization", "Bearer sk-operator-key-0002"}};
  const httplib::Headers wrong_x = {{"X-Api-Key", "sk-operator-key-000"}};

  for (const char* path : {"/v1/chat/completions", "/chat/completions"}) {
    expect_401(ask(port, "POST", path, none, kChat));
    expect_401(ask(port, "POST", path, wrong, kChat));
    expect_401(ask(port, "POST", path, wrong_x, kChat));
    EXPECT_EQ(ask(port, "POST", path, bearer, kChat).status, 200);
    EXPECT_EQ(ask(port, "POST", path, x_api_key, kChat).status, 200);
  }
  const std::string completion = R"({"prompt":"hello","max_tokens":2})";
  expect_401(ask(port, "POST", "/v1/completions", none, completion));
  EXPECT_EQ(ask(port, "POST", "/v1/completions", bearer, completion).status, 200);
  expect_401(ask(port, "POST", "/completion", none, completion));
  expect_401(ask(port, "POST", "/tokenize", none, R"({"content":"hi"})"));
  EXPECT_EQ(ask(port, "POST", "/tokenize", x_api_key, R"({"content":"hi"})").status, 200);
  expect_401(ask(port, "GET", "/v1/models", none));
  expect_401(ask(port, "GET", "/v1/models/echo", wrong));
  expect_401(ask(port, "GET", "/props", none));
  EXPECT_EQ(ask(port, "GET", "/v1/models", bearer).status, 200);

  // Open: health checks, scrapes and the browser's preflight (it never sends
  // credentials; the request after it does).
  EXPECT_EQ(ask(port, "GET", "/health", none).status, 200);
  httplib::Client c("127.0.0.1", port);
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  const httplib::Headers preflight = {{"Origin", "http://localhost:5173"},
                                      {"Access-Control-Request-Headers", "authorization"}};
  EXPECT_EQ(ask(port, "OPTIONS", "/v1/chat/completions", preflight).status, 204);
}

TEST_F(ApiKeyHttpTest, WithoutKeysTheApiIsOpen) {
  const int port = start(ApiOptions{});
  ASSERT_GT(port, 0);
  EXPECT_EQ(ask(port, "POST", "/v1/chat/completions", {}, kChat).status, 200);
  EXPECT_EQ(ask(port, "GET", "/v1/models", {}).status, 200);
}

// Beside a ledger: its keys are charged, an --api-key key opens the API and
// leaves the balances alone; a key in neither gets 401.
TEST_F(ApiKeyHttpTest, AnOperatorKeyBesideALedgerIsNotCharged) {
  auto ledger = trust::Ledger::Open(":memory:");
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
  auto keys = trust::parse_api_keys("sk-ledger-key-0000001 0 poor\n");
  ASSERT_TRUE(keys.ok());
  ASSERT_TRUE(trust::import_api_keys(**ledger, *keys).ok());
  ApiOptions o;
  o.ledger = ledger->get();
  o.api_keys = {kKey};
  const int port = start(o);
  ASSERT_GT(port, 0);
  // The ledger's key has no credits: 402; the operator's key is not held to any.
  const Reply poor = ask(port, "POST", "/v1/chat/completions",
                         {{"Authorization", "Bearer sk-ledger-key-0000001"}}, kChat);
  EXPECT_EQ(poor.status, 402) << poor.j.dump();
  const Reply op = ask(port, "POST", "/v1/chat/completions",
                       {{"Authorization", std::string("Bearer ") + kKey}}, kChat);
  EXPECT_EQ(op.status, 200) << op.j.dump();
  expect_401(ask(port, "POST", "/v1/chat/completions",
                 {{"Authorization", "Bearer sk-unknown-key-000001"}}, kChat));
}

TEST(ApiKeyCheckTest, ComparesWholeKeysAndChecksSyntax) {
  StaticApiKeys keys({"abc", "sk-0123456789"});
  EXPECT_TRUE(keys.contains("abc"));
  EXPECT_TRUE(keys.contains("sk-0123456789"));
  EXPECT_FALSE(keys.contains("ab"));
  EXPECT_FALSE(keys.contains("abcd"));
  EXPECT_FALSE(keys.contains(""));
  EXPECT_FALSE(StaticApiKeys().contains("abc"));
  EXPECT_TRUE(check_api_key_syntax("sk-x").ok());
  EXPECT_FALSE(check_api_key_syntax("").ok());
  EXPECT_FALSE(check_api_key_syntax("a b").ok());
  EXPECT_FALSE(check_api_key_syntax(std::string(257, 'k')).ok());
}

}  // namespace
}  // namespace swarm
