// A fixed set of worker threads for data-parallel kernels. The caller's thread
// takes part as worker 0, so a pool of 1 runs everything inline.
//
// Decode runs hundreds of short parallel sections per token, so workers spin
// briefly before they sleep: a futex round trip per section would cost more
// than the work. Sections must not be started from inside a section.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace swarm {

class ThreadPool {
 public:
  // `n_threads` <= 0 means one per hardware thread.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(thread_index, n_threads) once on every thread and returns when all
  // calls have returned. Work partitioning is the caller's: it must not depend on
  // timing if results are to be reproducible.
  void run(const std::function<void(int, int)>& fn);

  // Splits [0, n) into contiguous chunks, one per thread, and calls fn(begin, end).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

  // Like parallel_for, but a thread that finishes its own share early takes pieces
  // from the back of the others' shares, so cores of unequal speed (common in VMs)
  // finish together. A thread works through its share front to back, in pieces of
  // at most n / (8 * size()) items that shrink as the share runs out; which thread
  // handles an item depends on timing.
  void parallel_for_balanced(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace swarm
