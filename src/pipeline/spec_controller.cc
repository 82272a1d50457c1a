#include "pipeline/spec_controller.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace swarm {
namespace {

// Per-position counts are kept for this many draft positions; deeper drafts
// share the last one's.
constexpr int kMaxTrackedPositions = 64;

bool finite_positive(double x) { return std::isfinite(x) && x > 0; }

double ewma(double old, double x, double weight_new) {
  return old == 0 ? x : (1 - weight_new) * old + weight_new * x;
}

// The wait before the next probe, and the state's next wait (doubled, capped).
double take_probe_wait(SpecState& s, const SpecConfig& c) {
  const double wait = s.probe_interval_s > 0 ? s.probe_interval_s : c.probe_interval_s;
  s.probe_interval_s = std::min(2 * wait, c.max_probe_interval_s);
  return wait;
}

void back_off(SpecState& s, const SpecConfig& c, double now_s) {
  s.mode = SpecState::Mode::kPlain;
  s.probe_at_s = now_s + take_probe_wait(s, c);
  s.good_windows = 0;
}

}  // namespace

Status validate(const SpecConfig& c) {
  auto bad = [](const std::string& field, const std::string& want) {
    return Status::InvalidArgument("SpecConfig." + field + ": must be " + want);
  };
  if (c.max_width < 1) return bad("max_width", ">= 1");
  if (!(c.width_slack >= 1)) return bad("width_slack", ">= 1");
  if (!(c.wider_gain >= 1)) return bad("wider_gain", ">= 1");
  if (!(c.assumed_slope >= 0)) return bad("assumed_slope", ">= 0");
  if (c.max_in_flight < 1) return bad("max_in_flight", ">= 1");
  if (!(c.prior_accept >= 0 && c.prior_accept <= 1)) return bad("prior_accept", "in [0, 1]");
  if (!(c.prior_weight > 0)) return bad("prior_weight", "> 0");
  if (!(c.position_weight > 0)) return bad("position_weight", "> 0");
  if (!(c.accept_decay > 0 && c.accept_decay <= 1)) return bad("accept_decay", "in (0, 1]");
  if (!(c.min_accept_idle >= 0 && c.min_accept_idle <= 1))
    return bad("min_accept_idle", "in [0, 1]");
  if (!(c.min_accept_loaded >= c.min_accept_idle && c.min_accept_loaded <= 1))
    return bad("min_accept_loaded", "in [min_accept_idle, 1]");
  if (!(c.bias_step >= 0)) return bad("bias_step", ">= 0");
  if (!(c.max_bias >= 0)) return bad("max_bias", ">= 0");
  if (!(c.back_off_ratio > 0)) return bad("back_off_ratio", "> 0");
  if (!(c.min_gain >= c.back_off_ratio)) return bad("min_gain", ">= back_off_ratio");
  if (!(c.goodput_weight > 0 && c.goodput_weight <= 1)) return bad("goodput_weight", "in (0, 1]");
  if (!(c.probe_interval_s > 0)) return bad("probe_interval_s", "> 0");
  if (!(c.max_probe_interval_s >= c.probe_interval_s))
    return bad("max_probe_interval_s", ">= probe_interval_s");
  if (c.stable_windows < 1) return bad("stable_windows", ">= 1");
  return Status::Ok();
}

double acceptance_rate(const SpecState& s, const SpecConfig& c) {
  double att = 0, acc = 0;
  for (size_t i = 0; i < std::min(s.attempts.size(), s.accepts.size()); ++i) {
    att += s.attempts[i];
    acc += s.accepts[i];
  }
  return (acc + c.prior_weight * c.prior_accept) / (att + c.prior_weight);
}

std::vector<double> draft_accept_probs(const SpecState& s, const SpecConfig& c, int n,
                                       int held) {
  // Position 0 shrinks toward the prior; each later one toward the position
  // before it. Drafts hold in runs, so a deep position measured little is
  // more like its neighbour than like the pool of all positions (which the
  // many drafts after a rejection dominate).
  held = std::clamp(held, 0, kMaxTrackedPositions - 1);
  std::vector<double> p;
  double before = c.prior_accept;
  for (int i = 0; i < held + n; ++i) {
    const size_t at = static_cast<size_t>(std::min(i, kMaxTrackedPositions - 1));
    const double att = at < s.attempts.size() ? s.attempts[at] : 0;
    const double acc = at < s.accepts.size() ? s.accepts[at] : 0;
    const double weight = i == 0 ? c.prior_weight : c.position_weight;
    before = (acc + weight * before) / (att + weight);
    if (i >= held) p.push_back(before);
  }
  return p;
}

SpecState observe(const SpecState& state, const SpecConfig& c, const DraftOutcome& o) {
  SpecState s = state;
  const int sent = std::clamp(o.sent, 0, 1 << 20);
  const int accepted = std::clamp(o.accepted, 0, sent);
  if (sent == 0) return s;
  s.accepts.resize(s.attempts.size(), 0);  // one count of each per position
  // Drafts 1..accepted were judged and accepted; draft accepted + 1 (if sent)
  // was judged and rejected; the rest were never judged.
  const int judged = std::min(sent, accepted + 1);
  // Only the positions judged forget (SpecConfig::accept_decay).
  const int from = std::clamp(o.held_before, 0, kMaxTrackedPositions - 1);
  const size_t reached = static_cast<size_t>(std::min(from + judged, kMaxTrackedPositions));
  for (size_t i = static_cast<size_t>(from); i < std::min(reached, s.attempts.size()); ++i) {
    s.attempts[i] *= c.accept_decay;
    s.accepts[i] *= c.accept_decay;
  }
  for (int i = 0; i < judged; ++i) {
    const size_t at = static_cast<size_t>(std::min(from + i, kMaxTrackedPositions - 1));
    if (s.attempts.size() <= at) {
      s.attempts.resize(at + 1, 0);
      s.accepts.resize(at + 1, 0);
    }
    s.attempts[at] += 1;
    if (i < accepted) s.accepts[at] += 1;
  }
  return s;
}

SpecState observe(const SpecState& state, const SpecConfig& c, const GoodputWindow& w) {
  SpecState s = state;
  if (!finite_positive(w.seconds) || !(w.tokens >= 0) || !std::isfinite(w.tokens)) return s;
  const double rate = w.tokens / w.seconds;
  if (!w.speculative) {
    s.plain_rate = ewma(s.plain_rate, rate, c.goodput_weight);
    // The gateway decoded plainly (the plan said so): speculation resumes by a probe.
    if (s.mode == SpecState::Mode::kSpeculating) back_off(s, c, w.now_s);
    return s;
  }
  if (s.mode == SpecState::Mode::kPlain) {
    // A probe's result; the old speculative rate is stale, so it is replaced.
    s.spec_rate = rate;
    if (s.plain_rate == 0 || rate >= c.min_gain * s.plain_rate) {
      s.mode = SpecState::Mode::kSpeculating;
      s.good_windows = 0;
    } else {
      s.probe_at_s = w.now_s + take_probe_wait(s, c);
    }
    return s;
  }
  s.spec_rate = ewma(s.spec_rate, rate, c.goodput_weight);
  if (s.plain_rate == 0) return s;  // nothing to compare with yet
  const double ratio = s.spec_rate / s.plain_rate;
  if (ratio < c.min_gain) {
    s.bias = std::min(c.max_bias, s.bias + c.bias_step);
    s.good_windows = 0;
    if (ratio < c.back_off_ratio) back_off(s, c, w.now_s);
  } else {
    s.bias = std::max(0.0, s.bias - c.bias_step);
    if (++s.good_windows >= c.stable_windows) s.probe_interval_s = 0;
  }
  return s;
}

std::vector<double> stage_time_table(const StageTimes& times, int max_b, double assumed_slope) {
  std::map<int, std::pair<double, int>> sums;  // b -> (sum, count)
  for (const auto& [b, t] : times.points) {
    auto& e = sums[b];
    e.first += t;
    e.second += 1;
  }
  std::vector<std::pair<double, double>> pts;  // (b, mean t), by b
  for (const auto& [b, e] : sums) pts.emplace_back(b, e.first / e.second);
  std::vector<double> table;
  if (pts.empty() || max_b < 1) return table;
  // Slope for extrapolation: least squares over all points, never negative.
  double slope = assumed_slope * pts[0].second;
  if (pts.size() >= 2) {
    double mb = 0, mt = 0;
    for (auto [b, t] : pts) {
      mb += b;
      mt += t;
    }
    mb /= pts.size();
    mt /= pts.size();
    double num = 0, den = 0;
    for (auto [b, t] : pts) {
      num += (b - mb) * (t - mt);
      den += (b - mb) * (b - mb);
    }
    slope = std::max(0.0, num / den);
  }
  const auto [b_lo, t_lo] = pts.front();
  const auto [b_hi, t_hi] = pts.back();
  for (int b = 1; b <= max_b; ++b) {
    double t;
    if (b <= b_lo) {
      // Fewer tokens never cost less than their share of the smallest measured run.
      t = std::max(t_lo - slope * (b_lo - b), t_lo * b / b_lo);
    } else if (b >= b_hi) {
      t = t_hi + slope * (b - b_hi);
    } else {
      auto hi = std::lower_bound(pts.begin(), pts.end(), static_cast<double>(b),
                                 [](const auto& p, double x) { return p.first < x; });
      auto lo = hi - 1;
      const double f = (b - lo->first) / (hi->first - lo->first);
      t = lo->second + f * (hi->second - lo->second);
    }
    // A larger run never takes less time: measurement noise is flattened.
    table.push_back(table.empty() ? t : std::max(t, table.back()));
  }
  return table;
}

int width_for(const std::vector<double>& bottleneck, double slack) {
  int k = bottleneck.empty() ? 0 : 1;
  for (size_t b = 1; b < bottleneck.size(); ++b)
    if (bottleneck[b] <= slack * bottleneck[0]) k = static_cast<int>(b) + 1;
  return k;
}

int in_flight_for(double round_trip_s, double bottleneck_k_s, double load, int max_in_flight) {
  if (!finite_positive(bottleneck_k_s) || !(round_trip_s >= 0)) return 1;
  const double free = 1 - std::clamp(load, 0.0, 1.0);
  const double runs = std::ceil(round_trip_s * free / bottleneck_k_s - 1e-9);
  return static_cast<int>(std::clamp(runs + 1, 1.0, static_cast<double>(max_in_flight)));
}

int drafts_to_send(const std::vector<double>& conditional_probs, double min_accept_prob,
                   int max_drafts) {
  double p = 1;
  int n = 0;
  for (int i = 0; i < max_drafts && i < static_cast<int>(conditional_probs.size()); ++i) {
    p *= std::clamp(conditional_probs[i], 0.0, 1.0);
    if (!(p >= min_accept_prob) || p == 0) break;
    n = i + 1;
  }
  return n;
}

double expected_tokens(const std::vector<double>& conditional_probs, int n) {
  double e = 1, p = 1;
  for (int i = 0; i < n && i < static_cast<int>(conditional_probs.size()); ++i) {
    p *= std::clamp(conditional_probs[i], 0.0, 1.0);
    e += p;
  }
  return e;
}

double busy_fraction(int64_t compute_us_before, int64_t compute_us_after, int64_t own_compute_us,
                     double seconds) {
  if (!finite_positive(seconds)) return 0;
  const double others = static_cast<double>(compute_us_after - compute_us_before - own_compute_us);
  return std::clamp(others * 1e-6 / seconds, 0.0, 1.0);
}

double goodput_bound(double a, int drafts, double round_trip_s, int k, double bottleneck_k_s) {
  a = std::clamp(a, 0.0, 1.0);
  const int d = std::max(0, drafts);
  const double per_trip = a >= 1 ? d + 1.0 : (1 - std::pow(a, d + 1)) / (1 - a);
  const double latency_bound = round_trip_s > 0 ? per_trip / round_trip_s : HUGE_VAL;
  const double throughput_bound = bottleneck_k_s > 0 ? k / bottleneck_k_s : HUGE_VAL;
  return std::min(latency_bound, throughput_bound);
}

Result<SpeculationPlan> plan(const SpecState& state, const SpecConfig& c,
                             const PipelineMeasurements& m, double now_s) {
  SWARM_RETURN_IF_ERROR(validate(c));
  if (!(m.load >= 0 && m.load <= 1))
    return Status::InvalidArgument("load: " + std::to_string(m.load) + " is not in [0, 1]");
  if (!(m.plain_round_trip_s >= 0) || !std::isfinite(m.plain_round_trip_s))
    return Status::InvalidArgument("plain_round_trip_s: must be finite and >= 0");
  if (m.held_in_a_row < 0)
    return Status::InvalidArgument("held_in_a_row: " + std::to_string(m.held_in_a_row) +
                                   " is negative");
  double links = 0;
  for (double d : m.link_delay_s) {
    if (!(d >= 0) || !std::isfinite(d))
      return Status::InvalidArgument("link_delay_s: " + std::to_string(d) + " is not >= 0");
    links += d;
  }
  SpeculationPlan out;
  if (m.stages.empty()) {
    out.reason = "no stages measured yet";
    return out;
  }
  // Every stage's t(1..max_width), then the bottleneck's.
  std::vector<std::vector<double>> tables;
  for (size_t s = 0; s < m.stages.size(); ++s) {
    for (const auto& [b, t] : m.stages[s].points)
      if (b < 1 || !finite_positive(t))
        return Status::InvalidArgument("stage " + std::to_string(s) + ": point (b " +
                                       std::to_string(b) + ", " + std::to_string(t) +
                                       " s) needs b >= 1 and a finite time > 0");
    tables.push_back(stage_time_table(m.stages[s], c.max_width, c.assumed_slope));
    if (tables.back().empty()) {
      out.reason = "stage " + std::to_string(s) + " not measured yet";
      return out;
    }
  }
  std::vector<double> bottleneck(c.max_width, 0);
  for (const auto& t : tables)
    for (int b = 0; b < c.max_width; ++b) bottleneck[b] = std::max(bottleneck[b], t[b]);
  // A run of b tokens goes around the ring: the links plus every stage's t(b),
  // or the measured plain round trip plus the extra compute of b - 1 tokens.
  auto round_trip = [&](int b) {
    double extra = 0, sum = 0;
    for (const auto& t : tables) {
      extra += t[b - 1] - t[0];
      sum += t[b - 1];
    }
    return m.plain_round_trip_s > 0 ? m.plain_round_trip_s + extra : links + sum;
  };
  const double threshold = std::clamp(
      c.min_accept_idle + (c.min_accept_loaded - c.min_accept_idle) * m.load + state.bias, 0.0,
      1.0);
  const std::vector<double> p =
      draft_accept_probs(state, c, c.max_in_flight * c.max_width - 1, m.held_in_a_row);
  // For width k: W, the drafts the threshold admits, and the predicted rate.
  // Plain decoding makes one token per round trip; a speculative chain of n
  // drafts spread over ceil((n + 1) / k) runs yields expected_tokens(n) when its
  // last run returns, and never more than the bottleneck's k tokens per bt(k).
  struct Choice {
    int k = 1, w = 1, drafts = 0;
    double rate = 0;
  };
  auto predict = [&](int k) {
    Choice x;
    x.k = k;
    const double bt_k = bottleneck[k - 1];
    x.w = in_flight_for(round_trip(k), bt_k, m.load, c.max_in_flight);
    // Drafts in flight at most: the first run holds the anchor and k - 1 drafts.
    x.drafts = drafts_to_send(p, threshold, x.w * k - 1);
    const int runs = (x.drafts + 1 + k - 1) / k;
    const double chain_time = round_trip(k) + (runs - 1) * bt_k;
    x.rate = std::min(expected_tokens(p, x.drafts) / chain_time, static_cast<double>(k) / bt_k);
    return x;
  };
  // The width (the anchor slows by at most width_slack), unless a wider
  // run is predicted to pay clearly more: where drafts hold, one run carrying a
  // whole chain beats several runs of one token each, even if it costs more.
  Choice choice = predict(width_for(bottleneck, c.width_slack));
  Choice best = choice;
  for (int b = 1; b <= c.max_width; ++b) {
    const Choice x = predict(b);
    if (x.rate > best.rate) best = x;
  }
  if (best.rate >= c.wider_gain * choice.rate) choice = best;
  out.width = choice.k;
  out.max_in_flight = choice.w;
  out.drafts = choice.drafts;
  const double plain_rate = 1 / round_trip(1);
  out.predicted_gain = choice.rate / plain_rate;

  if (state.mode == SpecState::Mode::kPlain) {
    // Plain decoding is measured first: it is what every probe is judged against.
    if (state.plain_rate == 0) {
      out.reason = "measuring plain decoding first";
      return out;
    }
    if (now_s < state.probe_at_s) {
      out.reason = "backed off: next probe at " + std::to_string(state.probe_at_s) + " s";
      return out;
    }
    if (m.shadow_acceptance) {
      // The estimates are current: probe only where they predict a clear gain,
      // with the drafts they admit. Where drafts fail, no probe costs anything.
      if (out.drafts == 0 || out.predicted_gain < c.min_gain) {
        out.reason = "plain: predicted gain " + std::to_string(out.predicted_gain) + " < " +
                     std::to_string(c.min_gain);
        return out;
      }
      out.speculate = true;
      out.probe = true;
      out.min_accept_prob = threshold;
      out.reason = "probe";
      return out;
    }
    // Send full width whatever the estimates say: they are stale, and only
    // speculation refreshes them.
    out.speculate = true;
    out.probe = true;
    out.min_accept_prob = 0;
    out.reason = "probe";
    return out;
  }
  out.min_accept_prob = threshold;
  if (out.drafts == 0) {
    out.reason = "no draft's acceptance estimate reaches " + std::to_string(threshold);
    return out;
  }
  if (out.predicted_gain < 1) {
    out.reason = "predicted gain " + std::to_string(out.predicted_gain) + " < 1";
    return out;
  }
  out.speculate = true;
  out.reason = "speculating";
  return out;
}

}  // namespace swarm
