// Admission of requests to scarce capacity (batch slots, KV memory), as vLLM
// and llama-server do it: a request that does not fit now waits its turn in a
// bounded first-in-first-out queue, each with a deadline, instead of being
// refused at once; only a full queue or a passed deadline is a refusal, and the
// refusal says where the request stood.
//
// Pure bookkeeping: the caller passes the time in, holds its own lock around
// every call, and moves the requests; tests drive it with made-up clocks.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <utility>
#include <vector>

#include "engine/status.h"

namespace swarm {

struct AdmissionLimits {
  int max_active = 64;    // requests served at once (batch slots), at least 1
  uint64_t capacity = 0;  // summed cost of the requests served at once (KV bytes); 0: no limit
  int max_queue =
      256;  // requests waiting at once; 0: none wait, a request that does not fit is refused
  std::chrono::milliseconds queue_timeout{60000};  // longest wait before a refusal
};

class AdmissionQueue {
 public:
  using Clock = std::chrono::steady_clock;
  using Ticket = uint64_t;

  explicit AdmissionQueue(AdmissionLimits limits);

  struct Arrival {
    Ticket ticket = 0;
    bool admitted = false;  // served at once
    int position = 0;       // waiting: 1 for the head of the queue
  };
  // A request costing `cost` arrives at `now`. It is admitted at once when
  // nothing waits ahead of it and it fits, else it joins the queue. Errors:
  // InvalidArgument when it costs more than the whole capacity (it could never
  // be served), ResourceExhausted when the queue is full.
  Result<Arrival> arrive(uint64_t cost, Clock::time_point now);

  // Admits waiting requests from the head of the queue while they fit (strict
  // order: a large request at the head is not overtaken); returns their tickets.
  std::vector<Ticket> admit_waiting();

  // Removes the requests whose deadline has passed at `now`, with the refusal
  // each gets (ResourceExhausted naming the wait, the position and the queue).
  std::vector<std::pair<Ticket, Status>> expire(Clock::time_point now);

  // A request being served ended: its slot and cost are free again.
  void release(Ticket ticket);
  // A waiting request left (its client went away).
  void withdraw(Ticket ticket);

  // The earliest deadline among waiting requests; Clock::time_point::max() if none wait.
  Clock::time_point next_deadline() const;
  // 1 for the head of the queue; 0 for a ticket not waiting.
  int position(Ticket ticket) const;
  int waiting() const { return static_cast<int>(queue_.size()); }
  int active() const { return static_cast<int>(active_.size()); }
  uint64_t cost_in_service() const { return in_service_; }
  const AdmissionLimits& limits() const { return limits_; }

 private:
  struct Waiting {
    Ticket ticket;
    uint64_t cost;
    Clock::time_point arrived, deadline;
  };
  bool fits(uint64_t cost) const;

  const AdmissionLimits limits_;
  Ticket next_ticket_ = 1;
  std::deque<Waiting> queue_;
  std::map<Ticket, uint64_t> active_;  // cost of each request being served
  uint64_t in_service_ = 0;
};

}  // namespace swarm
