// Test-only helpers: where the reference models live and how to read their raw
// reference files. Fixtures copied into tests/data/ make `make test` work on a
// clean clone; the full set in ../shared/testdata is used when it is there.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace swarm::testing {

inline bool path_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

inline std::string shared_testdata() { return std::string(SWARM_SOURCE_DIR) + "/../shared/testdata/models"; }
inline std::string local_testdata() { return std::string(SWARM_SOURCE_DIR) + "/tests/data/models"; }

// `rel` (e.g. "tiny-llama/gguf/tiny-llama-Q8_0.gguf") in ../shared/testdata if
// present there, else in tests/data; "" if in neither.
inline std::string find_testdata(const std::string& rel) {
  for (const std::string& root : {shared_testdata(), local_testdata()})
    if (path_exists(root + "/" + rel)) return root + "/" + rel;
  return "";
}

template <typename T>
std::vector<T> read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return {};
  const auto size = static_cast<size_t>(in.tellg());
  std::vector<T> v(size / sizeof(T));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
  return v;
}

}  // namespace swarm::testing
