#include "node/rebalancer.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <mutex>
#include <vector>

namespace swarm::node {
namespace {

using std::chrono::seconds;

PeerSnapshot peer(int first, int last, int n_layer, const std::string& key) {
  PeerSnapshot p;
  p.address = "peer-" + key;
  p.first_layer = first;
  p.last_layer = last;
  p.n_layer = n_layer;
  p.layer_tokens_per_second = 1000;
  p.public_key = key;
  return p;
}

// A node of an 8-layer model with room for 4, and a swarm it looks up: what
// the rebalancer saw and did, and the jitter it is given, scripted.
struct Fixture {
  FakeClock clock;
  std::mutex mu;
  std::vector<PeerSnapshot> swarm;
  LayerRange current{0, 4};
  int look_ups = 0;
  std::vector<LayerRange> moves;
  std::deque<double> jitter;  // uniform draws, in order

  std::unique_ptr<Rebalancer> make(const std::string& my_key = "00") {
    RebalanceOptions o;
    o.interval_s = 60;
    o.n_layer = 8;
    o.capacity_layers = 4;
    o.public_key_hex = my_key;
    return std::make_unique<Rebalancer>(
        clock,
        [this] {
          std::lock_guard<std::mutex> lock(mu);
          const double u = jitter.front();
          jitter.pop_front();
          return u;
        },
        o,
        [this] {
          std::lock_guard<std::mutex> lock(mu);
          ++look_ups;
          return Rebalancer::View{swarm, current, 1000};
        },
        [this](LayerRange target) {
          std::lock_guard<std::mutex> lock(mu);
          moves.push_back(target);
          current = target;
        });
  }
  int look_ups_now() {
    std::lock_guard<std::mutex> lock(mu);
    return look_ups;
  }
  std::vector<LayerRange> moves_now() {
    std::lock_guard<std::mutex> lock(mu);
    return moves;
  }
};

// The node checks at the jittered times and not before (interval 60 s: a draw
// of 0 waits 30 s, 0.5 waits 60 s, 0.9 waits 84 s), and moves when
// should_move says so: its twin serves [0,4) too, so the gap [4,8) needs it;
// once there, it stays.
TEST(RebalancerTest, ChecksAtTheJitteredIntervalAndMovesWhenShouldMoveSaysSo) {
  Fixture f;
  f.swarm = {peer(0, 4, 8, "ff")};
  f.jitter = {0.0, 0.5, 0.9, 0.5};
  auto r = f.make();
  r->start();
  f.clock.wait_for_waiters(1);
  f.clock.advance(seconds(29));
  f.clock.wait_for_waiters(1);
  EXPECT_EQ(f.look_ups_now(), 0);
  f.clock.advance(seconds(1));  // 30 s: the first check
  f.clock.wait_for_waiters(1);  // it checked and waits for the next
  EXPECT_EQ(f.look_ups_now(), 1);
  EXPECT_EQ(f.moves_now(), std::vector<LayerRange>({{4, 8}}));
  f.clock.advance(seconds(59));
  f.clock.wait_for_waiters(1);
  EXPECT_EQ(f.look_ups_now(), 1);
  f.clock.advance(seconds(1));  // 60 s later: the second check, which stays
  f.clock.wait_for_waiters(1);
  EXPECT_EQ(f.look_ups_now(), 2);
  EXPECT_EQ(f.moves_now().size(), 1u);
  f.clock.advance(seconds(83));
  f.clock.wait_for_waiters(1);
  EXPECT_EQ(f.look_ups_now(), 2);
  f.clock.advance(seconds(1));  // 84 s later: the third
  f.clock.wait_for_waiters(1);
  EXPECT_EQ(f.look_ups_now(), 3);
  r->stop();
  EXPECT_EQ(f.moves_now().size(), 1u);
}

// Two nodes on one block that both see the gap: the one with the higher key
// waits one check for the other, then moves anyway if the gap is still there.
TEST(RebalancerTest, AHigherKeyDefersOnceThenMoves) {
  Fixture f;
  f.swarm = {peer(0, 4, 8, "11")};
  auto r = f.make("99");
  EXPECT_EQ(r->check_once(), Rebalancer::Outcome::kDefer);
  EXPECT_TRUE(f.moves_now().empty());
  EXPECT_EQ(r->check_once(), Rebalancer::Outcome::kMove);
  EXPECT_EQ(f.moves_now(), std::vector<LayerRange>({{4, 8}}));
  EXPECT_EQ(r->check_once(), Rebalancer::Outcome::kStay);
}

// Two nodes start at the same moment on the same block of an 8-layer model,
// each with room for half, and check at the same jittered times (the draws are
// equal: the race of deciding on the same view is staged at every check). The
// lower key moves, the higher defers; they end on different blocks and stay
// there for every later check. (The DHT swarm test shows real processes
// getting there; this shows they stay, without waiting on wall time.)
TEST(RebalancerTest, TwoNodesStartedTogetherEndOnDifferentBlocksAndStay) {
  FakeClock clock;
  std::mutex mu;
  std::map<std::string, LayerRange> at = {{"11", {0, 4}}, {"99", {0, 4}}};
  int moves = 0;
  auto make = [&](const std::string& key) {
    RebalanceOptions o;
    o.interval_s = 60;
    o.n_layer = 8;
    o.capacity_layers = 4;
    o.public_key_hex = key;
    return std::make_unique<Rebalancer>(
        clock, [] { return 0.5; }, o,
        [&, key] {
          std::lock_guard<std::mutex> lock(mu);
          Rebalancer::View v{{}, at[key], 1000};
          for (const auto& [k, r] : at)
            if (k != key) v.peers_without_me.push_back(peer(r.first, r.last, 8, k));
          return v;
        },
        [&, key](LayerRange target) {
          std::lock_guard<std::mutex> lock(mu);
          at[key] = target;
          ++moves;
        });
  };
  auto a = make("11"), b = make("99");
  a->start();
  b->start();
  std::vector<std::map<std::string, LayerRange>> after;
  for (int check = 0; check < 20; ++check) {
    clock.wait_for_waiters(2);
    clock.advance(seconds(60));
    clock.wait_for_waiters(2);  // both checked and wait for the next
    std::lock_guard<std::mutex> lock(mu);
    after.push_back(at);
  }
  a->stop();
  b->stop();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_NE(at["11"].first, at["99"].first);
  EXPECT_EQ(at["11"].last - at["11"].first, 4);
  EXPECT_EQ(at["99"].last - at["99"].first, 4);
  EXPECT_EQ(moves, 1);  // one of them moved, once
  // Settled within two checks, and unchanged through the other eighteen.
  for (size_t i = 2; i < after.size(); ++i) EXPECT_EQ(after[i], at) << "check " << i;
}

// stop() ends a thread that waits for its next check without the clock moving.
TEST(RebalancerTest, StopEndsTheWaitAtOnce) {
  Fixture f;
  f.jitter = {0.5};
  auto r = f.make();
  r->start();
  f.clock.wait_for_waiters(1);
  r->stop();
  EXPECT_EQ(f.look_ups_now(), 0);
}

}  // namespace
}  // namespace swarm::node
