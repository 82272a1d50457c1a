#include "net/connection_limiter.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace swarm::net {
namespace {

using namespace std::chrono_literals;
const Clock::time_point t0 = Clock::time_point{} + 1000s;

ConnectionLimits limits(double per_second, double burst) {
  ConnectionLimits l;
  l.per_second = per_second;
  l.burst = burst;
  return l;
}

TEST(ConnectionLimiterTest, ABurstThenTheRefillRate) {
  ConnectionLimiter lim(limits(2, 4));
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(lim.admit("10.0.0.1", t0)) << i;
  EXPECT_FALSE(lim.admit("10.0.0.1", t0));
  // The refusal cost a token too: one back needs a second (2 tokens at 2/s).
  EXPECT_FALSE(lim.admit("10.0.0.1", t0 + 900ms));
  EXPECT_TRUE(lim.admit("10.0.0.1", t0 + 900ms + 1100ms));
  // Another address has its own bucket.
  EXPECT_TRUE(lim.admit("10.0.0.2", t0));
}

TEST(ConnectionLimiterTest, AnAddressThatKnocksWithoutPauseStaysOutAndOneThatBacksOffGetsIn) {
  ConnectionLimiter lim(limits(8, 64));
  Clock::time_point t = t0;
  int first_2s = 0, then = 0;
  // 50 connections a second for 10 s: the burst (and its refill while it
  // lasts), then nothing, since every refused knock spends what refills.
  for (int i = 0; i < 500; ++i, t += 20ms) (i < 100 ? first_2s : then) += lim.admit("192.0.2.7", t);
  EXPECT_GE(first_2s, 64);
  EXPECT_LE(first_2s, 64 + 16);
  EXPECT_EQ(then, 0);
  // Quiet for the debt and one burst's refill: a full burst again.
  t += 16s;
  for (int i = 0; i < 64; ++i) EXPECT_TRUE(lim.admit("192.0.2.7", t)) << i;
}

TEST(ConnectionLimiterTest, IPv6CountsBy64AndMappedIPv4AsIPv4) {
  EXPECT_EQ(ConnectionLimiter::bucket_of("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(ConnectionLimiter::bucket_of("2001:DB8:1:2:bbbb::9"), "2001:db8:1:2::/64");
  EXPECT_EQ(ConnectionLimiter::bucket_of("::ffff:198.51.100.4"), "198.51.100.4");
  EXPECT_EQ(ConnectionLimiter::bucket_of("198.51.100.4"), "198.51.100.4");
  ConnectionLimiter lim(limits(1, 2));
  EXPECT_TRUE(lim.admit("2001:db8:1:2::1", t0));
  EXPECT_TRUE(lim.admit("2001:db8:1:2::2", t0));
  EXPECT_FALSE(lim.admit("2001:db8:1:2::3", t0));  // same /64
  EXPECT_TRUE(lim.admit("2001:db8:1:3::1", t0));   // the next /64
  EXPECT_TRUE(lim.admit("198.51.100.4", t0));
  EXPECT_TRUE(lim.admit("::ffff:198.51.100.4", t0));
  EXPECT_FALSE(lim.admit("198.51.100.4", t0));
  EXPECT_NE(lim.refusal("198.51.100.4").find("too many new connections from 198.51.100.4"),
            std::string::npos);
}

TEST(ConnectionLimiterTest, TheMachinesOwnAddressIsNotCounted) {
  ConnectionLimiter lim(limits(1, 1));
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(lim.admit("127.0.0.1", t0));
    ASSERT_TRUE(lim.admit("::1", t0));
    ASSERT_TRUE(lim.admit("::ffff:127.0.0.1", t0));
  }
  EXPECT_TRUE(lim.admit("127.0.0.2", t0));
  EXPECT_FALSE(lim.admit("127.0.0.2", t0));
  EXPECT_EQ(lim.addresses(), 1u);
}

TEST(ConnectionLimiterTest, TheAddressesRememberedAreCapped) {
  ConnectionLimits l = limits(1, 2);
  l.max_addresses = 100;
  ConnectionLimiter lim(l);
  for (int i = 0; i < 10000; ++i) {
    lim.admit("10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256), t0);
    ASSERT_LE(lim.addresses(), 100u);
  }
  // An address still knocking is remembered while the cap allows.
  ConnectionLimiter kept(l);
  EXPECT_TRUE(kept.admit("10.9.9.9", t0));
  EXPECT_TRUE(kept.admit("10.9.9.9", t0));
  EXPECT_FALSE(kept.admit("10.9.9.9", t0));
  for (int i = 0; i < 50; ++i) kept.admit("10.2.0." + std::to_string(i), t0);
  EXPECT_FALSE(kept.admit("10.9.9.9", t0));
}

}  // namespace
}  // namespace swarm::net
