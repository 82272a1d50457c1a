#include "engine/membw.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

namespace swarm {
namespace {

// "always [madvise] never": the bracketed word is the kernel's mode.
std::string transparent_huge_page_mode() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(f, line);
  const size_t open = line.find('['), close = line.find(']');
  if (open == std::string::npos || close == std::string::npos) return "";
  return line.substr(open + 1, close - open - 1);
}

TEST(ReadBandwidthProbe, PassesAreFiniteAndBestIsTheirMaximum) {
  ThreadPool pool(2);
  ReadBandwidthProbe probe(pool, size_t{64} << 20);
  double most = 0;
  for (int i = 0; i < 3; ++i) {
    const double bw = probe.pass();
    EXPECT_TRUE(std::isfinite(bw) && bw > 0) << bw;
    most = std::max(most, bw);
  }
  EXPECT_EQ(probe.best(), most);
  const double after = probe.measure(2);
  EXPECT_EQ(after, probe.best());
  EXPECT_GE(after, most);
}

// A pass over several spans reads them all; a span too short to hold one aligned
// 64-byte run adds nothing.
TEST(ReadPass, ReadsEverySpan) {
  ThreadPool pool(2);
  std::vector<uint8_t> a(size_t{8} << 20, 1), b(size_t{4} << 20, 2), tiny(40, 3);
  const double bw =
      read_pass(pool, {{a.data(), a.size()}, {b.data(), b.size()}, {tiny.data(), tiny.size()}});
  EXPECT_TRUE(std::isfinite(bw) && bw > 0) << bw;
  EXPECT_EQ(read_pass(pool, {{tiny.data(), tiny.size()}}), 0);
}

// The weights decode reads sit on 2 MiB pages; the bandwidth they are compared
// with must be measured on the same kind of page, or the fraction is flattered
// (4 KiB pages read about a tenth slower).
TEST(ReadBandwidthProbe, BufferIsOnHugePagesWhereTheKernelOffersThem) {
  const std::string mode = transparent_huge_page_mode();
  if (mode != "always" && mode != "madvise")
    GTEST_SKIP() << "transparent huge pages are '" << mode << "' here";
  ThreadPool pool(2);
  const size_t bytes = size_t{64} << 20;
  ReadBandwidthProbe probe(pool, bytes);
  EXPECT_GE(probe.huge_page_bytes(), bytes / 2) << "of " << bytes << " bytes";
  EXPECT_LE(probe.huge_page_bytes(), bytes + (size_t{2} << 20));
}

}  // namespace
}  // namespace swarm
