#include "routing/layer_assignment.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

namespace swarm {
namespace {

double speed_or_default(double layer_tokens_per_second) {
  return layer_tokens_per_second > 0 ? layer_tokens_per_second : kDefaultLayerTokensPerSecond;
}

// Sums of throughputs are compared with a relative tolerance, so that the same
// total added in a different order still ties (and falls to the next tie-break).
bool clearly_less(double a, double b) {
  return a < b - 1e-9 * std::max({1.0, std::fabs(a), std::fabs(b)});
}

struct Outcome {
  std::vector<int> uncovered;  // ascending
  double bottleneck = 0;
};

// The swarm's state if a node of `speed` serves `range` on top of `base`.
Outcome with_node(std::vector<double> base, LayerRange range, double speed) {
  for (int l = range.first; l < range.last; ++l) base[l] += speed;
  Outcome o;
  o.bottleneck = std::numeric_limits<double>::infinity();
  for (int l = 0; l < static_cast<int>(base.size()); ++l) {
    if (base[l] <= 0) o.uncovered.push_back(l);
    o.bottleneck = std::min(o.bottleneck, base[l]);
  }
  return o;
}

std::string describe(LayerRange r) {
  return "[" + std::to_string(r.first) + "," + std::to_string(r.last) + ")";
}

std::string describe_layers(const std::vector<int>& layers) {
  std::string s;
  for (size_t i = 0; i < layers.size() && i < 8; ++i)
    s += (i ? "," : "") + std::to_string(layers[i]);
  if (layers.size() > 8) s += ",...";
  return s;
}

std::string format_speed(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

}  // namespace

std::vector<double> layer_throughput(const std::vector<PeerSnapshot>& peers, int n_layer) {
  std::vector<double> t(std::max(n_layer, 0), 0.0);
  for (const PeerSnapshot& p : peers) {
    if (p.draining || (p.n_layer != 0 && p.n_layer != n_layer)) continue;
    const double speed = speed_or_default(p.layer_tokens_per_second);
    for (int l = std::max(p.first_layer, 0); l < std::min(p.last_layer, n_layer); ++l)
      t[l] += speed;
  }
  return t;
}

Result<LayerRange> choose_layers(const std::vector<PeerSnapshot>& peers, int n_layer,
                                 int capacity_layers, double layer_tokens_per_second) {
  if (n_layer < 1) return Status::InvalidArgument("a model needs at least one layer");
  if (capacity_layers < 1)
    return Status::InvalidArgument("a node needs room for at least one layer");
  const int size = std::min(capacity_layers, n_layer);
  const double speed = speed_or_default(layer_tokens_per_second);
  const std::vector<double> t = layer_throughput(peers, n_layer);

  // Prefix minima and suffix minima of the swarm's throughput, and the number of
  // uncovered layers before each boundary, so that each candidate block costs
  // O(size) to score.
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::vector<double> prefix_min(n_layer + 1, kInf), suffix_min(n_layer + 1, kInf);
  std::vector<int> zeros_before(n_layer + 1, 0);
  for (int l = 0; l < n_layer; ++l) {
    prefix_min[l + 1] = std::min(prefix_min[l], t[l]);
    zeros_before[l + 1] = zeros_before[l] + (t[l] <= 0 ? 1 : 0);
  }
  for (int l = n_layer - 1; l >= 0; --l) suffix_min[l] = std::min(suffix_min[l + 1], t[l]);

  LayerRange best{0, size};
  int best_uncovered = std::numeric_limits<int>::max();
  double best_bottleneck = -1, best_sum = kInf;
  for (int s = 0; s + size <= n_layer; ++s) {
    // The node covers every layer of its block (speed > 0), so what stays
    // uncovered is what is uncovered outside it.
    const int uncovered = zeros_before[n_layer] - (zeros_before[s + size] - zeros_before[s]);
    double inside_min = kInf, sum = 0;
    for (int l = s; l < s + size; ++l) {
      inside_min = std::min(inside_min, t[l] + speed);
      sum += t[l];
    }
    const double bottleneck = std::min({prefix_min[s], suffix_min[s + size], inside_min});
    bool better;
    if (uncovered != best_uncovered) {
      better = uncovered < best_uncovered;
    } else if (clearly_less(best_bottleneck, bottleneck) ||
               clearly_less(bottleneck, best_bottleneck)) {
      better = bottleneck > best_bottleneck;
    } else {
      better = clearly_less(sum, best_sum);  // equal sums keep the lower start
    }
    if (better) {
      best = {s, s + size};
      best_uncovered = uncovered;
      best_bottleneck = bottleneck;
      best_sum = sum;
    }
  }
  return best;
}

Result<MoveDecision> should_move(const std::vector<PeerSnapshot>& peers_without_me,
                                 LayerRange current, int n_layer, int capacity_layers,
                                 double layer_tokens_per_second, double min_improvement_ratio) {
  if (current.first < 0 || current.last > n_layer || current.first >= current.last)
    return Status::InvalidArgument("current range " + describe(current) +
                                   " is not inside a model of " + std::to_string(n_layer) +
                                   " layers");
  if (!(min_improvement_ratio >= 1))
    return Status::InvalidArgument("the improvement ratio must be at least 1");
  Result<LayerRange> target =
      choose_layers(peers_without_me, n_layer, capacity_layers, layer_tokens_per_second);
  if (!target.ok()) return target.status();

  MoveDecision d;
  d.target = current;
  if (*target == current) {
    d.reason = "stay at " + describe(current) + ": already the best block";
    return d;
  }
  const double speed = speed_or_default(layer_tokens_per_second);
  const std::vector<double> base = layer_throughput(peers_without_me, n_layer);
  const Outcome here = with_node(base, current, speed);
  const Outcome there = with_node(base, *target, speed);

  if (!here.uncovered.empty()) {
    const bool subset = there.uncovered.size() < here.uncovered.size() &&
                        std::includes(here.uncovered.begin(), here.uncovered.end(),
                                      there.uncovered.begin(), there.uncovered.end());
    if (subset) {
      d.move = true;
      d.target = *target;
      d.reason = "move " + describe(current) + " -> " + describe(*target) +
                 ": covers uncovered layers " + describe_layers(here.uncovered) +
                 (there.uncovered.empty() ? "" : " in part");
    } else {
      d.reason = "stay at " + describe(current) + ": moving to " + describe(*target) +
                 " would leave layers " + describe_layers(there.uncovered) + " uncovered";
    }
    return d;
  }
  const double ratio =
      there.bottleneck / here.bottleneck;  // here.bottleneck > 0: nothing is uncovered
  const std::string numbers = "bottleneck " + format_speed(here.bottleneck) + " -> " +
                              format_speed(there.bottleneck) + " (x" + format_speed(ratio) +
                              ", need > x" + format_speed(min_improvement_ratio) + ")";
  if (there.bottleneck > min_improvement_ratio * here.bottleneck) {
    d.move = true;
    d.target = *target;
    d.reason = "move " + describe(current) + " -> " + describe(*target) + ": " + numbers;
  } else {
    d.reason = "stay at " + describe(current) + ": " + numbers;
  }
  return d;
}

bool should_defer_move(const std::vector<PeerSnapshot>& peers_without_me, LayerRange current,
                       const std::string& my_public_key, bool deferred_before) {
  if (deferred_before) return false;
  for (const PeerSnapshot& p : peers_without_me)
    if (!p.draining && p.first_layer == current.first && p.last_layer == current.last &&
        p.public_key < my_public_key)
      return true;
  return false;
}

}  // namespace swarm
