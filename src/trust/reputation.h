// The reputation rule (doc/trust.md, "Reputation"): what a gateway believes of a
// node identity, as a Beta(alpha, beta) over "this node does its work right",
// fed by audits, timeouts, disconnects and lies about speed. Evidence fades
// with a half-life toward the prior, so old sins and old merits both weigh
// less than new ones; a proven fraud excludes the node for good.
// Pure: every function takes the time (`now`, seconds on one clock, e.g. Unix
// time, which survives a restart) as an argument and reads no clock, so the
// gateway, the simulator and the tests drive the same rule.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace swarm::trust {

enum class ReputationEvent {
  kAuditPassed,    // a re-execution matched the node's signed result
  kAuditFailed,    // a re-execution disagreed and the node's signature proves it: fraud
  kAuditDisputed,  // two executions disagree, nobody proven wrong: a failure for each
  kTimeout,        // a step overdue past its deadline, the node silent (hung, stopped)
  kDisconnect,     // its stream or connection broke mid-session
  kSpeedLie,       // announced speed far above what its steps measured (speed_check.h)
};

// "audit_passed", "audit_failed", ... (the names the event log stores).
std::string_view event_name(ReputationEvent e);
std::optional<ReputationEvent> event_from_name(std::string_view name);

struct ReputationParams {
  // The prior: what a node nobody has seen is believed to be. Its mean
  // (0.8) sits below an audited honest node's, so a fresh identity gets some
  // traffic but not a free pass, and above the routing floor.
  double prior_alpha = 4;
  double prior_beta = 1;
  // Evidence (alpha and beta beyond the prior) halves every this many seconds.
  double half_life_s = 24 * 3600.0;
  // The weight of one event. A timeout or disconnect may be bad luck (a
  // network, a reboot), so it weighs less than a disputed audit.
  double audit_passed_weight = 1;
  double audit_disputed_weight = 2;
  double timeout_weight = 1;
  double disconnect_weight = 0.5;
  double speed_lie_weight = 2;
  // Probation: a node with fewer passed audits than this is audited at
  // probation_audit_rate (when that is above the base rate).
  int64_t probation_audits = 20;
  double probation_audit_rate = 0.25;
};

struct ReputationState {
  // Posterior parameters as of `updated_at` (prior included).
  double alpha = 0;
  double beta = 0;
  double updated_at = 0;
  // Counts of every event ever recorded; they do not fade (probation counts
  // passed audits, whenever they were).
  int64_t audits_passed = 0;
  int64_t audits_failed = 0;
  int64_t audits_disputed = 0;
  int64_t timeouts = 0;
  int64_t disconnects = 0;
  int64_t speed_lies = 0;
  bool excluded = false;  // proven fraud: for good
};

// A node never seen, at `now`.
ReputationState initial_state(double now, const ReputationParams& params = {});

// `state` with its evidence faded to `now` (a `now` before updated_at fades
// nothing: clocks that step back do not make evidence grow).
ReputationState decayed(const ReputationState& state, double now,
                        const ReputationParams& params = {});

// `state` after `event` at `now`: faded to `now`, then the event's weight
// added to alpha (a passed audit) or beta (the others); a failed audit also
// sets `excluded`.
ReputationState record(const ReputationState& state, ReputationEvent event, double now,
                       const ReputationParams& params = {});

// The posterior mean alpha / (alpha + beta) after fading to `now`, in [0, 1];
// 0 for an excluded node.
double score(const ReputationState& state, double now, const ReputationParams& params = {});

// The share of a node's steps to audit: max(base_rate, probation_audit_rate)
// while it has fewer than probation_audits passed audits, else base_rate;
// within [0, 1]. An excluded node is never routed through; should a step of
// its reach an auditor anyway, all of them are checked (1).
double audit_rate(const ReputationState& state, double base_rate,
                  const ReputationParams& params = {});

}  // namespace swarm::trust
