// Which of a stage's queued work items run next, and in what order: the
// scheduling rule of the stage server's scheduler thread (stage_server.cc), as a
// pure function of the queue's relevant fields, so it is tested directly.
//
// The rule:
//  - Items whose session is closed are dropped: they never run.
//  - A session's items keep their order: only its earliest item may be picked.
//    A Truncate that is its session's earliest item is applied now (it is cheap
//    and never batched), which makes the session's next item its earliest.
//  - Of the sessions' earliest steps, anchors (steps that carry known tokens:
//    plain steps and speculation's anchor runs) are taken first, in queue
//    order, then speculative continuations (Step.continues_previous), in queue
//    order: speculation never slows anyone's guaranteed progress.
//  - A batch holds steps over one layer range and at most `max_batch_tokens`
//    tokens; a step that does not fit waits for a later batch, but one larger
//    than the limit still runs alone. Steps behind one that waits are not
//    reordered past it within its session.
//  - A bulk step (a plain run, chunkable, longer than an eighth of the batch:
//    a prompt, or a replay after a failover) runs in chunks. Beside other
//    sessions' steps, or while other sessions are active (their next steps
//    may come while it runs), it gets an eighth of the batch, so their
//    latency stays that of a small batch however long the prompt; with no
//    other session around, it takes whole batches. While one waits, the
//    others leave it that eighth, so it always makes progress.
//  - Except a bulk step of a session over its fair share of compute
//    (compute_share.h: more than an equal share lately, among several active
//    sessions): it waits, alone too, until its share has decayed, so a caller
//    sending prompts non-stop does not take the node from the others.
//  - Audit runs (background) wait while any other session's step can run:
//    checking others' work uses only the capacity users leave.
//  - A stalled session (its caller has not taken an answer for a while)
//    runs nothing, Truncates included, until its caller reads again; its
//    items stay queued (dropped once it closes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace swarm::node {

// What the rule reads of one queued item.
struct QueuedWork {
  uintptr_t session = 0;                // identifies the item's session
  uintptr_t caller = 0;                 // who sent it (step_scheduler.h: shares are per caller)
  bool session_closed = false;          // its work is dropped (a Cancel unqueues its steps itself)
  bool truncate = false;                // a Truncate rather than a Step
  bool continuation = false;            // a speculative continuation (Step.continues_previous)
  int tokens = 0;                       // the step's tokens not yet run
  bool chunkable = false;               // may run in several batches, a part at a time
  int first_layer = 0, last_layer = 0;  // the session's layer range on this stage
  bool over_share = false;              // its caller had more than its fair share lately
  bool background = false;              // an audit run (Step.row_hashes): runs on what others leave
  bool stalled = false;                 // its caller takes no answers (server_stream.h): it waits
};

// The decision, as indices into the queue given. Every index appears at most
// once over the three lists; the others stay queued, in their order.
struct BatchPlan {
  std::vector<size_t> dropped;    // remove without running
  std::vector<size_t> truncates;  // apply, in this order, before the batch runs
  std::vector<size_t> batch;      // the next batch, in run order
  std::vector<int> take;          // per batch entry: tokens to run now (all, or a chunk)
};

// `max_batch_tokens` >= 1.
// `others_active`: sessions with nothing queued now sent work lately, so their
// next steps may come at any moment; a bulk step then runs in eighths even
// alone, so those steps never wait behind a whole batch of someone's prompt.
// `bulk_chunk_tokens`: what a bulk step takes per batch beside others, at most
// an eighth of the batch; 0: an eighth.
BatchPlan plan_next_batch(std::span<const QueuedWork> queue, int max_batch_tokens,
                          bool others_active = false, int bulk_chunk_tokens = 0);

}  // namespace swarm::node
