// The progress bar's and the stage lines' text, their silence when their
// stream is not a terminal, and what they draw on one (a pseudo-terminal).
#include "engine/progress.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <unistd.h>

#include <cstdio>
#include <string>

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

TEST(Progress, FormatCountsNamedItems) {
  EXPECT_EQ(format_progress("bench run 2/3", 70, 195, 5.6, "steps"),
            "bench run 2/3 [########----------------]  70/195 steps  12.5 steps/s");
  EXPECT_EQ(format_progress("x", 0, 4, 0, "runs"),
            "x [------------------------]  0/4 runs  0.0 runs/s");
  EXPECT_EQ(format_progress("x", 7, 4, 2, "runs"),
            "x [########################]  4/4 runs  2.0 runs/s");
}

TEST(Progress, FormatStageNumbersIt) {
  EXPECT_EQ(format_stage("node", 2, 5, "choosing layers"), "node [2/5] choosing layers");
}

TEST(Progress, DrawsNothingWhenNotATerminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressBar bar("hashing", 100, f);
    EXPECT_FALSE(bar.enabled());
    bar.update(50);
    bar.set_label("renamed");
    bar.finish();
    StageLines stages("node", 2, f);
    EXPECT_FALSE(stages.enabled());
    stages.begin("joining");
    ProgressBar none("hashing", 100, nullptr);
    EXPECT_FALSE(none.enabled());
  }
  EXPECT_EQ(std::ftell(f), 0L);
  std::fclose(f);
}

// What a pseudo-terminal's other end received, read until nothing more comes.
std::string drain(int fd) {
  std::string text;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  return text;
}

TEST(Progress, DrawsInPlaceOnATerminal) {
  int master = -1, slave = -1;
  ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  ::fcntl(master, F_SETFL, ::fcntl(master, F_GETFL) | O_NONBLOCK);
  std::FILE* tty = ::fdopen(slave, "w");
  ASSERT_NE(tty, nullptr);
  {
    StageLines stages("node", 2, tty);
    EXPECT_TRUE(stages.enabled());
    stages.begin("loading");
    ProgressBar bar("loading layers 0:2", 4, tty, "tensors");
    EXPECT_TRUE(bar.enabled());
    bar.update(1);  // the first update draws; the next within 100 ms only records
    bar.update(3);
    bar.set_label("loaded layers 0:2");
    bar.finish();
    bar.update(4);  // after finish: nothing
    stages.begin("announcing");
  }
  std::fclose(tty);
  const std::string text = drain(master);
  ::close(master);
  // In this order (the terminal turns "\n" into "\r\n"); the rates vary.
  size_t at = 0;
  for (const std::string part :
       {"node [1/2] loading\r\n", "\rloading layers 0:2 [######------------------]  1/4 tensors",
        "\033[K", "\rloaded layers 0:2 [##################------]  3/4 tensors",
        "\rloaded layers 0:2 [##################------]  3/4 tensors", "\033[K\r\n",
        "node [2/2] announcing\r\n"}) {
    const size_t found = text.find(part, at);
    ASSERT_NE(found, std::string::npos)
        << "no '" << part << "' after byte " << at << " of: " << text;
    at = found + part.size();
  }
  EXPECT_EQ(at, text.size()) << text;
  EXPECT_EQ(text.find("4/4"), std::string::npos) << text;
}

}  // namespace
}  // namespace swarm
