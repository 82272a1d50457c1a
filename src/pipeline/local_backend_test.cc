// LocalBackend: batched generation gives each request exactly the tokens it gets
// alone; cancellation, end-of-generation, max_tokens and a full context end a
// request the way generation.h says; a slow consumer holds up nobody else.
#include "pipeline/local_backend.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "engine/test_data.h"

namespace swarm {
namespace {

constexpr const char* kModel = "tiny-llama/gguf/tiny-llama-Q8_0.gguf";

std::unique_ptr<Model> load() {
  const std::string path = testing::find_testdata(kModel);
  if (path.empty()) return nullptr;
  auto m = Model::Load(path);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

std::vector<int32_t> prompt_ids(const std::string& name) {
  return testing::read_raw<int32_t>(
      testing::find_testdata("tiny-llama/ref/Q8_0/" + name + "_ids.i32"));
}

// The reference: one sequence through Model::forward, greedy.
std::vector<int32_t> direct_greedy(const Model& model, const std::vector<int32_t>& prompt, int n) {
  ThreadPool pool(1);
  auto cache = model.new_cache(static_cast<int>(prompt.size()) + n + 1);
  const int n_vocab = model.config().n_vocab;
  auto logits = model.forward(prompt, *cache, pool);
  EXPECT_TRUE(logits.ok());
  std::vector<float> last(logits->end() - n_vocab, logits->end());
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    const int32_t id =
        static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    out.push_back(id);
    auto next = model.forward({id}, *cache, pool);
    EXPECT_TRUE(next.ok());
    last = std::move(next).value();
  }
  return out;
}

SamplingParams greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  return p;
}

struct Outcome {
  Status status;
  GenerationResult result;
  std::vector<int32_t> tokens;
};

Outcome run(GenerationBackend& b, const std::vector<int32_t>& prompt, const SamplingParams& sp) {
  Outcome out;
  auto r = b.generate({prompt, sp}, [&](int32_t id) {
    out.tokens.push_back(id);
    return true;
  });
  out.status = r.status();
  if (r.ok()) out.result = *r;
  return out;
}

class LocalBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = load();
    ASSERT_NE(m, nullptr) << kModel << " is missing from tests/data or does not load";
    model_ = m.get();
    backend_ = std::make_unique<LocalBackend>(
        std::move(m), LocalBackendOptions{.threads = 1, .context_length = 256});
  }
  const Model* model_ = nullptr;
  std::unique_ptr<LocalBackend> backend_;
};

TEST_F(LocalBackendTest, GreedyEqualsDirectForward) {
  const auto prompt = prompt_ids("p0");
  ASSERT_FALSE(prompt.empty());
  Outcome r = run(*backend_, prompt, greedy(16));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.tokens, direct_greedy(*model_, prompt, 16));
  EXPECT_EQ(r.result.finish_reason, "length");
  EXPECT_EQ(r.result.prompt_tokens, static_cast<int>(prompt.size()));
  EXPECT_EQ(r.result.completion_tokens, 16);
  EXPECT_EQ(r.result.route, "local");
  EXPECT_EQ(backend_->context_length(), 256);
}

// Eight requests (different prompts, lengths and sampling) share every batch; each
// gets the tokens it gets alone.
TEST_F(LocalBackendTest, BatchingDoesNotChangeTokens) {
  const auto p0 = prompt_ids("p0"), p1 = prompt_ids("p1");
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SamplingParams> params;
  for (int i = 0; i < 8; ++i) {
    std::vector<int32_t> p = (i % 2 ? p1 : p0);
    p.resize(p.size() - static_cast<size_t>(i));  // different lengths
    prompts.push_back(p);
    SamplingParams sp = i < 3 ? greedy(20) : SamplingParams{};
    sp.max_tokens = 12 + i;
    sp.seed = 1000 + static_cast<uint64_t>(i);
    params.push_back(sp);
  }
  std::vector<Outcome> alone;
  for (int i = 0; i < 8; ++i) {
    alone.push_back(run(*backend_, prompts[i], params[i]));
    ASSERT_TRUE(alone.back().status.ok());
    ASSERT_EQ(alone.back().tokens.size(), static_cast<size_t>(params[i].max_tokens));
  }
  const int64_t iterations_alone = backend_->stats().iterations;

  backend_->set_paused(true);
  std::vector<std::future<Outcome>> together;
  for (int i = 0; i < 8; ++i)
    together.push_back(
        std::async(std::launch::async, [&, i] { return run(*backend_, prompts[i], params[i]); }));
  while (backend_->stats().waiting < 8) std::this_thread::yield();
  backend_->set_paused(false);
  for (int i = 0; i < 8; ++i) {
    Outcome r = together[i].get();
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_EQ(r.tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(r.result.completion_tokens, alone[i].result.completion_tokens);
  }
  const auto s = backend_->stats();
  EXPECT_EQ(s.max_batch_sequences, 8);
  // Batched: as many iterations as the longest request needs, not the sum.
  EXPECT_EQ(s.iterations - iterations_alone, 12 + 7);
  EXPECT_EQ(s.active, 0);
}

// A prompt fed in chunks of 7 gives the same tokens as one fed whole.
TEST_F(LocalBackendTest, ChunkedPrefillDoesNotChangeTokens) {
  const auto prompt = prompt_ids("p1");
  LocalBackend chunked(
      load(), LocalBackendOptions{.threads = 1, .context_length = 256, .max_batch_tokens = 7});
  SamplingParams sp;
  sp.seed = 7;
  sp.max_tokens = 10;
  Outcome a = run(*backend_, prompt, sp), b = run(chunked, prompt, sp);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_GE(chunked.stats().iterations, static_cast<int64_t>((prompt.size() + 6) / 7) + 9);
}

TEST_F(LocalBackendTest, CancellationEndsTheRequestAndFreesItsCache) {
  const auto prompt = prompt_ids("p0");
  int seen = 0;
  auto r = backend_->generate({prompt, greedy(200)}, [&](int32_t) { return ++seen < 3; });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(seen, 3);
  EXPECT_EQ(r->finish_reason, "stop");
  EXPECT_EQ(r->completion_tokens, 3);
  EXPECT_EQ(backend_->stats().active, 0);
  // The backend goes on serving.
  Outcome next = run(*backend_, prompt, greedy(4));
  ASSERT_TRUE(next.status.ok());
  EXPECT_EQ(next.tokens, direct_greedy(*model_, prompt, 4));
}

TEST_F(LocalBackendTest, EndOfGenerationTokenStopsAndIsNotPassedOn) {
  const auto prompt = prompt_ids("p0");
  const auto ref = direct_greedy(*model_, prompt, 8);
  size_t k = 3;
  while (std::find(ref.begin(), ref.begin() + static_cast<ptrdiff_t>(k), ref[k]) !=
         ref.begin() + static_cast<ptrdiff_t>(k))
    ++k;
  SamplingParams sp = greedy(100);
  sp.stop_tokens = {ref[k]};
  Outcome r = run(*backend_, prompt, sp);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.tokens, std::vector<int32_t>(ref.begin(), ref.begin() + static_cast<ptrdiff_t>(k)));
  EXPECT_EQ(r.result.finish_reason, "stop");
  EXPECT_EQ(r.result.completion_tokens, static_cast<int>(k) + 1);  // the end token counts
}

TEST_F(LocalBackendTest, FullContextEndsWithLength) {
  const auto prompt = prompt_ids("p0");
  LocalBackend small(
      load(),
      LocalBackendOptions{.threads = 1, .context_length = static_cast<int>(prompt.size()) + 5});
  Outcome r = run(small, prompt, greedy(-1));
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.tokens, direct_greedy(*model_, prompt, 5));
  EXPECT_EQ(r.result.finish_reason, "length");
  Outcome zero = run(small, prompt, greedy(0));
  ASSERT_TRUE(zero.status.ok());
  EXPECT_TRUE(zero.tokens.empty());
  EXPECT_EQ(zero.result.finish_reason, "length");
}

TEST_F(LocalBackendTest, BadRequestsAreInvalidArgument) {
  const int n_vocab = model_->config().n_vocab;
  EXPECT_EQ(run(*backend_, {}, greedy(4)).status.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(run(*backend_, {1, n_vocab}, greedy(4)).status.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(run(*backend_, {1, -1}, greedy(4)).status.code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(run(*backend_, std::vector<int32_t>(256, 1), greedy(4)).status.code(),
            Status::Code::kInvalidArgument);
  SamplingParams bad = greedy(4);
  bad.top_p = -1;
  EXPECT_EQ(run(*backend_, {1, 2}, bad).status.code(), Status::Code::kInvalidArgument);
}

// A consumer that does not take its tokens holds up only itself.
TEST_F(LocalBackendTest, SlowConsumerDoesNotBlockOthers) {
  const auto prompt = prompt_ids("p0");
  std::promise<void> other_done;
  auto slow = std::async(std::launch::async, [&] {
    bool waited = false;
    return backend_->generate({prompt, greedy(6)}, [&](int32_t) {
      if (!waited) other_done.get_future().wait();  // blocks until the other request has finished
      waited = true;
      return true;
    });
  });
  Outcome fast = run(*backend_, prompt, greedy(6));
  other_done.set_value();
  ASSERT_TRUE(fast.status.ok());
  auto s = slow.get();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->completion_tokens, 6);
}

TEST_F(LocalBackendTest, ShutdownEndsWaitingRequestsWithUnavailable) {
  backend_->set_paused(true);
  auto waiting =
      std::async(std::launch::async, [&] { return run(*backend_, prompt_ids("p0"), greedy(4)); });
  while (backend_->stats().waiting < 1) std::this_thread::yield();
  backend_.reset();
  EXPECT_EQ(waiting.get().status.code(), Status::Code::kUnavailable);
}

}  // namespace
}  // namespace swarm

namespace swarm {
namespace {

// With a KV budget for one request, others wait their turn in the queue and
// are all answered; with the queue full, a request is refused at once, and a
// request still waiting at its deadline is refused naming its wait.
TEST(LocalBackendAdmission, RequestsWaitForKvMemoryAndAreRefusedOnlyPastTheQueue) {
  auto m = load();
  if (!m) GTEST_SKIP() << kModel << " not found";
  const auto prompt = prompt_ids("p0");
  const int n = 6;
  const uint64_t one = KvCache::bytes_for(m->config().n_layer, m->kv_dim(),
                                          static_cast<int>(prompt.size()) + n);
  LocalBackend backend(std::move(m), LocalBackendOptions{.threads = 1,
                                                         .context_length = 128,
                                                         .kv_memory_bytes = one,
                                                         .max_queue = 3,
                                                         .queue_timeout = std::chrono::seconds(600)});
  const std::vector<int32_t> want = run(backend, prompt, greedy(n)).tokens;

  // Four at once: one is served, three wait, all get the answer they get alone.
  backend.set_paused(true);
  std::vector<std::future<Outcome>> four;
  for (int i = 0; i < 4; ++i)
    four.push_back(std::async(std::launch::async, [&] { return run(backend, prompt, greedy(n)); }));
  while (backend.stats().queued < 3) std::this_thread::yield();
  // The queue is full: a fifth is refused at once, saying so.
  Outcome fifth = run(backend, prompt, greedy(n));
  EXPECT_EQ(fifth.status.code(), Status::Code::kResourceExhausted);
  EXPECT_NE(fifth.status.message().find("--max-queue 3"), std::string::npos)
      << fifth.status.message();
  backend.set_paused(false);
  for (auto& f : four) {
    Outcome o = f.get();
    ASSERT_TRUE(o.status.ok()) << o.status.ToString();
    EXPECT_EQ(o.tokens, want);
  }
  EXPECT_EQ(backend.stats().max_batch_sequences, 1);  // the budget held one at a time

  // A request larger than the whole budget can never run: a bad request.
  Outcome huge = run(backend, prompt, greedy(100));
  EXPECT_EQ(huge.status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(huge.status.message().find("--kv-memory"), std::string::npos);
}

TEST(LocalBackendAdmission, AWaitPastTheQueueTimeoutIsRefusedWithItsPosition) {
  auto m = load();
  if (!m) GTEST_SKIP() << kModel << " not found";
  const auto prompt = prompt_ids("p0");
  LocalBackend backend(std::move(m), LocalBackendOptions{.threads = 1,
                                                         .context_length = 128,
                                                         .max_sequences = 1,
                                                         .max_queue = 4,
                                                         .queue_timeout = std::chrono::milliseconds(200)});
  backend.set_paused(true);  // the one admitted request never frees its slot while paused
  auto served = std::async(std::launch::async, [&] { return run(backend, prompt, greedy(2)); });
  while (backend.stats().waiting < 1) std::this_thread::yield();
  Outcome late = run(backend, prompt, greedy(2));  // waits, then times out (paused or not)
  EXPECT_EQ(late.status.code(), Status::Code::kResourceExhausted);
  EXPECT_NE(late.status.message().find("number 1 of 1"), std::string::npos)
      << late.status.message();
  EXPECT_NE(late.status.message().find("--queue-timeout"), std::string::npos);
  backend.set_paused(false);
  EXPECT_TRUE(served.get().status.ok());
  EXPECT_EQ(backend.stats().queued, 0);
}

// A stopping server releases the requests waiting in the queue at once; the
// running one goes on, and requests after that are served as usual.
TEST(LocalBackendAdmission, ReleaseWaitingEndsQueuedRequestsAtOnce) {
  auto m = load();
  if (!m) GTEST_SKIP() << kModel << " not found";
  const auto prompt = prompt_ids("p0");
  LocalBackend backend(std::move(m), LocalBackendOptions{.threads = 1,
                                                         .context_length = 128,
                                                         .max_sequences = 1,
                                                         .max_queue = 4,
                                                         .queue_timeout = std::chrono::hours(1)});
  backend.set_paused(true);
  auto running = std::async(std::launch::async, [&] { return run(backend, prompt, greedy(2)); });
  while (backend.stats().waiting < 1) std::this_thread::yield();
  auto queued = std::async(std::launch::async, [&] { return run(backend, prompt, greedy(2)); });
  while (backend.stats().queued < 1) std::this_thread::yield();
  backend.release_waiting();
  EXPECT_EQ(queued.get().status.code(), Status::Code::kUnavailable);  // not after an hour
  backend.set_paused(false);
  EXPECT_TRUE(running.get().status.ok());
  EXPECT_TRUE(run(backend, prompt, greedy(2)).status.ok());
}

}  // namespace
}  // namespace swarm
