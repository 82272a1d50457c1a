#include "trust/api_keys.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "trust/credits.h"
#include "trust/ledger.h"

namespace swarm::trust {
namespace {

TEST(ApiKeysTest, ParsesKeysCreditsNamesAndComments) {
  auto keys = parse_api_keys(
      "# requesters\n"
      "\n"
      "sk-alice-0123456789abcdef 100 Alice Liddell\n"
      "  sk-bob-0123456789abcdef\t2.5   \r\n"
      "sk-carol-0123456789abcdef 0 # not a comment: part of the name\n");
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  ASSERT_EQ(keys->size(), 3u);
  EXPECT_EQ((*keys)[0].key, "sk-alice-0123456789abcdef");
  EXPECT_EQ((*keys)[0].credits, 100 * kMicroPerCredit);
  EXPECT_EQ((*keys)[0].name, "Alice Liddell");
  EXPECT_EQ((*keys)[0].line, 3);
  EXPECT_EQ((*keys)[1].credits, 2'500'000);
  EXPECT_EQ((*keys)[1].name, key_hash("sk-bob-0123456789abcdef").substr(0, 12));
  EXPECT_EQ((*keys)[2].credits, 0);
  EXPECT_EQ((*keys)[2].name, "# not a comment: part of the name");
}

TEST(ApiKeysTest, ErrorsNameTheLineAndTheField) {
  struct Case {
    const char* text;
    const char* want;
  } cases[] = {
      {"short 1\n", "line 1, KEY: length 5"},
      {"# c\nsk-0123456789abcdef\n", "line 2, CREDITS: missing"},
      {"sk-0123456789abcdef -1\n", "line 1, CREDITS"},
      {"sk-0123456789abcdef nan\n", "line 1, CREDITS"},
      {"sk-0123456789abcdef inf\n", "line 1, CREDITS"},
      {"sk-0123456789abcdef 1e300\n", "line 1, CREDITS"},
      {"sk-0123456789abcdef 12abc\n", "line 1, CREDITS: '12abc' is not a number"},
      {"sk-0123456789abcdef 1\nsk-0123456789abcdef 2\n", "line 2, KEY: the same key is given twice"},
      {"sk-0123456789abcdef 1 \x01name\n", "line 1, NAME"},
  };
  for (const Case& c : cases) {
    auto keys = parse_api_keys(c.text);
    ASSERT_FALSE(keys.ok()) << c.text;
    EXPECT_NE(keys.status().message().find(c.want), std::string::npos)
        << keys.status().message() << " wanted " << c.want;
  }
  EXPECT_FALSE(parse_api_keys(std::string(300, 'k') + " 1\n").ok());
  EXPECT_FALSE(parse_api_keys("sk-0123456789abcdef 1 " + std::string(65, 'n') + "\n").ok());
  EXPECT_EQ(load_api_keys("/nonexistent/keys").status().code(), Status::Code::kIOError);
}

TEST(ApiKeysTest, ImportGrantsOnceAndKeepsBalances) {
  const std::string dir = ::testing::TempDir() + "/api_keys_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto ledger = Ledger::Open(dir + "/gw.db");
  ASSERT_TRUE(ledger.ok());
  Ledger& l = **ledger;
  auto keys = parse_api_keys("sk-alice-0123456789abcdef 10 alice\n");
  auto first = import_api_keys(l, *keys);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->added, 1);
  auto a = l.authorize("sk-alice-0123456789abcdef");
  auto hold = l.reserve(*a, 4 * kMicroPerCredit, "req");
  ASSERT_TRUE(l.settle(*hold, {}).ok());  // nothing served: nothing charged
  hold = l.reserve(*a, 4 * kMicroPerCredit, "req2");
  NodeWork w;
  w.node_id = "n";
  w.tokens = 1000;
  w.price_per_1k = 3;
  ASSERT_TRUE(l.settle(*hold, {w}).ok());
  // The same file again, and a new key beside it.
  keys = parse_api_keys("sk-alice-0123456789abcdef 10 alice\nsk-bob-0123456789abcdef 5 bob\n");
  auto second = import_api_keys(l, *keys);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->added, 1);
  EXPECT_EQ(second->kept, 1);
  EXPECT_EQ(l.authorize("sk-alice-0123456789abcdef")->balance, 7 * kMicroPerCredit);
  EXPECT_EQ(l.authorize("sk-bob-0123456789abcdef")->balance, 5 * kMicroPerCredit);
  EXPECT_EQ(l.totals()->granted, 15 * kMicroPerCredit);
  EXPECT_TRUE(l.totals()->conserved());
  // A key taken out of the file is refused; put back, it has its balance again.
  ASSERT_TRUE(import_api_keys(l, *parse_api_keys("sk-bob-0123456789abcdef 5 bob\n")).ok());
  EXPECT_EQ(l.authorize("sk-alice-0123456789abcdef").status().code(), Status::Code::kNotFound);
  ASSERT_TRUE(import_api_keys(l, *keys).ok());
  EXPECT_EQ(l.authorize("sk-alice-0123456789abcdef")->balance, 7 * kMicroPerCredit);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace swarm::trust
