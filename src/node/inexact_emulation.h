// A node that behaves like one on another device, whose kernels round
// differently from the reference CPU engine: its output rows are off by a
// small relative amount, as another GPU's would be. Set only by the hidden
// `swarm node --emulate-inexact REL` flag, so tests can show that audits with
// a tolerance pass such honest nodes and still catch cheaters among them
// (doc/trust.md, "Inexact nodes").
#pragma once

#include <cstdint>

namespace swarm::node {

// Multiplies each entry of `rows` (n x d, the first at `position`) by
// (1 + e), e in [-relative, relative], a fixed function of (position, index):
// the same row gets the same error every time, as a deterministic kernel's would.
void emulate_inexact(float* rows, int64_t n, int d, int position, double relative);

}  // namespace swarm::node
