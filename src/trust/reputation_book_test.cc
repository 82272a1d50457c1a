// The reputation book on a real SQLite file: what it records survives a
// reopen, its logs stay bounded, proofs are kept, and threads may share it.
#include "trust/reputation_book.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <thread>

namespace swarm::trust {
namespace {

class ReputationBookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* t = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = ::testing::TempDir() + "/reputation_" + t->name() + "_" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = dir_ + "/trust.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<ReputationBook> open(size_t events_per_node = 256) {
    auto book = ReputationBook::Open(path_, {}, events_per_node);
    EXPECT_TRUE(book.ok()) << book.status().message();
    return book.ok() ? std::move(book).value() : nullptr;
  }

  // The first column of the first row of `sql` on the file, as text.
  std::string query(const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }

  std::string dir_, path_;
};

TEST_F(ReputationBookTest, ScoresSurviveAReopen) {
  std::map<std::string, double> scores;
  {
    auto book = open();
    ASSERT_TRUE(book);
    for (int i = 0; i < 5; ++i)
      ASSERT_TRUE(book->record("good", ReputationEvent::kAuditPassed, 100 + i).ok());
    ASSERT_TRUE(book->record("slow", ReputationEvent::kTimeout, 100).ok());
    ASSERT_TRUE(
        book->record("slow", ReputationEvent::kSpeedLie, 101, "announced 9000, measured 100").ok());
    for (const NodeReputation& r : book->all(200)) scores[r.node_id] = r.score;
    EXPECT_LT(scores["slow"], book->score("new", 200));
    EXPECT_GT(scores["good"], book->score("new", 200));
  }
  auto book = open();
  ASSERT_TRUE(book);
  EXPECT_EQ(book->all(200).size(), 2u);
  for (const auto& [id, s] : scores) EXPECT_DOUBLE_EQ(book->score(id, 200), s) << id;
  const ReputationState slow = book->state("slow", 200);
  EXPECT_EQ(slow.timeouts, 1);
  EXPECT_EQ(slow.speed_lies, 1);
  EXPECT_EQ(book->state("good", 200).audits_passed, 5);
  // Time passes across the restart as on one clock: the stored time of the
  // last update is where fading resumes.
  EXPECT_GT(book->score("slow", 200 + 7 * 24 * 3600.0), scores["slow"]);
}

TEST_F(ReputationBookTest, FraudProofIsStoredAndExclusionSurvivesAReopen) {
  const std::string proof("signed\0commitments", 18);
  {
    auto book = open();
    ASSERT_TRUE(book);
    EXPECT_FALSE(book->excluded("cheat"));
    auto s =
        book->store_proof("cheat", proof, "output hash differs from re-execution at step 7", 50);
    ASSERT_TRUE(s.ok()) << s.status().message();
    EXPECT_TRUE(s->excluded);
    EXPECT_TRUE(book->excluded("cheat"));
    EXPECT_EQ(book->score("cheat", 50), 0);
  }
  auto book = open();
  ASSERT_TRUE(book);
  EXPECT_TRUE(book->excluded("cheat"));
  ASSERT_TRUE(book->record("cheat", ReputationEvent::kAuditPassed, 60).ok());
  EXPECT_TRUE(book->excluded("cheat"));
  auto proofs = book->proofs("cheat");
  ASSERT_TRUE(proofs.ok());
  ASSERT_EQ(proofs->size(), 1u);
  EXPECT_EQ((*proofs)[0].proof, proof);  // bytes kept as they were, NULs included
  EXPECT_EQ((*proofs)[0].reason, "output hash differs from re-execution at step 7");
  EXPECT_DOUBLE_EQ((*proofs)[0].at, 50);
  auto events = book->events("cheat");
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].event, ReputationEvent::kAuditFailed);
  EXPECT_EQ((*events)[1].event, ReputationEvent::kAuditPassed);
}

TEST_F(ReputationBookTest, OversizedInputsAreRefusedNamingTheLimit) {
  auto book = open();
  ASSERT_TRUE(book);
  auto big = book->store_proof("n", std::string(kMaxProofBytes + 1, 'x'), "r", 1);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find(std::to_string(kMaxProofBytes)), std::string::npos);
  EXPECT_FALSE(book->excluded("n"));  // nothing happened
  auto long_id = book->record(std::string(kMaxNodeIdBytes + 1, 'a'), ReputationEvent::kTimeout, 1);
  ASSERT_FALSE(long_id.ok());
  EXPECT_NE(long_id.status().message().find(std::to_string(kMaxNodeIdBytes)), std::string::npos);
  EXPECT_FALSE(book->record("", ReputationEvent::kTimeout, 1).ok());
}

TEST_F(ReputationBookTest, EventLogKeepsTheLastKPerNode) {
  auto book = open(/*events_per_node=*/5);
  ASSERT_TRUE(book);
  for (int i = 0; i < 12; ++i)
    ASSERT_TRUE(book->record("a", ReputationEvent::kDisconnect, i, std::to_string(i)).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(book->record("b", ReputationEvent::kTimeout, i).ok());
  auto a = book->events("a");
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->size(), 5u);
  EXPECT_EQ(a->front().detail, "7");
  EXPECT_EQ(a->back().detail, "11");
  EXPECT_EQ(book->events("b")->size(), 3u);
  EXPECT_EQ(query("SELECT count(*) FROM reputation_events"), "8");
  // The counts do not forget what the log dropped.
  EXPECT_EQ(book->state("a", 12).disconnects, 12);
  // Each logged score is the node's right after the event.
  EXPECT_DOUBLE_EQ(a->back().score_after, book->score("a", 11));
}

TEST_F(ReputationBookTest, TheFileIsWalWithPrefixedTables) {
  auto book = open();
  ASSERT_TRUE(book);
  ASSERT_TRUE(book->record("n", ReputationEvent::kTimeout, 1).ok());
  EXPECT_EQ(query("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(query("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                  "'reputation\\_%' "
                  "ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"),
            "0");
  EXPECT_EQ(query("SELECT timeouts FROM reputation_nodes WHERE node_id = 'n'"), "1");
}

TEST_F(ReputationBookTest, OtherTablesInTheFileAreLeftAlone) {
  // The ledger keeps its tables in the same file.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db, "CREATE TABLE ledger_x (v INTEGER); INSERT INTO ledger_x VALUES (42);",
                     nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(db);
  }
  auto book = open();
  ASSERT_TRUE(book);
  ASSERT_TRUE(book->record("n", ReputationEvent::kTimeout, 1).ok());
  EXPECT_EQ(query("SELECT v FROM ledger_x"), "42");
}

TEST_F(ReputationBookTest, AnUnopenableFileIsAnError) {
  auto book = ReputationBook::Open(dir_ + "/no/such/folder/trust.db");
  ASSERT_FALSE(book.ok());
  EXPECT_NE(book.status().message().find("trust database"), std::string::npos)
      << book.status().message();
}

TEST_F(ReputationBookTest, ThreadsShareOneBook) {
  auto book = open();
  ASSERT_TRUE(book);
  constexpr int kThreads = 4, kEach = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        EXPECT_TRUE(book->record("shared", ReputationEvent::kAuditPassed, 10).ok());
        EXPECT_TRUE(book->record("own" + std::to_string(t), ReputationEvent::kTimeout, 10).ok());
        book->score("shared", 10);
      }
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(book->state("shared", 10).audits_passed, kThreads * kEach);
  book.reset();
  book = open();
  EXPECT_EQ(book->state("shared", 10).audits_passed, kThreads * kEach);
  for (int t = 0; t < kThreads; ++t)
    EXPECT_EQ(book->state("own" + std::to_string(t), 10).timeouts, kEach);
}

TEST_F(ReputationBookTest, DumpHasTheFieldsToolsPrint) {
  auto book = open();
  ASSERT_TRUE(book);
  ASSERT_TRUE(book->record("n", ReputationEvent::kAuditPassed, 1).ok());
  const nlohmann::json d = book->dump(1);
  ASSERT_TRUE(d.is_array());
  ASSERT_EQ(d.size(), 1u);
  for (const char* field : {"node_id", "score", "alpha", "beta", "audits_passed", "excluded"})
    EXPECT_TRUE(d[0].contains(field)) << field;
  EXPECT_EQ(d[0]["node_id"], "n");
  EXPECT_EQ(d[0]["audits_passed"], 1);
  EXPECT_DOUBLE_EQ(d[0]["score"].get<double>(), book->score("n", 1));
}

TEST_F(ReputationBookTest, AuditRateFollowsProbation) {
  auto book = open();
  ASSERT_TRUE(book);
  EXPECT_DOUBLE_EQ(book->audit_rate("n", 0.05, 0), 0.25);
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(book->record("n", ReputationEvent::kAuditPassed, i).ok());
  EXPECT_DOUBLE_EQ(book->audit_rate("n", 0.05, 20), 0.05);
  book.reset();
  book = open();
  EXPECT_DOUBLE_EQ(book->audit_rate("n", 0.05, 20), 0.05);  // probation over for good
}

}  // namespace
}  // namespace swarm::trust
