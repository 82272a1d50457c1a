#include "engine/progress.h"

#include <unistd.h>

#include <algorithm>

namespace swarm {

std::string format_progress(const std::string& label, uint64_t done, uint64_t total,
                            double seconds) {
  constexpr int kWidth = 24;
  done = std::min(done, total);
  const double fraction = total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
  const int filled = static_cast<int>(fraction * kWidth);
  const double mb = 1e6;
  char numbers[96];
  std::snprintf(numbers, sizeof numbers, " %7.1f/%.1f MB  %4.0f MB/s",
                static_cast<double>(done) / mb, static_cast<double>(total) / mb,
                seconds > 0 ? static_cast<double>(done) / mb / seconds : 0.0);
  return label + " [" + std::string(static_cast<size_t>(filled), '#') +
         std::string(static_cast<size_t>(kWidth - filled), '-') + "]" + numbers;
}

ProgressBar::ProgressBar(std::string label, uint64_t total, std::FILE* out)
    : label_(std::move(label)),
      total_(total),
      out_(out),
      enabled_(out != nullptr && ::isatty(::fileno(out)) == 1) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(uint64_t done) {
  done_ = done;
  if (!enabled_ || finished_) return;
  const Clock::time_point now = Clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw();
}

void ProgressBar::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  draw();
  std::fputc('\n', out_);
  std::fflush(out_);
}

void ProgressBar::draw() {
  const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  // "\033[K" clears what a longer earlier line left to the right.
  std::fprintf(out_, "\r%s\033[K", format_progress(label_, done_, total_, seconds).c_str());
  std::fflush(out_);
}

}  // namespace swarm
