// Audits on real swarms (doc/trust.md): nodes commit to every step, the
// gateway recomputes sampled sessions with its own engine (--audit-local) and
// excludes a node whose commitment is proven wrong. Each way a node can cheat
// is caught and routed around; an honest swarm is never flagged; with
// --audit-sync a cheater on the chain does not change a single answer.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "swarm_harness.h"

namespace {

using json = nlohmann::json;
using swarm::testing::ChildProcess;
using swarm::testing::kPrompts;
using swarm::testing::layers;
using swarm::testing::read_file;
using swarm::testing::sessions_opened;

class TrustSwarmTest : public swarm::testing::SwarmHarness {
 protected:
  // GET /trust from the last gateway.
  json trust() {
    httplib::Client c("127.0.0.1", gateway()->port());
    auto res = c.Get("/trust");
    if (!res || res->status != 200) return json::object();
    return json::parse(res->body, nullptr, false);
  }
  // Waits until every audit submitted so far is judged; the last /trust.
  json audits_settled() {
    json t;
    swarm::testing::eventually(
        [&] {
          t = trust();
          const json& a = t.value("audits", json::object());
          return a.value("submitted", -1) == a.value("done", 0) + a.value("failed", 0) + a.value("dropped", 0);
        },
        std::chrono::seconds(60));
    return t;
  }
  bool excluded(const json& t, const std::string& key) {
    for (const auto& e : t.value("excluded", json::array()))
      if (e == key) return true;
    return false;
  }
};

TEST_F(TrustSwarmTest, AnHonestSignedSwarmPassesEveryAudit) {
  const auto a = keygen("a"), b = keygen("b");
  ChildProcess* na = start_node({"--layers", "0:2", "--identity", a.path});
  ChildProcess* nb = start_node({"--layers", "2:4", "--identity", b.path});
  ASSERT_TRUE(na->ok() && nb->ok());
  ASSERT_TRUE(start_gateway({"--peers", na->address() + "@" + a.node_id + "," + nb->address() + "@" + b.node_id,
                             "--audit-rate", "1", "--audit-local", model_, "--speculate", "ngram"})
                  ->ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(complete(kPrompts[i], 24), single_process(kPrompts[i], 24)) << kPrompts[i];
  const json t = audits_settled();
  const json& au = t["audits"];
  EXPECT_EQ(au.value("done", 0), 4) << t.dump();
  EXPECT_GT(au.value("steps_checked", 0), 4 * 2 * 10) << t.dump();
  EXPECT_EQ(au.value("passes", 0), 8) << t.dump();
  EXPECT_EQ(au.value("frauds", -1), 0) << t.dump() << read_file(gateway_log());
  EXPECT_EQ(au.value("disputes", -1), 0) << t.dump();
  EXPECT_EQ(au.value("missing", -1), 0) << t.dump();
  EXPECT_TRUE(t["excluded"].empty()) << t.dump();
}

struct CheatCase {
  const char* name;
  std::vector<std::string> flags;  // the cheater's; "TAMPERED" becomes a copy with other weights
};

void PrintTo(const CheatCase& c, std::ostream* os) { *os << c.name; }

class CheatModeTest : public TrustSwarmTest, public ::testing::WithParamInterface<CheatCase> {};

// Layers 0:2 honest; 2:4 served by the cheater and by an honest twin three
// times slower and far dearer, so routes prefer the cheater until audits
// exclude it (with the tiny model's stage times, speed alone is a coin toss
// of round-trip noise).
TEST_P(CheatModeTest, IsCaughtAndRoutedAround) {
  std::vector<std::string> flags = layers(2, 4);
  std::string model;
  for (const std::string& f : GetParam().flags) {
    if (f == "TAMPERED") {
      model = tampered_copy("blk.3.ffn_down.weight");
      flags.insert(flags.end(), {"--cheat-claim-model", model_});
    } else {
      flags.push_back(f);
    }
  }
  ChildProcess* first = start_node(layers(0, 2));
  ChildProcess* cheater = start_node(flags, model);
  const std::string cheater_log = node_log();
  ChildProcess* twin = start_node({"--layers", "2:4", "--slowdown", "3", "--price", "100"});
  ASSERT_TRUE(first->ok() && cheater->ok() && twin->ok());
  ASSERT_TRUE(start_gateway({"--peers", first->address() + "," + cheater->address() + "," + twin->address(),
                             "--audit-rate", "1", "--audit-local", model_})
                  ->ok());
  bool caught = false;
  json t;
  for (int i = 0; i < 16 && !caught; ++i) {
    int status = 0;
    complete(kPrompts[i % 8], 16, &status);
    EXPECT_EQ(status, 200);
    t = audits_settled();
    caught = excluded(t, cheater->address());
  }
  ASSERT_TRUE(caught) << t.dump() << "\n" << read_file(gateway_log());
  EXPECT_GE(t["audits"].value("frauds", 0), 1);
  EXPECT_NE(read_file(gateway_log()).find("committed a wrong result"), std::string::npos);
  // From now on the cheater gets no session, and answers are exact.
  const int opened = sessions_opened(cheater_log);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(complete(kPrompts[i], 16), single_process(kPrompts[i], 16));
  EXPECT_EQ(sessions_opened(cheater_log), opened);
  t = audits_settled();
  EXPECT_FALSE(excluded(t, first->address())) << t.dump();
  EXPECT_FALSE(excluded(t, twin->address())) << t.dump();
}

INSTANTIATE_TEST_SUITE_P(
    Modes, CheatModeTest,
    ::testing::Values(CheatCase{"Noise", {"--cheat", "noise"}}, CheatCase{"SkipLayer", {"--cheat", "skip-layer"}},
                      CheatCase{"Replay", {"--cheat", "replay"}}, CheatCase{"OtherWeights", {"TAMPERED"}},
                      CheatCase{"WrongTokens", {"--cheat", "token"}},
                      CheatCase{"NoiseOnAThirdOfBatches", {"--cheat", "noise", "--cheat-rate", "0.3"}},
                      CheatCase{"NoiseWhenNotAudited", {"--cheat", "noise", "--cheat-unaudited-only"}}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(TrustSwarmTest, SyncAuditsKeepAnswersExactWithACheaterOnTheChain) {
  ChildProcess* first = start_node(layers(0, 2));
  ChildProcess* cheater = start_node({"--layers", "2:4", "--cheat", "noise"});
  ChildProcess* twin = start_node({"--layers", "2:4", "--slowdown", "3", "--price", "100"});
  ASSERT_TRUE(first->ok() && cheater->ok() && twin->ok());
  ASSERT_TRUE(start_gateway({"--peers", first->address() + "," + cheater->address() + "," + twin->address(),
                             "--audit-rate", "1", "--audit-sync", "--audit-local", model_})
                  ->ok());
  for (int i = 0; i < 6; ++i) EXPECT_EQ(complete(kPrompts[i], 20), single_process(kPrompts[i], 20)) << kPrompts[i];
  EXPECT_TRUE(excluded(audits_settled(), cheater->address())) << read_file(gateway_log());
}

// Without --audit-local, other nodes serving the same layers recompute the
// audited sessions; a fraud one of them shows is confirmed by a second.
TEST_F(TrustSwarmTest, OtherNodesAuditWhenTheGatewayHoldsNoWeights) {
  ChildProcess* first = start_node(layers(0, 2));
  ChildProcess* cheater = start_node({"--layers", "2:4", "--cheat", "replay"});
  ChildProcess* twin1 = start_node({"--layers", "2:4", "--slowdown", "3", "--price", "100"});
  ChildProcess* twin2 = start_node({"--layers", "2:4", "--slowdown", "3", "--price", "100"});
  ASSERT_TRUE(first->ok() && cheater->ok() && twin1->ok() && twin2->ok());
  ASSERT_TRUE(start_gateway({"--peers", first->address() + "," + cheater->address() + "," + twin1->address() +
                                            "," + twin2->address(),
                             "--audit-rate", "1"})
                  ->ok());
  json t;
  bool caught = false;
  for (int i = 0; i < 16 && !caught; ++i) {
    complete(kPrompts[i % 8], 16);
    t = audits_settled();
    caught = excluded(t, cheater->address());
  }
  ASSERT_TRUE(caught) << t.dump() << "\n" << read_file(gateway_log());
  EXPECT_GE(t["audits"].value("second_opinions", 0), 1) << t.dump();
  EXPECT_EQ(t["excluded"].size(), 1u) << t.dump();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(complete(kPrompts[i], 16), single_process(kPrompts[i], 16));
}

// Sampled (not greedy) choices are replayed with the request's seed: a last
// stage that computes honestly but answers other tokens is caught, and an
// honest one never.
TEST_F(TrustSwarmTest, SampledChoicesAreReplayedWithTheSeed) {
  ChildProcess* first = start_node(layers(0, 2));
  ChildProcess* honest = start_node(layers(2, 4));
  ASSERT_TRUE(first->ok() && honest->ok());
  ASSERT_TRUE(start_gateway({"--peers", first->address() + "," + honest->address(), "--audit-rate", "1",
                             "--audit-local", model_})
                  ->ok());
  auto sampled = [&](int seed) {
    return post_completion({{"model", "tiny"}, {"prompt", kPrompts[seed % 8]}, {"max_tokens", 12},
                            {"temperature", 0.9}, {"seed", seed}, {"repeat_penalty", 1.1}});
  };
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(sampled(i).contains("error"));
  json t = audits_settled();
  EXPECT_EQ(t["audits"].value("frauds", -1), 0) << t.dump() << read_file(gateway_log());
  EXPECT_GE(t["audits"].value("steps_checked", 0), 4 * 2 * 12) << t.dump();

  ChildProcess* liar = start_node({"--layers", "2:4", "--cheat", "token"});
  ASSERT_TRUE(liar->ok());
  gateways_.clear();
  ASSERT_TRUE(start_gateway({"--peers", first->address() + "," + liar->address(), "--audit-rate", "1",
                             "--audit-local", model_})
                  ->ok());
  EXPECT_FALSE(sampled(7).contains("error"));
  t = audits_settled();
  EXPECT_TRUE(excluded(t, liar->address())) << t.dump() << read_file(gateway_log());
  EXPECT_NE(read_file(gateway_log()).find("the session's sampler with its seed picks"), std::string::npos);
}

// Sampled speculation: the node judges drafts with draws keyed by position
// (engine/sampler.h), so the gateway replays every verdict from the seed, even
// where runs were cancelled after the node had drawn for them. Drafts from a
// draft model (with their distributions) and from n-grams (point masses) alike:
// an honest swarm passes, and a last stage that answers other tokens is caught.
TEST_F(TrustSwarmTest, SampledSpeculativeChoicesAreReplayedWithTheSeed) {
  const std::string draft = swarm::testing::find_testdata("tiny-llama/gguf/tiny-llama-Q4_K_M.gguf");
  ASSERT_FALSE(draft.empty()) << "tiny-llama-Q4_K_M.gguf is missing from tests/data";
  const std::string repetitive =
      "for (int i = 0; i < n; ++i) sum += a[i];\nfor (int i = 0; i < n; ++i) sum += b[i];\n"
      "for (int i = 0; i < n; ++i) sum +=";
  ChildProcess* first = start_node(layers(0, 2));
  ChildProcess* honest = start_node(layers(2, 4));
  ASSERT_TRUE(first->ok() && honest->ok());
  auto sampled = [&](int seed) {
    return post_completion({{"model", "tiny"}, {"prompt", repetitive}, {"max_tokens", 24},
                            {"temperature", 0.7}, {"seed", seed}, {"repeat_penalty", 1.05}});
  };
  int drafted_checks = 0;
  for (const std::string& mode : {"draft:" + draft, std::string("ngram")}) {
    gateways_.clear();
    ASSERT_TRUE(start_gateway({"--peers", first->address() + "," + honest->address(), "--audit-rate", "1",
                               "--audit-local", model_, "--speculate", mode})
                    ->ok());
    int drafted = 0;
    for (int i = 0; i < 4; ++i) {
      const json got = sampled(i);
      ASSERT_FALSE(got.contains("error")) << got.dump();
      drafted += got["usage"]["speculation"].value("drafted_tokens", 0);
    }
    ASSERT_GT(drafted, 0) << mode << ": the premise is that it speculates";
    const json t = audits_settled();
    EXPECT_EQ(t["audits"].value("frauds", -1), 0) << mode << t.dump() << read_file(gateway_log());
    EXPECT_EQ(t["audits"].value("disputes", -1), 0) << mode << t.dump();
    EXPECT_GT(t["audits"].value("draft_choices_checked", 0), 0) << mode << t.dump();
    drafted_checks += t["audits"].value("draft_choices_checked", 0);
  }
  EXPECT_GT(drafted_checks, 0);

  ChildProcess* liar = start_node({"--layers", "2:4", "--cheat", "token"});
  ASSERT_TRUE(liar->ok());
  gateways_.clear();
  ASSERT_TRUE(start_gateway({"--peers", first->address() + "," + liar->address(), "--audit-rate", "1",
                             "--audit-local", model_, "--speculate", "draft:" + draft})
                  ->ok());
  EXPECT_FALSE(sampled(9).contains("error"));
  const json t = audits_settled();
  EXPECT_TRUE(excluded(t, liar->address())) << t.dump() << read_file(gateway_log());
  EXPECT_NE(read_file(gateway_log()).find("the session's sampler with its seed picks"), std::string::npos);
}

// Nodes on another device round differently (emulated: every output row off
// by up to 0.1%): audits judge them, and every stage after them, by signed
// sketches of their rows within a tolerance. An honest inexact node passes;
// one that skips a layer is caught, by the gateway's engine and by other nodes.
TEST_F(TrustSwarmTest, InexactNodesAreJudgedWithATolerance) {
  ChildProcess* first = start_node(layers(0, 2));
  ChildProcess* inexact = start_node({"--layers", "2:4", "--emulate-inexact", "0.001"});
  ASSERT_TRUE(first->ok() && inexact->ok());
  ASSERT_TRUE(start_gateway({"--peers", first->address() + "," + inexact->address(), "--audit-rate", "1",
                             "--audit-local", model_})
                  ->ok());
  for (int i = 0; i < 4; ++i) {
    int status = 0;
    complete(kPrompts[i], 16, &status);
    EXPECT_EQ(status, 200);
  }
  json t = audits_settled();
  const json& au = t["audits"];
  EXPECT_EQ(au.value("done", 0), 4) << t.dump();
  EXPECT_GE(au.value("sketches_checked", 0), 4 * 15) << t.dump();  // each step's last row at least
  EXPECT_EQ(au.value("frauds", -1), 0) << t.dump() << read_file(gateway_log());
  EXPECT_EQ(au.value("disputes", -1), 0) << t.dump();
  EXPECT_EQ(au.value("missing", -1), 0) << t.dump();
  EXPECT_TRUE(t["excluded"].empty()) << t.dump();

  for (const bool local : {true, false}) {
    SCOPED_TRACE(local ? "the gateway's engine" : "other nodes");
    ChildProcess* cheater = start_node({"--layers", "2:4", "--emulate-inexact", "0.001", "--cheat", "skip-layer"});
    ChildProcess* twin1 = start_node({"--layers", "2:4", "--slowdown", "3", "--price", "100"});
    ChildProcess* twin2 = start_node({"--layers", "2:4", "--slowdown", "3", "--price", "100"});
    ASSERT_TRUE(cheater->ok() && twin1->ok() && twin2->ok());
    gateways_.clear();
    std::vector<std::string> flags = {"--peers", first->address() + "," + cheater->address() + "," +
                                                     twin1->address() + "," + twin2->address(),
                                      "--audit-rate", "1"};
    if (local) flags.insert(flags.end(), {"--audit-local", model_});
    ASSERT_TRUE(start_gateway(flags)->ok());
    bool caught = false;
    for (int i = 0; i < 16 && !caught; ++i) {
      complete(kPrompts[i % 8], 16);
      t = audits_settled();
      caught = excluded(t, cheater->address());
    }
    ASSERT_TRUE(caught) << t.dump() << "\n" << read_file(gateway_log());
    EXPECT_NE(read_file(gateway_log()).find("beyond the tolerance"), std::string::npos) << read_file(gateway_log());
    EXPECT_EQ(t["excluded"].size(), 1u) << t.dump();
  }
}

// A node that announces ten times the speed it shows: the gateway compares
// what it announces with what its steps take, and its reputation records it.
TEST_F(TrustSwarmTest, ANodeLyingAboutItsSpeedLosesReputation) {
  ChildProcess* first = start_node(layers(0, 2));
  ChildProcess* liar = start_node({"--layers", "2:4", "--cheat", "none", "--cheat-speed", "10"});
  ASSERT_TRUE(first->ok() && liar->ok());
  ASSERT_TRUE(start_gateway({"--peers", first->address() + "," + liar->address(), "--audit-rate", "1",
                             "--audit-local", model_})
                  ->ok());
  auto lies = [&](const json& t, const std::string& address) {
    for (const json& r : t.value("reputation", json::array()))
      if (r.value("node_id", "") == address) return r.value("speed_lies", 0);
    return 0;
  };
  json t = json::object();
  for (int i = 0; i < 12 && lies(t, liar->address()) == 0; ++i) {
    complete(kPrompts[i % 8], 16);
    t = audits_settled();
  }
  EXPECT_GE(lies(t, liar->address()), 1) << t.dump() << read_file(gateway_log());
  EXPECT_EQ(lies(t, first->address()), 0) << t.dump();
  EXPECT_NE(read_file(gateway_log()).find("lies about its speed"), std::string::npos);
  // Honest in its work: audits pass, it is not excluded.
  EXPECT_EQ(t["audits"].value("frauds", -1), 0);
  EXPECT_FALSE(excluded(t, liar->address()));
}

}  // namespace
