// The decisions of the stage server's scheduler thread, apart from its thread,
// its locks and what its queue's steps hold: which sessions count as active
// (sent a message within the last second, those closed since included), what
// runs next (batch_plan.h's rule, with compute_share.h's fair share), whether
// a batch is charged to its callers' shares, and how long to wait when all
// the work queued waits for its share to decay.
//
// Shares are per caller (the connection a session came over: a gateway, an
// upstream stage, a client), weighted by the caller's active sessions: a
// caller with 3 of the 10 sessions active may have 3/10 of the node before
// its prompts wait. One caller's sessions never hold each other back (a
// gateway's users are its business), and one caller alone is never over its
// share. Per session, a busy node's prompts waited for a 1/active share each:
// with 45 sessions active, the simulated A100 cluster of
// sim/scenarios/central-a100-405b.toml delivered 20 tok/s instead of 118.
//
// Times are given (on the node's Clock, engine/clock.h), so tests decide with
// a FakeClock: a session over its share waits, and runs once the clock moved
// on far enough.
//
// Not thread-safe: the stage server calls it under its mutex.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/clock.h"
#include "node/batch_cost.h"
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
  // With work queued and none of it allowed to run but stalled sessions'
  // (their callers take no answers), the scheduler looks again this soon,
  // or sooner when woken (an answer written, new work).
  static constexpr Clock::duration kStalledRetry = std::chrono::milliseconds(100);
  // Closed sessions remembered for the active count.
  static constexpr size_t kMaxRecentlyClosed = 4096;

  // A session of `caller` (a key for the connection it was opened over,
  // ServerStream::connection) closed; it last sent a message at
  // `last_active`. A caller whose requests are many short sessions (a
  // gateway) shares the node as the sessions it ran lately, not only the few
  // open at this instant.
  void session_closed(Clock::time_point last_active, uintptr_t caller);

  struct SessionSeen {
    Clock::time_point last_active;
    uintptr_t caller = 0;
  };
  // Sessions active at `now`: the open ones, `open`, and the closed ones,
  // that sent a message within kActiveWindow. Forgets closed sessions older
  // than that. With `only_work_from` (every step queued came from that
  // caller), its own closed sessions do not count: they are the same
  // client's earlier requests, with nobody else's work to protect (a lone
  // user's next prompt runs whole, not in the fair shares a prompt gets
  // beside others). Remembers the count per caller for next_batch.
  int active_sessions(std::span<const SessionSeen> open, Clock::time_point now,
                      const uintptr_t* only_work_from = nullptr);
  // The caller every step of `queue` came from, if there is one: what
  // active_sessions' `only_work_from` takes.
  static std::optional<uintptr_t> sole_caller(std::span<const QueuedWork> queue);

  struct Decision {
    BatchPlan plan;
    // The batch runs beside or ahead of another session's work, or while
    // other sessions are active: its time is charged to its sessions.
    bool contended = false;
    // Work waits, but none may run now: look again after kShareRetry.
    bool waiting_on_shares = false;
    // Work waits, all of it stalled sessions': look again when woken, or
    // after kStalledRetry.
    bool waiting_on_answers = false;
  };
  // What runs next of `queue` (its over_share fields are filled in here from
  // its callers' shares at `now`, against their part of the sessions the last
  // active_sessions counted) among `active` sessions.
  // `bulk_chunk_tokens`: as plan_next_batch takes it (0: an eighth of the batch).
  Decision next_batch(std::vector<QueuedWork> queue, int max_batch_tokens, int active,
                      Clock::time_point now, int bulk_chunk_tokens = 0) const;

  // A batch of `tokens` took `seconds` of compute: what the node learns of
  // its cost per token (batch_cost.h).
  void batch_speed(int tokens, double seconds) { batch_cost_.ran(tokens, seconds); }
  // How much of a prompt runs beside others' steps, by what it adds to their
  // batch (BatchCost::chunk_beside_others): next_batch's `bulk_chunk_tokens`.
  int bulk_chunk_tokens() const { return batch_cost_.chunk_beside_others(); }

  // A batch ran for `took_s` seconds, ending at `ended`; `tokens` holds each
  // step's (caller, tokens run). Charged only when `contended`: time a
  // caller takes while no other wants the node costs nobody.
  void batch_ran(std::span<const std::pair<uintptr_t, int>> tokens, double took_s,
                 Clock::time_point ended, bool contended);

  // The fraction of the node's time `caller` had lately, at `now`.
  double share(uintptr_t caller, Clock::time_point now) const {
    return compute_share_.share(caller, seconds(now));
  }

 private:
  static double seconds(Clock::time_point t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
  }

  // Sessions closed lately, by when they last sent a message, oldest first.
  std::deque<SessionSeen> recently_closed_;
  // Active sessions per caller, as the last active_sessions counted them.
  std::map<uintptr_t, int> active_by_caller_;
  ComputeShare compute_share_;
  BatchCost batch_cost_;
};

}  // namespace swarm::node
