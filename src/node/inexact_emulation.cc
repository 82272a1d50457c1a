#include "node/inexact_emulation.h"

namespace swarm::node {
namespace {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

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
