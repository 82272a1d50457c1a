// For tests: an identity made from a seed of one repeated byte, the same in
// every run (different `fill`, different node).
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cstdint>

#include "net/identity.h"

namespace swarm::net {

inline Identity identity_from(uint8_t fill) {
  std::array<uint8_t, kSeedBytes> seed;
  seed.fill(fill);
  auto id = Identity::FromSeed(seed);
  EXPECT_TRUE(id.ok());
  return std::move(id).value();
}

}  // namespace swarm::net
