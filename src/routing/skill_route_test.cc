// The skill routing rule (doc/skills.md, "Routing"): filters by task, exclusion,
// price cap and reputation floor; ranks by expected cost of price and time;
// trusts its own measurements over announced claims; spreads load; explores.
#include "routing/skill_route.h"

#include <gtest/gtest.h>

#include <vector>

namespace swarm {
namespace {

SkillOffer offer(double price, double tps, int64_t capacity = 4) {
  SkillOffer o;
  o.price = price;
  o.tokens_per_second = tps;
  o.ttft_seconds = 0.2;
  o.capacity = capacity;
  return o;
}

std::vector<size_t> order_of(const SkillRoute& r) {
  std::vector<size_t> out;
  for (const RankedOffer& o : r.order) out.push_back(o.index);
  return out;
}

TEST(SkillRouteTest, FiltersAreCountedAndPriceCapExcludesExpensiveProviders) {
  std::vector<SkillOffer> offers = {offer(1, 20), offer(5, 40), offer(1, 20), offer(1, 20),
                                    offer(1, 20)};
  offers[2].serves_task = false;
  offers[3].excluded = true;
  offers[4].reputation = 0.1;
  SkillAsk ask;
  ask.max_price = 2;
  const SkillRoute r = rank_skill_offers(ask, offers, 0.99);
  EXPECT_EQ(order_of(r), std::vector<size_t>({0}));
  EXPECT_EQ(r.over_price, 1u);
  EXPECT_EQ(r.no_task, 1u);
  EXPECT_EQ(r.excluded, 1u);
  EXPECT_EQ(r.below_reputation, 1u);
  ask.max_price.reset();
  EXPECT_EQ(rank_skill_offers(ask, offers, 0.99).order.size(), 2u);
}

TEST(SkillRouteTest, TheValueOfTimeDecidesBetweenFastAndCheap) {
  const std::vector<SkillOffer> offers = {offer(10, 50), offer(0.5, 5)};
  SkillAsk ask;
  ask.output_tokens = 200;
  ask.seconds_value = 1.0;  // waiting is dear: the fast one
  EXPECT_EQ(rank_skill_offers(ask, offers, 0.99).order.front().index, 0u);
  ask.seconds_value = 0.001;  // waiting is cheap: the cheap one
  EXPECT_EQ(rank_skill_offers(ask, offers, 0.99).order.front().index, 1u);
  // Same price: the faster first; same speed: the cheaper first.
  EXPECT_EQ(order_of(rank_skill_offers(ask, std::vector{offer(1, 10), offer(1, 30)}, 0.99)),
            std::vector<size_t>({1, 0}));
  EXPECT_EQ(order_of(rank_skill_offers(ask, std::vector{offer(2, 10), offer(1, 10)}, 0.99)),
            std::vector<size_t>({1, 0}));
}

TEST(SkillRouteTest, OwnMeasurementsOutweighAnnouncedClaims) {
  // One claims 1000 tokens/s; this gateway measured it at 2.
  std::vector<SkillOffer> offers = {offer(1, 1000), offer(1, 20)};
  offers[0].seen.completed = 5;
  offers[0].seen.tokens_per_second = 2;
  offers[0].seen.ttft_seconds = 0.2;
  SkillAsk ask;
  EXPECT_EQ(rank_skill_offers(ask, offers, 0.99).order.front().index, 1u);
  // Too few measurements: the claim still stands.
  offers[0].seen.completed = 2;
  EXPECT_EQ(rank_skill_offers(ask, offers, 0.99).order.front().index, 0u);
}

TEST(SkillRouteTest, LoadSpreadsTrafficInProportionToSpeed) {
  // 24 requests arrive one after another and stay: each goes to the
  // provider ranked first then, which counts it in flight.
  std::vector<SkillOffer> offers = {offer(1, 30), offer(1, 10), offer(1, 20)};
  SkillAsk ask;
  ask.seconds_value = 1;
  std::vector<int> taken(offers.size(), 0);
  for (int i = 0; i < 24; ++i) {
    const size_t best = rank_skill_offers(ask, offers, 0.99).order.front().index;
    ++taken[best];
    ++offers[best].seen.in_flight;
  }
  EXPECT_GT(taken[0], taken[2]);
  EXPECT_GT(taken[2], taken[1]);
  EXPECT_GT(taken[1], 0);  // the slowest still gets some once the others are busy
  // Announced queues count as load too.
  std::vector<SkillOffer> twins = {offer(1, 20), offer(1, 20)};
  twins[0].queued = 3;
  EXPECT_EQ(rank_skill_offers(ask, twins, 0.99).order.front().index, 1u);
}

TEST(SkillRouteTest, FailuresReputationAndColdBackendsRankLower) {
  SkillAsk ask;
  std::vector<SkillOffer> twins = {offer(1, 20), offer(1, 20)};
  twins[0].seen.recent_failures = 1;
  EXPECT_EQ(rank_skill_offers(ask, twins, 0.99).order.front().index, 1u);
  twins[0].seen.recent_failures = 0;
  twins[0].warm = false;
  EXPECT_EQ(rank_skill_offers(ask, twins, 0.99).order.front().index, 1u);
  twins[0].warm = true;
  twins[0].reputation = 0.4;
  twins[1].reputation = 0.9;
  EXPECT_EQ(rank_skill_offers(ask, twins, 0.99).order.front().index, 1u);
}

TEST(SkillRouteTest, ExplorationPutsTheLeastMeasuredFirstOnlyWhenDrawn) {
  std::vector<SkillOffer> offers = {offer(1, 40), offer(1, 10)};
  offers[0].seen.completed = 10;
  offers[0].seen.tokens_per_second = 40;
  offers[0].seen.ttft_seconds = 0.2;
  SkillAsk ask;
  ask.explore = 0.1;
  SkillRoute r = rank_skill_offers(ask, offers, 0.05);
  EXPECT_TRUE(r.explored);
  EXPECT_EQ(order_of(r), std::vector<size_t>({1, 0}));
  r = rank_skill_offers(ask, offers, 0.5);
  EXPECT_FALSE(r.explored);
  EXPECT_EQ(order_of(r), std::vector<size_t>({0, 1}));
  // Everyone measured: nothing to explore.
  offers[1].seen.completed = 10;
  EXPECT_FALSE(rank_skill_offers(ask, offers, 0.05).explored);
}

TEST(SkillRouteTest, ImagesArePricedPerImage) {
  SkillAsk ask;
  ask.per_image = true;
  ask.output_tokens = 2;  // two images
  ask.max_price = 0.5;
  const std::vector<SkillOffer> offers = {offer(0.4, 0), offer(0.6, 0)};
  const SkillRoute r = rank_skill_offers(ask, offers, 0.99);
  ASSERT_EQ(r.order.size(), 1u);
  EXPECT_DOUBLE_EQ(r.order[0].expected_cost, 0.8);
}

TEST(SkillRouteTest, HistoryAveragesSuccessesAndDecaysFailures) {
  SkillHistory h;
  h.started();
  EXPECT_EQ(h.at(0).in_flight, 1);
  h.succeeded(1.0, 10);
  h.ended();
  h.succeeded(2.0, 20);
  const ProviderObservations o = h.at(0);
  EXPECT_EQ(o.completed, 2);
  EXPECT_EQ(o.in_flight, 0);
  EXPECT_DOUBLE_EQ(o.ttft_seconds, 1.2);
  EXPECT_DOUBLE_EQ(o.tokens_per_second, 12);
  h.failed(100);
  h.failed(100);
  EXPECT_DOUBLE_EQ(h.at(100).recent_failures, 2);
  EXPECT_DOUBLE_EQ(h.at(160).recent_failures, 1);  // a 60 s half-life
  h.failed(160);
  EXPECT_DOUBLE_EQ(h.at(160).recent_failures, 2);
}

}  // namespace
}  // namespace swarm
