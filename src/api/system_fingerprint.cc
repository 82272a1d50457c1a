#include "api/system_fingerprint.h"

#include <cstdint>
#include <cstdio>

#ifndef SWARM_BUILD_ID
#define SWARM_BUILD_ID "unknown"
#endif

namespace swarm {

const char* build_id() { return SWARM_BUILD_ID; }

std::string system_fingerprint(std::string_view model_identity) {
  // FNV-1a: stable across platforms and runs (std::hash is neither promised).
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix(model_identity);
  mix(std::string_view("\0", 1));
  mix(build_id());
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return std::string("fp_") + hex;
}

}  // namespace swarm
