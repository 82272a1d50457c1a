#include "node/timer.h"

#include <spdlog/spdlog.h>

#include <exception>
#include <utility>

namespace swarm::node {

Timer::Timer(Clock& clock) : clock_(clock), thread_([this] { loop(); }) {}

Timer::~Timer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    due_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Timer::at(Clock::time_point due, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    due_.emplace(due, std::move(fn));
  }
  cv_.notify_all();
}

void Timer::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const auto next = due_.empty() ? Clock::kNever : due_.begin()->first;
    if (clock_.now() < next) {
      clock_.wait_until(lock, cv_, next);
      continue;
    }
    std::function<void()> fn = std::move(due_.begin()->second);
    due_.erase(due_.begin());
    lock.unlock();
    try {
      fn();
    } catch (const std::exception& e) {
      spdlog::error("timer callback failed: {}", e.what());
    } catch (...) {
      spdlog::error("timer callback failed with an unknown exception");
    }
    lock.lock();
  }
}

}  // namespace swarm::node
