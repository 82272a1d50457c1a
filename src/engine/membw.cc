#include "engine/membw.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <new>

#include "engine/mapped_file.h"

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

double read_pass(ThreadPool& pool, const std::vector<std::span<const uint8_t>>& spans) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  volatile uint64_t sink = 0;
  size_t total = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const std::span<const uint8_t>& span : spans) {
    // Whole aligned words only: the few bytes at either end do not matter.
    const uintptr_t first = (reinterpret_cast<uintptr_t>(span.data()) + 63) & ~uintptr_t{63};
    const uintptr_t last = reinterpret_cast<uintptr_t>(span.data() + span.size()) & ~uintptr_t{63};
    if (last <= first) continue;
    const uint64_t* words = reinterpret_cast<const uint64_t*>(first);
    const int64_t n = static_cast<int64_t>((last - first) / sizeof(uint64_t));
    pool.parallel_for(n, [&](int64_t b, int64_t e) {
      const size_t count = static_cast<size_t>(e - b);
      sink =
          sink + (avx2 ? sum_words_avx2(words + b, count) : sum_words_portable(words + b, count));
    });
    total += last - first;
  }
  if (total == 0) return 0;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(total) / s;
}

constexpr size_t kHugePage = size_t{2} << 20;

ReadBandwidthProbe::ReadBandwidthProbe(ThreadPool& pool, size_t bytes)
    : pool_(pool), words_(bytes / sizeof(uint64_t)) {
  // One huge page more than the buffer, so that it can start on a 2 MiB boundary.
  map_bytes_ = words_ * sizeof(uint64_t) + kHugePage;
  map_ = ::mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map_ == MAP_FAILED) throw std::bad_alloc();
  buf_ = reinterpret_cast<uint64_t*>((reinterpret_cast<uintptr_t>(map_) + kHugePage - 1) /
                                     kHugePage * kHugePage);
  ::madvise(buf_, words_ * sizeof(uint64_t), MADV_HUGEPAGE);
  // Each thread touches its own share first, so pages sit near the thread that reads them.
  pool_.parallel_for(static_cast<int64_t>(words_), [&](int64_t b, int64_t e) {
    std::memset(buf_ + b, 1, static_cast<size_t>(e - b) * sizeof(uint64_t));
  });
}

ReadBandwidthProbe::~ReadBandwidthProbe() { ::munmap(map_, map_bytes_); }

double ReadBandwidthProbe::pass() {
  const std::vector<std::span<const uint8_t>> spans = {
      {reinterpret_cast<const uint8_t*>(buf_), words_ * sizeof(uint64_t)}};
  const double bw = read_pass(pool_, spans);
  best_ = std::max(best_, bw);
  return bw;
}

double ReadBandwidthProbe::measure(int passes) {
  for (int i = 0; i < passes; ++i) pass();
  return best_;
}

size_t ReadBandwidthProbe::huge_page_bytes() const {
  return huge_mapped_bytes_in(map_, map_bytes_, true);
}

double measure_read_bandwidth(ThreadPool& pool, size_t bytes, int passes) {
  ReadBandwidthProbe probe(pool, bytes);
  return probe.measure(passes);
}

}  // namespace swarm
