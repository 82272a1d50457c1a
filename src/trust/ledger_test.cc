#include "trust/ledger.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "trust/credits.h"

namespace swarm::trust {
namespace {

constexpr int64_t kCredit = kMicroPerCredit;

// A fresh database file per test, removed after.
class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* t = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = ::testing::TempDir() + "/ledger_" + t->name() + "_" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = dir_ + "/gateway.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Ledger> open(LedgerOptions o = {}) {
    auto l = Ledger::Open(path_, std::move(o));
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    return l.ok() ? std::move(*l) : nullptr;
  }

  static void expect_conserved(Ledger& l) {
    auto t = l.totals();
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_TRUE(t->conserved()) << "granted " << t->granted << " balances " << t->balances
                                << " held " << t->held << " pending " << t->pending << " paid "
                                << t->paid << " forfeited " << t->forfeited << " unbalanced "
                                << t->unbalanced_holds;
  }

  static NodeWork work(const std::string& node, int64_t tokens, double price, int a = 0, int b = 2) {
    NodeWork w;
    w.node_id = node;
    w.address = "127.0.0.1:1";
    w.first_layer = a;
    w.last_layer = b;
    w.steps = tokens;
    w.tokens = tokens;
    w.price_per_1k = price;
    w.receipts = std::string(64, 'a');
    return w;
  }

  std::string dir_, path_;
};

TEST(CreditsTest, WorkCreditsRoundDownAndMaxCostRoundsUp) {
  NodeWork w;
  w.tokens = 3;
  w.price_per_1k = 0.000001;  // 1 micro-credit per 1,000 tokens
  EXPECT_EQ(*work_credits(w), 0);
  EXPECT_EQ(*max_cost(0.000001, 3), 1);
  w.tokens = 1500;
  w.price_per_1k = 2;
  EXPECT_EQ(*work_credits(w), 3 * kCredit);
  EXPECT_EQ(*max_cost(2, 1500), 3 * kCredit);
  w.price_per_1k = -1;
  EXPECT_FALSE(work_credits(w).ok());
  w.price_per_1k = std::nan("");
  EXPECT_FALSE(work_credits(w).ok());
  EXPECT_EQ(format_credits(1500001), "1.500001");
  EXPECT_EQ(format_credits(2 * kCredit), "2");
}

TEST_F(LedgerTest, ChargesActualCostAndReturnsTheRestOfTheHold) {
  auto l = open();
  ASSERT_TRUE(*l->add_account("key-aaaaaaaaaaaaaaaa", "alice", 10 * kCredit));
  auto a = l->authorize("key-aaaaaaaaaaaaaaaa");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->name, "alice");
  EXPECT_EQ(a->balance, 10 * kCredit);
  EXPECT_EQ(l->authorize("key-bbbbbbbbbbbbbbbb").status().code(), Status::Code::kNotFound);

  auto hold = l->reserve(*a, 4 * kCredit, "req-1");
  ASSERT_TRUE(hold.ok()) << hold.status().ToString();
  EXPECT_EQ(l->authorize("key-aaaaaaaaaaaaaaaa")->balance, 6 * kCredit);
  expect_conserved(*l);

  // 1000 tokens at 1 credit/1k on one node, 500 at 2 on another: 2 credits.
  auto s = l->settle(*hold, {work("n1", 1000, 1.0, 0, 1), work("n2", 500, 2.0, 1, 2)});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->charged, 2 * kCredit);
  EXPECT_EQ(s->returned, 2 * kCredit);
  EXPECT_EQ(s->credits, (std::vector<int64_t>{kCredit, kCredit}));
  EXPECT_FALSE(s->capped);
  EXPECT_EQ(l->authorize("key-aaaaaaaaaaaaaaaa")->balance, 8 * kCredit);
  auto nodes = l->nodes();
  ASSERT_EQ(nodes->size(), 2u);
  EXPECT_EQ((*nodes)[0].node, "n1");
  EXPECT_EQ((*nodes)[0].pending, kCredit);
  auto h = l->history({});
  ASSERT_EQ(h->size(), 2u);
  EXPECT_EQ((*h)[0].request_id, "req-1");
  EXPECT_EQ((*h)[0].account_name, "alice");
  EXPECT_EQ((*h)[0].receipts, std::string(64, 'a'));  // traceable to its receipts
  expect_conserved(*l);
}

TEST_F(LedgerTest, RefusesAHoldAboveTheBalanceNamingBoth) {
  auto l = open();
  l->add_account("key-aaaaaaaaaaaaaaaa", "alice", 1 * kCredit);
  auto a = l->authorize("key-aaaaaaaaaaaaaaaa");
  auto hold = l->reserve(*a, 1500000, "req-1");
  ASSERT_EQ(hold.status().code(), Status::Code::kResourceExhausted);
  EXPECT_NE(hold.status().message().find("1 credits"), std::string::npos) << hold.status().message();
  EXPECT_NE(hold.status().message().find("1.5 credits"), std::string::npos) << hold.status().message();
  EXPECT_EQ(l->authorize("key-aaaaaaaaaaaaaaaa")->balance, kCredit);
  EXPECT_TRUE(l->reserve(*a, kCredit, "req-2").ok());  // exactly the balance fits
  EXPECT_FALSE(l->reserve(*a, 0, "req-2").ok());       // one hold per request id
  expect_conserved(*l);
}

TEST_F(LedgerTest, AHoldIsClosedOnce) {
  auto l = open();
  l->add_account("key-aaaaaaaaaaaaaaaa", "alice", 10 * kCredit);
  auto a = l->authorize("key-aaaaaaaaaaaaaaaa");
  auto h1 = l->reserve(*a, 5 * kCredit, "req-1");
  ASSERT_TRUE(l->settle(*h1, {work("n1", 1000, 1)}).ok());
  auto again = l->settle(*h1, {work("n1", 1000, 1)});
  EXPECT_EQ(again.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(again.status().message().find("already settled"), std::string::npos);
  EXPECT_FALSE(l->release(*h1).ok());
  auto h2 = l->reserve(*a, 5 * kCredit, "req-2");
  ASSERT_TRUE(l->release(*h2).ok());
  EXPECT_FALSE(l->settle(*h2, {work("n1", 1000, 1)}).ok());
  EXPECT_FALSE(l->release(*h2).ok());
  EXPECT_EQ(l->authorize("key-aaaaaaaaaaaaaaaa")->balance, 9 * kCredit);
  EXPECT_EQ(l->nodes()->at(0).pending, kCredit);  // paid once
  EXPECT_EQ(l->totals()->entries, 1);
  expect_conserved(*l);
}

TEST_F(LedgerTest, ManyThreadsSettlingOneHoldPayItOnce) {
  auto l = open();
  l->add_account("key-aaaaaaaaaaaaaaaa", "alice", 10 * kCredit);
  auto hold = l->reserve(*l->authorize("key-aaaaaaaaaaaaaaaa"), 5 * kCredit, "req-1");
  std::atomic<int> settled{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&] { settled += l->settle(*hold, {work("n1", 1000, 1)}).ok(); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(settled.load(), 1);
  EXPECT_EQ(l->nodes()->at(0).pending, kCredit);
  expect_conserved(*l);
}

TEST_F(LedgerTest, ConcurrentRequestsFromManyKeysConserveCreditsExactly) {
  auto l = open();
  constexpr int kKeys = 16, kThreads = 8, kPerThread = 40;
  std::vector<std::string> keys;
  for (int k = 0; k < kKeys; ++k) {
    keys.push_back("key-" + std::to_string(k) + "-xxxxxxxxxxxxxxxx");
    l->add_account(keys.back(), "k" + std::to_string(k), 3 * kCredit + 7 * k);  // odd amounts
  }
  std::atomic<int> settled{0}, refused{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kPerThread; ++i) {
        auto a = l->authorize(keys[rng() % kKeys]);
        if (!a.ok()) {
          ++failed;
          continue;
        }
        const int64_t tokens = 1 + rng() % 300;
        const double p1 = (rng() % 1000) / 997.0, p2 = (rng() % 1000) / 991.0;
        auto cost = max_cost(p1 + p2, tokens);
        auto hold = l->reserve(*a, *cost, "r" + std::to_string(t) + "-" + std::to_string(i));
        if (!hold.ok()) {
          (hold.status().code() == Status::Code::kResourceExhausted ? refused : failed)++;
          continue;
        }
        if (rng() % 5 == 0) {
          failed += !l->release(*hold).ok();
          continue;
        }
        const int64_t done = rng() % (tokens + 1);  // stopped early, or ran to the end
        settled += l->settle(*hold, {work("n" + std::to_string(rng() % 3), done, p1, 0, 1),
                                     work("m" + std::to_string(rng() % 3), done, p2, 1, 2)})
                       .ok();
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(settled.load(), kThreads * kPerThread / 2);
  auto totals = l->totals();
  EXPECT_EQ(totals->open_holds, 0);
  EXPECT_EQ(totals->entries, 2 * settled.load());
  expect_conserved(*l);
  // What the accounts were charged is what the nodes earned.
  int64_t charged = 0;
  auto accounts = l->accounts();
  for (const AccountView& a : *accounts) {
    EXPECT_EQ(a.balance + a.charged, a.granted) << a.name;
    charged += a.charged;
  }
  EXPECT_EQ(charged, totals->pending);
}

TEST_F(LedgerTest, WorkDearerThanTheHoldIsCutToTheHold) {
  auto l = open();
  l->add_account("key-aaaaaaaaaaaaaaaa", "alice", 10 * kCredit);
  auto hold = l->reserve(*l->authorize("key-aaaaaaaaaaaaaaaa"), 1 * kCredit, "req-1");
  auto s = l->settle(*hold, {work("n1", 1000, 1, 0, 1), work("n2", 2000, 1, 1, 2)});  // 3 credits
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->capped);
  EXPECT_EQ(s->charged, kCredit);
  EXPECT_EQ(s->credits[0] + s->credits[1], kCredit);
  EXPECT_EQ(s->credits[0], 333333);
  EXPECT_EQ(l->authorize("key-aaaaaaaaaaaaaaaa")->balance, 9 * kCredit);
  expect_conserved(*l);
}

TEST_F(LedgerTest, OneEntryPerNodeAndRangeWithItsReceiptsInOrder) {
  auto l = open();
  l->add_account("key-aaaaaaaaaaaaaaaa", "alice", 10 * kCredit);
  auto hold = l->reserve(*l->authorize("key-aaaaaaaaaaaaaaaa"), 5 * kCredit, "req-1");
  NodeWork a = work("n1", 100, 1), b = work("n1", 50, 1);
  a.receipts = "r1";
  b.receipts = "r2";
  ASSERT_TRUE(l->settle(*hold, {a, b}).ok());
  auto h = l->history({});
  ASSERT_EQ(h->size(), 1u);
  EXPECT_EQ((*h)[0].tokens, 150);
  EXPECT_EQ((*h)[0].receipts, "r1,r2");
}

TEST_F(LedgerTest, HoldsOfAProcessKilledMidRequestAreReleasedOnOpen) {
  {
    auto l = open();
    l->add_account("key-aaaaaaaaaaaaaaaa", "alice", 10 * kCredit);
  }
  // A child process holds credits for two requests, settles one, and dies
  // without closing anything.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto l = Ledger::Open(path_);
    if (!l.ok()) ::_exit(2);
    auto a = (*l)->authorize("key-aaaaaaaaaaaaaaaa");
    auto h1 = (*l)->reserve(*a, 3 * kCredit, "req-done");
    auto h2 = (*l)->reserve(*a, 4 * kCredit, "req-unfinished");
    if (!h1.ok() || !h2.ok() || !(*l)->settle(*h1, {work("n1", 1000, 1)}).ok()) ::_exit(3);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  {
    // A viewer sees the hold still open and leaves it so.
    auto viewer = open(LedgerOptions{.recover_holds = false, .now_ms = {}, .busy_timeout_ms = 10000});
    EXPECT_EQ(viewer->totals()->open_holds, 1);
    EXPECT_EQ(viewer->totals()->held, 4 * kCredit);
    expect_conserved(*viewer);
  }
  auto l = open();
  EXPECT_EQ(l->recovered_holds(), 1);
  EXPECT_EQ(l->totals()->open_holds, 0);
  EXPECT_EQ(l->authorize("key-aaaaaaaaaaaaaaaa")->balance, 9 * kCredit);  // only the finished one paid
  EXPECT_EQ(l->nodes()->at(0).pending, kCredit);
  expect_conserved(*l);
  auto again = open();
  EXPECT_EQ(again->recovered_holds(), 0);
}

TEST_F(LedgerTest, FraudForfeitsUnpaidCreditsOnly) {
  int64_t now = 1000;
  auto l = open(LedgerOptions{.recover_holds = true, .now_ms = [&] { return now; }, .busy_timeout_ms = 10000});
  l->add_account("key-aaaaaaaaaaaaaaaa", "alice", 100 * kCredit);
  auto a = l->authorize("key-aaaaaaaaaaaaaaaa");
  auto h1 = l->reserve(*a, 10 * kCredit, "req-1");
  ASSERT_TRUE(l->settle(*h1, {work("cheat", 2000, 1, 0, 1), work("honest", 1000, 1, 1, 2)}).ok());
  now = 5000;
  EXPECT_EQ(*l->pay_out(/*before_ms=*/2000), 3 * kCredit);  // the first request's earnings
  auto h2 = l->reserve(*a, 10 * kCredit, "req-2");
  ASSERT_TRUE(l->settle(*h2, {work("cheat", 3000, 1, 0, 1), work("honest", 1000, 1, 1, 2)}).ok());
  EXPECT_EQ(*l->pay_out(/*before_ms=*/2000), 0);  // not yet past its hold period

  EXPECT_EQ(*l->forfeit("cheat", "signed commitment to a wrong result"), 3 * kCredit);
  auto nodes = l->nodes();
  for (const NodeEarnings& n : *nodes) {
    if (n.node == "cheat") {
      EXPECT_EQ(n.paid, 2 * kCredit);
      EXPECT_EQ(n.pending, 0);
      EXPECT_EQ(n.forfeited, 3 * kCredit);
    } else {
      EXPECT_EQ(n.paid, kCredit);
      EXPECT_EQ(n.pending, kCredit);
    }
  }
  EXPECT_EQ(*l->forfeit("cheat", "again"), 0);
  // A request that was in flight settles later: the cheat earns nothing from it.
  auto h3 = l->reserve(*a, 10 * kCredit, "req-3");
  ASSERT_TRUE(l->settle(*h3, {work("cheat", 1000, 1, 0, 1), work("honest", 1000, 1, 1, 2)}).ok());
  auto after = l->nodes();
  EXPECT_EQ((*after)[0].node, "cheat");
  EXPECT_EQ((*after)[0].pending, 0);
  EXPECT_EQ((*after)[0].forfeited, 4 * kCredit);
  EXPECT_EQ((*after)[1].pending, 2 * kCredit);
  expect_conserved(*l);
}

TEST_F(LedgerTest, TheConservationCheckCatchesAnEntryPaidTwice) {
  auto l = open();
  l->add_account("key-aaaaaaaaaaaaaaaa", "alice", 10 * kCredit);
  auto hold = l->reserve(*l->authorize("key-aaaaaaaaaaaaaaaa"), 5 * kCredit, "req-1");
  ASSERT_TRUE(l->settle(*hold, {work("n1", 1000, 1, 0, 2)}).ok());
  expect_conserved(*l);
  // Another writer copies the entry under another layer range.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "INSERT INTO ledger_entries(hold_id, node, address, first_layer, last_layer, "
                         "steps, tokens, price_per_1k, credits, receipts, state, settled_ms) SELECT "
                         "hold_id, node, address, first_layer, last_layer + 1, steps, tokens, "
                         "price_per_1k, credits, receipts, state, settled_ms FROM ledger_entries",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  auto t = l->totals();
  EXPECT_FALSE(t->conserved());
  EXPECT_EQ(t->unbalanced_holds, 1);
}

TEST_F(LedgerTest, KeepsOnlyTheKeysHash) {
  const std::string key = "sk-secret-key-that-must-not-be-stored";
  {
    auto l = open();
    l->add_account(key, "alice", kCredit);
    EXPECT_EQ(key_hash(key).size(), 64u);
  }
  for (const auto& f : std::filesystem::directory_iterator(dir_)) {
    std::ifstream in(f.path(), std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    EXPECT_EQ(bytes.str().find(key), std::string::npos) << f.path();
  }
  EXPECT_TRUE(open()->authorize(key).ok());  // and it survives a reopen
}

}  // namespace
}  // namespace swarm::trust
