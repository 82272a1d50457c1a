// A one-line progress bar for long reads on a terminal (hashing or loading a
// model's weights): bytes done of the total and the rate, redrawn in place with
// '\r' at most ten times a second and ended with a newline. Draws nothing when its
// stream is not a terminal, so logs and pipes stay clean.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace swarm {

// The bar's text for `done` of `total` bytes after `seconds`, e.g.
// "hashing model [########------------]  412.0/1100.0 MB  731 MB/s". Pure, for tests.
std::string format_progress(const std::string& label, uint64_t done, uint64_t total,
                            double seconds);

class ProgressBar {
 public:
  // `out` is drawn on only if it is a terminal (isatty).
  ProgressBar(std::string label, uint64_t total, std::FILE* out = stderr);
  ~ProgressBar();  // finish()
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  bool enabled() const { return enabled_; }
  // Records `done` bytes and redraws if the last draw is 100 ms old. One thread
  // at a time calls update and finish.
  void update(uint64_t done);
  // Draws the final state and ends the line; later calls do nothing.
  void finish();

 private:
  void draw();

  using Clock = std::chrono::steady_clock;
  std::string label_;
  uint64_t total_;
  std::FILE* out_;
  bool enabled_;
  bool finished_ = false;
  uint64_t done_ = 0;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_draw_{};
};

}  // namespace swarm
