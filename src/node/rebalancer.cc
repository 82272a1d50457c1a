#include "node/rebalancer.h"

#include <spdlog/spdlog.h>

#include <utility>

namespace swarm::node {

Rebalancer::Rebalancer(Clock& clock, Random random, RebalanceOptions options, LookUp look_up,
                       Move move)
    : clock_(clock),
      random_(std::move(random)),
      o_(std::move(options)),
      look_up_(std::move(look_up)),
      move_(std::move(move)) {}

Rebalancer::~Rebalancer() { stop(); }

void Rebalancer::start() {
  thread_ = std::thread([this] { loop(); });
}

void Rebalancer::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Clock::duration Rebalancer::next_wait() {
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(o_.interval_s * (0.5 + random_())));
}

void Rebalancer::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    const Clock::time_point next = clock_.now() + next_wait();
    if (clock_.wait_until(lock, cv_, next, [&] { return stopping_; })) return;
    lock.unlock();
    check_once();
    lock.lock();
  }
}

Rebalancer::Outcome Rebalancer::check_once() {
  const View v = look_up_();
  auto d = should_move(v.peers_without_me, v.current, o_.n_layer, o_.capacity_layers,
                       v.layer_tokens_per_second);
  if (!d.ok()) {
    spdlog::warn("rebalance: {}", d.status().message());
    return Outcome::kFailed;
  }
  if (!d->move) {
    spdlog::debug("rebalance: {}", d->reason);
    deferred_for_.reset();
    return Outcome::kStay;
  }
  if (should_defer_move(v.peers_without_me, v.current, o_.public_key_hex,
                        deferred_for_ == d->target)) {
    spdlog::info(
        "rebalance: a node with a lower key serves [{},{}) too and moves first; "
        "waiting one check ({})",
        v.current.first, v.current.last, d->reason);
    deferred_for_ = d->target;
    return Outcome::kDefer;
  }
  deferred_for_.reset();
  spdlog::info("rebalance: moving to [{},{}): {}", d->target.first, d->target.last, d->reason);
  move_(d->target);
  return Outcome::kMove;
}

}  // namespace swarm::node
