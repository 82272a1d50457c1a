// `swarm serve`, `swarm gateway`, `swarm loadgen` and `swarm chat` under bursts
// and shortage: requests short of KV memory wait in the queue and are all
// answered, a full queue is a clear 503, loadgen counts errors and goes on, a
// burst of 64 clients is served in full, and chat shows the server's message.
#include <gtest/gtest.h>
#include <httplib.h>

#include <future>
#include <latch>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/kv_cache.h"
#include "engine/model.h"
#include "swarm_harness.h"

namespace swarm::testing {
namespace {

using nlohmann::json;

class HttpServingTest : public SwarmHarness {
 protected:
  // `swarm serve` on the test model with ARGS, its log in the test's folder.
  ChildProcess* start_serve(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"serve",       "-m",           model_, "--listen",
                                     "127.0.0.1:0", "--model-name", "tiny", "-t",
                                     "1",           "-c",           "128"};
    argv.insert(argv.end(), args.begin(), args.end());
    return launch(argv, dir_ + "/serve" + std::to_string(serves_.size()) + ".err", serves_);
  }

  // KV bytes of one request of `tokens` (prompt + max_tokens) over every layer.
  uint64_t kv_bytes(int tokens) {
    auto m = Model::Load(model_);
    EXPECT_TRUE(m.ok());
    return KvCache::bytes_for((*m)->config().n_layer, (*m)->kv_dim(), tokens);
  }

  // `n` completions of an 80-token prompt (as ids) and `max_tokens` tokens,
  // sent at the same moment: each one's HTTP status and error message.
  std::vector<std::pair<int, std::string>> burst(int port, int n, int max_tokens) {
    std::vector<int32_t> prompt;
    for (int i = 0; i < 80; ++i) prompt.push_back(100 + i);
    const std::string body = json{
        {"model", "tiny"},
        {"prompt", prompt},
        {"max_tokens", max_tokens},
        {"temperature", 0},
        {"ignore_eos", true}}.dump();
    std::latch go(n);
    std::vector<std::future<std::pair<int, std::string>>> got;
    for (int i = 0; i < n; ++i)
      got.push_back(std::async(std::launch::async, [&] {
        go.arrive_and_wait();
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(120, 0);
        auto r = c.Post("/v1/completions", body, "application/json");
        if (!r) return std::make_pair(-1, httplib::to_string(r.error()));
        const json j = json::parse(r->body, nullptr, false);
        std::string message;
        if (r->status != 200 && j.is_object() && j.contains("error"))
          message = j["error"].value("message", "");
        return std::make_pair(r->status, message);
      }));
    std::vector<std::pair<int, std::string>> out;
    for (auto& f : got) out.push_back(f.get());
    return out;
  }

  std::vector<std::unique_ptr<ChildProcess>> serves_;
};

// 16 long prompts at once on a server whose KV budget holds 4 of them: all 16
// are answered (12 waited their turn) when the queue is long enough.
TEST_F(HttpServingTest, ServeQueuesRequestsShortOfKvMemoryAndAnswersThemAll) {
  ChildProcess* s = start_serve({"--kv-memory", std::to_string(4 * kv_bytes(80 + 24)),
                                 "--max-queue", "16", "--queue-timeout", "120"});
  ASSERT_TRUE(s->ok());
  for (const auto& [status, message] : burst(s->port(), 16, 24)) EXPECT_EQ(status, 200) << message;
}

// With a queue of 2, a burst larger than what runs and waits gets 503s that
// say why; the rest are answered.
TEST_F(HttpServingTest, ServeRefusesPastAFullQueueWithAClear503) {
  ChildProcess* s =
      start_serve({"--kv-memory", std::to_string(2 * kv_bytes(80 + 40)), "--max-queue", "2"});
  ASSERT_TRUE(s->ok());
  int ok = 0, refused = 0;
  for (const auto& [status, message] : burst(s->port(), 16, 40)) {
    if (status == 200) {
      ++ok;
      continue;
    }
    ++refused;
    EXPECT_EQ(status, 503) << message;
    EXPECT_NE(message.find("--max-queue 2"), std::string::npos) << message;
  }
  EXPECT_GE(ok, 4);  // two ran at once and two waited, at the least
  EXPECT_GE(refused, 1);
}

// loadgen counts the errors by kind and goes on; its JSON says so.
TEST_F(HttpServingTest, LoadgenCountsErrorsAndGoesOn) {
  ChildProcess* s = start_serve({"--parallel", "1", "--max-queue", "0"});
  ASSERT_TRUE(s->ok());
  const auto r = run_swarm("loadgen --url http://127.0.0.1:" + std::to_string(s->port()) +
                           " -c 8 -r 24 -n 32 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const json j = json::parse(r.out.substr(r.out.find('{')), nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["succeeded"].get<int>() + j["errors"].get<int>(), 24) << r.out;
  EXPECT_GE(j["succeeded"].get<int>(), 1) << r.out;
  EXPECT_GE(j["errors"].get<int>(), 1) << r.out;
  EXPECT_EQ(j["error_kinds"]["http_503"].get<int>(), j["errors"].get<int>()) << r.out;
  EXPECT_NE(j["first_error"].get<std::string>().find("--max-queue 0"), std::string::npos) << r.out;
}

// 64 clients connecting at once are all served, on serve and on a gateway.
TEST_F(HttpServingTest, LoadgenBurstsOfSixtyFourSucceedOnServeAndGateway) {
  ChildProcess* s = start_serve({});
  ASSERT_TRUE(s->ok());
  ASSERT_TRUE(start_chain({{0, 4}}));  // the test model has 4 layers
  for (int port : {s->port(), gateway()->port()}) {
    const auto r = run_swarm("loadgen --url http://127.0.0.1:" + std::to_string(port) +
                             " --model tiny -c 64 -n 2 --json");
    ASSERT_EQ(r.code, 0) << r.out;
    const json j = json::parse(r.out.substr(r.out.find('{')), nullptr, false);
    ASSERT_TRUE(j.is_object()) << r.out;
    EXPECT_EQ(j["succeeded"], 64) << r.out;
    EXPECT_EQ(j["errors"], 0) << r.out;
  }
}

// A gateway over a node whose KV budget holds 2 sessions: 8 requests at once
// all get their answer, the others waiting for room. A gateway that may not
// wait gets the node's refusals, as 503s that say so.
TEST_F(HttpServingTest, GatewayWaitsForKvMemoryOnAFullNode) {
  ASSERT_TRUE(start_chain({{0, 4}}, {"-c", "128", "--queue-timeout", "120"},
                          {"--kv-memory", std::to_string(2 * kv_bytes(80 + 24))}));
  for (const auto& [status, message] : burst(gateway()->port(), 8, 24))
    EXPECT_EQ(status, 200) << message;

  ChildProcess* impatient =
      start_gateway({"--peers", nodes_[0]->address(), "-c", "128", "--queue-timeout", "0.001"});
  ASSERT_TRUE(impatient->ok());
  int refused = 0;
  for (const auto& [status, message] : burst(impatient->port(), 8, 24)) {
    if (status == 200) continue;
    ++refused;
    EXPECT_EQ(status, 503) << message;
    EXPECT_NE(message.find("--queue-timeout"), std::string::npos) << message;
    EXPECT_NE(message.find("KV memory"), std::string::npos) << message;
  }
  EXPECT_GE(refused, 1);
}

// chat prints what the server said, not a status code's name.
TEST_F(HttpServingTest, ChatPrintsTheServersErrorMessage) {
  ChildProcess* s = start_serve({"--strict-model-name"});
  ASSERT_TRUE(s->ok());
  const auto r = run_swarm("chat --url http://127.0.0.1:" + std::to_string(s->port()) +
                           " --model no-such-model hello");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("The model `no-such-model` does not exist"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("invalid argument"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace swarm::testing
