#include "engine/progress.h"

#include <unistd.h>

#include <algorithm>

namespace swarm {

std::string format_progress(const std::string& label, uint64_t done, uint64_t total, double seconds,
                            const std::string& items) {
  constexpr int kWidth = 24;
  done = std::min(done, total);
  const double fraction = total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
  const int filled = static_cast<int>(fraction * kWidth);
  char numbers[128];
  if (items.empty()) {
    const double mb = 1e6;
    std::snprintf(numbers, sizeof numbers, " %7.1f/%.1f MB  %4.0f MB/s",
                  static_cast<double>(done) / mb, static_cast<double>(total) / mb,
                  seconds > 0 ? static_cast<double>(done) / mb / seconds : 0.0);
  } else {
    std::snprintf(numbers, sizeof numbers, "  %llu/%llu %s  %.1f %s/s",
                  static_cast<unsigned long long>(done), static_cast<unsigned long long>(total),
                  items.c_str(), seconds > 0 ? static_cast<double>(done) / seconds : 0.0,
                  items.c_str());
  }
  return label + " [" + std::string(static_cast<size_t>(filled), '#') +
         std::string(static_cast<size_t>(kWidth - filled), '-') + "]" + numbers;
}

std::string format_stage(const std::string& who, int stage, int n_stages, const std::string& what) {
  return who + " [" + std::to_string(stage) + "/" + std::to_string(n_stages) + "] " + what;
}

bool is_terminal(std::FILE* out) { return out != nullptr && ::isatty(::fileno(out)) == 1; }

ProgressBar::ProgressBar(std::string label, uint64_t total, std::FILE* out, std::string items)
    : label_(std::move(label)),
      total_(total),
      out_(out),
      items_(std::move(items)),
      enabled_(is_terminal(out)) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(uint64_t done) {
  done_ = done;
  if (!enabled_ || finished_) return;
  const Clock::time_point now = Clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw();
}

void ProgressBar::set_label(std::string label) {
  label_ = std::move(label);
  if (!enabled_ || finished_) return;
  last_draw_ = Clock::now();
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
  std::fprintf(out_, "\r%s\033[K", format_progress(label_, done_, total_, seconds, items_).c_str());
  std::fflush(out_);
}

StageLines::StageLines(std::string who, int n_stages, std::FILE* out)
    : who_(std::move(who)), n_stages_(n_stages), out_(out), enabled_(is_terminal(out)) {}

void StageLines::begin(const std::string& what) {
  ++stage_;
  if (!enabled_) return;
  std::fprintf(out_, "%s\n", format_stage(who_, stage_, n_stages_, what).c_str());
  std::fflush(out_);
}

}  // namespace swarm
