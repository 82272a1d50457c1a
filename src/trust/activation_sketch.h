// Tolerance-based checks for nodes whose kernels are not bit-identical to ours
// (doc/trust.md, "Inexact nodes"), in the spirit of TOPLOC (arXiv 2501.16007):
// a stage commits, for some rows of its output, to the row's largest entries
// (indices and values); a verifier recomputes the row and checks that those
// indices are among its own largest and that the values agree within a
// tolerance. Another device's rounding moves values by far less than the
// tolerance; other weights, a skipped layer or a replayed output move them by
// far more. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/status.h"
#include "swarm/v1/stage.pb.h"

namespace swarm::trust {

// Entries a stage commits to per sketched row, and how many of its own
// largest a verifier keeps to match them against.
inline constexpr int kSketchEntries = 16;
inline constexpr int kReferenceEntries = 2 * kSketchEntries;
// Every row whose position is one before a multiple of this is sketched, and
// every step's last row.
inline constexpr int kSketchStride = 32;

// The `k` entries of largest magnitude of a row of `d`, largest first (ties:
// the lower index first), as Commitment.sketches carries them.
struct RowSketch {
  int position = 0;
  std::vector<int32_t> indices;
  std::vector<float> values;
};
RowSketch sketch_row(const float* row, int d, int position, int k = kSketchEntries);

// Whether row `i` of a step at `position` of `n` rows is sketched (every row
// when `all`: an audit's reference run, Step.row_hashes).
bool is_sketched(int position, int n, int i, bool all);

// How far a sketch may be from the verifier's row and still pass.
struct SketchTolerance {
  // An entry agrees when |claimed - reference| <= relative * |reference| +
  // absolute and its index is among the reference's kReferenceEntries largest.
  double relative = 0.05;
  double absolute = 1e-3;
  // Entries that must agree, of the sketch's.
  int min_agreeing = 13;
};

struct SketchCheck {
  bool ok = false;
  int agreeing = 0;
  std::string reason;  // why not, with the numbers
};
// Compares a stage's claimed sketch with the verifier's own sketch of the same
// row (taken with kReferenceEntries entries). A repeated index counts once; a
// sketch of more than kSketchEntries entries fails.
SketchCheck check_sketch(const RowSketch& claimed, const RowSketch& reference,
                         const SketchTolerance& tolerance = {});

void to_proto(const RowSketch& s, v1::RowSketch* out);
// Checks that indices and values pair up, at most kReferenceEntries of them.
Result<RowSketch> from_proto(const v1::RowSketch& s);

}  // namespace swarm::trust
