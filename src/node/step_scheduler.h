// The decisions of the stage server's scheduler thread, apart from its thread,
// its locks and what its queue's steps hold: which sessions count as active
// (sent a message within the last second, those closed since included), what
// runs next (batch_plan.h's rule, with compute_share.h's fair share), whether
// a batch is charged to its sessions' shares, and how long to wait when all
// the work queued waits for its share to decay.
//
// Times are given (on the node's Clock, engine/clock.h), so tests decide with
// a FakeClock: a session over its share waits, and runs once the clock moved
// on far enough.
//
// Not thread-safe: the stage server calls it under its mutex.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/clock.h"
#include "node/batch_plan.h"
#include "node/compute_share.h"

namespace swarm::node {

class StepScheduler {
 public:
  // A session counts as active this long after its last message.
  static constexpr Clock::duration kActiveWindow = std::chrono::seconds(1);
  // With work queued and none of it allowed to run (every session over its
  // share), the scheduler looks again this soon: shares decay with time.
  static constexpr Clock::duration kShareRetry = std::chrono::milliseconds(5);
  // Closed sessions remembered for the active count.
  static constexpr size_t kMaxRecentlyClosed = 4096;

  // A session opened over `connection` (ServerStream::connection) closed; it
  // last sent a message at `last_active`. A caller whose requests are many
  // short sessions (a gateway) shares the node as the sessions it ran lately,
  // not only the few open at this instant.
  void session_closed(Clock::time_point last_active, std::string connection);

  // Sessions active at `now`: the open ones whose last messages came at
  // `open_last_active`, and the closed ones, that sent one within
  // kActiveWindow. Forgets closed sessions older than that. With
  // `only_work_from` (every step queued came over that connection), its own
  // closed sessions do not count: they are the same client's earlier
  // requests, with nobody else's work to protect (a lone user's next prompt
  // runs whole, not in the fair shares a prompt gets beside others).
  int active_sessions(std::span<const Clock::time_point> open_last_active, Clock::time_point now,
                      const std::string* only_work_from = nullptr);

  struct Decision {
    BatchPlan plan;
    // The batch runs beside or ahead of another session's work, or while
    // other sessions are active: its time is charged to its sessions.
    bool contended = false;
    // Work waits, but none may run now: look again after kShareRetry.
    bool waiting_on_shares = false;
  };
  // What runs next of `queue` (its over_share fields are filled in here from
  // the sessions' shares at `now`) among `active` sessions.
  Decision next_batch(std::vector<QueuedWork> queue, int max_batch_tokens, int active,
                      Clock::time_point now) const;

  // A batch ran for `took_s` seconds, ending at `ended`; `tokens` holds each
  // step's (session, tokens run). Charged only when `contended`: time a
  // session takes while no other wants the node costs nobody.
  void batch_ran(std::span<const std::pair<uintptr_t, int>> tokens, double took_s,
                 Clock::time_point ended, bool contended);

  // The fraction of the node's time `session` had lately, at `now`.
  double share(uintptr_t session, Clock::time_point now) const {
    return compute_share_.share(session, seconds(now));
  }

 private:
  static double seconds(Clock::time_point t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
  }

  struct Closed {
    Clock::time_point last_active;
    std::string connection;
  };
  // Sessions closed lately, by when they last sent a message, oldest first.
  std::deque<Closed> recently_closed_;
  ComputeShare compute_share_;
};

}  // namespace swarm::node
