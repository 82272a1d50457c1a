#include "engine/thread_pool.h"

#include <chrono>

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
  wait_until([&] { return pending_.load(std::memory_order_acquire) == 0; }, [] { std::this_thread::yield(); });
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  run([&](int i, int nt) {
    const int64_t begin = n * i / nt;
    const int64_t end = n * (i + 1) / nt;
    if (begin < end) fn(begin, end);
  });
}

}  // namespace swarm
