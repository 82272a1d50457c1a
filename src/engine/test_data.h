// Test-only helpers: where the reference models live and how to read their raw
// reference files. Every fixture is in the repository (tests/data/, see its
// README), so the tests read nothing outside it and run the same on any clone.
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
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

// How far logits are from a reference's (PyTorch's float32 ones), in units
// of S, the reference's largest magnitude (as tests/data/README.md states the
// tolerances): the largest error and the mean one.
struct ReferenceError {
  double s = 0, max = 0, mean = 0;  // max and mean already divided by s
};
inline ReferenceError error_against_reference(const std::vector<float>& got,
                                              const std::vector<float>& want) {
  ReferenceError e;
  double sum = 0;
  for (float r : want) e.s = std::max(e.s, std::fabs(static_cast<double>(r)));
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    e.max = std::max(e.max, d);
    sum += d;
  }
  if (e.s > 0) {
    e.max /= e.s;
    e.mean = want.empty() ? 0 : sum / want.size() / e.s;
  }
  return e;
}

}  // namespace swarm::testing
