// Reputation in a real swarm (doc/trust.md, "Reputation"): a node that hangs
// (SIGSTOP) mid-stream is charged a timeout in the gateway's trust database,
// its score falls, and a restarted gateway goes on from the stored state.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>

#include <atomic>
#include <future>

#include "swarm_harness.h"

namespace {

using swarm::testing::ChildProcess;
using swarm::testing::kPrompts;
using swarm::testing::read_file;

// One node's row of reputation_nodes, read with SQLite itself (not through
// the code under test).
struct StoredReputation {
  bool found = false;
  double alpha = 0, beta = 0;
  int64_t timeouts = 0, disconnects = 0, events = 0;
  double score() const { return alpha / (alpha + beta); }
};

StoredReputation stored(const std::string& db_path, const std::string& node) {
  StoredReputation r;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << db_path << ": " << sqlite3_errmsg(db);
    sqlite3_close(db);
    return r;
  }
  sqlite3_stmt* st = nullptr;
  const char* sql =
      "SELECT alpha, beta, timeouts, disconnects, "
      "(SELECT count(*) FROM reputation_events e WHERE e.node_id = n.node_id) "
      "FROM reputation_nodes n WHERE node_id = ?1";
  EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  sqlite3_bind_text(st, 1, node.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st) == SQLITE_ROW) {
    r.found = true;
    r.alpha = sqlite3_column_double(st, 0);
    r.beta = sqlite3_column_double(st, 1);
    r.timeouts = sqlite3_column_int64(st, 2);
    r.disconnects = sqlite3_column_int64(st, 3);
    r.events = sqlite3_column_int64(st, 4);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return r;
}

class ReputationSwarmTest : public swarm::testing::SwarmHarness {
 protected:
  // Streams `prompt` (`tokens` tokens) from the last gateway; once it is
  // under way, sends `sig` to `victim`. The streamed text.
  std::string stream_and_signal(const std::string& prompt, int tokens,
                                swarm::testing::ChildProcess* victim, int sig) {
    std::atomic<int> chunks{0};
    auto got = std::async(std::launch::async,
                          [&] { return complete_streamed(prompt, tokens, [&] { ++chunks; }); });
    EXPECT_TRUE(
        swarm::testing::eventually([&] { return chunks.load() >= 3; }, std::chrono::seconds(60)));
    victim->signal(sig);
    return got.get();
  }
};

TEST_F(ReputationSwarmTest, AHungNodeLosesReputationAndARestartedGatewayRemembers) {
  constexpr int kTokens = 40;
  const std::string want = single_process(kPrompts[0], kTokens);
  // Twins; a 15 ms one-way delay keeps the stream running while it is struck.
  ASSERT_TRUE(start_chain({{0, 4}, {0, 4}}, {"--failure-memory", "3", "--link-delay-ms", "15"},
                          {"--link-delay-ms", "15"}));
  EXPECT_NE(read_file(gateway_log()).find("reputation of 0 nodes"), std::string::npos)
      << read_file(gateway_log());
  const std::vector<std::string> chain = logged_chain();
  ASSERT_EQ(chain.size(), 1u) << read_file(gateway_log());
  const std::string victim_address = chain[0];
  swarm::testing::ChildProcess* victim = node_at(victim_address);
  ASSERT_NE(victim, nullptr);
  std::string twin_address;
  for (auto& n : nodes_)
    if (n->address() != victim_address) twin_address = n->address();

  // Plaintext nodes are known by address (they have no verified identity).
  EXPECT_EQ(stream_and_signal(kPrompts[0], kTokens, victim, SIGSTOP), want);
  const StoredReputation hung = stored(trust_db(), victim_address);
  ASSERT_TRUE(hung.found) << read_file(gateway_log());
  EXPECT_EQ(hung.timeouts, 1);  // one hang, one event, however many steps it held up
  EXPECT_EQ(hung.events, 1);
  EXPECT_LT(hung.score(), 0.8) << "below a newcomer's prior";
  EXPECT_GT(hung.score(), 0.0) << "a timeout lowers, never excludes";
  const StoredReputation twin = stored(trust_db(), twin_address);
  EXPECT_EQ(twin.timeouts + twin.disconnects, 0);

  // A new gateway on the same database, routed through the node that hung:
  // it starts from the stored state, and the next failure adds to it.
  victim->signal(SIGCONT);
  gateways_.clear();
  ASSERT_TRUE(
      start_gateway({"--peers", victim_address, "--failure-memory", "3", "--link-delay-ms", "15"})
          ->ok());
  EXPECT_NE(read_file(gateway_log()).find("reputation of 1 nodes, 0 excluded"), std::string::npos)
      << read_file(gateway_log());
  const StoredReputation reopened = stored(trust_db(), victim_address);
  EXPECT_DOUBLE_EQ(reopened.alpha, hung.alpha);
  EXPECT_DOUBLE_EQ(reopened.beta, hung.beta);
  stream_and_signal(kPrompts[1], kTokens, victim, SIGKILL);  // fails: no twin in this gateway
  const StoredReputation after = stored(trust_db(), victim_address);
  EXPECT_EQ(after.timeouts, 1) << "the first gateway's timeout was kept";
  EXPECT_EQ(after.timeouts + after.disconnects, 2) << read_file(gateway_log());
  EXPECT_EQ(after.events, 2);
  EXPECT_LT(after.score(), hung.score());
}

// A node with an identity (pinned TLS) is known by its node id, not its
// address: a node that moves keeps its record, and another node at its old
// address does not inherit it.
TEST_F(ReputationSwarmTest, ANodeWithAnIdentityIsKnownByItsNodeId) {
  constexpr int kTokens = 40;
  const swarm::testing::KeyFile a = keygen("a"), b = keygen("b");
  ChildProcess* na = start_node({"--layers", "0:4", "--identity", a.path, "--link-delay-ms", "15"});
  ChildProcess* nb = start_node({"--layers", "0:4", "--identity", b.path, "--link-delay-ms", "15"});
  ASSERT_TRUE(na->ok() && nb->ok());
  ASSERT_TRUE(
      start_gateway({"--peers",
                     na->address() + "@" + a.node_id + "," + nb->address() + "@" + b.node_id,
                     "--failure-memory", "3", "--link-delay-ms", "15"})
          ->ok());
  const std::vector<std::string> chain = logged_chain();
  ASSERT_EQ(chain.size(), 1u) << read_file(gateway_log());
  const bool a_serves = chain[0] == na->address();
  ChildProcess* victim = a_serves ? na : nb;
  const std::string victim_id = a_serves ? a.node_id : b.node_id;
  const std::string twin_id = a_serves ? b.node_id : a.node_id;

  EXPECT_EQ(stream_and_signal(kPrompts[0], kTokens, victim, SIGKILL),
            single_process(kPrompts[0], kTokens));
  const StoredReputation lost = stored(trust_db(), victim_id);
  ASSERT_TRUE(lost.found) << read_file(gateway_log());
  EXPECT_EQ(lost.timeouts + lost.disconnects, 1);
  EXPECT_FALSE(stored(trust_db(), victim->address()).found);
  EXPECT_FALSE(stored(trust_db(), twin_id).found);
}

}  // namespace
