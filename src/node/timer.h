// One thread that runs callbacks at given times: the node's emulated link
// delay (--link-delay-ms) and the deadlines of its streams, without a thread
// per stream.
//
// Callbacks run on the timer's thread, one at a time, in due order; they must
// be short and must not block (they typically start a gRPC write). A callback
// that throws is logged and dropped: the timer keeps running.
//
// Times are on the Clock given (engine/clock.h): the real one in production, a
// FakeClock in tests, where a callback runs when the test advances the clock
// to its time.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "engine/clock.h"

namespace swarm::node {

class Timer {
 public:
  using Clock = swarm::Clock;

  // `clock` must outlive the timer.
  explicit Timer(Clock& clock = Clock::real());
  ~Timer();  // drops callbacks not yet due and joins the thread
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Runs `fn` at `due` (at once if it is past). After the destructor started,
  // it is dropped.
  void at(Clock::time_point due, std::function<void()> fn);

  // The clock `at` counts on: callers compute due times from its now().
  Clock& clock() const { return clock_; }

 private:
  void loop();

  Clock& clock_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, std::function<void()>> due_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after every other member exists
};

}  // namespace swarm::node
