// How busy a stage is, and what that does to a new session's step time there:
// the load term of chain routing (routing/chain.h). Pure: counts in, seconds
// out.
//
// A node runs the steps of all its sessions in shared batches, so a step of a
// new session waits for a batch that also carries the steps of the sessions
// already there. Its measured speed (InfoResponse.layer_tokens_per_second) is
// a throughput: token positions through one layer per second of batch compute,
// under the load it had. A batch of n + 1 sessions' decode steps then takes
// about (n + 1) tokens at that per-token time:
//   - a node whose batches grow dearer with each session (a CPU doing the
//     arithmetic, or a node at its limit) measures about its lone speed, and
//     its step time grows by one lone step per session;
//   - a node that batches nearly for free (a GPU reading its weights once per
//     batch) measures n times its lone speed while it serves n sessions, so
//     its step time stays about one lone step: the measurement itself says
//     that adding a session costs little.
// Without the term, twins of equal speed tie and every request takes the
// same chain while the twins idle; a loaded node even measures faster.
#pragma once

namespace swarm {

// What a node is known to carry, from two sources: its own report (Info, at
// the last survey) and the sessions this gateway opened through it since.
struct StageLoadReport {
  int reported_sessions = 0;      // InfoResponse.active_sessions at the last survey
  int reported_queued_steps = 0;  // InfoResponse.queued_steps then: steps waiting for a batch
  // This gateway's sessions through the node when it reported, and now: the
  // report's sessions less the first are other callers' (still counted), the
  // second replaces what the report knew of ours (sessions opened or closed
  // since, which a survey every few seconds would miss).
  int own_sessions_reported = 0;
  int own_sessions_now = 0;
};

// Sessions (and queued steps) a new session would share the node's batches
// with: other callers' sessions as reported, ours now, and the queued steps
// (work that arrived and has not started: a node that falls behind looks
// busier than its session count says). Negative counts count as 0.
double stage_load(const StageLoadReport& r);

// Expected compute seconds of one decode step at a stage whose lone step
// takes `step_seconds` at its measured speed, when `load` sessions share its
// batches: step_seconds x (1 + load_weight x load). load_weight 1 is the model
// above; 0 ignores load (routing by speed alone); values between say batches
// are cheaper than the measurement shows.
double loaded_step_seconds(double step_seconds, double load, double load_weight);

}  // namespace swarm
