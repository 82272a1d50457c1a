// A node that chose its own layers re-checks the choice now and then
// (doc/layer-assignment.md): every interval, at a random point between half and
// one and a half of it (so nodes that started together do not all decide on
// the same view of the swarm), it looks the swarm up and moves to the block
// routing::should_move names, one node of a block at a time
// (routing::should_defer_move).
//
// What it reads and does goes through seams: the clock it waits on, the random
// source of the jitter, and callbacks that look the swarm up and move the node
// (reload the layers, announce the new record). The node gives it the real
// clock, the DHT and its stage server; tests give it a FakeClock and scripted
// swarms.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/clock.h"
#include "routing/chain.h"
#include "routing/layer_assignment.h"

namespace swarm::node {

struct RebalanceOptions {
  double interval_s = 60;      // mean time between checks, > 0
  int n_layer = 0;             // of the model
  int capacity_layers = 0;     // layers this node holds room for
  std::string public_key_hex;  // this node's key: which of a block's nodes moves first
};

class Rebalancer {
 public:
  // What one check reads: the swarm without this node, and this node's block
  // and measured speed.
  struct View {
    std::vector<PeerSnapshot> peers_without_me;
    LayerRange current;
    double layer_tokens_per_second = 0;
  };
  using LookUp = std::function<View()>;
  // Serve `target` instead of the current block. Runs on the rebalancer's thread.
  using Move = std::function<void(LayerRange target)>;
  // Uniform in [0, 1): places each check within its period.
  using Random = std::function<double()>;

  // `clock` must outlive the rebalancer. Nothing runs before start().
  Rebalancer(Clock& clock, Random random, RebalanceOptions options, LookUp look_up, Move move);
  ~Rebalancer();  // stop()
  Rebalancer(const Rebalancer&) = delete;
  Rebalancer& operator=(const Rebalancer&) = delete;

  // Starts the thread that checks once per jittered interval.
  void start();
  // Ends the thread (a check under way finishes first). Idempotent.
  void stop();

  enum class Outcome { kFailed, kStay, kDefer, kMove };
  // One check, as the thread makes each period: look up, decide, maybe move.
  Outcome check_once();
  // The wait before the next check: interval x [0.5, 1.5), from `random`.
  Clock::duration next_wait();

 private:
  void loop();

  Clock& clock_;
  Random random_;
  const RebalanceOptions o_;
  LookUp look_up_;
  Move move_;
  std::optional<LayerRange> deferred_for_;  // the target the last check deferred moving to
  std::mutex mu_;                           // guards stopping_
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace swarm::node
