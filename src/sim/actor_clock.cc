#include "sim/actor_clock.h"

#include <algorithm>
#include <simgrid/s4u.hpp>

namespace swarm::sim {

Clock::time_point ActorClock::at(double seconds) {
  return time_point(std::chrono::round<duration>(std::chrono::duration<double>(seconds)));
}

double ActorClock::seconds(time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

Clock::time_point ActorClock::now() const {
  return std::max(at(simgrid::s4u::Engine::get_clock()), reached_);
}

void ActorClock::wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable&,
                            time_point deadline) {
  // Actors take turns on one thread: the lock must not be held across a
  // switch, or another actor taking it would block them all.
  lock.unlock();
  if (pump_)
    pump_(deadline);
  else if (deadline != kNever)
    simgrid::s4u::this_actor::sleep_until(seconds(deadline));
  // Within a microsecond of the deadline is the deadline.
  if (deadline != kNever &&
      at(simgrid::s4u::Engine::get_clock()) + std::chrono::microseconds(1) >= deadline)
    reached_ = std::max(reached_, deadline);
  lock.lock();
}

}  // namespace swarm::sim
