// `--api-key` on the real processes: `swarm serve` and `swarm gateway` (over a
// two-node chain) answer 401 with OpenAI's body without a key or with a wrong
// one, 200 with the key as a Bearer token or X-Api-Key, and keep /health and
// /metrics open. Through the gateway, n > 1 choices come back one per index,
// each as an n = 1 request with its own seed gives it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/mix64.h"
#include "swarm_harness.h"

namespace {

using swarm::testing::ChildProcess;
using swarm::testing::read_file;
using json = nlohmann::json;

constexpr const char* kKey = "sk-test-operator-1";

struct Answer {
  int status = -1;
  json body;
};

Answer ask(int port, const std::string& method, const std::string& path, const httplib::Headers& h,
           const json& body = nullptr) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  auto r = method == "GET" ? c.Get(path.c_str(), h) : c.Post(path.c_str(), h, body.dump(), "application/json");
  Answer a;
  if (!r) return a;
  a.status = r->status;
  a.body = json::parse(r->body, nullptr, false);
  return a;
}

void expect_keys_checked(int port) {
  const json completion = {{"prompt", "Hello"}, {"max_tokens", 2}, {"temperature", 0}};
  for (const httplib::Headers& h : {httplib::Headers{}, httplib::Headers{{"Authorization", "Bearer sk-wrong-key-00"}},
                                    httplib::Headers{{"X-Api-Key", "nope"}}}) {
    const Answer a = ask(port, "POST", "/v1/completions", h, completion);
    EXPECT_EQ(a.status, 401) << a.body.dump();
    EXPECT_EQ(a.body["error"]["code"], "invalid_api_key") << a.body.dump();
    EXPECT_EQ(ask(port, "GET", "/v1/models", h).status, 401);
  }
  EXPECT_EQ(ask(port, "POST", "/v1/completions", {{"Authorization", std::string("Bearer ") + kKey}}, completion).status, 200);
  EXPECT_EQ(ask(port, "POST", "/v1/completions", {{"X-Api-Key", kKey}}, completion).status, 200);
  EXPECT_EQ(ask(port, "GET", "/health", {}).status, 200);
  EXPECT_EQ(ask(port, "GET", "/metrics", {}).status, 200);
}

class ApiKeySwarmTest : public swarm::testing::SwarmHarness {};

TEST_F(ApiKeySwarmTest, ServeAndGatewayCheckTheKeyFlag) {
  ChildProcess serve({"serve", "-m", model_, "--listen", "127.0.0.1:0", "-t", "1", "--api-key", kKey},
                     dir_ + "/serve.err");
  ASSERT_TRUE(serve.ok()) << read_file(dir_ + "/serve.err");
  {
    SCOPED_TRACE("serve");
    expect_keys_checked(serve.port());
  }
  ASSERT_TRUE(start_chain({{0, 2}, {2, 4}}, {"--api-key", kKey, "--api-key", "sk-second-key-000"}));
  {
    SCOPED_TRACE("gateway");
    expect_keys_checked(gateway()->port());
  }
  // n = 3 through the gateway.
  const httplib::Headers auth = {{"Authorization", std::string("Bearer ") + kKey}};
  const json req = {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 1.0}, {"seed", 5}, {"n", 3}};
  const Answer whole = ask(gateway()->port(), "POST", "/v1/completions", auth, req);
  ASSERT_EQ(whole.status, 200) << whole.body.dump();
  ASSERT_EQ(whole.body["choices"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    json one = req;
    one["n"] = 1;
    one["seed"] = static_cast<int64_t>(i == 0 ? 5 : swarm::mix64(5 + i));
    const Answer single = ask(gateway()->port(), "POST", "/v1/completions", auth, one);
    EXPECT_EQ(whole.body["choices"][i]["index"], i);
    EXPECT_EQ(single.body["choices"][0]["text"], whole.body["choices"][i]["text"]) << i;
  }
}

TEST_F(ApiKeySwarmTest, ABadKeyFlagIsRefused) {
  auto r = swarm::testing::run_swarm("serve -m " + model_ + " --listen 127.0.0.1:0 --api-key 'a b'");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("printable"), std::string::npos) << r.out;
}

}  // namespace
