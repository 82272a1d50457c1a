// Per-caller quotas of a stage server: how many sessions one caller may hold,
// how many all callers together, and how many steps one caller may have waiting
// to run. A caller is what net::CallerIdentity::quota_key() names: a node id
// (mutual TLS) or, without one, the peer's IP address.
//
// Admission hands out leases: a lease is one unit of a caller's quota, given
// back when the lease is destroyed or released, so a session or step that
// leaves by any path (closed, expired, dropped, cancelled) returns what it held.
// Leases keep the quota's counters alive, so they may outlive the CallerQuota.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "engine/status.h"

namespace swarm::node {

struct CallerQuotaLimits {
  int sessions_per_caller = 128;          // sessions one caller holds open
  int sessions_total = 256;               // sessions all callers hold open
  int steps_in_flight_per_caller = 1024;  // steps one caller has queued, not yet run
};

class CallerQuota {
 private:
  struct Counters;

 public:
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { release(); }

    // Gives the unit back now; later calls do nothing.
    void release();
    bool held() const { return counters_ != nullptr; }

   private:
    friend class CallerQuota;
    enum class Kind { kSession, kStep };
    Lease(std::shared_ptr<Counters> counters, std::string caller, Kind kind)
        : counters_(std::move(counters)), caller_(std::move(caller)), kind_(kind) {}
    std::shared_ptr<Counters> counters_;
    std::string caller_;
    Kind kind_ = Kind::kSession;
  };

  // Limits below 1 are taken as 1.
  explicit CallerQuota(CallerQuotaLimits limits);

  // One more session for `caller`, or ResourceExhausted naming the limit
  // reached (and `caller`, for the per-caller one).
  Result<Lease> open_session(const std::string& caller);
  // One more queued step for `caller`, or ResourceExhausted naming the limit.
  Result<Lease> start_step(const std::string& caller);

  int sessions(const std::string& caller) const;
  int sessions_total() const;
  int steps_in_flight(const std::string& caller) const;
  const CallerQuotaLimits& limits() const { return limits_; }

 private:
  struct Counters {
    std::mutex mu;
    int sessions_total = 0;
    std::map<std::string, int> sessions;  // by caller; no zero entries
    std::map<std::string, int> steps;     // by caller; no zero entries
  };
  CallerQuotaLimits limits_;
  std::shared_ptr<Counters> counters_;
};

}  // namespace swarm::node
