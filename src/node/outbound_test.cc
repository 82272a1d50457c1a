// A push stream to a next hop: closing it while its first send is still
// starting the call (on another thread) must wait for the call to be bound.
// The soak benchmark's `hops` attack crashed a node so: a session's stream
// ended (closing its pushes) just as the scheduler pushed its first step.
#include "node/outbound.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "engine/test_process.h"
#include "net/channel_cache.h"
#include "node/timer.h"

namespace swarm::node {
namespace {

TEST(Outbound, ClosingWhileTheFirstSendStartsTheCallIsSafe) {
  auto timer = std::make_shared<Timer>();
  // Nobody listens there: every call fails, as the attack's did.
  auto channel = net::make_channel("127.0.0.1:1");
  std::atomic<int> failed{0};
  for (int i = 0; i < 2000; ++i) {
    auto out = Outbound::Create(
        channel, std::chrono::milliseconds(0), timer, 1 << 20,
        [&](const v1::StageRequest&, const std::string&) { ++failed; }, nullptr);
    std::atomic<bool> go{false};
    std::thread closer([&] {
      while (!go.load()) {
      }
      out->close();
    });
    v1::StageRequest r;
    r.mutable_step()->set_session_id("s");
    r.mutable_step()->set_step_id(1);
    go = true;
    out->send(r);
    closer.join();
  }
  // The process is still here, and every step failed (refused as closing, or
  // unreachable), none lost.
  EXPECT_TRUE(swarm::testing::eventually([&] { return failed.load() == 2000; }))
      << failed.load() << " of 2000 failed";
}

}  // namespace
}  // namespace swarm::node
