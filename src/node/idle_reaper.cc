#include "node/idle_reaper.h"

#include <algorithm>
#include <utility>

namespace swarm::node {

Clock::duration reaper_period(Clock::duration limit) {
  return std::clamp<Clock::duration>(limit / 10, std::chrono::milliseconds(10),
                                     std::chrono::seconds(1));
}

IdleReaper::IdleReaper(Clock& clock, Clock::duration limit, Sweep sweep)
    : clock_(clock),
      period_(reaper_period(limit)),
      sweep_(std::move(sweep)),
      thread_([this] { loop(); }) {}

IdleReaper::~IdleReaper() { stop(); }

void IdleReaper::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void IdleReaper::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    const Clock::time_point next = clock_.now() + period_;
    if (clock_.wait_until(lock, cv_, next, [&] { return stopping_; })) return;
    lock.unlock();
    sweep_(clock_.now());
    lock.lock();
  }
}

}  // namespace swarm::node
