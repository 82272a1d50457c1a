// The credits ledger end to end (doc/trust.md, "Credits ledger"): a gateway
// with --api-keys in front of a two-node swarm whose nodes announce prices in
// the DHT. Requests without a valid key get 401, those whose maximum cost
// exceeds the key's credits 402 (OpenAI-style bodies); usage reports the cost
// and the nodes that served it; `swarm ledger --json` accounts for every
// credit, also after the gateway is killed (kill -9) during requests.
#include <set>
#include <tuple>

#include "swarm_harness.h"

namespace {

using swarm::testing::ChildProcess;
using swarm::testing::eventually;
using swarm::testing::read_file;
using swarm::testing::run_swarm;
using swarm::testing::shell_quote;
using json = nlohmann::json;

constexpr const char* kAlice = "sk-alice-0123456789abcdef";
constexpr const char* kPoor = "sk-poor-0123456789abcdef";
constexpr int64_t kMicro = 1'000'000;

struct Answer {
  int status = -1;
  json body;
};

// One request to 127.0.0.1:port with `key` ("" for none) as a Bearer token.
Answer request(int port, const std::string& method, const std::string& path, const std::string& key,
               const json& body = nullptr) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  httplib::Headers headers;
  if (!key.empty()) headers.emplace("Authorization", "Bearer " + key);
  auto res = method == "GET" ? c.Get(path, headers)
                             : c.Post(path, headers, body.dump(), "application/json");
  Answer a;
  if (!res) return a;
  a.status = res->status;
  a.body = json::parse(res->body, nullptr, false);
  return a;
}

json completion(const std::string& prompt, int n) {
  return {{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", n}, {"temperature", 0}, {"ignore_eos", true}};
}

// A streamed completion with `key`: the text, the usage chunk in `*usage`;
// `on_chunk` sees each text chunk as it arrives. A marker on failure.
std::string stream(int port, const std::string& key, const std::string& prompt, int n,
                   json* usage, const std::function<void()>& on_chunk = [] {}) {
  return swarm::testing::stream_completion(port, "tiny", prompt, n, on_chunk, usage, key);
}

// usage.cost_credits is what usage.served_by's nodes earned, in all.
void expect_usage_adds_up(const json& usage) {
  ASSERT_TRUE(usage.contains("cost_credits")) << usage.dump();
  ASSERT_TRUE(usage["cost_credits"].is_number()) << usage.dump();
  ASSERT_TRUE(usage["served_by"].is_array()) << usage.dump();
  double sum = 0;
  for (const json& s : usage["served_by"]) {
    for (const char* field : {"node_id", "address", "layers", "tokens", "price_per_1k", "credits"})
      EXPECT_TRUE(s.contains(field)) << field << " missing: " << s.dump();
    sum += s["credits"].get<double>();
  }
  EXPECT_NEAR(usage["cost_credits"].get<double>(), sum, 1e-6) << usage.dump();
}

class LedgerSwarmTest : public swarm::testing::SwarmHarness {
 protected:
  void SetUp() override {
    SwarmHarness::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    keys_ = dir_ + "/keys.txt";
    std::ofstream(keys_) << "# test keys\n"
                         << kAlice << " 1000 alice\n"
                         << kPoor << " 0.000001 poor\n";
    db_ = dir_ + "/gateway.db";
  }
  void TearDown() override {
    stop_all();
    boot_.reset();
    SwarmHarness::TearDown();
  }

  // A DHT, two nodes announcing 1 credit per 1,000 tokens each, and a
  // gateway over them with the keys and the test's ledger.
  void start_priced_swarm() {
    boot_ = std::make_unique<ChildProcess>(std::vector<std::string>{"dht", "--listen", "127.0.0.1:0"},
                                           dir_ + "/dht.err");
    ASSERT_TRUE(boot_->ok()) << read_file(dir_ + "/dht.err");
    for (const char* range : {"0:2", "2:4"}) {
      const auto key = keygen(std::string("node") + range[0]);
      ASSERT_TRUE(start_node({"--identity", key.path, "--bootstrap", boot_->address(), "--layers",
                              range, "--price", "1"})
                      ->ok());
    }
    // Both records in the DHT before the gateway looks.
    ASSERT_TRUE(eventually(
        [&] {
          auto r = run_swarm("status --bootstrap " + boot_->address() + " --json");
          const size_t at = r.out.find("{\"models\"");
          if (at == std::string::npos) return false;
          const json j = json::parse(r.out.substr(at), nullptr, false);
          return j.is_object() && !j["models"].empty() && j["models"][0]["nodes"].size() == 2;
        },
        std::chrono::seconds(60)));
    start_ledger_gateway();
  }
  ChildProcess* start_ledger_gateway() {
    ChildProcess* gw = start_gateway({"--bootstrap", boot_->address(), "--dht-refresh", "0.2",
                                      "--api-keys", keys_, "--trust-db", db_});
    EXPECT_TRUE(gw->ok()) << read_file(gateway_log());
    return gw;
  }

  json ledger_json() {
    auto r = run_swarm("ledger --json --history 100000 --trust-db " + shell_quote(db_));
    EXPECT_EQ(r.code, 0) << r.out;
    const json j = json::parse(r.out.substr(std::min(r.out.find('{'), r.out.size())), nullptr, false);
    EXPECT_TRUE(j.is_object()) << r.out;
    return j;
  }

  // Every credit is accounted for, no hold is open, and no entry is there twice.
  void expect_ledger_sound(const json& l) {
    ASSERT_TRUE(l.is_object());
    EXPECT_TRUE(l["conserved"].get<bool>()) << l["totals"].dump();
    EXPECT_EQ(l["totals"]["open_holds"], 0) << l["totals"].dump();
    std::set<std::tuple<std::string, std::string, std::string>> seen;
    for (const json& e : l["history"])
      EXPECT_TRUE(seen.insert({e["request_id"].get<std::string>(), e["node"].get<std::string>(),
                               e["layers"].get<std::string>()})
                      .second)
          << "paid twice: " << e.dump();
    for (const json& a : l["accounts"])
      EXPECT_EQ(a["balance_micro"].get<int64_t>() + a["charged_micro"].get<int64_t>(),
                a["granted_micro"].get<int64_t>())
          << a.dump();
  }

  std::string keys_, db_;
  std::unique_ptr<ChildProcess> boot_;
};

TEST_F(LedgerSwarmTest, KeysCreditsAndUsage) {
  start_priced_swarm();
  ASSERT_FALSE(HasFatalFailure());
  const int port = gateway()->port();

  // No key, a wrong key: 401 with OpenAI's body.
  for (const std::string& key : {std::string(), std::string("sk-wrong-0123456789abcdef")}) {
    Answer a = request(port, "POST", "/v1/completions", key, completion("Hello", 4));
    EXPECT_EQ(a.status, 401) << a.body.dump();
    EXPECT_EQ(a.body["error"]["code"], "invalid_api_key") << a.body.dump();
    EXPECT_EQ(a.body["error"]["type"], "invalid_request_error");
    EXPECT_TRUE(a.body["error"]["message"].is_string());
    EXPECT_EQ(a.body["error"]["message"].get<std::string>().find("0123456789abcdef"), std::string::npos)
        << "a key is never echoed whole";
  }
  EXPECT_EQ(request(port, "GET", "/v1/models", "").status, 401);
  EXPECT_EQ(request(port, "GET", "/v1/models", kAlice).status, 200);
  EXPECT_EQ(request(port, "GET", "/health", "").status, 200);

  // One micro-credit cannot hold 2 credits per 1,000 tokens: 402.
  Answer poor = request(port, "POST", "/v1/completions", kPoor, completion("Hello", 4));
  EXPECT_EQ(poor.status, 402) << poor.body.dump();
  EXPECT_EQ(poor.body["error"]["code"], "insufficient_quota") << poor.body.dump();
  EXPECT_EQ(poor.body["error"]["type"], "insufficient_quota");
  EXPECT_NE(poor.body["error"]["message"].get<std::string>().find("insufficient balance: 0.000001 credits"),
            std::string::npos)
      << poor.body.dump();

  // Alice is charged for what the two nodes did; usage says what and who.
  Answer a = request(port, "POST", "/v1/completions", kAlice, completion("Once upon a time", 8));
  ASSERT_EQ(a.status, 200) << a.body.dump();
  expect_usage_adds_up(a.body["usage"]);
  json usage;
  EXPECT_EQ(stream(port, kAlice, "Hello world", 6, &usage).rfind("<", 0), std::string::npos);
  expect_usage_adds_up(usage);

  const json l = ledger_json();
  expect_ledger_sound(l);
  EXPECT_EQ(l["totals"]["granted_micro"].get<int64_t>(), 1000 * kMicro + 1);
  // Each node's work, at its price, traced to its receipts.
  const json& served = a.body["usage"]["served_by"];
  ASSERT_EQ(served.size(), 2u) << served.dump();
  EXPECT_EQ(served[0]["layers"], "0:2");
  EXPECT_EQ(served[1]["layers"], "2:4");
  EXPECT_EQ(served[0]["price_per_1k"], 1.0);
  EXPECT_EQ(served[0]["node_id"].get<std::string>().size(), 40u);
  EXPECT_GT(a.body["usage"]["cost_credits"].get<double>(), 0);
  EXPECT_EQ(l["nodes"].size(), 2u) << l.dump();
  EXPECT_EQ(l["history"].size(), 4u) << l.dump();  // two requests, two nodes each
  for (const json& e : l["history"]) EXPECT_EQ(e["receipts"].get<std::string>().size(), 64u) << e.dump();
  int64_t charged = 0;
  for (const json& acc : l["accounts"]) charged += acc["charged_micro"].get<int64_t>();
  EXPECT_EQ(charged, l["totals"]["pending_micro"].get<int64_t>());
  // /swarm and /metrics say the same: what each node earned, where the credits are.
  const double pending = static_cast<double>(l["totals"]["pending_micro"].get<int64_t>()) / kMicro;
  Answer swarm = request(port, "GET", "/swarm", "");
  ASSERT_EQ(swarm.status, 200) << swarm.body.dump();
  EXPECT_DOUBLE_EQ(swarm.body["credits"]["pending"].get<double>(), pending) << swarm.body.dump();
  EXPECT_EQ(swarm.body["credits"]["conserved"], true);
  double earned = 0;
  for (const json& n : swarm.body["nodes"]) earned += n["credits_pending"].get<double>();
  EXPECT_NEAR(earned, pending, 1e-9) << swarm.body.dump();
  httplib::Client mc("127.0.0.1", port);
  auto metrics = mc.Get("/metrics");
  ASSERT_TRUE(metrics && metrics->status == 200);
  EXPECT_NE(metrics->body.find("swarm_credits_conserved 1"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("swarm_credits{state=\"granted\"} 1000.000001"), std::string::npos) << metrics->body;
  // The text view says the same.
  auto text = run_swarm("ledger --trust-db " + shell_quote(db_) + " --key alice");
  EXPECT_EQ(text.code, 0) << text.out;
  EXPECT_NE(text.out.find("conserved"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("alice"), std::string::npos) << text.out;
}

// The gateway dies (kill -9) while streams run: their holds stay open in the
// file, and the next start releases them, so nothing is charged for requests
// that never finished and nothing settled is paid twice.
TEST_F(LedgerSwarmTest, SurvivesKillOfTheGatewayDuringRequests) {
  start_priced_swarm();
  ASSERT_FALSE(HasFatalFailure());
  const int port = gateway()->port();
  json usage;
  ASSERT_EQ(stream(port, kAlice, "In the beginning", 4, &usage).rfind("<", 0), std::string::npos);

  constexpr int kStreams = 4;
  std::atomic<int> chunks{0};
  std::vector<std::future<std::string>> got;
  for (int i = 0; i < kStreams; ++i)
    got.push_back(std::async(std::launch::async, [&, i] {
      return stream(port, kAlice, swarm::testing::kPrompts[i], 1000, nullptr, [&] { ++chunks; });
    }));
  ASSERT_TRUE(eventually([&] { return chunks.load() >= 2 * kStreams; }, std::chrono::seconds(60)));
  gateway()->signal(SIGKILL);
  for (auto& g : got) EXPECT_EQ(g.get().rfind("<", 0), 0u);  // cut off, not finished

  json l = ledger_json();
  EXPECT_TRUE(l["conserved"].get<bool>()) << l["totals"].dump();  // holds count as held
  EXPECT_EQ(l["totals"]["open_holds"], kStreams) << l["totals"].dump();

  ASSERT_NE(start_ledger_gateway(), nullptr);
  EXPECT_NE(read_file(gateway_log()).find("released 4 hold(s)"), std::string::npos)
      << read_file(gateway_log());
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(stream(gateway()->port(), kAlice, swarm::testing::kPrompts[i], 4, &usage).rfind("<", 0),
              std::string::npos);
  l = ledger_json();
  expect_ledger_sound(l);
  // Three finished requests on two nodes; the four cut off paid nobody.
  EXPECT_EQ(l["totals"]["entries"], 6) << l["totals"].dump();
  for (const json& a : l["accounts"])
    if (a["name"] == "alice") {
      EXPECT_EQ(a["held_micro"], 0);
    }
}

// An audit proves a node cheats: the node's unpaid credits are forfeited
// (those of requests settled before the proof and after it), the honest
// nodes keep theirs, and every credit is still accounted for.
TEST_F(LedgerSwarmTest, AProvenFraudForfeitsTheCheatersUnpaidCredits) {
  ChildProcess* first = start_node({"--layers", "0:2", "--price", "1"});
  ChildProcess* cheater = start_node({"--layers", "2:4", "--price", "1", "--cheat", "noise"});
  ChildProcess* twin = start_node({"--layers", "2:4", "--price", "1", "--slowdown", "3"});
  ASSERT_TRUE(first->ok() && cheater->ok() && twin->ok());
  ASSERT_TRUE(start_gateway({"--peers", first->address() + "," + cheater->address() + "," + twin->address(),
                             "--audit-rate", "1", "--audit-local", model_, "--api-keys", keys_,
                             "--trust-db", db_})
                  ->ok());
  auto node = [&](const json& l, const std::string& name) {
    for (const json& n : l["nodes"])
      if (n["node"] == name) return n;
    return json::object();
  };
  json l;
  bool forfeited = false;
  for (int i = 0; i < 16 && !forfeited; ++i) {
    Answer a = request(gateway()->port(), "POST", "/v1/completions", kAlice,
                       completion(swarm::testing::kPrompts[i % 8], 16));
    EXPECT_EQ(a.status, 200) << a.body.dump();
    // The audit runs after the answer; its verdict reaches the ledger soon after.
    eventually(
        [&] {
          l = ledger_json();
          return node(l, cheater->address()).value("forfeited_micro", int64_t{0}) > 0;
        },
        std::chrono::seconds(5));
    forfeited = node(l, cheater->address()).value("forfeited_micro", int64_t{0}) > 0;
  }
  ASSERT_TRUE(forfeited) << l.dump() << "\n" << read_file(gateway_log());
  EXPECT_NE(read_file(gateway_log()).find("forfeits"), std::string::npos);
  // Requests after the proof do not go through the cheater; none is left pending to it.
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(request(gateway()->port(), "POST", "/v1/completions", kAlice, completion("Hello", 8)).status, 200);
  l = ledger_json();
  EXPECT_EQ(node(l, cheater->address())["pending_micro"], 0) << l.dump();
  EXPECT_EQ(node(l, cheater->address())["paid_micro"], 0) << l.dump();
  EXPECT_GT(node(l, first->address())["pending_micro"].get<int64_t>(), 0) << l.dump();
  expect_ledger_sound(l);
}

// `swarm serve --api-keys` checks keys and charges nothing.
TEST_F(LedgerSwarmTest, ServeChecksKeysWithoutCharging) {
  ChildProcess serve({"serve", "-m", model_, "--listen", "127.0.0.1:0", "-t", "1", "--model-name",
                      "tiny", "--api-keys", keys_},
                     dir_ + "/serve.err");
  ASSERT_TRUE(serve.ok()) << read_file(dir_ + "/serve.err");
  Answer none = request(serve.port(), "POST", "/v1/completions", "", completion("Hello", 2));
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.body["error"]["code"], "invalid_api_key");
  Answer poor = request(serve.port(), "POST", "/v1/completions", kPoor, completion("Hello", 2));
  ASSERT_EQ(poor.status, 200) << poor.body.dump();
  EXPECT_EQ(poor.body["usage"]["cost_credits"], 0.0);
  EXPECT_TRUE(poor.body["usage"]["served_by"].empty());
}

TEST_F(LedgerSwarmTest, BadKeyFilesAreRefusedNamingLineAndField) {
  std::ofstream(keys_) << kAlice << " 10\nshort 5\n";
  auto r = run_swarm("serve -m " + model_ + " --listen 127.0.0.1:0 --api-keys " + shell_quote(keys_));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("line 2, KEY"), std::string::npos) << r.out;
  std::ofstream(keys_) << kAlice << " -3\n";
  r = run_swarm("serve -m " + model_ + " --listen 127.0.0.1:0 --api-keys " + shell_quote(keys_));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("line 1, CREDITS"), std::string::npos) << r.out;
  r = run_swarm("ledger --trust-db " + shell_quote(dir_ + "/none.db"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("no ledger"), std::string::npos) << r.out;
}

}  // namespace
