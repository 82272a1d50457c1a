// SplitMix64's finaliser: a bijection of 64-bit words whose every output bit
// depends on every input bit. Counter-based randomness (the sampler's draws,
// synthetic weights, emulated rounding) hashes a key with it instead of
// keeping generator state, so any element is computed on its own.
#pragma once

#include <cstdint>

namespace swarm {

inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace swarm
