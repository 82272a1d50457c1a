#include "node/caller_quota.h"

#include <algorithm>
#include <utility>

namespace swarm::node {
namespace {

int get(const std::map<std::string, int>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

void decrement(std::map<std::string, int>& m, const std::string& key) {
  auto it = m.find(key);
  if (it != m.end() && --it->second <= 0) m.erase(it);
}

}  // namespace

CallerQuota::Lease::Lease(Lease&& other) noexcept
    : counters_(std::move(other.counters_)), caller_(std::move(other.caller_)), kind_(other.kind_) {
  other.counters_ = nullptr;
}

CallerQuota::Lease& CallerQuota::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release();
    counters_ = std::move(other.counters_);
    caller_ = std::move(other.caller_);
    kind_ = other.kind_;
    other.counters_ = nullptr;
  }
  return *this;
}

void CallerQuota::Lease::release() {
  if (!counters_) return;
  {
    std::lock_guard<std::mutex> lock(counters_->mu);
    if (kind_ == Kind::kSession) {
      decrement(counters_->sessions, caller_);
      --counters_->sessions_total;
    } else {
      decrement(counters_->steps, caller_);
    }
  }
  counters_ = nullptr;
}

CallerQuota::CallerQuota(CallerQuotaLimits limits)
    : limits_(limits), counters_(std::make_shared<Counters>()) {
  limits_.sessions_per_caller = std::max(1, limits_.sessions_per_caller);
  limits_.sessions_total = std::max(1, limits_.sessions_total);
  limits_.steps_in_flight_per_caller = std::max(1, limits_.steps_in_flight_per_caller);
}

Result<CallerQuota::Lease> CallerQuota::open_session(const std::string& caller) {
  std::lock_guard<std::mutex> lock(counters_->mu);
  if (counters_->sessions_total >= limits_.sessions_total)
    return Status::ResourceExhausted("sessions: all " + std::to_string(limits_.sessions_total) +
                                     " this node serves at once are open");
  int& mine = counters_->sessions[caller];
  if (mine >= limits_.sessions_per_caller)
    return Status::ResourceExhausted("sessions per caller: " + caller + " already holds " +
                                     std::to_string(mine) + ", the most one caller may");
  ++mine;
  ++counters_->sessions_total;
  return Lease(counters_, caller, Lease::Kind::kSession);
}

Result<CallerQuota::Lease> CallerQuota::start_step(const std::string& caller) {
  std::lock_guard<std::mutex> lock(counters_->mu);
  int& mine = counters_->steps[caller];
  if (mine >= limits_.steps_in_flight_per_caller)
    return Status::ResourceExhausted("steps in flight per caller: " + caller + " already has " +
                                     std::to_string(mine) +
                                     " waiting to run, the most one caller may");
  ++mine;
  return Lease(counters_, caller, Lease::Kind::kStep);
}

int CallerQuota::sessions(const std::string& caller) const {
  std::lock_guard<std::mutex> lock(counters_->mu);
  return get(counters_->sessions, caller);
}

int CallerQuota::sessions_total() const {
  std::lock_guard<std::mutex> lock(counters_->mu);
  return counters_->sessions_total;
}

int CallerQuota::steps_in_flight(const std::string& caller) const {
  std::lock_guard<std::mutex> lock(counters_->mu);
  return get(counters_->steps, caller);
}

}  // namespace swarm::node
