// Progress of long work on a terminal, as llama.cpp and huggingface-cli show it:
//  - ProgressBar: one line, redrawn in place with '\r' at most ten times a
//    second and ended with a newline: bytes done of the total and the rate
//    (hashing, loading, converting a model's weights), or items of a named kind
//    ("steps", "tensors");
//  - StageLines: the numbered stages of a start-up, a line each ("node [2/4]
//    choosing layers"), so a quiet wait says what it waits for.
// Both draw nothing when their stream is not a terminal, so logs, pipes and the
// outputs tests compare stay byte-identical. Updates cost a clock read; callers
// update per tensor, slab or step, never per row.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

namespace swarm {

// Where long work reports how much of it is done (bytes or items, counted from
// its start); empty when nobody shows it.
using ProgressCallback = std::function<void(uint64_t done)>;

// The bar's text for `done` of `total` after `seconds`. With `items` empty it
// counts bytes: "hashing model [########----------------]   412.0/1100.0 MB   731 MB/s";
// else items of that name: "bench run 2/3 [####--------------------]  70/195 steps  12.5 steps/s".
// Pure, for tests.
std::string format_progress(const std::string& label, uint64_t done, uint64_t total, double seconds,
                            const std::string& items = "");

// "node [2/4] choosing layers". Pure, for tests.
std::string format_stage(const std::string& who, int stage, int n_stages, const std::string& what);

// True when `out` is a terminal, where the two below draw.
bool is_terminal(std::FILE* out);

class ProgressBar {
 public:
  // `out` is drawn on only if it is a terminal; nullptr draws nothing. `items`
  // names what is counted ("steps"); empty counts bytes.
  ProgressBar(std::string label, uint64_t total, std::FILE* out = stderr, std::string items = "");
  ~ProgressBar();  // finish()
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  bool enabled() const { return enabled_; }
  // Records `done` and redraws if the last draw is 100 ms old. One thread at a
  // time calls update, set_label and finish.
  void update(uint64_t done);
  // Renames the bar ("bench run 2/3") and redraws it at once.
  void set_label(std::string label);
  // Draws the final state and ends the line; later calls do nothing.
  void finish();

 private:
  void draw();

  using Clock = std::chrono::steady_clock;
  std::string label_;
  uint64_t total_;
  std::FILE* out_;
  std::string items_;
  bool enabled_;
  bool finished_ = false;
  uint64_t done_ = 0;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_draw_{};
};

class StageLines {
 public:
  // `out` is written to only if it is a terminal; nullptr writes nothing.
  StageLines(std::string who, int n_stages, std::FILE* out = stderr);
  StageLines(const StageLines&) = delete;
  StageLines& operator=(const StageLines&) = delete;

  bool enabled() const { return enabled_; }
  // Prints the next stage's line, numbered from 1.
  void begin(const std::string& what);

 private:
  std::string who_;
  int n_stages_;
  std::FILE* out_;
  bool enabled_;
  int stage_ = 0;
};

}  // namespace swarm
