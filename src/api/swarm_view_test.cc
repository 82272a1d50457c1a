// The swarm page's pure parts: tokens/s buckets, the registry of requests, and
// the JSON of GET /swarm built from hand-made peers.
#include "api/swarm_view.h"

#include <gtest/gtest.h>

#include "api/request_activity.h"
#include "api/token_rate.h"

namespace swarm {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A time `ms` after an arbitrary origin of the steady clock.
Clock::time_point at(int64_t ms) { return Clock::time_point(milliseconds(1'000'000 + ms)); }

TEST(TokenRate, CountsWholeBucketsOldestFirst) {
  TokenRate rate(milliseconds(1000), 4);
  rate.add(3, at(0));
  rate.add(2, at(999));
  rate.add(7, at(2500));
  // At 3.2 s the buckets before the current one are [0,1) [1,2) [2,3) and the one before 0.
  EXPECT_EQ(rate.rates(at(3200)), (std::vector<double>{0, 5, 0, 7}));
  // The current bucket is still filling: not shown.
  rate.add(4, at(3300));
  EXPECT_EQ(rate.rates(at(3999)), (std::vector<double>{0, 5, 0, 7}));
  EXPECT_EQ(rate.rates(at(4000)), (std::vector<double>{5, 0, 7, 4}));
}

TEST(TokenRate, OldBucketsFallOffAndReuseTheirSlots) {
  TokenRate rate(milliseconds(500), 3);
  rate.add(1, at(0));
  rate.add(1, at(100));
  EXPECT_EQ(rate.rates(at(600)), (std::vector<double>{0, 0, 4}));  // 2 tokens in 0.5 s
  // Three buckets later the slot of [0, 0.5) holds [1.5, 2); its old count is gone.
  rate.add(1, at(1600));
  EXPECT_EQ(rate.rates(at(2000)), (std::vector<double>{0, 0, 2}));
  EXPECT_EQ(rate.rates(at(60'000)), (std::vector<double>{0, 0, 0}));
  // A late report older than the ring holds changes nothing.
  rate.add(100, at(0));
  EXPECT_EQ(rate.rates(at(2000)), (std::vector<double>{0, 0, 2}));
  EXPECT_DOUBLE_EQ(rate.bucket_seconds(), 0.5);
}

TEST(RequestActivity, LiveRequestsCarryTheirChainAndTokens) {
  RequestActivity a(/*keep_ended=*/2, TokenRate(milliseconds(1000), 5));
  const std::vector<ChainStage> chain = {{"a:1", 0, 2, ""}, {"b:2", 2, 4, ""}};
  a.begin("r1", "tiny", 12, at(0));
  a.begin("r2", "tiny", 5, at(100));
  a.route("r1", chain);
  a.token("r1", at(200));
  a.token("r1", at(300));
  a.token("r2", at(1200));
  a.token("nobody", at(1300));  // unknown ids are ignored
  auto rs = a.requests(at(1500));
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].id, "r1");  // oldest first
  EXPECT_TRUE(rs[0].live);
  EXPECT_EQ(rs[0].chain.size(), 2u);
  EXPECT_EQ(rs[0].chains, 1);
  EXPECT_EQ(rs[0].completion_tokens, 2);
  EXPECT_EQ(rs[0].prompt_tokens, 12);
  EXPECT_DOUBLE_EQ(rs[0].seconds, 1.5);
  EXPECT_EQ(rs[1].id, "r2");
  EXPECT_TRUE(rs[1].chain.empty());
  EXPECT_EQ(a.live_count(), 2u);
  EXPECT_EQ(a.rates(at(2000)), (std::vector<double>{0, 0, 0, 2, 1}));

  // A failover routes it again.
  a.route("r1", {{"c:3", 0, 4, ""}});
  a.end("r1", "stop", at(2000));
  rs = a.requests(at(5000));
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].id, "r2");  // live first
  EXPECT_FALSE(rs[1].live);
  EXPECT_EQ(rs[1].outcome, "stop");
  EXPECT_EQ(rs[1].chains, 2);
  ASSERT_EQ(rs[1].chain.size(), 1u);
  EXPECT_EQ(rs[1].chain[0].address, "c:3");
  EXPECT_DOUBLE_EQ(rs[1].seconds, 2.0);  // how long it ran, not since
  EXPECT_EQ(a.live_count(), 1u);
}

TEST(RequestActivity, KeepsTheLastEndedNewestFirstAndCapsLive) {
  RequestActivity a(/*keep_ended=*/2);
  for (int i = 0; i < 4; ++i) {
    a.begin("e" + std::to_string(i), "m", 1, at(i));
    a.end("e" + std::to_string(i), "length", at(i + 1));
  }
  for (int i = 0; i < 3; ++i) a.begin("l" + std::to_string(i), "m", 1, at(10 + i));
  auto rs = a.requests(at(20), /*max_live=*/2);
  ASSERT_EQ(rs.size(), 4u);
  EXPECT_EQ(rs[0].id, "l0");
  EXPECT_EQ(rs[1].id, "l1");
  EXPECT_EQ(rs[2].id, "e3");
  EXPECT_EQ(rs[3].id, "e2");
  EXPECT_EQ(a.live_count(), 3u);
}

TEST(SwarmView, UncoveredRanges) {
  using Ranges = std::vector<std::pair<int, int>>;
  EXPECT_EQ(uncovered_ranges({}), Ranges{});
  EXPECT_EQ(uncovered_ranges({true, true}), Ranges{});
  EXPECT_EQ(uncovered_ranges({false, false}), (Ranges{{0, 2}}));
  EXPECT_EQ(uncovered_ranges({true, false, true, false, false}), (Ranges{{1, 2}, {3, 5}}));
}

PeerStanding reachable(const std::string& address, const std::string& model, int first, int last) {
  PeerStanding s;
  s.address = address;
  s.reachable = s.seen = true;
  s.last.address = address;
  s.last.model_id = model;
  s.last.n_layer = 8;
  s.last.first_layer = first;
  s.last.last_layer = last;
  s.last.layer_tokens_per_second = 1500;
  s.last.rtt_seconds = 0.002;
  s.last.active_sessions = 3;
  s.last.queued_steps = 1;
  s.last.kv_bytes_free = 100;
  s.last.kv_bytes_total = 400;
  s.last.reputation = 0.9;
  return s;
}

TEST(SwarmView, GapsCountOnlyReachableNodesOfTheModelThatRoutesMayUse) {
  SwarmModel m{{"kjv"}, "M", 8};
  std::vector<PeerStanding> peers = {reachable("a:1", "M", 0, 3), reachable("b:2", "M", 3, 6),
                                     reachable("c:3", "M", 6, 8)};
  EXPECT_EQ(uncovered_ranges(reachable_coverage(peers, m)), (std::vector<std::pair<int, int>>{}));
  peers[1].reachable = false;  // it died: what it served is a gap
  peers[1].error = "connection refused";
  peers.push_back(reachable("d:4", "OTHER", 3, 5));  // another model covers nothing of ours
  peers.push_back(reachable("e:5", "M", 5, 6));
  peers.back().last.excluded = true;  // routes never use it
  peers.push_back(reachable("f:6", "M", 5, 6));
  peers.back().last.draining = true;
  EXPECT_EQ(uncovered_ranges(reachable_coverage(peers, m)),
            (std::vector<std::pair<int, int>>{{3, 6}}));
}

TEST(SwarmView, JsonOfNodesRequestsAndRates) {
  SwarmView v;
  v.swarm.models = {{{"kjv", "bible"}, "M", 8}};
  PeerStanding up = reachable("a:1", "M", 0, 4);
  up.pin = "ab12";
  up.last.node_id = "n1";
  PeerStanding down = reachable("b:2", "M", 4, 8);
  down.reachable = false;
  down.error = "connection refused";
  down.unreachable_seconds = 2.5;
  PeerStanding never;  // a --peers entry that never answered
  never.address = "c:3";
  never.error = "deadline exceeded";
  PeerStanding announced = never;  // a record that announces layers, never reached
  announced.address = "d:4";
  announced.announced_first = 2;
  announced.announced_last = 6;
  v.swarm.peers = {up, down, never, announced};
  RequestView r;
  r.id = "chatcmpl-1";
  r.model = "kjv";
  r.chain = {{"a:1", 0, 4, ""}, {"b:2", 4, 8, ""}};
  r.chains = 1;
  r.prompt_tokens = 9;
  r.completion_tokens = 4;
  r.seconds = 0.5;
  v.requests = {r};
  v.live_requests = 1;
  v.rate_bucket_seconds = 1;
  v.tokens_per_second = {0, 3, 8};
  const nlohmann::json j = swarm_view_json(v);

  ASSERT_EQ(j["models"].size(), 1u);
  const auto& m = j["models"][0];
  EXPECT_EQ(m["names"], nlohmann::json({"kjv", "bible"}));
  EXPECT_EQ(m["n_layer"], 8);
  EXPECT_EQ(m["covered_layers"], 4);
  EXPECT_EQ(m["servable"], false);
  EXPECT_EQ(m["gaps"], nlohmann::json::parse(R"([{"first_layer":4,"last_layer":8}])"));

  ASSERT_EQ(j["nodes"].size(), 4u);
  const auto& a = j["nodes"][0];
  EXPECT_EQ(a["address"], "a:1");
  EXPECT_EQ(a["node_id"], "n1");
  EXPECT_EQ(a["pinned"], true);
  EXPECT_EQ(a["reachable"], true);
  EXPECT_TRUE(a["error"].is_null());
  EXPECT_EQ(a["first_layer"], 0);
  EXPECT_EQ(a["last_layer"], 4);
  EXPECT_EQ(a["layers_from"], "answer");
  EXPECT_EQ(a["layer_tokens_per_second"], 1500.0);
  EXPECT_DOUBLE_EQ(a["rtt_ms"].get<double>(), 2.0);
  EXPECT_EQ(a["active_sessions"], 3);
  EXPECT_EQ(a["queued_steps"], 1);
  EXPECT_EQ(a["kv_bytes_free"], 100);
  EXPECT_EQ(a["kv_bytes_total"], 400);
  EXPECT_EQ(a["reputation"], 0.9);
  EXPECT_EQ(a["excluded"], false);

  const auto& b = j["nodes"][1];  // known from its last answer; its load is not
  EXPECT_EQ(b["reachable"], false);
  EXPECT_EQ(b["error"], "connection refused");
  EXPECT_EQ(b["unreachable_seconds"], 2.5);
  EXPECT_EQ(b["layers_from"], "last_answer");
  EXPECT_EQ(b["first_layer"], 4);
  EXPECT_EQ(b["model_id"], "M");
  EXPECT_TRUE(b["active_sessions"].is_null());
  EXPECT_TRUE(b["rtt_ms"].is_null());
  EXPECT_EQ(b["reputation"], 0.9);

  const auto& c = j["nodes"][2];  // nothing known but where it is and why not
  EXPECT_EQ(c["error"], "deadline exceeded");
  EXPECT_TRUE(c["model_id"].is_null());
  EXPECT_TRUE(c["first_layer"].is_null());
  EXPECT_TRUE(c["layers_from"].is_null());
  EXPECT_TRUE(c["reputation"].is_null());
  EXPECT_TRUE(c["layer_tokens_per_second"].is_null());

  const auto& d = j["nodes"][3];
  EXPECT_EQ(d["layers_from"], "record");
  EXPECT_EQ(d["first_layer"], 2);
  EXPECT_EQ(d["last_layer"], 6);

  ASSERT_EQ(j["requests"].size(), 1u);
  const auto& q = j["requests"][0];
  EXPECT_EQ(q["id"], "chatcmpl-1");
  EXPECT_EQ(q["live"], true);
  EXPECT_TRUE(q["outcome"].is_null());
  EXPECT_EQ(q["completion_tokens"], 4);
  EXPECT_EQ(q["chain"], nlohmann::json::parse(R"([{"address":"a:1","first_layer":0,"last_layer":4},
                                                   {"address":"b:2","first_layer":4,"last_layer":8}])"));
  EXPECT_EQ(j["live_requests"], 1);
  EXPECT_EQ(j["tokens_per_second"]["bucket_seconds"], 1.0);
  EXPECT_EQ(j["tokens_per_second"]["samples"], nlohmann::json({0.0, 3.0, 8.0}));
}

}  // namespace
}  // namespace swarm
