// The stage server end to end: real `swarm node` processes on 127.0.0.1, real
// gRPC, compared token for token with the engine run in this process.
#include <fcntl.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <limits>
#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/model.h"
#include "engine/model_loader.h"
#include "engine/sampler.h"
#include "engine/clock.h"
#include "engine/test_data.h"
#include "node/stage_server.h"
#include "engine/test_process.h"
#include "net/bound_channel.h"
#include "net/channel_cache.h"
#include "net/identity.h"
#include "net/model_id.h"
#include "net/tensor_codec.h"
#include "net/test_identity.h"
#include "net/tls.h"
#include "swarm/v1/stage.grpc.pb.h"

namespace swarm::node {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using v1::StageRequest;
using v1::StageResponse;

std::string model_path() {
  return swarm::testing::find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
}

using swarm::testing::eventually;

// A `swarm node` child process serving the test model; killed when this goes away.
class NodeProcess : public swarm::testing::ChildProcess {
 public:
  // `stderr_path`: where its log goes (empty: this process's stderr).
  explicit NodeProcess(std::vector<std::string> extra, const std::string& stderr_path = "")
      : ChildProcess(with_model(std::move(extra)), stderr_path) {}

 private:
  static std::vector<std::string> with_model(std::vector<std::string> extra) {
    std::vector<std::string> args = {"node",        "-m", model_path(), "--listen",
                                     "127.0.0.1:0", "-t", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
};

grpc::Status try_info(const std::string& address, v1::InfoResponse* r,
                      const std::string& pin = "") {
  auto stub = v1::Stage::NewStub(net::make_channel(address, pin));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  return stub->Info(&ctx, v1::InfoRequest(), r);
}

v1::InfoResponse info(const std::string& address, const std::string& pin = "") {
  v1::InfoResponse r;
  const grpc::Status st = try_info(address, &r, pin);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return r;
}

// A Stage stub whose transport takes in only a little more than its caller
// reads (no window growth from bandwidth probes, 4 KiB a stream), as a client
// withholding HTTP/2 window updates would: the node's writes to it wait.
std::unique_ptr<v1::Stage::Stub> stub_taking_no_answers(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 4096);
  return v1::Stage::NewStub(
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
}

// A Session stream whose responses are read by a thread into a queue, so a
// test waits for them with a time limit.
class Stream {
 public:
  // `pin`: empty for a plaintext node, else the key or node id it must hold.
  explicit Stream(const std::string& address, const std::string& pin = "")
      : Stream(net::make_channel(address, pin)) {}
  explicit Stream(const std::shared_ptr<grpc::Channel>& channel)
      : stub_(v1::Stage::NewStub(channel)) {
    stream_ = stub_->Session(&ctx_);
    reader_ = std::thread([this] {
      StageResponse r;
      while (stream_->Read(&r)) {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back(r);
        cv_.notify_all();
      }
      std::lock_guard<std::mutex> lock(mu_);
      ended_ = true;
      cv_.notify_all();
    });
  }
  ~Stream() { finish(); }

  bool send(const StageRequest& r) { return stream_->Write(r); }

  std::optional<StageResponse> next(std::chrono::milliseconds limit = 30s) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, limit, [&] { return !queue_.empty() || ended_; }) || queue_.empty())
      return std::nullopt;
    StageResponse r = std::move(queue_.front());
    queue_.pop_front();
    return r;
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    stream_->WritesDone();
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_for(lock, 10s, [&] { return ended_; })) ctx_.TryCancel();
    }
    reader_.join();
    stream_->Finish();
  }

 private:
  std::unique_ptr<v1::Stage::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<StageRequest, StageResponse>> stream_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StageResponse> queue_;
  bool ended_ = false;
  bool finished_ = false;
};

StageRequest open_req(const std::string& id, const std::string& model_id, int first, int last,
                      int n_layer, int max_length = 64) {
  StageRequest r;
  v1::OpenSession* o = r.mutable_open();
  o->set_session_id(id);
  o->set_model_id(model_id);
  o->set_first_layer(first);
  o->set_last_layer(last);
  o->set_max_length(max_length);
  o->set_is_first(first == 0);
  o->set_is_last(last == n_layer);
  o->mutable_sampling()->set_temperature(0);  // greedy
  return r;
}

StageRequest step_req(const std::string& id, uint64_t step_id, const std::vector<int32_t>& tokens,
                      int position) {
  StageRequest r;
  v1::Step* s = r.mutable_step();
  s->set_session_id(id);
  s->set_step_id(step_id);
  s->mutable_tokens()->Add(tokens.begin(), tokens.end());
  s->set_position(position);
  return r;
}

StageRequest close_req(const std::string& id) {
  StageRequest r;
  r.mutable_close()->set_session_id(id);
  return r;
}

class NodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_FALSE(model_path().empty()) << "tiny-llama Q8_0 not found";
    auto m = Model::Load(model_path());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(m).value().release();
    auto id = net::model_content_id(model_->source());
    ASSERT_TRUE(id.ok());
    model_id_ = new std::string(*id);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete model_id_;
  }

  static const Model& model() { return *model_; }
  static const std::string& model_id() { return *model_id_; }
  static int n_layer() { return model_->config().n_layer; }

  // The single-process ground truth: the prompt, then greedy tokens.
  static std::vector<int32_t> reference(const std::vector<int32_t>& prompt, int n) {
    ThreadPool pool(1);
    auto cache = model().new_cache(std::max<int>(256, static_cast<int>(prompt.size()) + n));
    SamplingParams p;
    p.temperature = 0;
    Sampler sampler(p, model().config().n_vocab);
    for (int32_t t : prompt) sampler.accept(t);
    auto logits = model().forward(prompt, *cache, pool);
    EXPECT_TRUE(logits.ok());
    std::vector<int32_t> out;
    const int V = model().config().n_vocab;
    std::vector<float> last(logits->end() - V, logits->end());
    for (int i = 0; i < n; ++i) {
      const int32_t id = sampler.sample(last.data(), static_cast<int>(prompt.size()) + i);
      out.push_back(id);
      sampler.accept(id);
      auto next = model().forward({id}, *cache, pool);
      EXPECT_TRUE(next.ok());
      last = std::move(next).value();
    }
    return out;
  }

  static std::vector<int32_t> prompt(int seed, int len) {
    std::vector<int32_t> p;
    const int V = model().config().n_vocab;
    for (int i = 0; i < len; ++i) p.push_back((seed * 131 + i * 17 + 3) % V);
    return p;
  }

  // Opens `id` on every stage (each on its own owner stream) and expects Opened.
  void open_chain(std::vector<std::unique_ptr<Stream>>& streams,
                  const std::vector<std::pair<int, int>>& ranges, const std::string& id) {
    for (size_t i = 0; i < ranges.size(); ++i) {
      ASSERT_TRUE(
          streams[i]->send(open_req(id, model_id(), ranges[i].first, ranges[i].second, n_layer())));
      auto r = streams[i]->next();
      ASSERT_TRUE(r.has_value());
      ASSERT_EQ(r->kind_case(), StageResponse::kOpened) << r->DebugString();
      EXPECT_EQ(r->opened().session_id(), id);
    }
  }

  static inline Model* model_ = nullptr;
  static inline std::string* model_id_ = nullptr;
};

// Greedy generation through a chain of stages; in push mode the first stage
// forwards to the next ones itself, in relay mode the test carries the hidden
// states from stage to stage.
std::vector<int32_t> generate(const std::vector<std::unique_ptr<NodeProcess>>& nodes,
                              const std::vector<std::unique_ptr<Stream>>& streams,
                              const std::vector<std::pair<int, int>>& ranges, const std::string& id,
                              std::vector<int32_t> tokens, int n, bool push,
                              const std::vector<std::string>& hop_keys = {}) {
  std::vector<int32_t> out;
  int position = 0;
  for (int i = 0; i < n; ++i) {
    const uint64_t step_id = 100 + i;
    StageRequest req = step_req(id, step_id, tokens, position);
    std::optional<StageResponse> r;
    if (push) {
      for (size_t k = 1; k < nodes.size(); ++k) {
        v1::Hop* h = req.mutable_step()->add_next_hops();
        h->set_address(nodes[k]->address());
        h->set_first_layer(ranges[k].first);
        h->set_last_layer(ranges[k].second);
        if (k < hop_keys.size()) h->set_public_key(hop_keys[k]);
      }
      EXPECT_TRUE(streams[0]->send(req));
      r = streams.back()->next();
      if (!r || r->kind_case() != StageResponse::kResult) {
        ADD_FAILURE() << "no result: " << (r ? r->DebugString() : "timeout");
        return out;
      }
      EXPECT_EQ(r->result().timings_size(), static_cast<int>(nodes.size()));
      for (size_t k = 0; k < nodes.size() && static_cast<int>(k) < r->result().timings_size(); ++k)
        EXPECT_EQ(r->result().timings(k).address(), nodes[k]->address());
    } else {
      for (size_t k = 0; k < nodes.size(); ++k) {
        EXPECT_TRUE(streams[k]->send(req));
        r = streams[k]->next();
        if (!r || r->kind_case() != StageResponse::kResult) {
          ADD_FAILURE() << "stage " << k << ": " << (r ? r->DebugString() : "timeout");
          return out;
        }
        EXPECT_EQ(r->result().step_id(), step_id);
        if (k + 1 < nodes.size()) {
          EXPECT_TRUE(r->result().tokens().empty());
          *req.mutable_step()->mutable_hidden() = r->result().hidden();
          *req.mutable_step()->mutable_timings() = r->result().timings();
        }
      }
      EXPECT_EQ(r->result().timings_size(), static_cast<int>(nodes.size()));
    }
    const v1::StepResult& res = r->result();
    EXPECT_EQ(res.step_id(), step_id);
    EXPECT_EQ(res.length(), position + static_cast<int>(tokens.size()));
    if (res.tokens_size() != 1) {
      ADD_FAILURE() << res.DebugString();
      return out;
    }
    out.push_back(res.tokens(0));
    position += static_cast<int>(tokens.size());
    tokens = {res.tokens(0)};
  }
  return out;
}

std::vector<std::unique_ptr<NodeProcess>> start_nodes(
    const std::vector<std::pair<int, int>>& ranges, std::vector<std::string> extra = {},
    const std::string& stderr_path = "") {
  std::vector<std::unique_ptr<NodeProcess>> nodes;
  for (auto [a, b] : ranges) {
    std::vector<std::string> args = {"--layers", std::to_string(a) + ":" + std::to_string(b)};
    args.insert(args.end(), extra.begin(), extra.end());
    nodes.push_back(std::make_unique<NodeProcess>(args, stderr_path));
    EXPECT_TRUE(nodes.back()->ok()) << "node " << a << ":" << b << " did not start";
  }
  return nodes;
}

std::vector<std::unique_ptr<Stream>> connect(
    const std::vector<std::unique_ptr<NodeProcess>>& nodes) {
  std::vector<std::unique_ptr<Stream>> s;
  for (auto& n : nodes) s.push_back(std::make_unique<Stream>(n->address()));
  return s;
}

TEST_F(NodeTest, OneStageGreedyEqualsSingleProcess) {
  const std::vector<std::pair<int, int>> ranges = {{0, n_layer()}};
  auto nodes = start_nodes(ranges);
  ASSERT_TRUE(nodes[0]->ok());
  const v1::InfoResponse inf = info(nodes[0]->address());
  EXPECT_EQ(inf.version(), "swarm.v1");
  EXPECT_EQ(inf.model_id(), model_id());
  EXPECT_EQ(inf.n_layer(), n_layer());
  EXPECT_EQ(inf.d_model(), model().config().n_embd);
  auto streams = connect(nodes);
  open_chain(streams, ranges, "one");
  const auto p = prompt(1, 7);
  EXPECT_EQ(generate(nodes, streams, ranges, "one", p, 16, /*push=*/false), reference(p, 16));
  EXPECT_GT(info(nodes[0]->address()).layer_tokens_per_second(), 0);
}

TEST_F(NodeTest, ThreeUnevenStagesPushAndRelayEqualSingleProcess) {
  const std::vector<std::pair<int, int>> ranges = {{0, 1}, {1, 3}, {3, n_layer()}};
  auto nodes = start_nodes(ranges);
  for (auto& n : nodes) ASSERT_TRUE(n->ok());
  auto streams = connect(nodes);
  const auto p = prompt(2, 9);
  const auto want = reference(p, 16);
  open_chain(streams, ranges, "push");
  EXPECT_EQ(generate(nodes, streams, ranges, "push", p, 16, /*push=*/true), want);
  open_chain(streams, ranges, "relay");
  EXPECT_EQ(generate(nodes, streams, ranges, "relay", p, 16, /*push=*/false), want);
  for (auto& s : streams) EXPECT_TRUE(s->send(close_req("push")) && s->send(close_req("relay")));
  for (auto& n : nodes)
    EXPECT_TRUE(eventually([&] { return info(n->address()).active_sessions() == 0; }));
}

TEST_F(NodeTest, RewindAndTruncateRollBackTheCache) {
  const std::vector<std::pair<int, int>> ranges = {{0, 2}, {2, n_layer()}};
  auto nodes = start_nodes(ranges);
  for (auto& n : nodes) ASSERT_TRUE(n->ok());
  auto streams = connect(nodes);
  const auto p = prompt(3, 5);
  const int P = static_cast<int>(p.size());
  const auto want = reference(p, 4);
  const std::vector<int32_t> wrong = {(want[0] + 1) % model().config().n_vocab};
  auto expect_token = [&](Stream& s, int32_t token, int length) {
    auto r = s.next();
    ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult)
        << (r ? r->DebugString() : "timeout");
    EXPECT_EQ(r->result().tokens(0), token);
    EXPECT_EQ(r->result().length(), length);
  };

  // Push mode: run the prompt and a wrong token, then a step that rewinds to
  // the prompt's end; the rewind travels with the step through both stages.
  open_chain(streams, ranges, "push");
  ASSERT_EQ(generate(nodes, streams, ranges, "push", p, 1, true), std::vector<int32_t>{want[0]});
  v1::Hop hop;
  hop.set_address(nodes[1]->address());
  StageRequest bad = step_req("push", 7, wrong, P);
  *bad.mutable_step()->add_next_hops() = hop;
  ASSERT_TRUE(streams[0]->send(bad));
  ASSERT_TRUE(streams[1]->next().has_value());
  StageRequest good = step_req("push", 8, {want[0]}, P);
  good.mutable_step()->set_rewind(true);
  *good.mutable_step()->add_next_hops() = hop;
  ASSERT_TRUE(streams[0]->send(good));
  expect_token(*streams[1], want[1], P + 1);

  // Relay mode: Truncate on each owner stream is ordered with the steps sent
  // after it on the same stream.
  open_chain(streams, ranges, "relay");
  ASSERT_EQ(generate(nodes, streams, ranges, "relay", p, 1, false), std::vector<int32_t>{want[0]});
  auto relay = [&](StageRequest req) {
    ASSERT_TRUE(streams[0]->send(req));
    auto r = streams[0]->next();
    ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult)
        << (r ? r->DebugString() : "timeout");
    *req.mutable_step()->mutable_hidden() = r->result().hidden();
    ASSERT_TRUE(streams[1]->send(req));
  };
  relay(step_req("relay", 7, wrong, P));
  ASSERT_TRUE(streams[1]->next().has_value());
  for (auto& s : streams) {
    StageRequest t;
    t.mutable_truncate()->set_session_id("relay");
    t.mutable_truncate()->set_length(P);
    ASSERT_TRUE(s->send(t));
  }
  relay(step_req("relay", 8, {want[0]}, P));
  expect_token(*streams[1], want[1], P + 1);
  // Truncating past the end is an error to the owner.
  StageRequest t;
  t.mutable_truncate()->set_session_id("relay");
  t.mutable_truncate()->set_length(100);
  ASSERT_TRUE(streams[1]->send(t));
  auto r = streams[1]->next();
  ASSERT_TRUE(r && r->kind_case() == StageResponse::kError);
  EXPECT_EQ(r->error().code(), grpc::StatusCode::OUT_OF_RANGE);
}

// A rollback restores the last stage's sampler too (history and RNG), so a
// replayed step samples what the first run did, and sample_all over drafted
// tokens samples what step-by-step decoding would.
TEST_F(NodeTest, RewindReplaysTheSamplerExactly) {
  auto nodes = start_nodes({{0, n_layer()}});
  ASSERT_TRUE(nodes[0]->ok());
  Stream s(nodes[0]->address());
  StageRequest o = open_req("r", model_id(), 0, n_layer(), n_layer());
  v1::SamplingConfig* sc = o.mutable_open()->mutable_sampling();
  sc->set_temperature(1.5f);
  sc->set_seed(7);
  sc->set_repeat_penalty(1.3f);
  sc->set_repeat_last_n(64);
  ASSERT_TRUE(s.send(o));
  ASSERT_EQ(s.next()->kind_case(), StageResponse::kOpened);
  auto run = [&](std::vector<int32_t> tokens, int position, bool rewind, bool all) {
    StageRequest r = step_req("r", 1, tokens, position);
    r.mutable_step()->set_rewind(rewind);
    r.mutable_step()->set_sample_all(all);
    EXPECT_TRUE(s.send(r));
    auto resp = s.next();
    EXPECT_TRUE(resp && resp->kind_case() == StageResponse::kResult)
        << (resp ? resp->DebugString() : "timeout");
    return resp ? std::vector<int32_t>(resp->result().tokens().begin(),
                                       resp->result().tokens().end())
                : std::vector<int32_t>{};
  };
  const auto p = prompt(4, 6);
  const int P = static_cast<int>(p.size());
  std::vector<int32_t> y = run(p, 0, false, false);
  ASSERT_EQ(y.size(), 1u);
  for (int i = 0; i < 4; ++i) y.push_back(run({y.back()}, P + i, false, false).at(0));
  // Replay from the prompt's end, one token at a time.
  std::vector<int32_t> again = {y[0]};
  for (int i = 0; i < 4; ++i) again.push_back(run({again.back()}, P + i, i == 0, false).at(0));
  EXPECT_EQ(again, y);
  // Verify y[0..3] as drafts in one step: position j samples y[j + 1].
  EXPECT_EQ(run({y[0], y[1], y[2], y[3]}, P, true, true),
            std::vector<int32_t>(y.begin() + 1, y.end()));
  // Accept two of them and continue from there, as if the rest never ran.
  EXPECT_EQ(run({y[2]}, P + 2, true, false), std::vector<int32_t>{y[3]});
}

// --link-delay-ms delays what the node sends, not what it computes: every
// answer leaves at least the delay after its request arrived.
TEST_F(NodeTest, LinkDelayDelaysEveryMessage) {
  const std::vector<std::pair<int, int>> ranges = {{0, 2}, {2, n_layer()}};
  auto nodes = start_nodes(ranges, {"--link-delay-ms", "40"});
  for (auto& n : nodes) ASSERT_TRUE(n->ok());
  auto streams = connect(nodes);
  auto t0 = Clock::now();
  open_chain(streams, ranges, "slow");
  EXPECT_GE(Clock::now() - t0, 80ms);  // two Opens, one after the other
  const auto p = prompt(6, 3);
  t0 = Clock::now();
  EXPECT_EQ(generate(nodes, streams, ranges, "slow", p, 2, /*push=*/true), reference(p, 2));
  EXPECT_GE(Clock::now() - t0, 160ms);  // each step: a push and a result
}

// Expects the next response on `s` to be an Error with `code` whose message
// contains `text`.
#define expect_error(s, code, text) \
  do {                                  \
    SCOPED_TRACE(text);                 \
    expect_error_impl(s, code, text);   \
  } while (0)
void expect_error_impl(Stream& s, grpc::StatusCode code, const std::string& text) {
  auto r = s.next();
  ASSERT_TRUE(r.has_value()) << "no answer";
  ASSERT_EQ(r->kind_case(), StageResponse::kError) << r->DebugString();
  EXPECT_EQ(r->error().code(), code) << r->error().message();
  EXPECT_NE(r->error().message().find(text), std::string::npos) << r->error().message();
}

TEST_F(NodeTest, RefusesBadOpens) {
  const std::vector<std::pair<int, int>> ranges = {{1, 3}};
  const uint64_t per_session = KvCache::bytes_for(2, model().kv_dim(), 64);
  auto nodes = start_nodes(ranges, {"--kv-memory", std::to_string(per_session * 3 / 2)});
  ASSERT_TRUE(nodes[0]->ok());
  Stream s(nodes[0]->address());
  const int L = n_layer();
  ASSERT_TRUE(s.send(open_req("a", std::string(64, '0'), 1, 3, L)));
  expect_error(s, grpc::StatusCode::FAILED_PRECONDITION, "model_id");
  ASSERT_TRUE(s.send(open_req("a", model_id(), 0, 3, L)));
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "0:3");
  ASSERT_TRUE(s.send(open_req("a", model_id(), 1, 4, L)));
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "1:3");
  StageRequest first = open_req("a", model_id(), 1, 3, L);
  first.mutable_open()->set_is_first(true);
  ASSERT_TRUE(s.send(first));
  expect_error(s, grpc::StatusCode::FAILED_PRECONDITION, "is_first");
  StageRequest last = open_req("a", model_id(), 1, 3, L);
  last.mutable_open()->set_is_last(true);
  ASSERT_TRUE(s.send(last));
  expect_error(s, grpc::StatusCode::FAILED_PRECONDITION, "is_last");
  ASSERT_TRUE(s.send(open_req("a", model_id(), 1, 3, L)));
  ASSERT_EQ(s.next()->kind_case(), StageResponse::kOpened);
  ASSERT_TRUE(s.send(open_req("a", model_id(), 1, 3, L)));
  expect_error(s, grpc::StatusCode::ALREADY_EXISTS, "already open");
  // The budget holds one session of 64 positions, not two.
  ASSERT_TRUE(s.send(open_req("b", model_id(), 1, 3, L)));
  expect_error(s, grpc::StatusCode::RESOURCE_EXHAUSTED,
               "KV memory: need " + std::to_string(per_session) + " bytes");
  EXPECT_EQ(info(nodes[0]->address()).kv_bytes_free(),
            static_cast<int64_t>(per_session * 3 / 2 - per_session));
  ASSERT_TRUE(s.send(close_req("a")));
  ASSERT_TRUE(s.send(open_req("b", model_id(), 1, 3, L)));
  auto r = s.next();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind_case(), StageResponse::kOpened) << r->DebugString();
  // Another stream may not close what it does not own.
  Stream other(nodes[0]->address());
  ASSERT_TRUE(other.send(close_req("b")));
  expect_error(other, grpc::StatusCode::PERMISSION_DENIED, "only the stream");
  EXPECT_EQ(info(nodes[0]->address()).active_sessions(), 1);
}

TEST_F(NodeTest, MalformedStepsAreErrorsAndTheNodeKeepsServing) {
  const std::vector<std::pair<int, int>> ranges = {{1, 3}};
  auto nodes = start_nodes(ranges);
  ASSERT_TRUE(nodes[0]->ok());
  Stream s(nodes[0]->address());
  const int d = model().config().n_embd;
  ASSERT_TRUE(s.send(step_req("nobody", 1, {1}, 0)));  // a step before any open
  expect_error(s, grpc::StatusCode::NOT_FOUND, "unknown session");
  ASSERT_TRUE(s.send(open_req("m", model_id(), 1, 3, n_layer())));
  ASSERT_EQ(s.next()->kind_case(), StageResponse::kOpened);

  auto with_hidden = [&](int64_t rows, int64_t cols, size_t bytes, int position) {
    StageRequest r = step_req("m", 5, {1, 2}, position);
    v1::Tensor* t = r.mutable_step()->mutable_hidden();
    t->set_dtype(v1::Tensor::F32);
    t->add_shape(rows);
    t->add_shape(cols);
    t->mutable_data()->assign(bytes, '\0');
    return r;
  };
  ASSERT_TRUE(s.send(step_req("m", 2, {1, 2}, 0)));  // no hidden at a middle stage
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "Step.hidden: missing");
  ASSERT_TRUE(s.send(with_hidden(2, d + 1, 2 * (d + 1) * 4, 0)));
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "shape");
  ASSERT_TRUE(s.send(with_hidden(3, d, 3 * d * 4, 0)));  // 3 rows for 2 tokens
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "shape");
  ASSERT_TRUE(s.send(with_hidden(2, d, 2 * d * 4 - 1, 0)));
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "bytes of data");
  ASSERT_TRUE(s.send(with_hidden(int64_t{1} << 40, d, 8, 0)));
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "shape");
  ASSERT_TRUE(s.send(with_hidden(2, d, 2 * d * 4, 5)));  // the cache is empty
  expect_error(s, grpc::StatusCode::FAILED_PRECONDITION, "Step.position");
  ASSERT_TRUE(s.send(with_hidden(2, d, 2 * d * 4, 1000)));
  expect_error(s, grpc::StatusCode::OUT_OF_RANGE, "max_length");
  StageRequest bad_token = with_hidden(2, d, 2 * d * 4, 0);
  bad_token.mutable_step()->set_tokens(1, -7);
  ASSERT_TRUE(s.send(bad_token));
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "Step.tokens[1]");
  ASSERT_TRUE(s.send(StageRequest()));
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "no message kind");
  // A next hop that does not listen.
  StageRequest unreachable = with_hidden(2, d, 2 * d * 4, 0);
  unreachable.mutable_step()->add_next_hops()->set_address("127.0.0.1:1");
  ASSERT_TRUE(s.send(unreachable));
  expect_error(s, grpc::StatusCode::UNAVAILABLE, "127.0.0.1:1");

  // Bytes that are no StageRequest at all, through the generic stub.
  {
    grpc::GenericStub generic(net::make_channel(nodes[0]->address()));
    grpc::ClientContext ctx;
    grpc::CompletionQueue cq;
    auto call = generic.PrepareCall(&ctx, "/swarm.v1.Stage/Session", &cq);
    void* tag = nullptr;
    bool ok = false;
    call->StartCall(reinterpret_cast<void*>(1));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    const std::string garbage = "\xff\xff\xff\xff\x0f garbage \x08";
    grpc::Slice slice(garbage);
    grpc::ByteBuffer out(&slice, 1);
    call->Write(out, reinterpret_cast<void*>(2));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    grpc::ByteBuffer in;
    call->Read(&in, reinterpret_cast<void*>(3));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(in.Dump(&slices).ok());
    std::string bytes;
    for (auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    StageResponse resp;
    ASSERT_TRUE(resp.ParseFromString(bytes));
    ASSERT_EQ(resp.kind_case(), StageResponse::kError);
    EXPECT_EQ(resp.error().code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(resp.error().message().find("malformed"), std::string::npos);
    call->WritesDone(reinterpret_cast<void*>(4));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    grpc::Status st;
    call->Finish(&st, reinterpret_cast<void*>(5));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
  }
  // Still serving: Info answers and a well-formed step runs.
  const v1::InfoResponse inf = info(nodes[0]->address());
  EXPECT_EQ(inf.active_sessions(), 1);
  std::vector<float> h(2 * d, 0.5f);
  StageRequest good = with_hidden(2, d, 0, 2);  // the unreachable hop's step ran here
  good.mutable_step()->mutable_hidden()->mutable_data()->assign(
      reinterpret_cast<const char*>(h.data()), h.size() * 4);
  ASSERT_TRUE(s.send(good));
  auto r = s.next();
  ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult) << (r ? r->DebugString() : "timeout");
  EXPECT_EQ(r->result().length(), 4);
  EXPECT_EQ(r->result().hidden().shape(0), 2);
}

TEST_F(NodeTest, EightConcurrentSessionsBatchAndMatch) {
  const std::vector<std::pair<int, int>> ranges = {{0, 2}, {2, n_layer()}};
  auto nodes = start_nodes(ranges);
  for (auto& n : nodes) ASSERT_TRUE(n->ok());
  auto streams = connect(nodes);  // one owner stream per node carries all sessions
  constexpr int kSessions = 8, kTokens = 12;
  std::vector<std::vector<int32_t>> prompts, want, got(kSessions);
  for (int i = 0; i < kSessions; ++i) {
    prompts.push_back(prompt(10 + i, 3 + i));
    want.push_back(reference(prompts[i], kTokens));
    open_chain(streams, ranges, "s" + std::to_string(i));
  }
  std::vector<int> position(kSessions, 0);
  std::vector<std::vector<int32_t>> next = prompts;
  int max_batch = 0;
  for (int t = 0; t < kTokens; ++t) {
    for (int i = 0; i < kSessions; ++i) {
      StageRequest r = step_req("s" + std::to_string(i), t, next[i], position[i]);
      auto* h = r.mutable_step()->add_next_hops();
      h->set_address(nodes[1]->address());
      ASSERT_TRUE(streams[0]->send(r));
    }
    for (int k = 0; k < kSessions; ++k) {
      auto r = streams[1]->next();
      ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult)
          << (r ? r->DebugString() : "timeout");
      const int i = std::stoi(r->result().session_id().substr(1));
      ASSERT_EQ(r->result().tokens_size(), 1);
      position[i] += static_cast<int>(next[i].size());
      next[i] = {r->result().tokens(0)};
      got[i].push_back(r->result().tokens(0));
      for (const auto& tm : r->result().timings())
        max_batch = std::max(max_batch, tm.batch_tokens());
    }
  }
  for (int i = 0; i < kSessions; ++i) EXPECT_EQ(got[i], want[i]) << "session " << i;
  EXPECT_GT(max_batch, 1) << "no two steps ever shared a batch";
  // The owner's stream ending closes all its sessions.
  streams[0]->finish();
  EXPECT_TRUE(eventually([&] { return info(nodes[0]->address()).active_sessions() == 0; }));
}

// A key file for a node of this test (0600, in the test's temp folder), made
// from a fixed seed so every run gets the same identities.
struct TestIdentity {
  std::string path;
  net::PublicKey key;
  std::string node_id;
  std::string key_bytes() const { return std::string(key.begin(), key.end()); }
  std::string pin() const { return net::KeyPin::Of(key).hex(); }
};

TestIdentity make_identity(uint8_t fill, const std::string& name) {
  const net::Identity id = net::identity_from(fill);
  TestIdentity t;
  t.path = ::testing::TempDir() + "/node_test_" + std::to_string(::getpid()) + "_" + name + ".key";
  std::remove(t.path.c_str());
  EXPECT_TRUE(id.Save(t.path).ok());
  t.key = id.public_key();
  t.node_id = id.node_id();
  return t;
}

// Two nodes with identities: the test reaches each over TLS pinned to its key,
// stage A pushes to stage B pinned to B's key (output equal to one process), and
// a hop pinned to a third key fails that step with an error naming the hop,
// while both nodes keep serving. A plaintext client gets nothing from them.
TEST_F(NodeTest, PinnedPushesWorkAndAHopPinnedToAnotherKeyFailsTheStep) {
  const TestIdentity a = make_identity(11, "a"), b = make_identity(12, "b"),
                     c = make_identity(13, "c");
  const std::vector<std::pair<int, int>> ranges = {{0, 2}, {2, n_layer()}};
  std::vector<std::unique_ptr<NodeProcess>> nodes;
  nodes.push_back(std::make_unique<NodeProcess>(
      std::vector<std::string>{"--layers", "0:2", "--identity", a.path}));
  nodes.push_back(std::make_unique<NodeProcess>(std::vector<std::string>{
      "--layers", "2:" + std::to_string(n_layer()), "--identity", b.path}));
  for (auto& n : nodes) ASSERT_TRUE(n->ok());

  const v1::InfoResponse ia = info(nodes[0]->address(), a.pin());
  EXPECT_EQ(ia.public_key(), a.key_bytes());
  EXPECT_EQ(ia.node_id(), a.node_id);
  EXPECT_EQ(info(nodes[1]->address(), b.node_id).node_id(), b.node_id);  // a node id pins too

  v1::InfoResponse r;
  EXPECT_FALSE(try_info(nodes[0]->address(), &r).ok()) << "plaintext reached a TLS node";
  EXPECT_FALSE(try_info(nodes[0]->address(), &r, b.pin()).ok()) << "A answered a pin to B";

  std::vector<std::unique_ptr<Stream>> streams;
  streams.push_back(std::make_unique<Stream>(nodes[0]->address(), a.pin()));
  streams.push_back(std::make_unique<Stream>(nodes[1]->address(), b.pin()));
  const auto p = prompt(3, 7);
  open_chain(streams, ranges, "pinned");
  EXPECT_EQ(generate(nodes, streams, ranges, "pinned", p, 8, /*push=*/true, {"", b.key_bytes()}),
            reference(p, 8));

  open_chain(streams, ranges, "wrong-hop");
  StageRequest req = step_req("wrong-hop", 7, p, 0);
  v1::Hop* hop = req.mutable_step()->add_next_hops();
  hop->set_address(nodes[1]->address());
  hop->set_first_layer(2);
  hop->set_last_layer(n_layer());
  hop->set_public_key(c.key_bytes());  // B is there, but the step wants C
  ASSERT_TRUE(streams[0]->send(req));
  auto err = streams[0]->next();
  ASSERT_TRUE(err.has_value());
  ASSERT_EQ(err->kind_case(), StageResponse::kError) << err->DebugString();
  EXPECT_EQ(err->error().code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(err->error().step_id(), 7u);
  EXPECT_NE(err->error().message().find(nodes[1]->address()), std::string::npos)
      << err->error().message();
  EXPECT_NE(err->error().message().find(c.node_id), std::string::npos) << err->error().message();

  // A key of the wrong length is a malformed step, not a connection attempt.
  StageRequest bad = step_req("wrong-hop", 8, {1}, 0);
  *bad.mutable_step()->add_next_hops() = *hop;
  bad.mutable_step()->mutable_next_hops(0)->set_public_key("short");
  ASSERT_TRUE(streams[0]->send(bad));
  auto bad_err = streams[0]->next();
  ASSERT_TRUE(bad_err.has_value());
  ASSERT_EQ(bad_err->kind_case(), StageResponse::kError) << bad_err->DebugString();
  EXPECT_EQ(bad_err->error().code(), grpc::StatusCode::INVALID_ARGUMENT);

  for (auto& s : streams)
    EXPECT_TRUE(s->send(close_req("pinned")) && s->send(close_req("wrong-hop")));
  EXPECT_EQ(info(nodes[0]->address(), a.pin()).node_id(), a.node_id);
  EXPECT_EQ(info(nodes[1]->address(), b.pin()).node_id(), b.node_id);
  for (const TestIdentity* t : {&a, &b, &c}) std::remove(t->path.c_str());
}

TEST_F(NodeTest, IdleSessionsExpire) {
  auto nodes = start_nodes({{0, n_layer()}}, {"--idle-timeout", "0.3"});
  ASSERT_TRUE(nodes[0]->ok());
  Stream s(nodes[0]->address());
  ASSERT_TRUE(s.send(open_req("idle", model_id(), 0, n_layer(), n_layer())));
  ASSERT_EQ(s.next()->kind_case(), StageResponse::kOpened);
  EXPECT_EQ(info(nodes[0]->address()).active_sessions(), 1);
  EXPECT_TRUE(eventually([&] { return info(nodes[0]->address()).active_sessions() == 0; }));
  expect_error(s, grpc::StatusCode::DEADLINE_EXCEEDED, "idle");
  EXPECT_EQ(info(nodes[0]->address()).kv_bytes_free(), info(nodes[0]->address()).kv_bytes_total());
}

// The same on the node's clock, in process: with a FakeClock and an idle limit
// of 10 s (the reaper looks every second), a session silent since it opened is
// still open after 10 s and closed at the reaper's look at 11 s. Nothing waits
// on wall time: the test moves the clock, and waits until the node's three
// clock users (timer, reaper, scheduler) are back waiting on it.
TEST_F(NodeTest, AnIdleSessionClosesWhenTheNodesClockPassesItsLimit) {
  FakeClock clock;
  NodeOptions o;
  o.model_path = model_path();
  o.threads = 1;
  o.idle_timeout_s = 10;
  o.clock = &clock;
  auto server = StageServer::Start(o);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  constexpr size_t kClockUsers = 3;
  Stream s((*server)->address());
  const int n = (*server)->load().n_layer;
  ASSERT_TRUE(s.send(open_req("idle", (*server)->model_id(), 0, n, n)));
  ASSERT_EQ(s.next()->kind_case(), StageResponse::kOpened);
  for (int t = 1; t <= 10; ++t) {
    clock.wait_for_waiters(kClockUsers);
    clock.advance(1s);
    clock.wait_for_waiters(kClockUsers);
    ASSERT_EQ((*server)->stats().sessions, 1) << "closed after " << t << " s";
  }
  clock.advance(1s);
  clock.wait_for_waiters(kClockUsers);  // the reaper's sweep is over
  EXPECT_EQ((*server)->stats().sessions, 0);
  expect_error(s, grpc::StatusCode::DEADLINE_EXCEEDED, "idle");
  s.finish();
  (*server)->shutdown();
}

TEST_F(NodeTest, SigtermDrainsThenExitsZero) {
  auto nodes = start_nodes({{0, n_layer()}});
  ASSERT_TRUE(nodes[0]->ok());
  const std::vector<std::pair<int, int>> ranges = {{0, n_layer()}};
  auto streams = connect(nodes);
  open_chain(streams, ranges, "d");
  const auto p = prompt(5, 4);
  const auto want = reference(p, 6);
  ASSERT_EQ(generate(nodes, streams, ranges, "d", p, 1, false), std::vector<int32_t>{want[0]});
  nodes[0]->signal(SIGTERM);
  ASSERT_TRUE(eventually([&] { return info(nodes[0]->address()).draining(); }));
  ASSERT_TRUE(streams[0]->send(open_req("late", model_id(), 0, n_layer(), n_layer())));
  expect_error(*streams[0], grpc::StatusCode::UNAVAILABLE, "draining");
  // The open session still steps correctly.
  std::vector<int32_t> got = {want[0]};
  int position = static_cast<int>(p.size());
  for (int i = 1; i < 6; ++i) {
    ASSERT_TRUE(streams[0]->send(step_req("d", i, {got.back()}, position++)));
    auto r = streams[0]->next();
    ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult)
        << (r ? r->DebugString() : "timeout");
    got.push_back(r->result().tokens(0));
  }
  EXPECT_EQ(got, want);
  ASSERT_TRUE(streams[0]->send(close_req("d")));
  EXPECT_EQ(nodes[0]->wait_exit(20s), std::optional<int>(0));
}

// --slowdown F makes compute F times as long without changing a result, and
// Info reports it.
TEST_F(NodeTest, SlowedNodeServesTheSameTokens) {
  const std::vector<std::pair<int, int>> ranges = {{0, 2}, {2, n_layer()}};
  auto nodes = start_nodes(ranges, {"--slowdown", "3"});
  for (auto& n : nodes) ASSERT_TRUE(n->ok());
  EXPECT_EQ(info(nodes[0]->address()).slowdown(), 3);
  auto streams = connect(nodes);
  open_chain(streams, ranges, "slow");
  const auto p = prompt(7, 5);
  EXPECT_EQ(generate(nodes, streams, ranges, "slow", p, 8, /*push=*/true), reference(p, 8));
  const v1::InfoResponse inf = info(nodes[1]->address());
  EXPECT_GT(inf.compute_us(), 0);
  EXPECT_EQ(inf.steps_cancelled(), 0);
  NodeProcess plain({"--layers", "0:1"});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(info(plain.address()).slowdown(), 1);
}

StageRequest cancel_req(const std::string& id, uint64_t from, uint64_t to) {
  StageRequest r;
  r.mutable_cancel()->set_session_id(id);
  r.mutable_cancel()->set_from_step_id(from);
  r.mutable_cancel()->set_to_step_id(to);
  return r;
}

// Reads `n` answers from `s` into step id -> answer.
std::map<uint64_t, StageResponse> answers(Stream& s, int n) {
  std::map<uint64_t, StageResponse> out;
  for (int i = 0; i < n; ++i) {
    auto r = s.next();
    if (!r) {
      ADD_FAILURE() << "answer " << i << " of " << n << " never came";
      break;
    }
    const uint64_t id =
        r->kind_case() == StageResponse::kResult ? r->result().step_id() : r->error().step_id();
    EXPECT_FALSE(out.count(id)) << "two answers for step " << id;
    out[id] = *r;
  }
  return out;
}

bool is_cancelled(const StageResponse& r) {
  return r.kind_case() == StageResponse::kError && r.error().code() == grpc::StatusCode::CANCELLED;
}

// Stage servers in this process on one FakeClock: a slowed batch (--slowdown)
// lasts until the test moves the clock past it, so what queues behind it is
// certainly still queued when the test acts, whatever this machine's speed.
class FakeClockNodes {
 public:
  // Idle sessions are never reaped here, however far the clock moves.
  StageServer* serve(int first, int last, double slowdown = 1, int max_batch_tokens = 512) {
    NodeOptions o;
    o.max_batch_tokens = max_batch_tokens;
    o.model_path = model_path();
    o.threads = 1;
    o.first_layer = first;
    o.last_layer = last;
    o.slowdown = slowdown;
    o.idle_timeout_s = 1e9;
    o.clock = &clock_;
    auto s = StageServer::Start(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (!s.ok()) return nullptr;
    servers_.push_back(std::move(s).value());
    return servers_.back().get();
  }
  // The next answer on `s`, moving the clock on an hour at a time while none
  // comes within `look` (a slowed batch ends once the clock passed it; how
  // long `look` is changes only how fast the test runs).
  std::optional<StageResponse> next_moving_the_clock(Stream& s,
                                                     std::chrono::milliseconds look = 100ms) {
    for (int i = 0; i < 1000; ++i) {
      if (auto r = s.next(look)) return r;
      clock_.advance(1h);
    }
    return std::nullopt;
  }
  // `n` answers on `s`, by step id, moving the clock on while none comes.
  std::map<uint64_t, StageResponse> answers_moving_the_clock(Stream& s, int n) {
    std::map<uint64_t, StageResponse> out;
    for (int i = 0; i < n; ++i) {
      auto r = next_moving_the_clock(s);
      if (!r) {
        ADD_FAILURE() << "answer " << i << " of " << n << " never came";
        break;
      }
      out[r->kind_case() == StageResponse::kResult ? r->result().step_id()
                                                   : r->error().step_id()] = *r;
    }
    return out;
  }

 private:
  FakeClock clock_;  // outlives the servers
  std::vector<std::unique_ptr<StageServer>> servers_;
};

// A speculative tail queued on a slowed first stage: the prompt step runs
// (slowly), steps 2..5 wait behind it, a Cancel of 3..5 drops those three (each
// answered CANCELLED, to the owner), and step 2 goes through. A step that
// rewinds to the accepted length then continues exactly as plain decoding.
TEST_F(NodeTest, CancelDropsQueuedStepsAndTheSessionGoesOnAfterRewind) {
  const std::vector<std::pair<int, int>> ranges = {{0, 2}, {2, n_layer()}};
  // On a FakeClock, the slowed first stage's prompt batch lasts until the
  // clock moves: the queued steps are waiting when the Cancel arrives.
  FakeClockNodes fake;
  StageServer* first = fake.serve(0, 2, 200);
  StageServer* second = fake.serve(2, n_layer());
  ASSERT_TRUE(first && second);
  std::vector<std::unique_ptr<Stream>> streams;
  for (StageServer* n : {first, second}) streams.push_back(std::make_unique<Stream>(n->address()));
  const std::vector<StageServer*> nodes = {first, second};
  open_chain(streams, ranges, "c");
  const auto p = prompt(8, 32);
  const int P = static_cast<int>(p.size());
  const auto want = reference(p, 3);
  auto pushed = [&](StageRequest r) {
    v1::Hop* h = r.mutable_step()->add_next_hops();
    h->set_address(nodes[1]->address());
    return r;
  };
  ASSERT_TRUE(streams[0]->send(pushed(step_req("c", 1, p, 0))));
  // Drafts (the right first token, then guesses) at positions P..P+3.
  ASSERT_TRUE(streams[0]->send(pushed(step_req("c", 2, {want[0]}, P))));
  for (int i = 3; i <= 5; ++i)
    ASSERT_TRUE(streams[0]->send(pushed(step_req("c", i, {7 + i}, P + i - 2))));
  ASSERT_TRUE(streams[0]->send(cancel_req("c", 3, 5)));
  auto dropped = answers(*streams[0], 3);
  for (uint64_t id = 3; id <= 5; ++id) {
    ASSERT_TRUE(dropped.count(id)) << "step " << id << " not answered by the first stage";
    EXPECT_TRUE(is_cancelled(dropped[id])) << dropped[id].DebugString();
  }
  // Mistaken or hostile cancels: an error each, nothing else changes.
  ASSERT_TRUE(streams[0]->send(cancel_req("c", 9, 8)));
  expect_error(*streams[0], grpc::StatusCode::INVALID_ARGUMENT, "Cancel.to_step_id");
  ASSERT_TRUE(streams[0]->send(cancel_req("nobody", 1, 2)));
  expect_error(*streams[0], grpc::StatusCode::NOT_FOUND, "unknown session");
  auto done = fake.answers_moving_the_clock(*streams[1], 2);
  ASSERT_TRUE(done.count(1) && done.count(2));
  EXPECT_EQ(done[1].result().tokens(0), want[0]);
  EXPECT_EQ(done[2].result().tokens(0), want[1]);
  EXPECT_EQ(done[2].result().length(), P + 1);
  const v1::InfoResponse inf = info(nodes[0]->address());
  EXPECT_EQ(inf.steps_cancelled(), 3);
  EXPECT_EQ(inf.cancelled_compute_us(), 0);  // none of them had run
  EXPECT_GT(inf.compute_us(), 0);

  // Step 2 was accepted but a guess after it was not: cancel what step 2's
  // run produced, then rewind to P + 1 and go on. Cancelling a step that ran
  // counts its compute time as wasted.
  ASSERT_TRUE(streams[0]->send(cancel_req("c", 2, 2)));
  EXPECT_TRUE(eventually([&] { return info(nodes[0]->address()).cancelled_compute_us() > 0; }));
  StageRequest next = pushed(step_req("c", 6, {want[1]}, P + 1));
  next.mutable_step()->set_rewind(true);
  ASSERT_TRUE(streams[0]->send(next));
  auto r = fake.next_moving_the_clock(*streams[1]);
  ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult) << (r ? r->DebugString() : "timeout");
  EXPECT_EQ(r->result().step_id(), 6u);
  EXPECT_EQ(r->result().tokens(0), want[2]);
  EXPECT_EQ(r->result().length(), P + 2);
}

// The Cancel reaches a later stage through the first one: steps already pushed
// to a slowed second stage and waiting there are dropped by it, and steps of
// the range that reach it afterwards are dropped on arrival. On a FakeClock:
// the second stage's prompt batch holds until the clock moves, so the three
// steps behind it are queued there when the forwarded Cancel comes, and their
// cancellations are answered before the prompt's result.
TEST_F(NodeTest, CancelIsForwardedAlongThePushChain) {
  const std::vector<std::pair<int, int>> ranges = {{0, 2}, {2, n_layer()}};
  FakeClockNodes nodes;
  StageServer* first = nodes.serve(0, 2);
  StageServer* second = nodes.serve(2, n_layer(), 200);
  ASSERT_TRUE(first && second);
  std::vector<std::unique_ptr<Stream>> streams;
  for (StageServer* n : {first, second}) streams.push_back(std::make_unique<Stream>(n->address()));
  open_chain(streams, ranges, "f");
  const auto p = prompt(9, 32);
  const int P = static_cast<int>(p.size());
  const auto want = reference(p, 2);
  auto pushed = [&](StageRequest r) {
    v1::Hop* h = r.mutable_step()->add_next_hops();
    h->set_address(second->address());
    return r;
  };
  ASSERT_TRUE(streams[0]->send(pushed(step_req("f", 1, p, 0))));
  for (int i = 2; i <= 4; ++i)
    ASSERT_TRUE(streams[0]->send(pushed(step_req("f", i, {5 + i}, P + i - 2))));
  // The first stage runs them and pushes all four on: wait until they reached
  // the second (the prompt running, three queued), so the Cancel finds
  // nothing left to drop at the first stage and only its forward can drop them.
  ASSERT_TRUE(eventually([&] { return second->stats().queued_steps == 3; }));
  ASSERT_TRUE(streams[0]->send(cancel_req("f", 2, 4)));
  auto got = answers(*streams[1], 3);  // the prompt still runs: the clock has not moved
  for (uint64_t id = 2; id <= 4; ++id) {
    ASSERT_TRUE(got.count(id));
    EXPECT_TRUE(is_cancelled(got[id])) << got[id].DebugString();
  }
  auto r = nodes.next_moving_the_clock(*streams[1]);
  ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult) << (r ? r->DebugString() : "timeout");
  EXPECT_EQ(r->result().step_id(), 1u);
  EXPECT_EQ(r->result().tokens(0), want[0]);
  EXPECT_EQ(second->stats().steps_cancelled, 3);
  // The first stage ran them: their compute there was wasted.
  EXPECT_GT(first->stats().cancelled_compute_seconds, 0);
  // The first stage's cache holds P + 3 positions, the second's P: one rewind
  // step puts both at P.
  StageRequest next = pushed(step_req("f", 5, {want[0]}, P));
  next.mutable_step()->set_rewind(true);
  ASSERT_TRUE(streams[0]->send(next));
  r = nodes.next_moving_the_clock(*streams[1]);
  ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult) << (r ? r->DebugString() : "timeout");
  EXPECT_EQ(r->result().tokens(0), want[1]);
  EXPECT_EQ(r->result().length(), P + 1);
}

// A step already running when its Cancel arrives finishes (its KV stays until a
// rewind) but is answered CANCELLED instead of with its result, and its compute
// counts as wasted.
TEST_F(NodeTest, ARunningStepFinishesButIsAnsweredCancelled) {
  // On a FakeClock the slowed prompt batch runs until the clock moves (it does
  // not here) or a Cancel covers all of it.
  FakeClockNodes fake;
  StageServer* node = fake.serve(0, n_layer(), 1000);
  ASSERT_TRUE(node);
  const std::vector<StageServer*> nodes = {node};
  Stream s(node->address());
  ASSERT_TRUE(s.send(open_req("r", model_id(), 0, n_layer(), n_layer())));
  ASSERT_EQ(s.next()->kind_case(), StageResponse::kOpened);
  const auto p = prompt(10, 32);
  const int P = static_cast<int>(p.size());
  const auto want = reference(p, 2);
  ASSERT_TRUE(s.send(step_req("r", 1, p, 0)));
  ASSERT_TRUE(s.send(step_req("r", 2, {3}, P)));
  // Step 2 waits in the queue only once step 1 has been taken to run.
  ASSERT_TRUE(eventually([&] { return info(nodes[0]->address()).queued_steps() == 1; }));
  ASSERT_TRUE(s.send(cancel_req("r", 1, 2)));
  auto got = answers(s, 2);
  for (uint64_t id = 1; id <= 2; ++id) {
    ASSERT_TRUE(got.count(id));
    EXPECT_TRUE(is_cancelled(got[id])) << got[id].DebugString();
  }
  const v1::InfoResponse inf = info(nodes[0]->address());
  EXPECT_EQ(inf.steps_cancelled(), 2);
  EXPECT_GT(inf.cancelled_compute_us(), 0);
  EXPECT_EQ(inf.cancelled_compute_us(), inf.compute_us());  // all it did was wasted
  // The prompt's KV is there (P positions): a rewind to 0 replays it exactly.
  StageRequest again = step_req("r", 3, p, 0);
  again.mutable_step()->set_rewind(true);
  ASSERT_TRUE(s.send(again));
  ASSERT_TRUE(s.send(step_req("r", 4, {want[0]}, P)));
  auto r = fake.answers_moving_the_clock(s, 2);
  ASSERT_TRUE(r.count(3) && r.count(4));
  ASSERT_EQ(r[3].kind_case(), StageResponse::kResult) << r[3].DebugString();
  EXPECT_EQ(r[3].result().tokens(0), want[0]);
  ASSERT_EQ(r[4].kind_case(), StageResponse::kResult) << r[4].DebugString();
  EXPECT_EQ(r[4].result().tokens(0), want[1]);
}

StageRequest draft_req(const std::string& id, uint64_t step_id, const std::vector<int32_t>& tokens,
                       int position, int n_drafts, bool continues = false) {
  StageRequest r = step_req(id, step_id, tokens, position);
  r.mutable_step()->set_n_drafts(n_drafts);
  r.mutable_step()->set_continues_previous(continues);
  return r;
}

// A stage serves a plain step (an anchor run) of one session before the
// speculative continuations another session queued ahead of it: speculation
// never delays anyone's guaranteed progress. Batches of at most 32 tokens run
// the prompt in one piece; after it, the two anchors share a batch (answered
// in queue order) and a's continuations run one a batch (one step of a session
// a batch), so the order of the answers is the order the stage chose.
TEST_F(NodeTest, AnAnchorRunOvertakesQueuedSpeculativeContinuations) {
  // The prompt (32 tokens) is at most an eighth of the batch, so it runs whole
  // though b is active (a longer one would run in eighths, between b's steps).
  // On a FakeClock each slowed batch lasts until the clock moves.
  FakeClockNodes fake;
  StageServer* node = fake.serve(0, 2, 500, 256);
  ASSERT_TRUE(node);
  const std::vector<StageServer*> nodes = {node};
  Stream s(node->address());  // owns both sessions: one ordered answer stream
  for (const char* id : {"a", "b"}) {
    ASSERT_TRUE(s.send(open_req(id, model_id(), 0, 2, n_layer())));
    auto r = s.next();
    ASSERT_TRUE(r && r->kind_case() == StageResponse::kOpened)
        << (r ? r->DebugString() : "timeout");
  }
  const auto p = prompt(11, 32);
  const int P = static_cast<int>(p.size());
  // a's prompt runs (500x slowed) while its anchor run waits ...
  ASSERT_TRUE(s.send(step_req("a", 1, p, 0)));
  ASSERT_TRUE(s.send(draft_req("a", 2, {5, 6}, P, 1)));
  ASSERT_TRUE(eventually([&] { return info(nodes[0]->address()).queued_steps() == 1; }));
  // ... then three continuations of a queue up, and b's plain step after them.
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(s.send(draft_req("a", 3 + i, {7 + i}, P + 2 + i, 1, true)));
  ASSERT_TRUE(s.send(step_req("b", 11, {p[0]}, 0)));
  // All five wait while a's prompt still runs: the order is the scheduler's.
  ASSERT_TRUE(eventually([&] { return info(nodes[0]->address()).queued_steps() == 5; }));
  std::vector<uint64_t> order;
  for (int i = 0; i < 6; ++i) {
    auto r = fake.next_moving_the_clock(s);
    ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult)
        << (r ? r->DebugString() : "timeout");
    order.push_back(r->result().step_id());
  }
  // a's anchor run keeps its place (a session's steps run in order); b's plain
  // step goes before a's continuations though it arrived after them.
  EXPECT_EQ(order, (std::vector<uint64_t>{1, 2, 11, 3, 4, 5}));
}

// The last stage verifies drafts (greedy: each must be the argmax), returns the
// accepted ones and the token after them, and rolls its cache back to the
// accepted length; a continuation of a step that had a draft rejected is
// answered CANCELLED; one of a step whose drafts all held is judged from that
// step's last row.
TEST_F(NodeTest, TheLastStageVerifiesDraftsAndRollsBackToTheAcceptedLength) {
  auto nodes = start_nodes({{0, n_layer()}});
  ASSERT_TRUE(nodes[0]->ok());
  Stream s(nodes[0]->address());
  ASSERT_TRUE(s.send(open_req("d", model_id(), 0, n_layer(), n_layer())));
  ASSERT_EQ(s.next()->kind_case(), StageResponse::kOpened);
  const auto p = prompt(5, 6);
  const int P = static_cast<int>(p.size());
  const auto want = reference(p, 8);
  const int32_t n_vocab = model().config().n_vocab;
  auto wrong = [&](int i) { return (want[i] + 1) % n_vocab; };
  auto result = [&]() {
    auto r = s.next();
    EXPECT_TRUE(r && r->kind_case() == StageResponse::kResult)
        << (r ? r->DebugString() : "timeout");
    return r ? r->result() : v1::StepResult();
  };
  ASSERT_TRUE(s.send(step_req("d", 1, p, 0)));
  EXPECT_EQ(result().tokens(0), want[0]);

  // Anchor want[0], drafts want[1], want[2] (right) and a wrong third.
  ASSERT_TRUE(s.send(draft_req("d", 2, {want[0], want[1], want[2], wrong(3)}, P, 3)));
  v1::StepResult r = result();
  EXPECT_EQ(std::vector<int32_t>(r.tokens().begin(), r.tokens().end()),
            (std::vector<int32_t>{want[1], want[2], want[3]}));
  EXPECT_EQ(r.accepted_drafts(), 2);
  EXPECT_EQ(r.length(), P + 3);

  // A continuation sent before that verdict built on the wrong draft.
  ASSERT_TRUE(s.send(draft_req("d", 3, {want[4]}, P + 4, 1, true)));
  auto c = s.next();
  ASSERT_TRUE(c && c->kind_case() == StageResponse::kError) << (c ? c->DebugString() : "timeout");
  EXPECT_EQ(c->error().code(), grpc::StatusCode::CANCELLED);

  // The next anchor run continues from the accepted length; all its drafts hold.
  ASSERT_TRUE(s.send(draft_req("d", 4, {want[3], want[4]}, P + 3, 1)));
  r = result();
  EXPECT_EQ(std::vector<int32_t>(r.tokens().begin(), r.tokens().end()),
            (std::vector<int32_t>{want[4], want[5]}));
  EXPECT_EQ(r.length(), P + 5);
  // A continuation of it: want[5] is judged against its last row.
  ASSERT_TRUE(s.send(draft_req("d", 5, {want[5], want[6], wrong(7)}, P + 5, 3, true)));
  r = result();
  EXPECT_EQ(std::vector<int32_t>(r.tokens().begin(), r.tokens().end()),
            (std::vector<int32_t>{want[5], want[6], want[7]}));
  EXPECT_EQ(r.accepted_drafts(), 2);
  EXPECT_EQ(r.length(), P + 7);

  // Malformed draft fields are errors naming the field; the session goes on.
  ASSERT_TRUE(s.send(draft_req("d", 6, {want[7]}, P + 7, 2)));
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "Step.n_drafts");
  ASSERT_TRUE(s.send(draft_req("d", 7, {want[7], 1}, P + 7, 1, true)));
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "Step.continues_previous");
  StageRequest bad_q = draft_req("d", 8, {want[7], 1}, P + 7, 1);
  v1::DraftProbs* q = bad_q.mutable_step()->add_draft_probs();
  q->add_ids(n_vocab);
  q->add_probs(1);
  ASSERT_TRUE(s.send(bad_q));
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "outside the vocabulary");
  ASSERT_TRUE(s.send(step_req("d", 9, {want[7]}, P + 7)));
  EXPECT_EQ(result().length(), P + 8);
}


// ---- Hostile callers. Each test sends an attack's own messages; the node
// refuses them with an error naming the field and the limit, and keeps
// serving an honest session beside it.

// A field of /proc/PID/status ("Threads", "VmRSS"), as a number.
int64_t proc_status(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  return -1;
}

TEST_F(NodeTest, AHugeStepOrContextIsRefusedAndOthersAreServed) {
  const std::vector<std::pair<int, int>> ranges = {{0, n_layer()}};
  auto nodes = start_nodes(ranges);
  ASSERT_TRUE(nodes[0]->ok());
  auto streams = connect(nodes);
  open_chain(streams, ranges, "honest");
  Stream attacker(nodes[0]->address());
  // A session asking for more positions than the node's context (2048 for
  // the test model): it would reserve KV budget nobody else could use.
  ASSERT_TRUE(attacker.send(open_req("greedy", model_id(), 0, n_layer(), n_layer(), 1 << 30)));
  expect_error(attacker, grpc::StatusCode::INVALID_ARGUMENT, "must be 1 to 2048");
  // Two million tokens in one step (the message that made the node abort).
  ASSERT_TRUE(attacker.send(open_req("big", model_id(), 0, n_layer(), n_layer(), 2048)));
  ASSERT_EQ(attacker.next()->kind_case(), StageResponse::kOpened);
  ASSERT_TRUE(attacker.send(step_req("big", 1, std::vector<int32_t>(2'000'000, 1), 0)));
  expect_error(attacker, grpc::StatusCode::OUT_OF_RANGE, "max_length 2048");
  // Many tokens sampled at every position: a head row each.
  StageRequest all = step_req("big", 2, std::vector<int32_t>(1000, 1), 0);
  all.mutable_step()->set_sample_all(true);
  ASSERT_TRUE(attacker.send(all));
  expect_error(attacker, grpc::StatusCode::INVALID_ARGUMENT, "at most 256");
  // Far more than any step of this model can be (node/request_size_limit.h):
  // gRPC refuses it unread, and its stream ends.
  {
    auto stub = v1::Stage::NewStub(net::make_channel(nodes[0]->address()));
    grpc::ClientContext ctx;
    auto flood = stub->Session(&ctx);
    flood->Write(step_req("big", 3, std::vector<int32_t>(4'000'000, 1), 0));
    StageResponse resp;
    EXPECT_FALSE(flood->Read(&resp)) << resp.DebugString();
    const grpc::Status st = flood->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  }
  const auto p = prompt(4, 9);
  EXPECT_EQ(generate(nodes, streams, ranges, "honest", p, 8, /*push=*/false), reference(p, 8));
}

TEST_F(NodeTest, ALongPromptRunsInChunksBetweenOtherSessionsSteps) {
  // Batches of 8 tokens, slowed on a FakeClock: each lasts until the test
  // moves the clock, so the short steps are queued behind the prompt's first
  // chunk whatever this machine's speed.
  FakeClockNodes fake;
  StageServer* node = fake.serve(0, n_layer(), 3, 8);
  ASSERT_TRUE(node);
  Stream a(node->address()), b(node->address());
  ASSERT_TRUE(a.send(open_req("long", model_id(), 0, n_layer(), n_layer(), 1024)));
  ASSERT_EQ(a.next()->kind_case(), StageResponse::kOpened);
  ASSERT_TRUE(b.send(open_req("short", model_id(), 0, n_layer(), n_layer(), 64)));
  ASSERT_EQ(b.next()->kind_case(), StageResponse::kOpened);
  const auto long_prompt = prompt(5, 600);
  ASSERT_TRUE(a.send(step_req("long", 1, long_prompt, 0)));
  // The streams race: the prompt must be at the node (its first chunk
  // running) before the short steps are sent, or the first of them may run
  // before it arrives.
  ASSERT_TRUE(eventually([&] { return node->stats().batches.batches > 0; }));
  // Five steps of the short session, queued behind the long prompt.
  const auto short_tokens = prompt(6, 5);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(b.send(step_req("short", 10 + i, {short_tokens[i]}, i)));
  ASSERT_TRUE(eventually([&] { return node->stats().queued_steps == 5; }));
  for (int i = 0; i < 5; ++i) {
    auto r = fake.next_moving_the_clock(b, 10ms);
    ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult) << (r ? r->DebugString() : "timeout");
    EXPECT_EQ(r->result().step_id(), 10u + i);
    // It shared its batch with a chunk of the prompt: an eighth of the batch.
    EXPECT_EQ(r->result().timings(0).batch_tokens(), 2) << r->DebugString();
  }
  auto r = fake.next_moving_the_clock(a, 10ms);
  ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult) << (r ? r->DebugString() : "timeout");
  EXPECT_EQ(r->result().length(), 600);
  // Chunked, the prompt gives what it gives in one piece.
  ASSERT_EQ(r->result().tokens_size(), 1);
  EXPECT_EQ(r->result().tokens(0), reference(long_prompt, 1)[0]);
}

TEST_F(NodeTest, SessionsHopsAndNonFiniteStatesAreCappedAndThreadsStayFlat) {
  const std::vector<std::pair<int, int>> ranges = {{1, 3}};
  auto nodes = start_nodes(ranges, {"--max-sessions", "24"});
  ASSERT_TRUE(nodes[0]->ok());
  const int d = model().config().n_embd;
  auto hidden_step = [&](const std::string& id, uint64_t step, int position) {
    StageRequest r = step_req(id, step, {1, 2}, position);
    std::vector<float> h(2 * d, 0.25f);
    net::encode_tensor(h.data(), 2, d, v1::Tensor::F32, r.mutable_step()->mutable_hidden());
    return r;
  };
  Stream s(nodes[0]->address());
  ASSERT_TRUE(s.send(open_req("warm", model_id(), 1, 3, n_layer())));
  ASSERT_EQ(s.next()->kind_case(), StageResponse::kOpened);
  ASSERT_TRUE(s.send(hidden_step("warm", 1, 0)));
  ASSERT_EQ(s.next()->kind_case(), StageResponse::kResult);
  const int64_t threads_before = proc_status(nodes[0]->pid(), "Threads");
  ASSERT_GT(threads_before, 0);

  // A NaN in a hidden state.
  StageRequest nan = hidden_step("warm", 2, 2);
  std::vector<float> h(2 * d, 0.25f);
  h[d + 3] = std::numeric_limits<float>::quiet_NaN();
  net::encode_tensor(h.data(), 2, d, v1::Tensor::F32, nan.mutable_step()->mutable_hidden());
  ASSERT_TRUE(s.send(nan));
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "NaN at row 1, column 3");
  // A thousand hops in one step.
  StageRequest many = hidden_step("warm", 3, 2);
  for (int i = 0; i < 1000; ++i) many.mutable_step()->add_next_hops()->set_address("127.0.0.1:1");
  ASSERT_TRUE(s.send(many));
  expect_error(s, grpc::StatusCode::INVALID_ARGUMENT, "1000 hops, at most 64");

  // Twenty sessions, each pushing to four addresses nobody listens on (each
  // push fails with UNAVAILABLE), and a fifth distinct next stage refused.
  std::vector<std::unique_ptr<Stream>> owners;
  for (int k = 0; k < 20; ++k) {
    const std::string id = "hops" + std::to_string(k);
    owners.push_back(std::make_unique<Stream>(nodes[0]->address()));
    Stream& o = *owners.back();
    ASSERT_TRUE(o.send(open_req(id, model_id(), 1, 3, n_layer())));
    ASSERT_EQ(o.next()->kind_case(), StageResponse::kOpened);
    for (int hop = 0; hop < 4; ++hop) {
      StageRequest r = hidden_step(id, 1 + hop, 0);
      r.mutable_step()->set_rewind(true);
      r.mutable_step()->add_next_hops()->set_address("127.0.0.1:" + std::to_string(2 + hop));
      ASSERT_TRUE(o.send(r));
      expect_error(o, grpc::StatusCode::UNAVAILABLE, "127.0.0.1:" + std::to_string(2 + hop));
    }
    StageRequest fifth = hidden_step(id, 9, 0);
    fifth.mutable_step()->set_rewind(true);
    fifth.mutable_step()->add_next_hops()->set_address("127.0.0.1:9");
    ASSERT_TRUE(o.send(fifth));
    expect_error(o, grpc::StatusCode::RESOURCE_EXHAUSTED, "at most 4");
  }
  // 21 sessions and 80 push streams later, no thread per stream or hop.
  const int64_t threads_after = proc_status(nodes[0]->pid(), "Threads");
  EXPECT_LE(threads_after, threads_before + 8)
      << "threads grew from " << threads_before << " to " << threads_after;
  // The session cap: 21 open, 3 more fit, the 25th is refused.
  for (int k = 0; k < 3; ++k) {
    ASSERT_TRUE(s.send(open_req("more" + std::to_string(k), model_id(), 1, 3, n_layer())));
    ASSERT_EQ(s.next()->kind_case(), StageResponse::kOpened);
  }
  ASSERT_TRUE(s.send(open_req("one-too-many", model_id(), 1, 3, n_layer())));
  expect_error(s, grpc::StatusCode::RESOURCE_EXHAUSTED, "its limit of 24 (--max-sessions)");
  // And the node still computes.
  ASSERT_TRUE(s.send(hidden_step("warm", 4, 2)));
  auto r = s.next();
  ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult) << (r ? r->DebugString() : "timeout");
  EXPECT_EQ(r->result().length(), 4);
}

TEST_F(NodeTest, ACallerThatNeverReadsIsNotReadEither) {
  // A middle stage answers each relayed step with its output: 512 tokens x
  // 256 floats = 512 KiB. A caller that sends 400 of them and reads none
  // would make the node hold 200 MiB; the node stops reading it instead.
  const std::vector<std::pair<int, int>> ranges = {{1, 3}};
  auto nodes = start_nodes(ranges);
  ASSERT_TRUE(nodes[0]->ok());
  const int d = model().config().n_embd;
  const int64_t rss_before = proc_status(nodes[0]->pid(), "VmRSS");
  auto stub = v1::Stage::NewStub(net::make_channel(nodes[0]->address()));
  grpc::ClientContext ctx;
  auto flood = stub->Session(&ctx);
  StageRequest open = open_req("flood", model_id(), 1, 3, n_layer(), 512);
  ASSERT_TRUE(flood->Write(open));
  std::atomic<int> written{0};
  std::thread writer([&] {
    std::vector<float> h(512 * static_cast<size_t>(d), 0.125f);
    for (int i = 0; i < 400; ++i) {
      StageRequest r = step_req("flood", 1 + i, std::vector<int32_t>(512, 1), 0);
      r.mutable_step()->set_rewind(true);
      net::encode_tensor(h.data(), 512, d, v1::Tensor::F32, r.mutable_step()->mutable_hidden());
      if (!flood->Write(r)) return;
      ++written;
    }
  });
  // The writer blocks: the node stopped reading the stream.
  EXPECT_FALSE(swarm::testing::eventually([&] { return written.load() == 400; }, 8s))
      << "all 400 steps were read from a caller that reads nothing";
  const int64_t rss = proc_status(nodes[0]->pid(), "VmRSS");
  EXPECT_LT(rss - rss_before, 128 * 1024) << "RSS grew from " << rss_before << " to " << rss << " kB";
  // Others are served meanwhile.
  auto streams = connect(nodes);
  open_chain(streams, ranges, "other");
  StageRequest one = step_req("other", 1, {1}, 0);
  std::vector<float> row(d, 0.5f);
  net::encode_tensor(row.data(), 1, d, v1::Tensor::F32, one.mutable_step()->mutable_hidden());
  ASSERT_TRUE(streams[0]->send(one));
  auto r = streams[0]->next();
  ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult) << (r ? r->DebugString() : "timeout");
  ctx.TryCancel();
  writer.join();
  EXPECT_TRUE(swarm::testing::eventually(
      [&] { return info(nodes[0]->address()).active_sessions() == 1; }));
}

// At the last stage answers are token ids, a few bytes each: a caller could
// have prompts run for as long as it likes before they added up to the
// bytes that pause a stream. This one's transport takes no more than 4 KiB
// of answers it has not read (no window growth), as a client that withholds
// HTTP/2 window updates would: once a write has waited 250 ms, the node
// stops reading the caller, and stops computing for it.
TEST_F(NodeTest, ACallerThatTakesNoAnswersGetsNoMoreWorkDoneHoweverSmallTheAnswers) {
  const std::vector<std::pair<int, int>> ranges = {{0, n_layer()}};
  auto nodes = start_nodes(ranges);
  ASSERT_TRUE(nodes[0]->ok());
  auto stub = stub_taking_no_answers(nodes[0]->address());
  grpc::ClientContext ctx;
  auto flood = stub->Session(&ctx);
  ASSERT_TRUE(flood->Write(open_req("mute", model_id(), 0, n_layer(), n_layer(), 512)));
  constexpr int kSteps = 5000;
  std::thread writer([&] {
    for (int i = 0; i < kSteps; ++i) {
      // No more than the node lets one session queue: the caller is served
      // for as long as the node reads it.
      if (i % 32 == 0 && !swarm::testing::eventually(
                             [&] { return info(nodes[0]->address()).queued_steps() < 32; }, 30s))
        return;
      StageRequest r = step_req("mute", 1 + i, std::vector<int32_t>(256, 1), 0);
      r.mutable_step()->set_rewind(true);
      if (!flood->Write(r)) return;
    }
  });
  // The node's compute for it stops: the same over a second and a half.
  int64_t last = -1;
  auto last_at = std::chrono::steady_clock::now();
  const bool stopped = swarm::testing::eventually(
      [&] {
        const int64_t now_us = info(nodes[0]->address()).compute_us();
        const auto now = std::chrono::steady_clock::now();
        if (now_us != last) {
          last = now_us;
          last_at = now;
          return false;
        }
        return now_us > 0 && now - last_at >= 1500ms;
      },
      30s);
  // (Reading and running all of them takes minutes.)
  EXPECT_TRUE(stopped) << "the node still computes for a caller that takes no answers";
  // Others are served meanwhile.
  auto streams = connect(nodes);
  open_chain(streams, ranges, "other");
  ASSERT_TRUE(streams[0]->send(step_req("other", 1, {1, 2, 3}, 0)));
  auto r = streams[0]->next();
  ASSERT_TRUE(r && r->kind_case() == StageResponse::kResult) << (r ? r->DebugString() : "timeout");
  ctx.TryCancel();
  writer.join();
}

// A caller that does not read answers the node already computed (hidden
// states, larger than its flow-control window): once an answer has waited on
// it for a moment, the steps of its the node read ahead stay queued instead of
// running (at a fair share they would still take the node's time), and they
// run once it reads again.
TEST_F(NodeTest, StepsOfACallerThatTakesNoAnswersWaitQueuedUntilItReads) {
  const std::vector<std::pair<int, int>> ranges = {{0, 1}};
  // Slowed, so that the steps read take far longer to run than the node
  // waits for a stuck answer.
  auto nodes = start_nodes(ranges, {"--slowdown", "50"});
  ASSERT_TRUE(nodes[0]->ok());
  auto stub = stub_taking_no_answers(nodes[0]->address());
  grpc::ClientContext ctx;
  auto mute = stub->Session(&ctx);
  ASSERT_TRUE(mute->Write(open_req("mute", model_id(), 0, 1, n_layer(), 512)));
  constexpr int kSteps = 64;
  for (int i = 0; i < kSteps; ++i) {
    StageRequest r = step_req("mute", 1 + i, std::vector<int32_t>(64, 1), 0);
    r.mutable_step()->set_rewind(true);
    ASSERT_TRUE(mute->Write(r));
  }
  // Compute stops (the same over a second) with steps still queued.
  int64_t last = -1;
  int queued = 0;
  auto last_at = std::chrono::steady_clock::now();
  const bool held = eventually(
      [&] {
        const v1::InfoResponse inf = info(nodes[0]->address());
        const auto now = std::chrono::steady_clock::now();
        queued = inf.queued_steps();
        if (inf.compute_us() != last) {
          last = inf.compute_us();
          last_at = now;
          return false;
        }
        return last > 0 && queued > 0 && now - last_at >= 1s;
      },
      30s);
  EXPECT_TRUE(held) << "the node ran the steps of a caller that takes no answers (" << queued
                    << " left queued)";
  EXPECT_GT(queued, kSteps / 2) << "most steps read ahead should not have run";
  // The caller reads: the rest run, and every step is answered.
  StageResponse r;
  ASSERT_TRUE(mute->Read(&r) && r.has_opened()) << r.DebugString();
  int answered = 0;
  while (answered < kSteps && mute->Read(&r)) {
    ASSERT_EQ(r.kind_case(), StageResponse::kResult) << r.DebugString();
    ++answered;
  }
  EXPECT_EQ(answered, kSteps);
  mute->WritesDone();
  ctx.TryCancel();
}

// A stream the node ended (too many malformed messages) while an answer was
// still being written, whose caller then cancels: the node must still finish
// it, or its shutdown waits for that stream forever (the soak benchmark's
// `garbage` attack left nodes that never exited).
TEST_F(NodeTest, AStreamEndedWithAnAnswerInFlightStillLetsTheNodeStop) {
  const std::vector<std::pair<int, int>> ranges = {{1, 3}};
  // The caller's answer stays in flight without the node pausing the stream
  // (which would leave the malformed messages below unread).
  auto nodes = start_nodes(ranges, {"--stuck-answer-ms", "600000"});
  ASSERT_TRUE(nodes[0]->ok());
  const int d = model().config().n_embd;
  grpc::GenericStub generic(net::make_channel(nodes[0]->address()));
  grpc::ClientContext ctx;
  grpc::CompletionQueue cq;
  auto call = generic.PrepareCall(&ctx, "/swarm.v1.Stage/Session", &cq);
  void* tag = nullptr;
  bool ok = false;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  auto write = [&](const std::string& bytes) {
    grpc::Slice slice(bytes);
    grpc::ByteBuffer bb(&slice, 1);
    call->Write(bb, reinterpret_cast<void*>(2));
    return cq.Next(&tag, &ok) && ok;
  };
  ASSERT_TRUE(write(open_req("stuck", model_id(), 1, 3, n_layer(), 512).SerializeAsString()));
  // Twenty steps whose answers (512 KiB each) this caller never reads: the
  // node's writes wait on flow control, one of them in flight.
  std::vector<float> h(512 * static_cast<size_t>(d), 0.125f);
  for (int i = 0; i < 20; ++i) {
    StageRequest r = step_req("stuck", 1 + i, std::vector<int32_t>(512, 1), 0);
    r.mutable_step()->set_rewind(true);
    net::encode_tensor(h.data(), 512, d, v1::Tensor::F32, r.mutable_step()->mutable_hidden());
    ASSERT_TRUE(write(r.SerializeAsString()));
  }
  ASSERT_TRUE(eventually([&] {
    const v1::InfoResponse inf = info(nodes[0]->address());
    return inf.queued_steps() == 0 && inf.compute_us() > 0;
  }));
  // Malformed messages until the node ends the stream (which closes its session).
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(write("\xff\xff\xff\xff\x0f garbage"));
  ASSERT_TRUE(eventually([&] { return info(nodes[0]->address()).active_sessions() == 0; }));
  ctx.TryCancel();
  grpc::Status st;
  call->Finish(&st, reinterpret_cast<void*>(3));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  nodes[0]->signal(SIGTERM);
  EXPECT_EQ(nodes[0]->wait_exit(20s), std::optional<int>(0));
}

TEST_F(NodeTest, ABusyPortIsRefused) {
  auto first = start_nodes({{0, n_layer()}});
  ASSERT_TRUE(first[0]->ok());
  const std::string log = ::testing::TempDir() + "/busy_port_" + std::to_string(getpid()) + ".log";
  swarm::testing::ChildProcess second({"node", "-m", model_path(), "--listen", first[0]->address(),
                                       "-t", "1"},
                                      log, 30s);
  EXPECT_FALSE(second.ok()) << "a second node listens on " << first[0]->address();
  const auto code = second.wait_exit(30s);
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  std::ifstream in(log);
  const std::string err((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(err.find("cannot listen on " + first[0]->address()), std::string::npos) << err;
  // The first still serves.
  EXPECT_EQ(info(first[0]->address()).model_id(), model_id());
}

// A stranger (127.0.0.2 stands in for a remote address; the node does not
// count its own machine's, 127.0.0.1) that opens connection after connection
// gets the first few, then has the rest closed as soon as they are accepted,
// with the reason; its connection already open keeps working, callers from
// other addresses are served, and quotas count the caller's real address
// although the node hands connections to gRPC by descriptor.
TEST_F(NodeTest, AnAddressOpeningConnectionsWithoutPauseIsClosedAtOnceAndOthersAreServed) {
  auto nodes = start_nodes({{0, n_layer()}}, {"--connection-rate", "1", "--connection-burst", "3",
                                              "--max-sessions-per-caller", "1"},
                           ::testing::TempDir() + "/connection_flood.log");
  ASSERT_TRUE(nodes[0]->ok());
  const std::string address = nodes[0]->address();
  auto kept_channel = net::channel_from("127.0.0.2", address);
  ASSERT_TRUE(kept_channel) << "cannot connect from 127.0.0.2 (no loopback /8 here?)";
  Stream kept(kept_channel);
  ASSERT_TRUE(kept.send(open_req("kept", model_id(), 0, n_layer(), n_layer(), 64)));
  ASSERT_EQ(kept.next()->kind_case(), StageResponse::kOpened);

  // A second connection from the same address: the quota counts the address.
  Stream second(net::channel_from("127.0.0.2", address));
  ASSERT_TRUE(second.send(open_req("second", model_id(), 0, n_layer(), n_layer(), 64)));
  auto refused = second.next();
  ASSERT_TRUE(refused.has_value());
  ASSERT_EQ(refused->kind_case(), StageResponse::kError);
  EXPECT_NE(refused->error().message().find("127.0.0.2"), std::string::npos)
      << refused->error().message();

  // Twenty more, as fast as they come: after the burst, each is closed.
  int served = 0, closed = 0;
  for (int i = 0; i < 20; ++i) {
    auto channel = net::channel_from("127.0.0.2", address);
    ASSERT_TRUE(channel);
    v1::InfoResponse r;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    const grpc::Status st = v1::Stage::NewStub(channel)->Info(&ctx, v1::InfoRequest(), &r);
    if (st.ok()) {
      ++served;
    } else {
      ++closed;
      // The reason travels in the GOAWAY (GRPC_TRACE=http shows it on the
      // caller's side); gRPC 1.51 reports the call itself as UNAVAILABLE.
      EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
    }
  }
  EXPECT_LE(served, 3) << "the burst is 3 connections, and 2 went to the streams above";
  EXPECT_GE(closed, 17);
  // The node's own machine is not counted: every new connection is served.
  for (int i = 0; i < 20; ++i) {
    v1::InfoResponse r;
    ASSERT_TRUE(try_info(address, &r).ok()) << i;
  }
  // The connection opened before the flood still runs steps.
  StageRequest step = step_req("kept", 1, {1, 2, 3}, 0);
  ASSERT_TRUE(kept.send(step));
  auto result = kept.next();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->kind_case(), StageResponse::kResult);
  // The operator is told, once, who was refused and why.
  std::ifstream in(::testing::TempDir() + "/connection_flood.log");
  const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("too many new connections from 127.0.0.2: at most 1 a second"),
            std::string::npos)
      << log;
}

}  // namespace
}  // namespace swarm::node
