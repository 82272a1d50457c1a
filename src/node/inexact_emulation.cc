#include "node/inexact_emulation.h"

#include "engine/mix64.h"

namespace swarm::node {

void emulate_inexact(float* rows, int64_t n, int d, int position, double relative) {
  if (relative <= 0) return;
  for (int64_t r = 0; r < n; ++r) {
    const uint64_t row_key = mix64(static_cast<uint64_t>(position + r));
    for (int i = 0; i < d; ++i) {
      const double u = static_cast<double>(mix64(row_key ^ static_cast<uint64_t>(i)) >> 11) * 0x1.0p-53;
      rows[r * d + i] *= static_cast<float>(1.0 + relative * (2 * u - 1));
    }
  }
}

}  // namespace swarm::node
