// SimGrid's simulated time as a Clock (engine/clock.h), so the gateway's chain
// session and speculation driver run unchanged inside a request actor: now()
// is the simulation's clock (seconds since the run began, on steady_clock's
// scale, as the node actors count it), and a wait blocks the calling actor.
// What it waits for arrives in the actor's mailbox, so the waiting actor
// itself receives it: `pump(deadline)` (set by the request's transport) takes
// in what comes until the deadline or one delivery.
#pragma once

#include <functional>

#include "engine/clock.h"

namespace swarm::sim {

class ActorClock final : public Clock {
 public:
  using Pump = std::function<void(time_point deadline)>;
  using Clock::wait_until;

  time_point now() const override;
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                  time_point deadline) override;
  // Without a pump a wait sleeps until its deadline.
  void set_pump(Pump pump) { pump_ = std::move(pump); }

  static time_point at(double seconds);
  static double seconds(time_point t);

 private:
  Pump pump_;
  // A wait that ends at its deadline ends there on this clock, even where
  // SimGrid's floating-point clock stopped a hair short of it (a timeout
  // below its precision does not advance it), so waits always end.
  time_point reached_{};
};

}  // namespace swarm::sim
