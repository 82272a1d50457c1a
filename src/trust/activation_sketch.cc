#include "trust/activation_sketch.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

namespace swarm::trust {

RowSketch sketch_row(const float* row, int d, int position, int k) {
  RowSketch s;
  s.position = position;
  k = std::clamp(k, 0, d);
  std::vector<int32_t> idx(static_cast<size_t>(d));
  std::iota(idx.begin(), idx.end(), 0);
  // NaN never reaches here (nodes refuse non-finite rows); it sorts last anyway.
  auto larger = [row](int32_t a, int32_t b) {
    const float x = std::fabs(row[a]), y = std::fabs(row[b]);
    return x > y || (x == y && a < b);
  };
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), larger);
  for (int i = 0; i < k; ++i) {
    s.indices.push_back(idx[static_cast<size_t>(i)]);
    s.values.push_back(row[idx[static_cast<size_t>(i)]]);
  }
  return s;
}

bool is_sketched(int position, int n, int i, bool all) {
  return all || i == n - 1 || (position + i) % kSketchStride == kSketchStride - 1;
}

SketchCheck check_sketch(const RowSketch& claimed, const RowSketch& reference,
                         const SketchTolerance& tolerance) {
  SketchCheck out;
  std::unordered_map<int32_t, float> ref;
  for (size_t i = 0; i < reference.indices.size() && i < reference.values.size(); ++i)
    ref.emplace(reference.indices[i], reference.values[i]);
  const size_t n = std::min(claimed.indices.size(), claimed.values.size());
  if (n > static_cast<size_t>(kSketchEntries)) {
    out.reason = "row " + std::to_string(claimed.position) + ": a sketch of " + std::to_string(n) +
                 " entries (at most " + std::to_string(kSketchEntries) + ")";
    return out;
  }
  int outside = 0, off = 0;
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    if (std::find(claimed.indices.begin(), claimed.indices.begin() + static_cast<long>(i),
                  claimed.indices[i]) != claimed.indices.begin() + static_cast<long>(i))
      continue;  // counted once
    auto it = ref.find(claimed.indices[i]);
    if (it == ref.end()) {
      ++outside;
      continue;
    }
    const double err = std::fabs(static_cast<double>(claimed.values[i]) - it->second);
    const double allowed = tolerance.relative * std::fabs(it->second) + tolerance.absolute;
    if (!(err <= allowed)) {  // NaN fails
      ++off;
      worst = std::max(worst, std::fabs(it->second) > 0 ? err / std::fabs(it->second) : err);
      continue;
    }
    ++out.agreeing;
  }
  out.ok = out.agreeing >= tolerance.min_agreeing;
  if (!out.ok) {
    char why[256];
    std::snprintf(why, sizeof why,
                  "row %d: %d of %zu sketched entries agree (%d needed): %d not among the "
                  "reference's %zu largest, %d off by more than %.0f%% (worst %.3g)",
                  claimed.position, out.agreeing, n, tolerance.min_agreeing, outside,
                  reference.indices.size(), off, tolerance.relative * 100, worst);
    out.reason = why;
  }
  return out;
}

void to_proto(const RowSketch& s, v1::RowSketch* out) {
  out->set_position(s.position);
  out->mutable_indices()->Add(s.indices.begin(), s.indices.end());
  out->mutable_values()->Add(s.values.begin(), s.values.end());
}

Result<RowSketch> from_proto(const v1::RowSketch& s) {
  if (s.indices_size() != s.values_size() || s.indices_size() > kReferenceEntries)
    return Status::InvalidArgument("RowSketch: " + std::to_string(s.indices_size()) + " indices and " +
                                   std::to_string(s.values_size()) + " values (equal, at most " +
                                   std::to_string(kReferenceEntries) + ")");
  RowSketch out;
  out.position = s.position();
  for (int i = 0; i < s.indices_size(); ++i) {
    out.indices.push_back(s.indices(i));
    out.values.push_back(s.values(i));
  }
  return out;
}

}  // namespace swarm::trust
