// The skills market on 127.0.0.1 (doc/skills.md): a `swarm dht` bootstrap
// peer, providers that announce signed skill records (`swarm node --skill`
// with our engine, `swarm node --backend` in front of a real `swarm serve`),
// and a `swarm gateway --bootstrap` that lists the skills and routes each
// request by price, speed and failures, failing over when a provider dies.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>

#include "swarm_client.h"
#include "swarm_harness.h"

namespace {

using json = nlohmann::json;
using swarm::testing::ChildProcess;
using swarm::testing::eventually;
using swarm::testing::read_file;

class SkillsSwarmTest : public swarm::testing::SwarmHarness {
 protected:
  void SetUp() override {
    SwarmHarness::SetUp();
    if (HasFatalFailure()) return;
    boot_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"dht", "--listen", "127.0.0.1:0"}, dir_ + "/dht.err");
    ASSERT_TRUE(boot_->ok()) << read_file(dir_ + "/dht.err");
  }
  void TearDown() override {
    stop_all();
    extra_.clear();
    boot_.reset();
    SwarmHarness::TearDown();
  }

  // `swarm node --skill -m MODEL --skill-name NAME ...`: returns its node id.
  std::string engine_provider(const std::string& name, std::vector<std::string> flags = {}) {
    const swarm::testing::KeyFile key = keygen("p" + std::to_string(nodes_.size()));
    std::vector<std::string> args = {"--skill", "--skill-name", name, "--identity", key.path,
                                     "--bootstrap", boot_->address(), "--announce-interval", "2"};
    args.insert(args.end(), flags.begin(), flags.end());
    ChildProcess* p = start_node(args);
    EXPECT_TRUE(p->ok()) << read_file(node_log());
    return key.node_id;
  }

  // `swarm serve` and a `swarm node --backend` in front of it: the node id.
  std::string backend_provider(const std::string& name, std::vector<std::string> flags = {},
                               ChildProcess** server = nullptr) {
    extra_.push_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{"serve", "-m", model_, "--listen", "127.0.0.1:0", "-t", "1",
                                 "--model-name", name},
        dir_ + "/serve" + std::to_string(extra_.size()) + ".err"));
    EXPECT_TRUE(extra_.back()->ok());
    if (server) *server = extra_.back().get();
    const swarm::testing::KeyFile key = keygen("b" + std::to_string(extra_.size()));
    std::vector<std::string> args = {"node", "--backend", "http://" + extra_.back()->address(),
                                     "--listen", "127.0.0.1:0", "--identity", key.path,
                                     "--bootstrap", boot_->address(), "--announce-interval", "2"};
    args.insert(args.end(), flags.begin(), flags.end());
    ChildProcess* p = launch(args, dir_ + "/backend-node" + std::to_string(extra_.size()) + ".err", nodes_);
    EXPECT_TRUE(p->ok());
    return key.node_id;
  }

  ChildProcess* skill_gateway(std::vector<std::string> flags = {}) {
    std::vector<std::string> args = {"--bootstrap", boot_->address(), "--dht-refresh", "0.2"};
    args.insert(args.end(), flags.begin(), flags.end());
    return start_gateway(args);
  }

  json get(const std::string& path) {
    httplib::Client c("127.0.0.1", gateway()->port());
    if (!api_key_.empty()) c.set_bearer_token_auth(api_key_);
    auto res = c.Get(path);
    return res && res->status == 200 ? json::parse(res->body, nullptr, false) : json();
  }
  // The gateway's /v1/models entry of `skill` once it lists `providers` of them.
  json wait_for_skill(const std::string& skill, int providers) {
    json entry;
    EXPECT_TRUE(eventually(
        [&] {
          const json models = get("/v1/models");
          if (!models.is_object()) return false;
          for (const json& m : models["data"])
            if (m["id"] == skill && m.contains("swarm") &&
                m["swarm"]["providers"].get<int>() >= providers) {
              entry = m;
              return true;
            }
          return false;
        },
        std::chrono::seconds(30)))
        << skill << " never listed with " << providers << " providers\n"
        << read_file(gateway_log());
    return entry;
  }

  // POST `path` with `body` to `port`: status and parsed body.
  static std::pair<int, json> post(int port, const std::string& path, const json& body) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    auto res = c.Post(path, body.dump(), "application/json");
    if (!res) return {-1, json()};
    return {res->status, json::parse(res->body, nullptr, false)};
  }

  std::unique_ptr<ChildProcess> boot_;
  std::vector<std::unique_ptr<ChildProcess>> extra_;  // servers behind --backend
  std::string api_key_;  // sent by get() when not empty
};

TEST_F(SkillsSwarmTest, ABackendServerAnswersThroughTheGatewayAsItWouldDirectly) {
  ChildProcess* serve = nullptr;
  const std::string provider = backend_provider("kjv", {"--price", "2"}, &serve);
  ASSERT_TRUE(skill_gateway()->ok());
  const json entry = wait_for_skill("kjv", 1);
  EXPECT_EQ(entry["swarm"]["kind"], "skill");
  EXPECT_EQ(entry["swarm"]["tasks"], json({"chat", "completions", "embeddings"}));
  EXPECT_DOUBLE_EQ(entry["swarm"]["min_price_per_1k"].get<double>(), 1.0);  // idle: half the base
  // `swarm status` shows the skill and its provider as the DHT holds them.
  auto status = swarm::testing::run_swarm("status --bootstrap " + boot_->address() + " --json");
  ASSERT_EQ(status.code, 0) << status.out;
  const json st = json::parse(status.out.substr(status.out.find("{\"models\"")), nullptr, false);
  ASSERT_TRUE(st.is_object()) << status.out;
  ASSERT_EQ(st["skills"].size(), 1u) << status.out;
  EXPECT_EQ(st["skills"][0]["skill"], "kjv");
  EXPECT_EQ(st["skills"][0]["providers"][0]["node_id"], provider);
  EXPECT_EQ(st["skills"][0]["providers"][0]["engine"], true);  // a swarm serve behind it
  auto text = swarm::testing::run_swarm("status --bootstrap " + boot_->address());
  EXPECT_NE(text.out.find("skill kjv: 1 provider(s)"), std::string::npos) << text.out;
  // The chain model is listed beside it.
  bool tiny = false;
  const json models = get("/v1/models");
  for (const json& m : models["data"])
    if (m["id"] == "tiny") {
      tiny = true;
      EXPECT_EQ(m["swarm"], json({{"kind", "chain"}, {"available", false}}));  // no layer nodes here
    }
  EXPECT_TRUE(tiny);

  const int gw = gateway()->port(), direct = serve->port();
  const json chat = {{"model", "kjv"},
                     {"messages", {{{"role", "user"}, {"content", "In the beginning"}}}},
                     {"max_tokens", 12},
                     {"temperature", 0}};
  auto [s1, via] = post(gw, "/v1/chat/completions", chat);
  auto [s2, own] = post(direct, "/v1/chat/completions", chat);
  ASSERT_EQ(s1, 200) << via.dump() << read_file(gateway_log());
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(via["choices"][0]["message"]["content"], own["choices"][0]["message"]["content"]);
  EXPECT_EQ(via["usage"]["swarm"]["provider"], provider);
  EXPECT_GT(via["usage"]["swarm"]["price_per_1k"].get<double>(), 0);
  EXPECT_NEAR(via["usage"]["swarm"]["cost"].get<double>(),
              via["usage"]["swarm"]["price_per_1k"].get<double>() *
                  via["usage"]["total_tokens"].get<double>() / 1000,
              1e-9);

  const json completion = {{"model", "kjv"}, {"prompt", "And God said"}, {"max_tokens", 10},
                           {"temperature", 0}};
  auto [s3, cvia] = post(gw, "/v1/completions", completion);
  auto [s4, cown] = post(direct, "/v1/completions", completion);
  ASSERT_EQ(s3, 200);
  EXPECT_EQ(cvia["choices"][0]["text"], cown["choices"][0]["text"]);
  // Streamed, the same text again.
  EXPECT_EQ(swarm::testing::stream_completion(gw, "kjv", "And God said", 10),
            swarm::testing::stream_completion(direct, "kjv", "And God said", 10));

  const json embed = {{"model", "kjv"}, {"input", "light"}};
  auto [s5, evia] = post(gw, "/v1/embeddings", embed);
  auto [s6, eown] = post(direct, "/v1/embeddings", embed);
  ASSERT_EQ(s5, 200) << evia.dump();
  EXPECT_EQ(evia["data"][0]["embedding"], eown["data"][0]["embedding"]);

  // The backend's own refusal passes through, status and OpenAI body alike.
  json bad = completion;
  bad["max_tokens"] = -5;
  auto [s7, evia2] = post(gw, "/v1/completions", bad);
  auto [s8, eown2] = post(direct, "/v1/completions", bad);
  EXPECT_EQ(s7, 400);
  EXPECT_EQ(s7, s8);
  EXPECT_EQ(evia2["error"], eown2["error"]);
  // A malformed price cap is the gateway's own 400.
  json capped = completion;
  capped["max_price"] = "cheap";
  auto [s9, e9] = post(gw, "/v1/completions", capped);
  EXPECT_EQ(s9, 400);
  EXPECT_EQ(e9["error"]["param"], "max_price");
}

TEST_F(SkillsSwarmTest, APriceCapExcludesExpensiveProviders) {
  const std::string cheap = engine_provider("kjv", {"--price", "1"});
  const std::string dear = engine_provider("kjv", {"--price", "10"});
  ASSERT_TRUE(skill_gateway({"--time-value", "100", "--skill-explore", "0"})->ok());
  wait_for_skill("kjv", 2);
  const json body = {{"model", "kjv"}, {"prompt", "And"}, {"max_tokens", 4}, {"temperature", 0}};
  for (int i = 0; i < 4; ++i) {
    json capped = body;
    capped["max_price"] = 2;  // the cheap one announces 0.5-1.5, the dear one 5-15
    auto [status, got] = post(gateway()->port(), "/v1/completions", capped);
    ASSERT_EQ(status, 200) << got.dump();
    EXPECT_EQ(got["usage"]["swarm"]["provider"], cheap);
  }
  json none = body;
  none["max_price"] = 0.01;
  auto [status, got] = post(gateway()->port(), "/v1/completions", none);
  EXPECT_EQ(status, 503);
  EXPECT_EQ(got["error"]["code"], "skill_unavailable");
  EXPECT_NE(got["error"]["message"].get<std::string>().find("max_price"), std::string::npos);
  (void)dear;
}

TEST_F(SkillsSwarmTest, AProviderThatFailsBeforeAnsweringIsLeftForTheNext) {
  // The cheapest provider's backend is gone: its proxy answers 502, and the
  // gateway moves on to the other at once.
  ChildProcess* serve = nullptr;
  const std::string dead = backend_provider("kjv", {"--price", "0"}, &serve);
  const std::string alive = engine_provider("kjv", {"--price", "5"});
  ASSERT_TRUE(skill_gateway({"--time-value", "0", "--skill-explore", "0"})->ok());
  wait_for_skill("kjv", 2);
  serve->signal(SIGKILL);
  for (int i = 0; i < 3; ++i) {
    auto [status, got] = post(gateway()->port(), "/v1/completions",
                              {{"model", "kjv"}, {"prompt", "And"}, {"max_tokens", 4},
                               {"temperature", 0}});
    ASSERT_EQ(status, 200) << got.dump() << read_file(gateway_log());
    EXPECT_EQ(got["usage"]["swarm"]["provider"], alive);
  }
  EXPECT_NE(read_file(gateway_log()).find("failed"), std::string::npos);
  (void)dead;
}

TEST_F(SkillsSwarmTest, KillingEveryProviderOfOneRegionLeavesTheOthersServing) {
  // Two "regions" of two providers each; the cheaper region goes down at once
  // (SIGKILL, no withdrawal: its records linger until they expire).
  engine_provider("kjv", {"--price", "0"});
  engine_provider("kjv", {"--price", "0"});
  const std::string east1 = engine_provider("kjv", {"--price", "3"});
  const std::string east2 = engine_provider("kjv", {"--price", "3"});
  ASSERT_TRUE(skill_gateway({"--time-value", "0", "--skill-explore", "0"})->ok());
  wait_for_skill("kjv", 4);
  nodes_[0]->signal(SIGKILL);
  nodes_[1]->signal(SIGKILL);
  std::vector<std::future<std::pair<int, json>>> got;
  for (int i = 0; i < 6; ++i)
    got.push_back(std::async(std::launch::async, [&] {
      return post(gateway()->port(), "/v1/chat/completions",
                  {{"model", "kjv"},
                   {"messages", {{{"role", "user"}, {"content", "And God said"}}}},
                   {"max_tokens", 6},
                   {"temperature", 0}});
    }));
  for (auto& f : got) {
    auto [status, body] = f.get();
    ASSERT_EQ(status, 200) << body.dump() << read_file(gateway_log());
    const std::string provider = body["usage"]["swarm"]["provider"];
    EXPECT_TRUE(provider == east1 || provider == east2) << provider;
  }
}

TEST_F(SkillsSwarmTest, AnEngineSkillKilledMidStreamContinuesExactlyOnAnother) {
  // The slow one is free and time is worth nothing here: it is chosen first,
  // then killed once the stream is under way.
  const std::string slow = engine_provider("kjv", {"--price", "0", "--slowdown", "8"});
  const std::string fast = engine_provider("kjv", {"--price", "5"});
  ASSERT_TRUE(skill_gateway({"--time-value", "0", "--skill-explore", "0"})->ok());
  wait_for_skill("kjv", 2);
  const std::string prompt = "In the beginning God created";
  const std::string want = single_process(prompt, 40);
  ChildProcess* victim = nodes_.front().get();
  std::atomic<int> chunks{0};
  json usage;
  auto got = std::async(std::launch::async, [&] {
    return swarm::testing::stream_completion(gateway()->port(), "kjv", prompt, 40,
                                             [&] { ++chunks; }, &usage);
  });
  ASSERT_TRUE(eventually([&] { return chunks.load() >= 3; }, std::chrono::seconds(60)));
  victim->signal(SIGKILL);
  EXPECT_EQ(got.get(), want) << read_file(gateway_log());
  EXPECT_EQ(usage["swarm"]["provider"], fast);
  EXPECT_EQ(usage["swarm"]["failovers"], 1);
  EXPECT_EQ(usage["completion_tokens"], 40);
  EXPECT_NE(read_file(gateway_log()).find("cut off"), std::string::npos);
  // /metrics counts the resume, and the failure against the killed provider.
  httplib::Client c("127.0.0.1", gateway()->port());
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("swarm_skill_resumes_total 1"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("swarm_skill_requests_total{skill=\"kjv\",provider=\"" + slow +
                               "\",outcome=\"failed\"} 1"),
            std::string::npos)
      << metrics->body;
}

TEST_F(SkillsSwarmTest, SkillRequestsAreChargedToTheKeyAndPaidToTheProvider) {
  const std::string keys = dir_ + "/keys.txt", db = dir_ + "/gateway.db";
  {
    std::ofstream f(keys);
    f << "sk-alice-0123456789 10 alice\nsk-bob-0123456789ab 0.000001 bob\n";
  }
  const std::string provider = engine_provider("kjv", {"--price", "100"});
  ASSERT_TRUE(skill_gateway({"--api-keys", keys, "--trust-db", db})->ok());
  api_key_ = "sk-alice-0123456789";
  wait_for_skill("kjv", 1);
  auto call = [&](const std::string& key) {
    httplib::Client c("127.0.0.1", gateway()->port());
    c.set_read_timeout(120, 0);
    httplib::Headers h;
    if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
    auto res = c.Post("/v1/completions", h,
                      json({{"model", "kjv"}, {"prompt", "And"}, {"max_tokens", 8}, {"temperature", 0}})
                          .dump(),
                      "application/json");
    return std::make_pair(res ? res->status : -1, res ? json::parse(res->body, nullptr, false) : json());
  };
  EXPECT_EQ(call("").first, 401);
  auto [poor, refusal] = call("sk-bob-0123456789ab");
  EXPECT_EQ(poor, 402) << refusal.dump();
  auto [status, got] = call("sk-alice-0123456789");
  ASSERT_EQ(status, 200) << got.dump() << read_file(gateway_log());
  const double cost = got["usage"]["swarm"]["cost"].get<double>();
  EXPECT_GT(cost, 0);
  // The ledger took the cost from alice and owes it to the provider.
  auto r = swarm::testing::run_swarm("ledger --json --history 1000 --trust-db " +
                                     swarm::testing::shell_quote(db));
  ASSERT_EQ(r.code, 0) << r.out;
  const json l = json::parse(r.out.substr(std::min(r.out.find('{'), r.out.size())), nullptr, false);
  ASSERT_TRUE(l.is_object()) << r.out;
  EXPECT_TRUE(l["conserved"].get<bool>());
  EXPECT_EQ(l["totals"]["open_holds"], 0);
  ASSERT_EQ(l["history"].size(), 1u) << l.dump();
  EXPECT_EQ(l["history"][0]["node"], provider);
  for (const json& a : l["accounts"]) {
    if (a["name"] == "alice") {
      EXPECT_NEAR(a["charged_micro"].get<double>() / 1e6, cost, 1e-6) << a.dump();
    }
  }
}

}  // namespace
