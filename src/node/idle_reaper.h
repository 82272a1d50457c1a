// Closing sessions that sent nothing for longer than the node's idle limit
// (--idle-timeout): a thread looks every period (a tenth of the limit, within
// 10 ms and 1 s) and hands the time it looked to a sweep, which closes the
// sessions is_idle says are over their limit.
//
// Times are on the Clock given (engine/clock.h): tests drive the reaper with
// a FakeClock and see a session closed at the first look after its limit
// passed, and not before.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "engine/clock.h"

namespace swarm::node {

// Whether a session whose last message came at `last_active` is over `limit` at `now`.
inline bool is_idle(Clock::time_point last_active, Clock::time_point now, Clock::duration limit) {
  return now - last_active > limit;
}

// How often the reaper looks for sessions over `limit`.
Clock::duration reaper_period(Clock::duration limit);

class IdleReaper {
 public:
  // Called on the reaper's thread at each look, with the time it looked.
  using Sweep = std::function<void(Clock::time_point now)>;

  // Starts the thread. `clock` must outlive the reaper.
  IdleReaper(Clock& clock, Clock::duration limit, Sweep sweep);
  ~IdleReaper();  // stop()
  IdleReaper(const IdleReaper&) = delete;
  IdleReaper& operator=(const IdleReaper&) = delete;

  // Ends the thread (a sweep under way finishes first). Idempotent.
  void stop();

 private:
  void loop();

  Clock& clock_;
  const Clock::duration period_;
  Sweep sweep_;
  std::mutex mu_;  // guards stopping_
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after every other member exists
};

}  // namespace swarm::node
