// Test-only helpers: where the reference models live and how to read their raw
// reference files. Every fixture is in the repository (tests/data/, see its
// README), so the tests read nothing outside it and run the same on any clone.
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

inline std::string testdata_root() { return std::string(SWARM_SOURCE_DIR) + "/tests/data/models"; }

// The path of `rel` (e.g. "tiny-llama/gguf/tiny-llama-Q8_0.gguf") under
// tests/data/models; "" if it is not there (a test then fails or says why it
// skips: every file the tests name is committed).
inline std::string find_testdata(const std::string& rel) {
  const std::string p = testdata_root() + "/" + rel;
  return path_exists(p) ? p : "";
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
