#include "trust/reputation.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

namespace swarm::trust {
namespace {

constexpr std::array<std::pair<ReputationEvent, std::string_view>, 6> kNames = {{
    {ReputationEvent::kAuditPassed, "audit_passed"},
    {ReputationEvent::kAuditFailed, "audit_failed"},
    {ReputationEvent::kAuditDisputed, "audit_disputed"},
    {ReputationEvent::kTimeout, "timeout"},
    {ReputationEvent::kDisconnect, "disconnect"},
    {ReputationEvent::kSpeedLie, "speed_lie"},
}};

}  // namespace

std::string_view event_name(ReputationEvent e) {
  for (const auto& [event, name] : kNames)
    if (event == e) return name;
  return "unknown";
}

std::optional<ReputationEvent> event_from_name(std::string_view name) {
  for (const auto& [event, n] : kNames)
    if (n == name) return event;
  return std::nullopt;
}

ReputationState initial_state(double now, const ReputationParams& params) {
  ReputationState s;
  s.alpha = params.prior_alpha;
  s.beta = params.prior_beta;
  s.updated_at = now;
  return s;
}

ReputationState decayed(const ReputationState& state, double now, const ReputationParams& params) {
  ReputationState s = state;
  if (!(now > state.updated_at)) return s;  // also when either is NaN
  const double keep =
      params.half_life_s > 0 ? std::exp2(-(now - state.updated_at) / params.half_life_s) : 0.0;
  // Only the evidence fades; the prior stays, so a node left alone long
  // enough is believed what a new one is.
  s.alpha = params.prior_alpha + (state.alpha - params.prior_alpha) * keep;
  s.beta = params.prior_beta + (state.beta - params.prior_beta) * keep;
  s.updated_at = now;
  return s;
}

ReputationState record(const ReputationState& state, ReputationEvent event, double now,
                       const ReputationParams& params) {
  ReputationState s = decayed(state, now, params);
  switch (event) {
    case ReputationEvent::kAuditPassed:
      s.alpha += params.audit_passed_weight;
      ++s.audits_passed;
      break;
    case ReputationEvent::kAuditFailed:
      // The evidence still counts (a score to report), but exclusion is what
      // routing obeys, and nothing ever lifts it.
      s.beta += params.audit_disputed_weight;
      ++s.audits_failed;
      s.excluded = true;
      break;
    case ReputationEvent::kAuditDisputed:
      s.beta += params.audit_disputed_weight;
      ++s.audits_disputed;
      break;
    case ReputationEvent::kTimeout:
      s.beta += params.timeout_weight;
      ++s.timeouts;
      break;
    case ReputationEvent::kDisconnect:
      s.beta += params.disconnect_weight;
      ++s.disconnects;
      break;
    case ReputationEvent::kSpeedLie:
      s.beta += params.speed_lie_weight;
      ++s.speed_lies;
      break;
  }
  return s;
}

double score(const ReputationState& state, double now, const ReputationParams& params) {
  if (state.excluded) return 0;
  const ReputationState s = decayed(state, now, params);
  const double total = s.alpha + s.beta;
  if (!(total > 0)) return 0;
  return std::clamp(s.alpha / total, 0.0, 1.0);
}

double audit_rate(const ReputationState& state, double base_rate, const ReputationParams& params) {
  if (state.excluded) return 1;
  double rate = base_rate;
  if (state.audits_passed < params.probation_audits)
    rate = std::max(rate, params.probation_audit_rate);
  return std::clamp(rate, 0.0, 1.0);
}

}  // namespace swarm::trust
