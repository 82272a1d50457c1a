// GET /swarm of a real gateway over three nodes on 127.0.0.1 (what the swarm
// page draws, doc/swarm-page.md): every node on its layers and no gap; a
// streamed request live on its chain with its tokens so far, then ended and
// counted in tokens/s; a killed node unreachable, its layers a gap. The same
// as the browser test (tests/swarm_page/) without the browser, so it runs
// where chromium or npm is missing.
#include <signal.h>

#include <chrono>
#include <thread>

#include "swarm_harness.h"

namespace swarm::testing {
namespace {

using json = nlohmann::json;

json swarm_json(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(30, 0);
  auto r = c.Get("/swarm");
  if (!r || r->status != 200) return json();
  return json::parse(r->body, nullptr, false);
}

// Polls /swarm until `ok` holds (or 60 s pass): the last answer.
json wait_for(int port, const std::function<bool(const json&)>& ok) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  json s;
  while (std::chrono::steady_clock::now() < deadline) {
    s = swarm_json(port);
    if (s.is_object() && ok(s)) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "/swarm never showed what the test waited for: " << s.dump(1);
  return s;
}

const json* node_of(const json& s, const std::string& address) {
  for (const json& n : s["nodes"])
    if (n["address"] == address) return &n;
  return nullptr;
}

class SwarmJsonTest : public SwarmHarness {};

TEST_F(SwarmJsonTest, ShowsNodesRequestsTokensAndTheGapAKilledNodeLeaves) {
  // Each step delayed, so the stream lasts while the test looks at it.
  ASSERT_TRUE(start_chain({{0, 1}, {1, 2}, {2, 4}}, {"--link-delay-ms", "20"}));
  const int port = gateway()->port();
  const std::vector<std::string> chain = logged_chain();
  ASSERT_EQ(chain.size(), 3u) << read_file(gateway_log());

  json s = swarm_json(port);
  ASSERT_TRUE(s.is_object());
  ASSERT_EQ(s["models"].size(), 1u);
  const json& model = s["models"][0];
  EXPECT_EQ(model["names"], json({"tiny"}));
  EXPECT_EQ(model["n_layer"], 4);
  EXPECT_EQ(model["covered_layers"], 4);
  EXPECT_EQ(model["servable"], true);
  EXPECT_TRUE(model["gaps"].empty());
  ASSERT_EQ(s["nodes"].size(), 3u);
  const int firsts[] = {0, 1, 2}, lasts[] = {1, 2, 4};
  for (size_t i = 0; i < 3; ++i) {
    const json* n = node_of(s, chain[i]);
    ASSERT_NE(n, nullptr) << chain[i] << " " << s.dump(1);
    EXPECT_EQ((*n)["reachable"], true);
    EXPECT_EQ((*n)["first_layer"], firsts[i]);
    EXPECT_EQ((*n)["last_layer"], lasts[i]);
    EXPECT_EQ((*n)["model_id"], model["model_id"]);
    EXPECT_EQ((*n)["active_sessions"], 0);
    EXPECT_TRUE((*n)["reputation"].is_number());
    EXPECT_EQ((*n)["excluded"], false);
  }
  EXPECT_TRUE(s["requests"].empty());

  // While it streams, the request is live on the chain through all three.
  constexpr int kTokens = 24;
  int chunks = 0;
  json live;
  const std::string text = complete_streamed("The licensee may", kTokens, [&] {
    if (++chunks == 5) live = swarm_json(port);
  });
  EXPECT_EQ(text.find('<'), std::string::npos) << text;  // no failure marker
  ASSERT_TRUE(live.is_object());
  ASSERT_EQ(live["requests"].size(), 1u) << live.dump(1);
  const json& r = live["requests"][0];
  EXPECT_EQ(r["live"], true);
  EXPECT_TRUE(r["id"].get<std::string>().starts_with("cmpl-"));
  EXPECT_EQ(r["model"], "tiny");
  EXPECT_GE(r["completion_tokens"].get<int>(), 1);
  EXPECT_LT(r["completion_tokens"].get<int>(), kTokens);
  ASSERT_EQ(r["chain"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(r["chain"][i]["address"], chain[i]);
  EXPECT_EQ(r["chain"][2]["first_layer"], 2);
  EXPECT_EQ(r["chain"][2]["last_layer"], 4);
  EXPECT_EQ(live["live_requests"], 1);

  // Ended, with every token, which the chart counts once their seconds are over.
  s = wait_for(port, [&](const json& s) {
    double tokens = 0;
    for (const json& v : s["tokens_per_second"]["samples"]) tokens += v.get<double>();
    return tokens * s["tokens_per_second"]["bucket_seconds"].get<double>() >= kTokens;
  });
  ASSERT_EQ(s["requests"].size(), 1u);
  EXPECT_EQ(s["requests"][0]["live"], false);
  EXPECT_EQ(s["requests"][0]["outcome"], "length");
  EXPECT_EQ(s["requests"][0]["completion_tokens"], kTokens);
  EXPECT_EQ(s["live_requests"], 0);

  // The middle node dies: it stays listed, unreachable, and its layer is a gap.
  ChildProcess* victim = node_at(chain[1]);
  ASSERT_NE(victim, nullptr);
  victim->signal(SIGKILL);
  s = wait_for(port, [&](const json& s) {
    const json* n = node_of(s, chain[1]);
    return n && (*n)["reachable"] == false && !s["models"][0]["gaps"].empty();
  });
  EXPECT_EQ(s["models"][0]["gaps"], json::parse(R"([{"first_layer":1,"last_layer":2}])"));
  EXPECT_EQ(s["models"][0]["servable"], false);
  EXPECT_EQ(s["models"][0]["covered_layers"], 3);
  const json* dead = node_of(s, chain[1]);
  ASSERT_NE(dead, nullptr);
  EXPECT_FALSE((*dead)["error"].get<std::string>().empty());
  EXPECT_EQ((*dead)["layers_from"], "last_answer");
  EXPECT_EQ((*dead)["first_layer"], 1);
  EXPECT_TRUE((*dead)["active_sessions"].is_null());
  EXPECT_EQ((*node_of(s, chain[0]))["reachable"], true);
  EXPECT_EQ((*node_of(s, chain[2]))["reachable"], true);
}

}  // namespace
}  // namespace swarm::testing
