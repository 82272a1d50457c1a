#include "engine/membw.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>

namespace swarm {

// In membw_avx2.cc: the same sum with 256-bit loads.
uint64_t sum_words_avx2(const uint64_t* p, size_t n);

namespace {

uint64_t sum_words_portable(const uint64_t* p, size_t n) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  for (size_t i = 0; i + 4 <= n; i += 4) {
    a += p[i];
    b += p[i + 1];
    c += p[i + 2];
    d += p[i + 3];
  }
  return a + b + c + d;
}

}  // namespace

ReadBandwidthProbe::ReadBandwidthProbe(ThreadPool& pool, size_t bytes)
    : pool_(pool), words_(bytes / sizeof(uint64_t)), buf_(new uint64_t[words_]) {
  // Each thread touches its own share first, so pages sit near the thread that reads them.
  pool_.parallel_for(static_cast<int64_t>(words_), [&](int64_t b, int64_t e) {
    std::memset(buf_.get() + b, 1, static_cast<size_t>(e - b) * sizeof(uint64_t));
  });
}

double ReadBandwidthProbe::measure(int passes) {
  const bool avx2 = __builtin_cpu_supports("avx2");
  volatile uint64_t sink = 0;
  for (int pass = 0; pass < passes; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    pool_.parallel_for(static_cast<int64_t>(words_), [&](int64_t b, int64_t e) {
      const uint64_t* p = buf_.get() + b;
      const size_t n = static_cast<size_t>(e - b);
      sink = sink + (avx2 ? sum_words_avx2(p, n) : sum_words_portable(p, n));
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best_ = std::max(best_, static_cast<double>(words_ * sizeof(uint64_t)) / s);
  }
  return best_;
}

double measure_read_bandwidth(ThreadPool& pool, size_t bytes, int passes) {
  ReadBandwidthProbe probe(pool, bytes);
  return probe.measure(passes);
}

}  // namespace swarm
