#include "engine/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace swarm {
namespace {

// Every item of [0, n) is handed out exactly once, in pieces that lie inside it,
// whatever the thread count and however unevenly the threads run.
TEST(ThreadPoolTest, BalancedForCoversEveryItemOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 7, 16, 100, 1000}) {
      std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
      pool.parallel_for_balanced(n, [&](int64_t b, int64_t e) {
        ASSERT_LE(0, b);
        ASSERT_LT(b, e);
        ASSERT_LE(e, n);
        for (int64_t i = b; i < e; ++i) seen[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(seen[i].load(), 1)
            << "item " << i << " of " << n << ", " << threads << " threads";
    }
  }
}

// A thread held up on its first piece does not keep its share: the piece holding
// item 0 waits until every other item is done, which only another thread taking
// the rest of that share can bring about. With fixed shares it would time out.
TEST(ThreadPoolTest, BalancedForLetsOthersTakeAStalledThreadsShare) {
  ThreadPool pool(2);
  const int64_t n = 64;
  std::atomic<int64_t> done{0};
  bool released = true;
  int64_t first_piece_end = 0;
  pool.parallel_for_balanced(n, [&](int64_t b, int64_t e) {
    if (b == 0) {
      first_piece_end = e;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (done.load() < n - e) {
        if (std::chrono::steady_clock::now() > deadline) {
          released = false;
          break;
        }
        std::this_thread::yield();
      }
    }
    done.fetch_add(e - b);
  });
  EXPECT_LT(first_piece_end, n / 2) << "a share must be handed out in pieces";
  EXPECT_TRUE(released) << done.load() << " of " << n << " items done while the first piece waited";
  EXPECT_EQ(done.load(), n);
}

}  // namespace
}  // namespace swarm
