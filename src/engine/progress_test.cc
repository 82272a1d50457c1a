// The progress bar's text, and its silence when its stream is not a terminal.
#include "engine/progress.h"

#include <gtest/gtest.h>

#include <cstdio>

namespace swarm {
namespace {

TEST(Progress, FormatShowsBytesRateAndFill) {
  EXPECT_EQ(format_progress("hashing", 500000000, 1000000000, 2.0),
            "hashing [############------------]   500.0/1000.0 MB   250 MB/s");
  EXPECT_EQ(format_progress("x", 0, 0, 0),
            "x [########################]     0.0/0.0 MB     0 MB/s");
  // Past the total (a file that grew) is drawn as done.
  EXPECT_EQ(format_progress("x", 9, 4, 1),
            "x [########################]     0.0/0.0 MB     0 MB/s");
}

TEST(Progress, DrawsNothingWhenNotATerminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar("hashing", 100, f);
    EXPECT_FALSE(bar.enabled());
    bar.update(50);
    bar.finish();
  }
  EXPECT_EQ(std::ftell(f), 0L);
  std::fclose(f);
}

}  // namespace
}  // namespace swarm
