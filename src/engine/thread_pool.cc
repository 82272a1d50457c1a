#include "engine/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SWARM_CPU_RELAX() _mm_pause()
#else
#define SWARM_CPU_RELAX() std::this_thread::yield()
#endif

namespace swarm {
namespace {
// How long a waiting thread spins before it sleeps, measured in time rather than
// iterations (pause takes a few cycles on some CPUs, a hundred on others). Waking
// a sleeping thread costs tens of microseconds (far more in a VM), and decode runs
// hundreds of short sections per token, so bridging the gaps between them pays;
// a few milliseconds is still nothing for a node that has gone idle.
constexpr auto kSpinFor = std::chrono::milliseconds(3);
// After this, spinning threads also yield, so an oversubscribed machine (tests
// running side by side) gives the core to whoever has work.
constexpr auto kYieldAfter = std::chrono::microseconds(200);

// Waits until `done()` holds: spin, then spin yielding, then (if `sleep` is given)
// sleep in it.
template <typename Done, typename Sleep>
void wait_until(Done done, Sleep sleep) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; !done(); ++i) {
    SWARM_CPU_RELAX();
    if ((i & 63) != 63) continue;
    const auto waited = std::chrono::steady_clock::now() - start;
    if (waited > kSpinFor) {
      sleep();
    } else if (waited > kYieldAfter) {
      std::this_thread::yield();
    }
  }
}
// A share [next, end) that its owner consumes from the front and other threads
// from the back, both ends in one atomic word.
class alignas(64) Share {
 public:
  void reset(int64_t begin, int64_t end) { v_.store(pack(begin, end), std::memory_order_relaxed); }
  bool take_front(int64_t grain, int64_t* c0, int64_t* c1) {
    uint64_t v = v_.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t next = lo(v), end = hi(v);
      if (next >= end) return false;
      // Pieces shrink as the share runs out, so that when another thread comes
      // to steal, the owner is not deep in a big last piece while it waits.
      const int64_t n = std::max<int64_t>(1, std::min(grain, (end - next) / 4));
      if (v_.compare_exchange_weak(v, pack(next + n, end), std::memory_order_relaxed)) {
        *c0 = next, *c1 = next + n;
        return true;
      }
    }
  }
  bool take_back(int64_t grain, int64_t* c0, int64_t* c1) {
    uint64_t v = v_.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t next = lo(v), end = hi(v);
      if (next >= end) return false;
      const int64_t n = std::min(grain, end - next);
      if (v_.compare_exchange_weak(v, pack(next, end - n), std::memory_order_relaxed)) {
        *c0 = end - n, *c1 = end;
        return true;
      }
    }
  }

 private:
  static uint64_t pack(int64_t next, int64_t end) {
    return static_cast<uint64_t>(next) | static_cast<uint64_t>(end) << 32;
  }
  static int64_t lo(uint64_t v) { return static_cast<int64_t>(v & 0xffffffffu); }
  static int64_t hi(uint64_t v) { return static_cast<int64_t>(v >> 32); }
  std::atomic<uint64_t> v_{0};
};

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::thread::hardware_concurrency());
  if (n_threads <= 0) n_threads = 1;
  n_threads_ = n_threads;
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint32_t seen = 0;
  for (;;) {
    wait_until([&] { return generation_.load(std::memory_order_acquire) != seen; },
               [&] { generation_.wait(seen, std::memory_order_acquire); });
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    (*job_)(index, n_threads_);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  fn(0, n_threads_);
  // The others are running their share: no sleeping, but yield once they are
  // clearly not running, since on a busy machine one may be waiting for this core.
  wait_until([&] { return pending_.load(std::memory_order_acquire) == 0; },
             [] { std::this_thread::yield(); });
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  run([&](int i, int nt) {
    const int64_t begin = n * i / nt;
    const int64_t end = n * (i + 1) / nt;
    if (begin < end) fn(begin, end);
  });
}

void ThreadPool::parallel_for_balanced(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (n_threads_ == 1) {
    fn(0, n);
    return;
  }
  std::vector<Share> shares(static_cast<size_t>(n_threads_));
  for (int i = 0; i < n_threads_; ++i)
    shares[i].reset(n * i / n_threads_, n * (i + 1) / n_threads_);
  const int64_t own_grain = std::max<int64_t>(1, n / (int64_t{n_threads_} * 8));
  const int64_t steal_grain = 1;
  run([&](int i, int nt) {
    int64_t b, e;
    while (shares[i].take_front(own_grain, &b, &e)) fn(b, e);
    for (int k = 1; k < nt; ++k)
      while (shares[(i + k) % nt].take_back(steal_grain, &b, &e)) fn(b, e);
  });
}

}  // namespace swarm
